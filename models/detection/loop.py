"""The training loop both detectors share: AdamW with warm-up and cosine decay, checkpoints
that resume mid-epoch on the same data order, a time budget that fits whole epochs, GPU when
present. The caller builds the network and its training views; this owns the steps."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

CHECKPOINT = "last.pt"

Batch = tuple[list[Tensor], list[dict[str, Tensor]]]


class LoopConfig(Protocol):
    """The schedule fields of a trainer's config (both TrainConfigs have them)."""

    @property
    def epochs(self) -> int: ...
    @property
    def budget_minutes(self) -> float: ...
    @property
    def calibration_steps(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def warmup_iters(self) -> int: ...
    @property
    def grad_clip(self) -> float: ...
    @property
    def seed(self) -> int: ...
    @property
    def workers(self) -> int: ...
    @property
    def checkpoint_every(self) -> int: ...
    @property
    def log_every(self) -> int: ...
    @property
    def max_iterations(self) -> int: ...

    def to_json(self) -> dict[str, Any]: ...


class EpochViews(Protocol):
    """Training views whose content depends on the epoch (set before each one)."""

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...


@dataclass(frozen=True)
class LoopResult:
    iterations: int
    epochs: int
    duration_s: float  # training time summed over resumed runs
    final_losses: dict[str, float]


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


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return 0.001 + (1 - 0.001) * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def fit(
    model: nn.Module,
    dataset: EpochViews,
    collate: Callable[[list[Any]], Batch],
    config: LoopConfig,
    out_dir: Path,
    *,
    device: torch.device,
    resume: bool,
    describe: str,
    report: Callable[[str], None],
) -> LoopResult:
    """Trains `model` (a torchvision detector: loss dict in train mode) on `dataset`,
    checkpointing to `out_dir/last.pt`; `resume` continues from it when the config matches."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # OpenCV's thread pool does not survive fork(): a DataLoader worker forked after the parent
    # ran a threaded cv2 call can hang on its first resize. Training uses cv2 single-threaded.
    cv2.setNumThreads(1)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    epochs = config.epochs
    calibrating = config.budget_minutes > 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, steps_per_epoch * epochs, config.warmup_iters),
    )
    if calibrating and config.calibration_steps >= config.warmup_iters:
        raise ValueError("calibration_steps must end inside the warm-up")
    start_epoch, skip_batches, step, elapsed = 0, 0, 0, 0.0
    losses: dict[str, float] = {}
    checkpoint = out_dir / CHECKPOINT
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if _identity(state["config"]) != _identity(config.to_json()):
            raise ValueError(f"{checkpoint} was written by a different training config")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, skip_batches = state["epoch"], state["batches_done"]
        step, elapsed, epochs = state["step"], state["elapsed_s"], state["epochs"]
        losses = dict(state.get("losses", {}))  # checkpoints before this field have none
        calibrating = calibrating and state["calibrating"]
        report(f"resumed from {checkpoint}: epoch {start_epoch + 1}, step {step}")

    report(
        f"training {describe}: {epochs} epochs x {steps_per_epoch} steps of "
        f"{config.batch_size}, {device}"
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
                "losses": losses,
            },
            tmp,
        )
        tmp.replace(checkpoint)

    model.train()
    epoch = start_epoch
    calibration_start = 0.0
    while epoch < epochs:
        dataset.set_epoch(epoch)
        skip = skip_batches * config.batch_size if epoch == start_epoch else 0
        loader = DataLoader(
            _as_dataset(dataset),
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
        if config.max_iterations and step >= config.max_iterations:
            # stopped inside the epoch: a resumed run trains the rest of it, not the next one
            if batches_done < steps_per_epoch:
                save(epoch, batches_done)
                break
            save(epoch + 1, 0)
            break
        epoch += 1
        save(epoch, 0)
    model.eval()
    return LoopResult(iterations=step, epochs=epochs, duration_s=elapsed, final_losses=losses)


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """What must match for a checkpoint to resume: everything but where this run stops."""
    return {k: v for k, v in config.items() if k != "max_iterations"}


def _as_dataset(views: EpochViews) -> Dataset[Any]:
    if not isinstance(views, Dataset):
        raise TypeError(f"{type(views).__name__} is not a torch Dataset")
    return views
