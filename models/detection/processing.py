"""The numpy pre- and post-processing around a Mask R-CNN detector, shared by every backend
(torch in models.detection.runner, ONNX Runtime in models.runtime.graphs) and free of torch, so
the runtime install runs it without the training stack.

Tensor contract of the network (models.detection.runner.DetectorCore, and the shipped graph),
after torchvision's Mask R-CNN:
  input  `image`: (B, 3, H, W) float32, RGB resized by `resize_scale`, normalised with the
          backbone's mean/std, zero-padded at the bottom/right to multiples of 32;
  output per image: `boxes` (N, 4) float32 xyxy in the resized image's pixels, `labels` (N,)
          int64 indexing the config's classes, `scores` (N,) float32 sorted descending, and
          `masks` (N, 1, 28, 28) float32 probabilities inside each box (not yet pasted).
`paste_masks` turns those into full-size bool masks the way torchvision's postprocess does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from models.tags import Detections

SIZE_DIVISIBLE = 32

# boxes (N, 4), labels (N,), scores (N,), mask probabilities (N, 1, 28, 28) of one image
RawDetections = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
MASK_THRESHOLD = 0.5
# (mean, std) per channel on [0, 1] RGB, as the backbone was trained
Normalisation = tuple[np.ndarray, np.ndarray]


class Detector(Protocol):
    """What the tagger needs from a detector runner (torch, ONNX Runtime or a fake in tests)."""

    @property
    def class_names(self) -> tuple[str, ...]: ...

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """RGB uint8 (H, W, 3) arrays -> one Detections per image, masks at the image's size."""
        ...


class InputSizing(Protocol):
    """What input preparation needs of a detector's config (garment or person detector)."""

    @property
    def min_size(self) -> int: ...
    @property
    def max_size(self) -> int: ...


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """torchvision's rule: the shorter side becomes min_size unless the longer would pass
    max_size."""
    return min(min_size / min(height, width), max_size / max(height, width))


def prepare_input(
    image: np.ndarray, config: InputSizing, normalisation: Normalisation
) -> tuple[np.ndarray, float]:
    """RGB uint8 (H, W, 3) -> ((3, H', W') float32 normalised, zero-padded to multiples of 32;
    the resize scale). Every backend feeds the network exactly this, with image size (H', W'),
    so torch (batched by size) and ONNX Runtime (one image at a time) see the same input."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.shape} {image.dtype}")
    mean, std = normalisation
    h, w = image.shape[:2]
    scale = resize_scale(h, w, config.min_size, config.max_size)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, size, interpolation=interpolation)
    padded = np.zeros((3, _round_up(size[1]), _round_up(size[0])), np.float32)
    normalised = (resized.astype(np.float32) / 255.0 - mean) / std
    padded[:, : size[1], : size[0]] = normalised.transpose(2, 0, 1)
    return padded, scale


def _round_up(n: int) -> int:
    return (n + SIZE_DIVISIBLE - 1) // SIZE_DIVISIBLE * SIZE_DIVISIBLE


def paste_masks(mask_probs: np.ndarray, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 1, M, M) probabilities inside (N, 4) image-pixel boxes -> (N, H, W) bool masks, the
    arithmetic of torchvision's paste_masks_in_image (a one-cell zero border, the box widened
    to match and truncated to integers, inclusive corners), then thresholded at 0.5. cv2's
    bilinear resize is torch's align_corners=False."""
    out = np.zeros((len(boxes), height, width), bool)
    for i, (probs, box) in enumerate(zip(mask_probs[:, 0], boxes, strict=True)):
        m = probs.shape[0]
        padded = np.pad(probs, 1)
        scale = (m + 2) / m
        cx, cy = (box[0] + box[2]) * 0.5, (box[1] + box[3]) * 0.5
        half_w, half_h = (box[2] - box[0]) * 0.5 * scale, (box[3] - box[1]) * 0.5 * scale
        x1, y1, x2, y2 = (int(v) for v in (cx - half_w, cy - half_h, cx + half_w, cy + half_h))
        bw, bh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        pasted = cv2.resize(padded, (bw, bh), interpolation=cv2.INTER_LINEAR) > MASK_THRESHOLD
        ix1, iy1 = max(x1, 0), max(y1, 0)
        ix2, iy2 = min(x2 + 1, width), min(y2 + 1, height)
        if ix2 > ix1 and iy2 > iy1:
            out[i, iy1:iy2, ix1:ix2] = pasted[iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1]
    return out


def postprocess(
    raw: RawDetections,
    image_shape: tuple[int, int],
    scale: float,
    class_names: tuple[str, ...],
    threshold: float,
) -> Detections:
    """One image's raw core outputs -> Detections at the original image size, scores >= threshold.
    Background (class 0) never reaches here: Mask R-CNN drops it."""
    boxes, labels, scores, masks = raw
    keep = scores >= threshold
    h, w = image_shape
    boxes = boxes[keep].astype(np.float32) / scale
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    return Detections(
        boxes=boxes.reshape(-1, 4),
        masks=paste_masks(masks[keep], boxes, h, w),
        scores=scores[keep].astype(np.float32),
        class_ids=labels[keep].astype(np.int64),
        class_names=class_names,
    )


def score_floor(trained_floor: float, threshold: float) -> float:
    """The score below which the network itself drops a box, before its mask head runs.

    Mask R-CNN keeps every box above its own floor (0.05) and runs the mask head on each of them
    (up to `detections_per_img`), though the runner then drops all below `threshold`: on camera
    person crops that was about 28 boxes for 4 kept, and the mask head was about 40% of the
    detector's time. A floor just under `threshold` gives the same kept detections (NMS only
    lets a higher score suppress a lower one, and what is kept is sorted by score), so evaluation
    (threshold 0) keeps Mask R-CNN's floor and its full precision-recall curve. Just under:
    the network keeps scores above its floor, the runner those at or above `threshold`."""
    return max(trained_floor, float(np.nextafter(np.float32(threshold), np.float32(0))))
