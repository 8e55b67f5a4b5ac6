"""The attribute network's outputs as the tagger reads them, whichever backend ran it: per-head
logits to probabilities, and the embedding split off when the network has one. Free of torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def probabilities_from_logits(
    logits: Sequence[np.ndarray], heads: Mapping[str, Sequence[str]]
) -> list[dict[str, np.ndarray]]:
    """Per-head (B, n) logits, in `heads` order -> one {head: (n,) float32 softmax} per crop."""
    if len(logits) != len(heads):
        raise ValueError(f"expected logits for {len(heads)} heads, got {len(logits)}")
    batch = {np.asarray(x).shape[0] for x in logits}
    if len(batch) != 1:
        raise ValueError(f"heads disagree on the batch size: {sorted(batch)}")
    probs: dict[str, np.ndarray] = {}
    for (head, labels), x in zip(heads.items(), logits, strict=True):
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != len(labels):
            raise ValueError(f"head {head}: expected (B, {len(labels)}) logits, got {x.shape}")
        e = np.exp(x - x.max(axis=1, keepdims=True))
        probs[head] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return [{head: p[i] for head, p in probs.items()} for i in range(batch.pop())]


def split_outputs(
    outputs: Sequence[np.ndarray], heads: Mapping[str, Sequence[str]], embedded: bool
) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
    """The network's outputs -> (probabilities per crop, embeddings or None)."""
    if not embedded:
        return probabilities_from_logits(outputs, heads), None
    if len(outputs) != len(heads) + 1:
        raise ValueError(f"expected {len(heads)} logits and an embedding, got {len(outputs)}")
    vectors = np.asarray(outputs[-1], np.float32)
    return probabilities_from_logits(outputs[:-1], heads), vectors
