"""Detector weights files: the state dict (fp16 to halve the shipped size) together with the
config it was trained with (`DetectorConfig` or the person detector's `PeopleConfig`), so
loading always rebuilds the same network."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN

from models.detection.network import DetectorConfig
from models.registry import ModelRegistry


class DetectorWeightsError(ValueError):
    """A detector weights file that is not one, or does not fit its architecture."""


class SavedConfig(Protocol):
    def to_json(self) -> dict[str, Any]: ...


def save_detector(model: nn.Module, config: SavedConfig, path: Path, *, half: bool) -> None:
    """Write {"config", "state_dict"}; floating tensors in fp16 when `half`. Atomic."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).cpu().clone()
        for k, v in model.state_dict().items()
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"config": config.to_json(), "state_dict": state}, tmp)
    tmp.replace(path)


def read_detector_file(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """A weights file's config (as saved) and its state dict in float32."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or "config" not in raw or "state_dict" not in raw:
        raise DetectorWeightsError(f"{path}: not a detector weights file (config + state_dict)")
    state = {k: v.float() if v.is_floating_point() else v for k, v in raw["state_dict"].items()}
    return raw["config"], state


def load_state(model: nn.Module, state: dict[str, Tensor], path: Path, arch: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DetectorWeightsError(f"{path}: does not fit {arch}: {exc}") from exc
    model.eval()


def load_detector(path: Path, registry: ModelRegistry) -> tuple[MaskRCNN, DetectorConfig]:
    """The detector in `path`, float32, eval mode, on the CPU."""
    raw_config, state = read_detector_file(path)
    config = DetectorConfig.from_json(raw_config)
    model = registry.build(config.arch, config=config, pretrained_backbone=False)
    if not isinstance(model, MaskRCNN):
        raise DetectorWeightsError(f"{config.arch} does not build a Mask R-CNN")
    load_state(model, state, path, config.arch)
    return model, config
