"""Retrieval figures: precision@k of nearest neighbours by cosine distance, where a neighbour is
relevant when it shares the query's label(s)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

# the label keys the figures are reported for: relevant = equal on every named label
CRITERIA: dict[str, tuple[str, ...]] = {
    "articleType": ("articleType",),
    "articleType_baseColour": ("articleType", "baseColour"),
}


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    v = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def nearest(queries: np.ndarray, index: np.ndarray, k: int, chunk: int = 512) -> np.ndarray:
    """(Q, k) rows of `index` nearest each query by cosine distance, nearest first."""
    if queries.ndim != 2 or index.ndim != 2 or queries.shape[1] != index.shape[1]:
        raise ValueError(f"expected (Q, D) and (N, D), got {queries.shape} and {index.shape}")
    k = min(k, len(index))
    q, x = unit(queries), unit(index)
    out = np.empty((len(q), k), np.int64)
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ x.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        out[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def precision_at_k(
    neighbours: np.ndarray,
    query_labels: Sequence[object],
    index_labels: Sequence[object],
    relevant: Callable[[object, object], bool] | None = None,
) -> float:
    """Mean share of each query's neighbours that are relevant (equal labels by default);
    queries whose label is None are skipped."""
    same = relevant or (lambda a, b: a == b)
    scores = [
        float(np.mean([same(q, index_labels[int(j)]) for j in row]))
        for q, row in zip(query_labels, neighbours, strict=True)
        if q is not None
    ]
    if not scores:
        raise ValueError("no query has the labels asked for")
    return float(np.mean(scores))


def label_of(labels: object, keys: tuple[str, ...]) -> tuple[str, ...] | None:
    """The tuple of `keys` of one item's label mapping, None when one is missing."""
    if not isinstance(labels, Mapping):
        raise TypeError(f"expected a label mapping, got {type(labels).__name__}")
    values = tuple(labels.get(k) for k in keys)
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def retrieval_figures(
    queries: np.ndarray,
    query_labels: Sequence[Mapping[str, str | None]],
    index: np.ndarray,
    index_labels: Sequence[Mapping[str, str | None]],
    *,
    k: int = 10,
    criteria: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, float]:
    """{criterion: precision@k} for each criterion (default CRITERIA)."""
    neighbours = nearest(queries, index, k)
    out: dict[str, float] = {}
    for name, keys in (criteria or CRITERIA).items():
        out[name] = precision_at_k(
            neighbours,
            [label_of(q, keys) for q in query_labels],
            [label_of(x, keys) for x in index_labels],
        )
    return out


def nearest_products(
    queries: np.ndarray, vectors: np.ndarray, owners: np.ndarray, n_products: int, k: int
) -> np.ndarray:
    """(Q, k) products nearest each query, nearest first, where a product may own several
    vectors (the garments the tagger found on its photo) and is as near as its nearest one -
    as the stored search ranks products (sinks/similar.py)."""
    if len(owners) != len(vectors):
        raise ValueError(f"{len(owners)} owners for {len(vectors)} vectors")
    k = min(k, n_products)
    sims = unit(queries) @ unit(vectors).T
    best = np.full((len(queries), n_products), -np.inf, np.float32)
    for row in range(len(queries)):
        np.maximum.at(best[row], owners, sims[row])
    return np.argsort(-best, axis=1, kind="stable")[:, :k]


def product_figures(
    neighbours: np.ndarray,
    query_labels: Sequence[Mapping[str, str | None]],
    index_labels: Sequence[Mapping[str, str | None]],
    criteria: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, float]:
    """{criterion: precision@k} of already ranked neighbours (rows of `index_labels`)."""
    return {
        name: precision_at_k(
            neighbours,
            [label_of(q, keys) for q in query_labels],
            [label_of(x, keys) for x in index_labels],
        )
        for name, keys in (criteria or CRITERIA).items()
    }
