"""Running a trained detector on RGB photos: the same numpy pre- and post-processing around the
network whether it runs in torch (CPU/GPU, batched) or ONNX Runtime (CPU).

Tensor contract of `DetectorCore` (the exported graph), after torchvision's Mask R-CNN:
  input  `image`: (B, 3, H, W) float32, RGB resized by `resize_scale`, normalised with the
          backbone's mean/std, zero-padded at the bottom/right to multiples of 32;
  output per image: `boxes` (N, 4) float32 xyxy in the resized image's pixels, `labels` (N,)
          int64 indexing the config's classes, `scores` (N,) float32 sorted descending, and
          `masks` (N, 1, 28, 28) float32 probabilities inside each box (not yet pasted).
`paste_masks` turns those into full-size bool masks the way torchvision's postprocess does.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.image_list import ImageList

from models.backbones import efficientnet_lite0 as lite0
from models.detection.network import RESNET_ARCH, DetectorConfig
from models.tags import Detections

SIZE_DIVISIBLE = 32

# boxes (N, 4), labels (N,), scores (N,), mask probabilities (N, 1, 28, 28) of one image
RawDetections = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
MASK_THRESHOLD = 0.5


class Detector(Protocol):
    """What the tagger needs from a detector runner (torch, ONNX Runtime or a fake in tests)."""

    @property
    def class_names(self) -> tuple[str, ...]: ...

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """RGB uint8 (H, W, 3) arrays -> one Detections per image, masks at the image's size."""
        ...


class DetectorCore(nn.Module):
    """Mask R-CNN without its resize/normalise/paste: backbone, RPN and RoI heads only, so
    pre- and post-processing are shared by every backend. `forward` returns one
    (boxes, labels, scores, masks) tuple per image, see the module docstring."""

    def __init__(self, model: MaskRCNN) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.rpn = model.rpn
        self.roi_heads = model.roi_heads

    def forward(
        self, images: Tensor, image_sizes: list[tuple[int, int]]
    ) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        features = self.backbone(images)
        batch = ImageList(images, image_sizes)
        proposals, _ = self.rpn(batch, features)
        detections, _ = self.roi_heads(features, proposals, batch.image_sizes)
        return [(d["boxes"], d["labels"], d["scores"], d["masks"]) for d in detections]


class SingleImageCore(nn.Module):
    """`DetectorCore` for one unpadded image, the form exported to ONNX: image size = the
    input's (H, W), outputs are the four tensors of that image."""

    def __init__(self, core: DetectorCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        size = (image.shape[-2], image.shape[-1])
        return self.core(image, [size])[0]


class InputSizing(Protocol):
    """What input preparation needs of a detector's config (garment or person detector)."""

    @property
    def arch(self) -> str: ...
    @property
    def min_size(self) -> int: ...
    @property
    def max_size(self) -> int: ...


def input_normalisation(config: InputSizing) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per channel on [0, 1] RGB, as the detector's backbone was trained."""
    if config.arch == RESNET_ARCH:
        return np.array([0.485, 0.456, 0.406], np.float32), np.array(
            [0.229, 0.224, 0.225], np.float32
        )
    return np.array(lite0.INPUT_MEAN, np.float32), np.array(lite0.INPUT_STD, np.float32)


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """torchvision's rule: the shorter side becomes min_size unless the longer would pass
    max_size."""
    return min(min_size / min(height, width), max_size / max(height, width))


def prepare_input(image: np.ndarray, config: InputSizing) -> tuple[np.ndarray, float]:
    """RGB uint8 (H, W, 3) -> ((3, H', W') float32 normalised, zero-padded to multiples of 32;
    the resize scale). Every backend feeds the network exactly this, with image size (H', W'),
    so torch (batched by size) and ONNX Runtime (one image at a time) see the same input."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.shape} {image.dtype}")
    mean, std = input_normalisation(config)
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


class TorchDetector:
    """The detector in torch: batched, CPU or CUDA. Safe to call from one worker thread at a
    time; a lock makes concurrent callers wait rather than interleave."""

    def __init__(
        self, model: MaskRCNN, config: DetectorConfig, device: torch.device, threshold: float
    ) -> None:
        self.core = DetectorCore(model).eval().to(device)
        self.config = config
        self.device = device
        self.threshold = threshold
        self._lock = threading.Lock()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.classes

    def at_input_size(self, min_size: int, max_size: int) -> TorchDetector:
        """The same network (and lock) fed at another input size: person crops."""
        view = copy.copy(self)
        view.config = dataclasses.replace(self.config, min_size=min_size, max_size=max_size)
        return view

    def raw(self, images: Sequence[np.ndarray]) -> tuple[list[RawDetections], list[float]]:
        """Core outputs per image (numpy) and each image's resize scale. Images whose padded
        inputs have the same size run as one batch."""
        inputs = [prepare_input(image, self.config) for image in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (array, _) in enumerate(inputs):
            groups.setdefault(array.shape, []).append(i)
        raw: list[RawDetections | None] = [None] * len(images)
        with self._lock, torch.inference_mode():
            for shape, members in groups.items():
                batch = torch.from_numpy(np.stack([inputs[i][0] for i in members]))
                sizes = [(shape[1], shape[2])] * len(members)
                for i, out in zip(members, self.core(batch.to(self.device), sizes), strict=True):
                    boxes, labels, scores, masks = (t.cpu().numpy() for t in out)
                    raw[i] = (
                        boxes.astype(np.float32),
                        labels,
                        scores.astype(np.float32),
                        masks.astype(np.float32),
                    )
        return [r for r in raw if r is not None], [scale for _, scale in inputs]

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """RGB uint8 (H, W, 3) arrays -> one Detections per image, masks at the image's size."""
        if not images:
            return []
        raw, scales = self.raw(images)
        return [
            postprocess(r, image.shape[:2], s, self.class_names, self.threshold)
            for r, image, s in zip(raw, images, scales, strict=True)
        ]
