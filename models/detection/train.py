"""The detector's training loop: AdamW with warm-up and cosine decay, multi-scale inputs,
checkpoints that resume mid-epoch on the same data order, GPU when present."""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torchvision.models.detection import MaskRCNN

from models.detection import augment
from models.detection.data import AugmentedDetectionSet, SampleSource, collate, collect_donors
from models.detection.network import DetectorConfig
from models.registry import ModelRegistry

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"


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


class EpochOrder(Sampler[int]):
    """A seeded permutation per epoch, minus the first `skip` items (already trained on)."""

    def __init__(self, length: int, seed: int, epoch: int, skip: int) -> None:
        self.order = np.random.default_rng([seed, epoch, 7]).permutation(length)[skip:]

    def __iter__(self) -> Iterator[int]:
        return iter(int(i) for i in self.order)

    def __len__(self) -> int:
        return len(self.order)


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {platform.machine()}"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return 0.001 + (1 - 0.001) * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


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
    out_dir.mkdir(parents=True, exist_ok=True)
    # OpenCV's thread pool does not survive fork(): a DataLoader worker forked after the parent
    # ran a threaded cv2 call can hang on its first resize. Training uses cv2 single-threaded.
    cv2.setNumThreads(1)
    torch.manual_seed(config.seed)
    model = registry.build(
        config.detector.arch,
        config=config.detector,
        pretrained_backbone=config.pretrained_backbone,
    )
    if not isinstance(model, MaskRCNN):
        raise TypeError(f"{config.detector.arch} does not build a Mask R-CNN")
    model.transform.min_size = config.train_min_sizes
    model.transform.max_size = config.train_max_size
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(source) / config.batch_size)
    epochs = config.epochs
    calibrating = config.budget_minutes > 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: _lr_factor(step, steps_per_epoch * epochs, config.warmup_iters),
    )
    if calibrating and config.calibration_steps >= config.warmup_iters:
        raise ValueError("calibration_steps must end inside the warm-up")
    start_epoch, skip_batches, step, elapsed = 0, 0, 0, 0.0
    checkpoint = out_dir / CHECKPOINT
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["config"] != config.to_json():
            raise ValueError(f"{checkpoint} was written by a different training config")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, skip_batches = state["epoch"], state["batches_done"]
        step, elapsed, epochs = state["step"], state["elapsed_s"], state["epochs"]
        calibrating = calibrating and state["calibrating"]
        report(f"resumed from {checkpoint}: epoch {start_epoch + 1}, step {step}")

    report(f"collecting people for copy-paste from {len(source)} photos")
    donors = collect_donors(source)
    dataset = AugmentedDetectionSet(source, donors, config.augment, config.seed)
    report(
        f"training {config.detector.arch}: {len(source)} photos, {len(donors)} donors, "
        f"{epochs} epochs x {steps_per_epoch} steps of {config.batch_size}, {device}"
    )

    def save(epoch: int, batches_done: int) -> None:
        tmp = checkpoint.with_suffix(".tmp")
        torch.save(
            {
                "config": config.to_json(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "epochs": epochs,
                "calibrating": calibrating,
                "batches_done": batches_done,
                "step": step,
                "elapsed_s": elapsed,
            },
            tmp,
        )
        tmp.replace(checkpoint)

    losses: dict[str, float] = {}
    model.train()
    epoch = start_epoch
    calibration_start = 0.0
    while epoch < epochs:
        dataset.set_epoch(epoch)
        skip = skip_batches * config.batch_size if epoch == start_epoch else 0
        loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=EpochOrder(len(dataset), config.seed, epoch, skip),
            num_workers=config.workers,
            collate_fn=collate,
            worker_init_fn=_worker_init,
            prefetch_factor=2 if config.workers else None,
        )
        batches_done = skip // config.batch_size
        window_start, window_steps = time.perf_counter(), 0
        tick = time.perf_counter()
        for images, targets in loader:
            images = [im.to(device, non_blocking=True) for im in images]
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            loss_parts = model(images, targets)
            loss = sum(loss_parts.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {step}: {loss_parts}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            batches_done += 1
            window_steps += 1
            elapsed += time.perf_counter() - tick  # wall time, data loading included
            tick = time.perf_counter()
            for k, v in loss_parts.items():
                losses[k] = 0.9 * losses.get(k, v.item()) + 0.1 * v.item()
            if calibrating and step == 10:
                calibration_start = elapsed  # the first steps are slower (allocations)
            if calibrating and step == 10 + config.calibration_steps:
                per_step = (elapsed - calibration_start) / config.calibration_steps
                fit = int(config.budget_minutes * 60 / (per_step * steps_per_epoch))
                epochs = max(epoch + 1, fit)
                calibrating = False
                report(f"{per_step:.2f} s/step: {epochs} epochs fit {config.budget_minutes} min")
            if step % config.log_every == 0:
                per_step = (time.perf_counter() - window_start) / window_steps
                window_start, window_steps = time.perf_counter(), 0
                eta = per_step * (steps_per_epoch * epochs - step) / 60
                parts = " ".join(f"{k.removeprefix('loss_')}={v:.3f}" for k, v in losses.items())
                report(
                    f"epoch {epoch + 1}/{epochs} step {step}/{steps_per_epoch * epochs} "
                    f"lr={scheduler.get_last_lr()[0]:.2e} {parts} "
                    f"{per_step:.2f}s/step eta {eta:.0f} min"
                )
            if step % config.checkpoint_every == 0:
                save(epoch, batches_done)
            if config.max_iterations and step >= config.max_iterations:
                break
        epoch += 1
        save(epoch, 0)
        if config.max_iterations and step >= config.max_iterations:
            break
    model.eval()
    model.transform.min_size = (config.detector.min_size,)
    model.transform.max_size = config.detector.max_size
    return TrainResult(
        model=model.cpu(),
        config=config,
        iterations=step,
        epochs=epochs,
        duration_s=elapsed,
        final_losses=losses,
        machine=machine_description(device),
    )
