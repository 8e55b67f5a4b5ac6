"""Fitting the embedding's type guidance (models.embedding.head: Guidance) on cached features:
the per-type centres, and the weight and temperature chosen on a validation share of the
training items, never on the held-out splits the figures are measured on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.attributes.data import is_held_out
from models.attributes.network import AttributeNet
from models.embedding.evaluate import retrieval_figures, unit
from models.embedding.features import FeatureSet
from models.embedding.head import GUIDING_HEAD, EmbeddingAttributeNet, EmbeddingHead, Guidance
from models.embedding.train import embed as projections

VALIDATION_SHARE = 0.1
WEIGHTS = (0.25, 0.5, 1.0, 1.5)
TEMPERATURES = (0.5, 1.0, 2.0)


def validation_split(train: FeatureSet) -> tuple[FeatureSet, FeatureSet]:
    """(fit, validation): a share of the training items by the hash of their key (salted, so
    it is not the held-out split's rule again)."""
    chosen = lambda item: is_held_out(f"validation:{item.key}", VALIDATION_SHARE)  # noqa: E731
    return train.where(lambda i: not chosen(i)), train.where(chosen)


def embed(network: AttributeNet, head: EmbeddingHead, features: np.ndarray) -> np.ndarray:
    """(N, D) embeddings of pooled features, guided by `network`'s type head when `head` is."""
    with torch.inference_mode():
        pooled = torch.from_numpy(np.asarray(features, np.float32))
        return EmbeddingAttributeNet(network, head).eval().embed_pooled(pooled).numpy()


def type_centres(
    head: EmbeddingHead, train: FeatureSet, type_labels: Sequence[str]
) -> torch.Tensor:
    """(types, D): the unit mean of the (unguided) projections of each type's training items;
    a zero row for a type with none (it then pulls nowhere)."""
    z = projections(head, train.features)
    rows: dict[str, list[int]] = {}
    for row, item in enumerate(train.items):
        rows.setdefault(item.labels.get(GUIDING_HEAD, ""), []).append(row)
    centres = np.zeros((len(type_labels), z.shape[1]), np.float32)
    for j, label in enumerate(type_labels):
        if label in rows:
            centres[j] = unit(z[rows[label]].mean(axis=0, keepdims=True))[0]
    return torch.from_numpy(centres)


@dataclass(frozen=True)
class Choice:
    guidance: Guidance
    table: list[dict[str, Any]]  # every weight and temperature tried, with its figures


def choose_guidance(
    network: AttributeNet,
    type_labels: Sequence[str],
    head: EmbeddingHead,
    fit: FeatureSet,
    validation: FeatureSet,
) -> Choice:
    """The weight and temperature that give the best articleType precision@10 plus street
    category precision@10 on `validation` (catalogue photos, and CCP garments, querying the
    catalogue photos of `fit`), for a head trained on `fit` only; weight 0 (unguided) is one
    of the candidates. `type_labels`: the network's GUIDING_HEAD labels, in output order."""
    centres = type_centres(head, fit, type_labels)
    index = fit.where(lambda i: i.source == "catalogue")
    queries = validation.where(lambda i: i.source == "catalogue")
    street = validation.where(lambda i: i.source == "ccp" and "category" in i.labels)
    labels = lambda fs: [dict(i.labels) for i in fs.items]  # noqa: E731
    table: list[dict[str, Any]] = []
    candidates = [(0.0, 1.0)] + [(w, t) for t in TEMPERATURES for w in WEIGHTS if w]
    for weight, temperature in candidates:
        candidate = EmbeddingHead(head.in_features, head.dim)
        candidate.load_state_dict(head.state_dict())
        if weight:
            candidate.guide(centres, Guidance(weight, temperature))
        x = embed(network, candidate, index.features)
        row: dict[str, Any] = {"weight": weight, "temperature": temperature}
        row.update(
            retrieval_figures(
                embed(network, candidate, queries.features), labels(queries), x, labels(index)
            )
        )
        row["street"] = retrieval_figures(
            embed(network, candidate, street.features),
            labels(street),
            x,
            labels(index),
            criteria={"category": ("category",)},
        )["category"]
        table.append(row)
    best = max(table, key=lambda r: (r["articleType"] + r["street"], -r["weight"]))
    return Choice(Guidance(best["weight"], best["temperature"]), table)
