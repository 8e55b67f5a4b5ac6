"""The held-out retrieval figures of the model card, on cached features: held-out catalogue
photos querying the rest of the catalogue (same articleType; same articleType and baseColour),
and held-out CCP street garments querying the same catalogue (same garment category)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from models.embedding.evaluate import retrieval_figures
from models.embedding.features import FeatureSet

Embed = Callable[[np.ndarray], np.ndarray]
MIN_TYPE_PHOTOS = 20


def _labels(fs: FeatureSet) -> list[dict[str, str]]:
    return [dict(i.labels) for i in fs.items]


def held_out_figures(
    catalogue: FeatureSet, street: FeatureSet | None, embed: Embed, k: int = 10
) -> dict[str, Any]:
    """{catalogue: {...}, catalogue_common_types: {...}, street: {...}} precision@k."""
    queries = catalogue.where(lambda i: i.held_out)
    index = catalogue.where(lambda i: not i.held_out)
    index_vectors = embed(index.features)
    query_vectors = embed(queries.features)
    out: dict[str, Any] = {
        "k": k,
        "index_photos": len(index.items),
        "catalogue_queries": len(queries.items),
        "catalogue": retrieval_figures(
            query_vectors, _labels(queries), index_vectors, _labels(index), k=k
        ),
    }
    counts: dict[str, int] = {}
    for item in index.items:
        t = item.labels.get("articleType")
        if t is not None:
            counts[t] = counts.get(t, 0) + 1
    common = np.flatnonzero(
        [counts.get(i.labels.get("articleType", ""), 0) >= MIN_TYPE_PHOTOS for i in queries.items]
    )
    out["catalogue_common_types"] = retrieval_figures(
        query_vectors[common],
        [_labels(queries)[int(j)] for j in common],
        index_vectors,
        _labels(index),
        k=k,
    )
    out["catalogue_common_types_queries"] = len(common)
    if street is not None:
        street_queries = street.where(lambda i: i.held_out and "category" in i.labels)
        out["street_queries"] = len(street_queries.items)
        out["street"] = retrieval_figures(
            embed(street_queries.features),
            _labels(street_queries),
            index_vectors,
            _labels(index),
            k=k,
            criteria={"category": ("category",)},
        )
    return out
