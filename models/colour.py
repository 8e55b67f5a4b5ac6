"""The garment colour read from its pixels, named in the catalogue's colour vocabulary
(`baseColour`): skin-like and shadow pixels left out, the rest clustered in CIELAB, and the
largest cluster named by the perceptually nearest catalogue colour (CIEDE2000).

The tagger reports this beside the attribute classifier's colour head; the two are independent
readings of the same garment (weights/attributes.md reports how often they agree).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.tags import ColourReading

# Catalogue colour names -> where garments of that name sit in CIELAB (D65) when photographed.
# The names are the catalogue's baseColour values with at least 10 training photos (the colour
# head's vocabulary, "Multi" apart: it is read when no colour dominates, see MULTI_*). Neutrals
# and dark colours are the medians measured on catalogue training photos of each name (black
# cloth photographs at L 22, navy at L 26); chromatic names keep the hue of the named colour at
# the lightness such garments photograph at.
PALETTE_LAB: Mapping[str, tuple[float, float, float]] = {
    "Black": (22.0, 0.0, 0.0),
    "Charcoal": (33.0, 0.0, -1.0),
    "Grey": (60.0, 0.0, 0.0),
    "Steel": (72.0, -1.0, -2.0),
    "Silver": (84.0, 0.0, 0.0),
    "White": (93.0, 0.0, 0.0),
    "Off White": (90.0, -0.5, 5.0),
    "Cream": (91.0, 0.0, 9.0),
    "Beige": (77.0, 2.0, 13.0),
    "Khaki": (64.0, 1.0, 16.0),
    "Tan": (50.0, 9.0, 18.0),
    "Brown": (30.0, 7.0, 10.0),
    "Copper": (50.0, 20.0, 28.0),
    "Gold": (75.0, 3.0, 35.0),
    "Mustard": (72.0, 6.0, 55.0),
    "Yellow": (87.0, -4.0, 60.0),
    "Orange": (64.0, 35.0, 55.0),
    "Peach": (76.0, 16.0, 18.0),
    "Red": (46.0, 55.0, 30.0),
    "Maroon": (28.0, 22.0, 6.0),
    "Magenta": (45.0, 55.0, -8.0),
    "Pink": (68.0, 25.0, 0.0),
    "Lavender": (75.0, 12.0, -12.0),
    "Purple": (38.0, 18.0, -20.0),
    "Navy Blue": (25.0, 2.0, -14.0),
    "Blue": (52.0, 2.0, -30.0),
    "Teal": (40.0, -18.0, -8.0),
    "Green": (52.0, -30.0, 15.0),
    "Olive": (42.0, -5.0, 18.0),
}
MULTI = "Multi"
# "Multi" when no cluster holds MULTI_SHARE of the garment's pixels and the clusters are
# clearly different colours (CIEDE2000 at least MULTI_DELTA_E between every pair).
MULTI_SHARE = 0.4
MULTI_DELTA_E = 30.0
CLUSTERS = 3
MAX_PIXELS = 6000  # pixels sampled (evenly) from a large mask: the reading is a statistic
# A garment whose pixels are mostly skin-like (a beige dress) keeps them.
MIN_KEPT_SHARE = 0.3


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in 0-255 -> CIELAB (D65), L in 0-100."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [[0.4124564, 0.3575761, 0.1804375],
         [0.2126729, 0.7151522, 0.0721750],
         [0.0193339, 0.1191920, 0.9503041]]
    )  # fmt: skip
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def delta_e_2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference between broadcastable (..., 3) CIELAB arrays."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    c_mean = (c1 + c2) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dl, dc = l2 - l1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dhh = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_mean, cp_mean = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = np.where(
        c1p * c2p == 0,
        h_sum,
        np.where(
            np.abs(h1p - h2p) <= 180,
            h_sum / 2,
            np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2),
        ),
    )
    t = (
        1
        - 0.17 * np.cos(np.radians(h_mean - 30))
        + 0.24 * np.cos(np.radians(2 * h_mean))
        + 0.32 * np.cos(np.radians(3 * h_mean + 6))
        - 0.20 * np.cos(np.radians(4 * h_mean - 63))
    )
    sl = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    sc = 1 + 0.045 * cp_mean
    sh = 1 + 0.015 * cp_mean * t
    rt = (
        -2
        * np.sqrt(cp_mean**7 / (cp_mean**7 + 25.0**7))
        * np.sin(np.radians(60 * np.exp(-(((h_mean - 275) / 25) ** 2))))
    )
    return np.asarray(
        np.sqrt((dl / sl) ** 2 + (dc / sc) ** 2 + (dhh / sh) ** 2 + rt * (dc / sc) * (dhh / sh))
    )


_NAMES = tuple(PALETTE_LAB)
_PALETTE_LAB = np.array([PALETTE_LAB[n] for n in _NAMES])


def nearest_colour_name(lab: np.ndarray) -> str:
    """The catalogue colour name nearest one CIELAB colour."""
    return _NAMES[int(np.argmin(delta_e_2000(_PALETTE_LAB, np.asarray(lab)[None, :])))]


def skin_like(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) bool: the YCrCb skin-tone box (Chai & Ngan), lit skin only."""
    c = rgb.astype(np.float64)
    y = 0.299 * c[:, 0] + 0.587 * c[:, 1] + 0.114 * c[:, 2]
    cr = (c[:, 0] - y) * 0.713 + 128
    cb = (c[:, 2] - y) * 0.564 + 128
    return (cr >= 136) & (cr <= 173) & (cb >= 77) & (cb <= 127) & (y > 60)


