"""When an attribute is too unsure to state: per-head confidence thresholds chosen on held-out
photos, under which the tagger stores the attribute as `unknown` (its probabilities kept).

The rule: for each head, the lowest top-probability threshold at which the predictions kept are
right at least `target_precision` of the time on the calibration set (catalogue photos the
classifier never trained on, each both as photographed and degraded like a small camera person's
crop). A head that is right that often everywhere gets threshold 0 (never unknown); one that
never reaches it gets 1 (always unknown).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

UNKNOWN = "unknown"
TARGET_PRECISION = 0.85
# a threshold is only trusted when this many calibration predictions lie above it
MIN_KEPT = 30


@dataclass(frozen=True)
class HeadCalibration:
    threshold: float
    precision_kept: float  # right share of the predictions at or above the threshold
    kept_share: float  # share of predictions at or above it (the rest become unknown)
    accuracy_all: float  # right share without a threshold
    n: int

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def calibrate_head(
    top_probs: Sequence[float], correct: Sequence[bool], target_precision: float = TARGET_PRECISION
) -> HeadCalibration:
    """The lowest threshold whose kept predictions (top prob >= it) reach the target precision
    (see the module doc)."""
    n = len(top_probs)
    if n == 0 or n != len(correct):
        raise ValueError(f"need as many outcomes as probabilities, got {n} and {len(correct)}")
    probs = np.asarray(top_probs, np.float64)
    right = np.asarray(correct, bool)
    order = np.argsort(-probs, kind="stable")
    precision = np.cumsum(right[order]) / np.arange(1, n + 1)
    ok = np.flatnonzero((precision >= target_precision) & (np.arange(1, n + 1) >= MIN_KEPT))
    if not len(ok):
        return HeadCalibration(1.0, 0.0, 0.0, float(right.mean()), n)
    k = int(ok[-1])  # the most predictions kept at the target
    threshold = 0.0 if k == n - 1 else float(probs[order][k])
    kept = probs >= threshold
    return HeadCalibration(
        threshold=threshold,
        precision_kept=float(right[kept].mean()),
        kept_share=float(kept.mean()),
        accuracy_all=float(right.mean()),
        n=n,
    )


def stated(label: str, prob: float, threshold: float) -> str:
    """What a prediction states: its label, or UNKNOWN when its probability is under the
    head's calibrated threshold (a frame's garment and a sighting's voted one alike)."""
    return label if prob >= threshold else UNKNOWN


def thresholds_from(calibration: Mapping[str, Any]) -> dict[str, float]:
    """{head: threshold} out of the manifest's `calibration` metrics (empty when absent: an
    uncalibrated classifier states every top label, as before calibration existed)."""
    heads = calibration.get("heads", {}) if calibration else {}
    return {head: float(row["threshold"]) for head, row in heads.items()}


def shipped_thresholds(weights_dir: Path) -> dict[str, float]:
    """The shipped attribute classifier's thresholds (`thresholds_from` its manifest entry);
    empty when the folder has no manifest or no attribute entry."""
    from models import weights as W

    try:
        entry = W.entry(weights_dir, W.ATTRIBUTES_ENTRY)
    except W.WeightsError:  # no manifest, or no such entry
        return {}
    return thresholds_from(entry.metrics.get("calibration", {}))
