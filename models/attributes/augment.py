"""Batch augmentation that closes the gap between studio and street photos, done in torch on
whole batches of cached canvases (the crop rule's steps 1-2 plus a foreground channel).

Per sample, by source:
- background: a catalogue photo keeps its white studio background, has it greyed out as the
  tagger's mask does, or is pasted on a street-photo patch (or a plain colour); a CCP crop keeps
  its real surroundings or has them greyed out (the tagger's mask); clothing-small is kept;
- geometry: zoom 0.8-1.25x, shift up to 10%, rotation up to 8 degrees, horizontal flip;
- light: brightness, contrast, saturation and gamma within +-25%, white balance within +-5%
  (no hue changes: the colour head is trained on these pixels);
- camera: down- and up-sampling to 40-128 px (garments far from a CCTV camera), sensor noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

SOURCE_IDS = {"catalogue": 0, "ccp": 1, "clothing": 2}


@dataclass(frozen=True)
class AugmentConfig:
    catalogue_keep: float = 0.35  # then grey: up to catalogue_grey, else a street patch
    catalogue_grey: float = 0.6
    ccp_keep: float = 0.4  # else greyed out like the tagger's mask
    plain_colour: float = 0.15  # share of pasted backgrounds that are one random colour
    zoom: tuple[float, float] = (0.8, 1.25)
    shift: float = 0.1
    rotate_deg: float = 8.0
    light: float = 0.25
    white_balance: float = 0.05
    light_p: float = 0.8
    degrade_p: float = 0.35
    degrade_px: tuple[int, int] = (40, 128)
    noise_p: float = 0.2
    noise_sigma: float = 0.03


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def split_canvas(canvas: Tensor) -> tuple[Tensor, Tensor]:
    """(B, S, S, 4) uint8 -> RGB (B, 3, S, S) float in [0, 1] and foreground (B, 1, S, S)."""
    x = canvas.permute(0, 3, 1, 2).float() / 255.0
    return x[:, :3].contiguous(), (x[:, 3:] > 0.5).float()


def normalise(x: Tensor) -> Tensor:
    """[0, 1] RGB -> the network's [-1, 1] input."""
    return (x - 0.5) / 0.5


def deployment_batch(canvas: Tensor, source: Tensor, size: int) -> Tensor:
    """What the classifier sees at inference, from cached canvases: CCP crops greyed outside
    their mask (the tagger's path), catalogue and clothing-small photos as they are."""
    x, fg = split_canvas(canvas)
    grey = (source == SOURCE_IDS["ccp"]).float().view(-1, 1, 1, 1)
    x = x * (1 - grey * (1 - fg)) + 0.5 * grey * (1 - fg)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return normalise(x)


def augment_batch(
    canvas: Tensor,
    source: Tensor,
    backgrounds: Tensor,
    size: int,
    g: torch.Generator,
    config: AugmentConfig | None = None,
) -> Tensor:
    """(B, S, S, 4) uint8 canvases + (B,) source ids -> (B, 3, size, size) normalised."""
    cfg = config or AugmentConfig()
    x, fg = split_canvas(canvas)
    n = x.shape[0]
    x = _backgrounds(x, fg, source, backgrounds, g, cfg)
    x = _geometry(x, size, g, cfg)
    x = _light(x, g, cfg)
    x = _camera(x, g, cfg)
    return normalise(x.clamp(0.0, 1.0)).view(n, 3, size, size)


def _backgrounds(
    x: Tensor, fg: Tensor, source: Tensor, bank: Tensor, g: torch.Generator, cfg: AugmentConfig
) -> Tensor:
    n = x.shape[0]
    r = torch.rand(n, generator=g)
    catalogue = source == SOURCE_IDS["catalogue"]
    ccp = source == SOURCE_IDS["ccp"]
    grey = (catalogue & (r >= cfg.catalogue_keep) & (r < cfg.catalogue_grey)) | (
        ccp & (r >= cfg.ccp_keep)
    )
    paste = catalogue & (r >= cfg.catalogue_grey)
    out = x.clone()
    if grey.any():
        f = fg[grey]
        out[grey] = x[grey] * f + 0.5 * (1 - f)
    if paste.any():
        k = int(paste.sum())
        picks = torch.randint(len(bank), (k,), generator=g)
        patch = bank[picks].permute(0, 3, 1, 2).float() / 255.0
        if patch.shape[-1] != x.shape[-1]:
            patch = F.interpolate(patch, size=x.shape[-2:], mode="bilinear", antialias=True)
        flip = torch.rand(k, generator=g) < 0.5
        patch[flip] = patch[flip].flip(-1)
        plain = torch.rand(k, generator=g) < cfg.plain_colour
        patch[plain] = torch.rand(int(plain.sum()), 3, 1, 1, generator=g).expand_as(patch[plain])
        # a 1-pixel feather so the pasted edge is not a perfect cut-out
        f = F.avg_pool2d(fg[paste], 3, stride=1, padding=1)
        out[paste] = x[paste] * f + patch * (1 - f)
    return out


def _geometry(x: Tensor, size: int, g: torch.Generator, cfg: AugmentConfig) -> Tensor:
    n = x.shape[0]
    zoom = torch.exp(_uniform(n, math.log(cfg.zoom[0]), math.log(cfg.zoom[1]), g))
    angle = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, g) * math.pi / 180
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    theta[:, :, 2] = _uniform(2 * n, -cfg.shift, cfg.shift, g).view(n, 2) * 2
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    # outside the canvas is FILL grey: sample (x - 0.5) with zero padding, then add 0.5 back
    return F.grid_sample(x - 0.5, grid, mode="bilinear", align_corners=False) + 0.5


def _light(x: Tensor, g: torch.Generator, cfg: AugmentConfig) -> Tensor:
    n = x.shape[0]
    on = (torch.rand(n, generator=g) < cfg.light_p).float().view(n, 1, 1, 1)

    def jitter(low: float, high: float) -> Tensor:
        v = _uniform(n, low, high, g).view(n, 1, 1, 1)
        return 1 + on * (v - 1)

    a = cfg.light
    x = x * jitter(1 - a, 1 + a)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * jitter(1 - a, 1 + a) + mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
    x = grey + (x - grey) * jitter(1 - a, 1 + a)
    x = x.clamp(1e-4, 1.0) ** jitter(1 - a, 1 / (1 - a))
    wb = 1 + on * (_uniform(3 * n, -cfg.white_balance, cfg.white_balance, g).view(n, 3, 1, 1))
    return x * wb


def _camera(x: Tensor, g: torch.Generator, cfg: AugmentConfig) -> Tensor:
    n, _, size, _ = x.shape
    low = (torch.rand(n, generator=g) < cfg.degrade_p).nonzero().flatten()
    if len(low):
        px = int(torch.randint(cfg.degrade_px[0], cfg.degrade_px[1] + 1, (1,), generator=g))
        if px < size:
            small = F.interpolate(x[low], size=(px, px), mode="bilinear", antialias=True)
            x = x.clone()
            x[low] = F.interpolate(small, size=(size, size), mode="bilinear")
    noisy = (torch.rand(n, generator=g) < cfg.noise_p).float().view(n, 1, 1, 1)
    sigma = _uniform(n, 0.0, cfg.noise_sigma, g).view(n, 1, 1, 1)
    return x + noisy * sigma * torch.randn(x.shape, generator=g)
