"""Choosing each attribute head's confidence threshold (below it: `unknown`)."""

import numpy as np
import pytest

from models.attributes.calibration import calibrate_head, thresholds_from


def test_the_threshold_is_the_lowest_whose_kept_predictions_reach_the_target() -> None:
    # 100 confident predictions right 95% of the time, 100 unsure ones right 40%
    rng = np.random.default_rng(0)
    probs = np.concatenate([rng.uniform(0.8, 1.0, 100), rng.uniform(0.3, 0.6, 100)])
    correct = np.concatenate([np.arange(100) % 20 != 0, np.arange(100) % 5 < 2])
    result = calibrate_head(probs.tolist(), correct.tolist(), target_precision=0.85)
    assert 0.3 < result.threshold <= 0.8
    kept = probs >= result.threshold
    assert correct[kept].mean() >= 0.85
    assert result.precision_kept == pytest.approx(correct[kept].mean())
    assert result.kept_share == pytest.approx(kept.mean())
    # a lower threshold would keep predictions below the target
    lower = probs >= np.sort(probs[probs < result.threshold])[-1]
    assert correct[lower].mean() < 0.85
    assert result.accuracy_all == pytest.approx(0.675)


def test_a_head_right_often_enough_everywhere_is_never_unknown() -> None:
    result = calibrate_head([0.4, 0.5, 0.9] * 20, [True, True, True] * 20, 0.85)
    assert result.threshold == 0.0
    assert result.kept_share == 1.0


def test_a_head_that_never_reaches_the_target_is_always_unknown() -> None:
    result = calibrate_head([0.9, 0.8] * 30, [False, True] * 30, 0.85)
    assert result.threshold == 1.0
    assert result.kept_share == 0.0


def test_thresholds_are_read_from_the_manifest_calibration() -> None:
    calibration = {"heads": {"gender": {"threshold": 0.5}, "season": {"threshold": 0.73}}}
    assert thresholds_from(calibration) == {"gender": 0.5, "season": 0.73}
    assert thresholds_from({}) == {}
