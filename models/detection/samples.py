"""The labelled training/evaluation sample every detection data source produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.taxonomy import DETECTOR_CLASSES


@dataclass(frozen=True)
class InstanceSample:
    """One labelled photo: RGB uint8 image (H, W, 3), instance masks (n, H, W) bool and their
    class ids (n,) int64 indexing `DETECTOR_CLASSES` (never 0, the background)."""

    image_id: str
    image: np.ndarray
    masks: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"InstanceSample.image: expected (H, W, 3) uint8, got {self.image.shape} "
                f"{self.image.dtype}"
            )
        h, w = self.image.shape[:2]
        n = len(self.class_ids)
        if self.masks.shape != (n, h, w) or self.masks.dtype != np.bool_:
            raise ValueError(
                f"InstanceSample.masks: expected ({n}, {h}, {w}) bool, got {self.masks.shape} "
                f"{self.masks.dtype}"
            )
        if self.class_ids.shape != (n,):
            raise ValueError(
                f"InstanceSample.class_ids: expected ({n},), got {self.class_ids.shape}"
            )
        if n and (self.class_ids.min() < 1 or self.class_ids.max() >= len(DETECTOR_CLASSES)):
            raise ValueError("InstanceSample.class_ids: an id is background or unknown")

    @property
    def boxes(self) -> np.ndarray:
        """(n, 4) float32 xyxy boxes enclosing each mask (exclusive right/bottom edge)."""
        return boxes_from_masks(self.masks)


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """(n, H, W) bool -> (n, 4) float32 xyxy; an empty mask gives a zero box."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if len(rows):
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes
