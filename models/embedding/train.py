"""Training the projection head on cached pooled features (models.embedding.features): a
normalised-softmax ("cosine classifier", NormFace) loss per weak label (articleType, baseColour,
the articleType + baseColour pair, usage, gender, garment category), so garments of the same
type and colour end up close in cosine distance. Catalogue photos and CCP street garments
train it (the street crops, labelled with their category and article type, teach it that a
street garment sits near its catalogue kind); only items outside the attribute model's held-out
splits train it, the held-out ones are measured."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models import weights as W
from models.embedding.features import FeatureSet
from models.embedding.head import EMBEDDING_DIM, EmbeddingHead, build_embedding_head

log = logging.getLogger(__name__)

# weak label -> loss weight; "articleType+baseColour" is the pair as one class
TARGETS: dict[str, float] = {
    "articleType": 1.0,
    "baseColour": 0.5,
    "articleType+baseColour": 1.0,
    "usage": 0.25,
    "gender": 0.25,
    "category": 1.0,
}
MIN_CLASS_ITEMS = 3


@dataclass(frozen=True)
class TrainConfig:
    dim: int = EMBEDDING_DIM
    epochs: int = 60
    batch: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    scale: float = 16.0  # the cosine classifier's temperature (logits = scale * cos)
    seed: int = 0
    feature_dropout: float = 0.0  # dropout on the pooled features (the attribute net's was 0.2)
    targets: dict[str, float] = field(default_factory=lambda: dict(TARGETS))


def weak_label_loss(
    z: torch.Tensor,
    rows: torch.Tensor,
    targets: Mapping[str, tuple[torch.Tensor, Any]],
    proxies: nn.ParameterDict,
    weights: Mapping[str, float],
    scale: float,
) -> torch.Tensor:
    """The head's loss on a batch: per weak label, a normalised-softmax (cosine classifier)
    cross-entropy of the batch's embeddings `z` against that label's class proxies, over the
    rows that have the label (-1: none), weighted; labels no row of the batch has add nothing."""
    loss = torch.zeros(())
    for name, weight in weights.items():
        y, _ = targets[name]
        yb = y[rows]
        keep = yb >= 0
        if not keep.any():
            continue
        w = nn.functional.normalize(proxies[name.replace("+", "_")], dim=1)
        loss = loss + weight * nn.functional.cross_entropy(scale * z[keep] @ w.T, yb[keep])
    return loss


def _target(labels: dict[str, str], name: str) -> str | None:
    parts = [labels.get(p) for p in name.split("+")]
    return None if any(p is None for p in parts) else "+".join(str(p) for p in parts)


def train_head(
    train: FeatureSet,
    config: TrainConfig,
    *,
    checkpoint: Path | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> EmbeddingHead:
    """A head trained on `train`'s features; resumes from `checkpoint` when it holds a run of
    the same config, and saves there after every epoch."""
    torch.manual_seed(config.seed)
    x = torch.from_numpy(np.asarray(train.features, np.float32))
    head = build_embedding_head(in_features=x.shape[1], dim=config.dim)
    targets: dict[str, tuple[torch.Tensor, int]] = {}
    for name in config.targets:
        values = [_target(dict(i.labels), name) for i in train.items]
        counts: dict[str, int] = {}
        for v in values:
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        classes = sorted(c for c, n in counts.items() if n >= MIN_CLASS_ITEMS)
        ids = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([ids.get(v, -1) if v is not None else -1 for v in values])
        targets[name] = (y, len(classes))
    proxies = nn.ParameterDict(
        {
            name.replace("+", "_"): nn.Parameter(torch.randn(n, head.dim) * 0.01)
            for name, (_, n) in targets.items()
        }
    )
    params = [*head.parameters(), *proxies.parameters()]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state.get("config") == repr(config):
            head.load_state_dict(state["head"])
            proxies.load_state_dict(state["proxies"])
            optimiser.load_state_dict(state["optimiser"])
            schedule.load_state_dict(state["schedule"])
            start = int(state["epoch"])
            log.info("resuming the embedding head at epoch %d", start)
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(start, config.epochs):
        head.train()
        order = torch.randperm(len(x), generator=generator)
        total, batches = 0.0, 0
        started = time.monotonic()
        for b in range(0, len(x), config.batch):
            rows = order[b : b + config.batch]
            inputs = x[rows]
            if config.feature_dropout:
                inputs = nn.functional.dropout(inputs, config.feature_dropout)
            loss = weak_label_loss(
                head(inputs), rows, targets, proxies, config.targets, config.scale
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            batches += 1
        schedule.step()
        mean_loss = total / max(batches, 1)
        log.info(
            "embedding head epoch %d/%d loss %.4f (%.1f s)",
            epoch + 1, config.epochs, mean_loss, time.monotonic() - started,
        )  # fmt: skip
        if progress is not None:
            progress(epoch + 1, mean_loss)
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "config": repr(config),
                    "epoch": epoch + 1,
                    "head": head.state_dict(),
                    "proxies": proxies.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "schedule": schedule.state_dict(),
                },
                checkpoint,
            )
    return head.eval()


def embed(head: EmbeddingHead, features: np.ndarray) -> np.ndarray:
    """(N, D) unit embeddings of pooled features."""
    with torch.inference_mode():
        return head(torch.from_numpy(np.asarray(features, np.float32))).numpy()


def ship(
    head: EmbeddingHead,
    weights_dir: Path,
    *,
    attributes_version: str,
    metrics: dict[str, Any],
    training: dict[str, Any],
) -> W.WeightsEntry:
    """Writes the head (projection and type centres) as float16 `<ARCHITECTURE>.pt` and its
    manifest entry `embedding` (version: architecture, dimension and the file's sha256; the
    guidance weight and temperature in its preprocessing)."""
    from models.attributes.network import half_state_dict
    from models.embedding.head import ARCHITECTURE, GUIDING_HEAD

    path = weights_dir / f"{ARCHITECTURE}.pt"
    torch.save(half_state_dict(head), path)
    sha = W.sha256_of(path)
    guidance = (
        {
            "head": GUIDING_HEAD,
            "weight": head.guidance.weight,
            "temperature": head.guidance.temperature,
            "types": len(head.type_centres),
        }
        if head.guided
        else None
    )
    entry = W.WeightsEntry(
        name=W.EMBEDDING_ENTRY,
        file=path.name,
        sha256=sha,
        architecture=ARCHITECTURE,
        version=f"{ARCHITECTURE}-{head.dim}d-{sha[:8]}",
        classes={},
        preprocessing={
            "in_features": head.in_features,
            "dim": head.dim if isinstance(head.projection, nn.Linear) else 0,
            "attributes_version": attributes_version,
            "guidance": guidance,
            "input": "the attribute network's pooled trunk features of the garment crop and "
            f"its {GUIDING_HEAD} logits (same forward as the attributes); output L2-normalised, "
            "compared by cosine distance",
        },
        metrics=metrics,
        training=training,
    )
    W.write_entry(weights_dir, entry)
    return entry
