"""People found in a frame (`PersonBoxes`) and what every person detector offers (`PeopleDetector`):
the contract between the detectors (trained here or imported) and the tagger, free of torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class PersonBoxes:
    """People found in one image: boxes (n, 4) float32 xyxy pixels, scores (n,) float32."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.scores.shape != (n,) or self.scores.dtype != np.float32:
            raise ValueError(
                f"PersonBoxes.scores: expected ({n},) float32, got {self.scores.shape}"
            )
        if self.boxes.shape != (n, 4) or self.boxes.dtype != np.float32:
            raise ValueError(
                f"PersonBoxes.boxes: expected ({n}, 4) float32, got {self.boxes.shape} "
                f"{self.boxes.dtype}"
            )

    def __len__(self) -> int:
        return len(self.scores)


class PeopleDetector(Protocol):
    """What the tagger and `eval people` need: RGB uint8 (H, W, 3) frames in, people out."""

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonBoxes]: ...
