"""Detector weights files: the state dict (fp16 to halve the shipped size) together with the
`DetectorConfig` it was trained with, so loading always rebuilds the same network."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.detection import MaskRCNN

from models.detection.network import DetectorConfig
from models.registry import ModelRegistry


class DetectorWeightsError(ValueError):
    """A detector weights file that is not one, or does not fit its architecture."""


def save_detector(model: MaskRCNN, config: DetectorConfig, path: Path, *, half: bool) -> None:
    """Write {"config", "state_dict"}; floating tensors in fp16 when `half`. Atomic."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).cpu().clone()
        for k, v in model.state_dict().items()
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"config": config.to_json(), "state_dict": state}, tmp)
    tmp.replace(path)


def load_detector(path: Path, registry: ModelRegistry) -> tuple[MaskRCNN, DetectorConfig]:
    """The detector in `path`, float32, eval mode, on the CPU."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or "config" not in raw or "state_dict" not in raw:
        raise DetectorWeightsError(f"{path}: not a detector weights file (config + state_dict)")
    config = DetectorConfig.from_json(raw["config"])
    model = registry.build(config.arch, config=config, pretrained_backbone=False)
    if not isinstance(model, MaskRCNN):
        raise DetectorWeightsError(f"{config.arch} does not build a Mask R-CNN")
    state = {k: v.float() if v.is_floating_point() else v for k, v in raw["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DetectorWeightsError(f"{path}: does not fit {config.arch}: {exc}") from exc
    return model.eval(), config
