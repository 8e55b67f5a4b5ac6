"""Optimal one-to-one assignment (the Hungarian method, scipy's `linear_sum_assignment`), the one
place the tracking code calls scipy (a dependency of supervision, installed with it)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]


def assign(cost: np.ndarray, max_cost: float) -> list[tuple[int, int]]:
    """(row, column) pairs of the cheapest matching of `cost` (rows x columns), keeping only
    pairs that cost at most `max_cost`; sorted by row."""
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return sorted(
        (int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= max_cost
    )