def _kmeans(lab: np.ndarray, k: int, iterations: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means: centres start at the median pixel and then the farthest pixels."""
    centres = [np.median(lab, axis=0)]
    for _ in range(1, k):
        d = np.min([np.sum((lab - c) ** 2, axis=1) for c in centres], axis=0)
        centres.append(lab[int(np.argmax(d))])
    c = np.array(centres)
    assign = np.zeros(len(lab), np.int64)
    for _ in range(iterations):
        assign = np.argmin(((lab[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            if np.any(assign == j):
                c[j] = lab[assign == j].mean(axis=0)
    return c, assign


def read_colour(image: np.ndarray, mask: np.ndarray) -> ColourReading:
    """The dominant colour of `image` (H, W, 3) RGB uint8 inside `mask` (H, W) bool.

    Skin-like pixels are left out (unless most of the garment is skin-coloured), then shadows
    (pixels much darker than the garment's median lightness); the rest is clustered in CIELAB
    (k=3) and the largest cluster's median colour is named. `share` is that cluster's fraction
    of all the mask's (sampled) pixels.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2] or mask.dtype != np.bool_:
        raise ValueError(f"mask: expected {image.shape[:2]} bool, got {mask.shape} {mask.dtype}")
    pixels = image[mask]
    if not len(pixels):
        raise ValueError("mask is empty: no garment pixels to read a colour from")
    if len(pixels) > MAX_PIXELS:
        pixels = pixels[np.linspace(0, len(pixels) - 1, MAX_PIXELS).astype(np.int64)]
    total = len(pixels)
    lab = srgb_to_lab(pixels)
    keep = ~skin_like(pixels)
    if keep.mean() < MIN_KEPT_SHARE:
        keep = np.ones(total, bool)
    lightness = lab[keep, 0]
    shadow = lab[:, 0] < max(8.0, 0.4 * float(np.median(lightness)))
    if (keep & ~shadow).mean() >= MIN_KEPT_SHARE * keep.mean():
        keep &= ~shadow
    kept_rgb, kept_lab = pixels[keep], lab[keep]
    k = min(CLUSTERS, len(np.unique(kept_rgb, axis=0)))
    centres, assign = _kmeans(kept_lab, k)
    sizes = np.bincount(assign, minlength=k)
    top = int(np.argmax(sizes))
    members = assign == top
    rgb = np.median(kept_rgb[members], axis=0).round().astype(int)
    share = float(sizes[top] / total)
    name = nearest_colour_name(np.median(kept_lab[members], axis=0))
    if k == CLUSTERS and sizes.max() < MULTI_SHARE * sizes.sum():
        pairwise = delta_e_2000(centres[:, None, :], centres[None, :, :])
        if pairwise[np.triu_indices(k, 1)].min() >= MULTI_DELTA_E:
            name = MULTI
    return ColourReading(name=name, rgb=(int(rgb[0]), int(rgb[1]), int(rgb[2])), share=share)
