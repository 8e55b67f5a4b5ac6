"""Training the person detector on the built person-box set (and CCP's people), through the
detectors' shared loop."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection import FasterRCNN

from models.detection.loop import fit, machine_description
from models.people.augment import PeopleViews, PersonPhoto, ViewConfig
from models.people.network import PeopleConfig, build_people_detector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeopleTrainConfig:
    """How the person detector is trained. Defaults: the shipped CPU run (weights/people.md)."""

    detector: PeopleConfig = dataclasses.field(default_factory=PeopleConfig)
    views: ViewConfig = dataclasses.field(default_factory=ViewConfig)
    epochs: int = 1
    views_per_epoch: int = 8000  # 0 = every photo once
    budget_minutes: float = 0.0
    calibration_steps: int = 40
    batch_size: int = 4
    lr: float = 4e-4
    weight_decay: float = 1e-4
    warmup_iters: int = 300
    grad_clip: float = 10.0
    seed: int = 0
    workers: int = 1
    checkpoint_every: int = 50
    log_every: int = 20
    pretrained_backbone: bool = True
    max_iterations: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PeopleTrainResult:
    model: FasterRCNN
    config: PeopleTrainConfig
    iterations: int
    epochs: int
    duration_s: float
    final_losses: dict[str, float]
    machine: str


def collate(
    batch: list[tuple[Tensor, dict[str, Tensor]]],
) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    return [image for image, _ in batch], [target for _, target in batch]


def train_people(
    photos: Sequence[PersonPhoto],
    config: PeopleTrainConfig,
    out_dir: Path,
    *,
    device: torch.device,
    resume: bool,
    report: Callable[[str], None] = log.info,
) -> PeopleTrainResult:
    """Trains on square views of `photos`; checkpoints to `out_dir/last.pt`."""
    torch.manual_seed(config.seed)
    model = build_people_detector(
        config=config.detector, pretrained_backbone=config.pretrained_backbone
    )
    # views are already at the scale the detector sees frames: no resize inside the network
    size = config.views.size
    model.transform.min_size = (size,)
    model.transform.max_size = size
    dataset = PeopleViews(photos, config.views, config.seed, views_per_epoch=config.views_per_epoch)
    result = fit(
        model,
        dataset,
        collate,
        config,
        out_dir,
        device=device,
        resume=resume,
        describe=f"{config.detector.arch}: {len(photos)} photos",
        report=report,
    )
    model.transform.min_size = (config.detector.min_size,)
    model.transform.max_size = config.detector.max_size
    return PeopleTrainResult(
        model=model.cpu(),
        config=config,
        iterations=result.iterations,
        epochs=result.epochs,
        duration_s=result.duration_s,
        final_losses=result.final_losses,
        machine=machine_description(device),
    )


def load_checkpoint_model(path: Path) -> tuple[FasterRCNN, PeopleConfig]:
    """The network inside a training checkpoint (`last.pt`), for scoring a run in progress."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "model" not in state or "detector" not in state["config"]:
        raise ValueError(f"{path}: not a person-detector training checkpoint")
    config = PeopleConfig.from_json(state["config"]["detector"])
    model = build_people_detector(config=config, pretrained_backbone=False)
    model.load_state_dict(state["model"])
    return model.eval(), config
