"""Running a trained detector in torch (CPU/GPU, batched), around the numpy pre- and
post-processing every backend shares (models.detection.processing, which has the tensor
contract of `DetectorCore`)."""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.image_list import ImageList

from models.backbones import efficientnet_lite0 as lite0
from models.detection.network import RESNET_ARCH, DetectorConfig
from models.detection.processing import (
    Normalisation,
    RawDetections,
    postprocess,
    prepare_input,
)
from models.tags import Detections


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


class Architecture(Protocol):
    """A detector config's registry name (garment or person detector)."""

    @property
    def arch(self) -> str: ...


def input_normalisation(config: Architecture) -> Normalisation:
    """(mean, std) per channel on [0, 1] RGB, as the detector's backbone was trained."""
    if config.arch == RESNET_ARCH:
        return np.array([0.485, 0.456, 0.406], np.float32), np.array(
            [0.229, 0.224, 0.225], np.float32
        )
    return np.array(lite0.INPUT_MEAN, np.float32), np.array(lite0.INPUT_STD, np.float32)


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
        normalisation = input_normalisation(self.config)
        inputs = [prepare_input(image, self.config, normalisation) for image in images]
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
