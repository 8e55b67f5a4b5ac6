"""The manifest's preprocessing, read into a typed normalisation and checked."""

import pytest

from models import weights as W


def _entry(preprocessing: dict[str, object]) -> W.WeightsEntry:
    return W.WeightsEntry(
        name="m",
        file="m.pt",
        sha256="0" * 64,
        architecture="a",
        version="v",
        classes={},
        preprocessing=preprocessing,
        metrics={},
        training={},
    )


def test_mean_and_std_become_three_floats_each() -> None:
    normalisation = _entry({"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1]}).normalisation
    assert normalisation == W.Normalisation((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))


@pytest.mark.parametrize(
    "preprocessing",
    [
        {},
        {"mean": [0.5, 0.5], "std": [1, 1, 1]},
        {"mean": [0.5, 0.5, 0.5], "std": [1, 0, 1]},
        {"mean": "0.5", "std": [1, 1, 1]},
    ],
)
def test_a_manifest_without_usable_mean_and_std_is_refused(
    preprocessing: dict[str, object],
) -> None:
    with pytest.raises(W.WeightsError, match="mean/std"):
        _ = _entry(preprocessing).normalisation
