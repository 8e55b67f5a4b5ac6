"""Training the garment + person detector: CCP (and DeepFashion2) photos with copy-paste and
multi-scale views, through the shared loop of `models.detection.loop`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.models.detection import MaskRCNN

from models.detection import augment
from models.detection.checkpoint import load_state, read_detector_file
from models.detection.data import AugmentedDetectionSet, SampleSource, collate, collect_donors
from models.detection.loop import fit, machine_description
from models.detection.network import DetectorConfig
from models.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How a detector is trained. Defaults: the shipped CPU run (see weights/detector.md)."""

    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    augment: augment.AugmentConfig = dataclasses.field(default_factory=augment.AugmentConfig)
    epochs: int = 12
    # > 0: ignore `epochs`; time the first steps, then fit as many whole epochs as this many
    # minutes allow (the cosine schedule is fixed then; warm-up does not depend on it)
    budget_minutes: float = 0.0
    calibration_steps: int = 40
    batch_size: int = 2
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_iters: int = 200
    grad_clip: float = 10.0
    train_min_sizes: tuple[int, ...] = (352, 384, 416, 448, 480)
    train_max_size: int = 720
    seed: int = 0
    workers: int = 1
    checkpoint_every: int = 100  # iterations
    log_every: int = 20
    pretrained_backbone: bool = True
    max_iterations: int = 0  # stop early after this many (0 = the whole schedule): smoke tests
    # a detector weights file to start from (fine-tuning) instead of the ImageNet backbone
    init_weights: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainResult:
    model: MaskRCNN
    config: TrainConfig
    iterations: int
    epochs: int
    duration_s: float  # training time summed over resumed runs
    final_losses: dict[str, float]
    machine: str


def train_detector(
    source: SampleSource,
    config: TrainConfig,
    registry: ModelRegistry,
    out_dir: Path,
    *,
    device: torch.device,
    resume: bool,
    report: Callable[[str], None] = log.info,
) -> TrainResult:
    """Trains on `source` and returns the model; checkpoints to `out_dir/last.pt`."""
    torch.manual_seed(config.seed)
    model = registry.build(
        config.detector.arch,
        config=config.detector,
        pretrained_backbone=config.pretrained_backbone,
    )
    if not isinstance(model, MaskRCNN):
        raise TypeError(f"{config.detector.arch} does not build a Mask R-CNN")
    if config.init_weights:
        path = Path(config.init_weights)
        saved, state = read_detector_file(path)
        if DetectorConfig.from_json(saved) != config.detector:
            raise ValueError(f"{path} was trained with another detector config than this run's")
        load_state(model, state, path, config.detector.arch)
        report(f"starting from {path}")
    model.transform.min_size = config.train_min_sizes
    model.transform.max_size = config.train_max_size
    report(f"collecting people for copy-paste from {len(source)} photos")
    donors = collect_donors(source)
    dataset = AugmentedDetectionSet(source, donors, config.augment, config.seed)
    result = fit(
        model,
        dataset,
        collate,
        config,
        out_dir,
        device=device,
        resume=resume,
        describe=f"{config.detector.arch}: {len(source)} photos, {len(donors)} donors",
        report=report,
    )
    model.transform.min_size = (config.detector.min_size,)
    model.transform.max_size = config.detector.max_size
    return TrainResult(
        model=model.cpu(),
        config=config,
        iterations=result.iterations,
        epochs=result.epochs,
        duration_s=result.duration_s,
        final_losses=result.final_losses,
        machine=machine_description(device),
    )
