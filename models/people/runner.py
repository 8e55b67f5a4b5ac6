"""Running the person detector on RGB frames: the garment detector's input preparation around
the network, in torch (CPU/GPU, batched) or ONNX Runtime (CPU), and its weights file.

Tensor contract of `PeopleCore` (the exported graph), after torchvision's Faster R-CNN:
  input  `image`: (B, 3, H, W) float32, RGB resized by `resize_scale`, normalised with the
          backbone's mean/std, zero-padded at the bottom/right to multiples of 32;
  output per image: `boxes` (N, 4) float32 xyxy in the resized image's pixels and `scores`
          (N,) float32 sorted descending (one class: every box is a person).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList

from models.detection.checkpoint import load_state, read_detector_file
from models.detection.processing import Detector, prepare_input
from models.detection.runner import input_normalisation
from models.people.boxes import PersonBoxes
from models.people.network import PeopleConfig, build_people_detector
from models.taxonomy import PERSON


class PeopleCore(nn.Module):
    """Faster R-CNN without its resize/normalise/rescale, so every backend shares the numpy
    pre- and post-processing. See the module docstring for the tensors."""

    def __init__(self, model: FasterRCNN) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.rpn = model.rpn
        self.roi_heads = model.roi_heads

    def forward(
        self, images: Tensor, image_sizes: list[tuple[int, int]]
    ) -> list[tuple[Tensor, Tensor]]:
        features = self.backbone(images)
        batch = ImageList(images, image_sizes)
        proposals, _ = self.rpn(batch, features)
        detections, _ = self.roi_heads(features, proposals, batch.image_sizes)
        return [(d["boxes"], d["scores"]) for d in detections]


class SingleImagePeopleCore(nn.Module):
    """`PeopleCore` for one unpadded image: the form exported to ONNX."""

    def __init__(self, core: PeopleCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        return self.core(image, [(image.shape[-2], image.shape[-1])])[0]


def _postprocess(
    boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, int], scale: float, threshold: float
) -> PersonBoxes:
    keep = scores >= threshold
    h, w = shape
    out = boxes[keep].astype(np.float32).reshape(-1, 4) / scale
    out[:, 0::2] = out[:, 0::2].clip(0, w)
    out[:, 1::2] = out[:, 1::2].clip(0, h)
    return PersonBoxes(boxes=out, scores=scores[keep].astype(np.float32))


class TorchPeopleDetector:
    """The person detector in torch: batched by input size, CPU or CUDA; one caller at a time."""

    def __init__(
        self, model: FasterRCNN, config: PeopleConfig, device: torch.device, threshold: float
    ) -> None:
        self.core = PeopleCore(model).eval().to(device)
        self.config = config
        self.device = device
        self.threshold = threshold
        self._lock = threading.Lock()

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonBoxes]:
        normalisation = input_normalisation(self.config)
        inputs = [prepare_input(image, self.config, normalisation) for image in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (array, _) in enumerate(inputs):
            groups.setdefault(array.shape, []).append(i)
        found: dict[int, PersonBoxes] = {}
        with self._lock, torch.inference_mode():
            for shape, members in groups.items():
                batch = torch.from_numpy(np.stack([inputs[i][0] for i in members]))
                sizes = [(shape[1], shape[2])] * len(members)
                outputs = self.core(batch.to(self.device), sizes)
                for i, (boxes, scores) in zip(members, outputs, strict=True):
                    found[i] = _postprocess(
                        boxes.cpu().numpy(),
                        scores.cpu().numpy(),
                        images[i].shape[:2],
                        inputs[i][1],
                        self.threshold,
                    )
        return [found[i] for i in range(len(images))]


class OnnxPeopleDetector:
    """The person detector's exported graph in ONNX Runtime, one image per run."""

    def __init__(self, ort_session: Any, config: PeopleConfig, threshold: float) -> None:
        self.session = ort_session
        self.config = config
        self.threshold = threshold

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonBoxes]:
        out = []
        for image in images:
            array, scale = prepare_input(image, self.config, input_normalisation(self.config))
            boxes, scores = self.session.run(None, {"image": array[None]})
            out.append(_postprocess(boxes, scores, image.shape[:2], scale, self.threshold))
        return out


def export_people(model: FasterRCNN, config: PeopleConfig, path: Path, opset: int) -> None:
    """The detector's core for one image of any size (dynamic H, W)."""
    core = SingleImagePeopleCore(PeopleCore(model)).eval()
    example = torch.zeros(1, 3, config.min_size + (-config.min_size) % 32, config.max_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow in torchvision
        torch.onnx.export(
            core,
            (example,),
            str(path),
            opset_version=opset,
            dynamo=False,
            input_names=["image"],
            output_names=["boxes", "scores"],
            dynamic_axes={"image": {2: "height", 3: "width"}},
        )


def load_people(path: Path) -> tuple[FasterRCNN, PeopleConfig]:
    """The person detector in `path` (written by `save_detector`), float32, eval mode, CPU."""
    raw_config, state = read_detector_file(path)
    config = PeopleConfig.from_json(raw_config)
    model = build_people_detector(config=config, pretrained_backbone=False)
    load_state(model, state, path, config.arch)
    return model, config


class PeopleFromDetections:
    """The people of a garment + person detector (the `Detector` of models.detection.processing):
    today's single-stage path, measured beside the person detector on the same frames."""

    def __init__(self, detector: Detector) -> None:
        if PERSON not in detector.class_names:
            raise ValueError(f"the detector has no {PERSON!r} class")
        self.detector = detector
        self.person = detector.class_names.index(PERSON)

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonBoxes]:
        out = []
        for found in self.detector.detect(images):
            keep = found.class_ids == self.person
            out.append(
                PersonBoxes(
                    boxes=found.boxes[keep].astype(np.float32).reshape(-1, 4),
                    scores=found.scores[keep].astype(np.float32),
                )
            )
        return out
