"""The ONNX Runtime backend: both networks exported with torch.onnx (opset 17, TorchScript
exporter), cached on disk under a key of the weights' sha256, and run on the CPU.

Where the files live: exported at first use into `<cache_dir>/<name>-<sha256[:16]>-<key>.onnx`
(the tagger passes `<state_dir>/onnx`). They are not shipped in weights/: fp32 ONNX copies of
both networks would add about 40 MB to the 60 MB weights budget, and exporting takes a few
seconds once per weights version (weights/README.md has the measured figures).
Writes are atomic (temp file + rename), so workers starting together never read half a file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN

from models.detection.network import DetectorConfig
from models.detection.runner import (
    DetectorCore,
    RawDetections,
    SingleImageCore,
    postprocess,
    prepare_input,
)
from models.tags import Detections

log = logging.getLogger(__name__)

OPSET = 17

Box = tuple[float, float, float, float]


def cached_export(
    cache_dir: Path, name: str, weights_sha256: str, export: Callable[[Path], None]
) -> Path:
    """The cached ONNX file for these weights, exported first if missing."""
    key = f"opset{OPSET}-torch{torch.__version__.split('+')[0]}"
    path = cache_dir / f"{name}-{weights_sha256[:16]}-{key}.onnx"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{name}-", suffix=".onnx")
    os.close(fd)
    try:
        log.info("exporting %s to ONNX at %s", name, path)
        export(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def export_detector(model: MaskRCNN, config: DetectorConfig, path: Path) -> None:
    """The detector's core for one image of any size (dynamic H, W), see runner.DetectorCore."""
    core = SingleImageCore(DetectorCore(model)).eval()
    h = config.min_size + (-config.min_size) % 32
    example = torch.zeros(1, 3, h, h * 4 // 3 // 32 * 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow in torchvision
        torch.onnx.export(
            core,
            (example,),
            str(path),
            opset_version=OPSET,
            dynamo=False,
            input_names=["image"],
            output_names=["boxes", "labels", "scores", "masks"],
            dynamic_axes={"image": {2: "height", 3: "width"}},
        )


def export_classifier(module: nn.Module, input_size: int, path: Path) -> None:
    """The attribute network, dynamic batch: (B, 3, S, S) -> one logits tensor per head (and
    the (B, D) embedding last, when the module carries an embedding head)."""
    module = module.eval()
    example = torch.zeros(2, 3, input_size, input_size)
    with torch.no_grad():
        heads = len(module(example))
    names = [f"logits_{i}" for i in range(heads)]
    if heads > len(getattr(module, "head_names", ())):  # models.embedding.head: + embedding
        names[-1] = "embedding"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            opset_version=OPSET,
            dynamo=False,
            input_names=["crops"],
            output_names=names,
            dynamic_axes={"crops": {0: "batch"}, **{n: {0: "batch"} for n in names}},
        )


class OnnxDetector:
    """The detector in ONNX Runtime: one image per run (Mask R-CNN's exported graph is
    single-image), same pre/post-processing as the torch runner."""

    def __init__(self, ort_session: Any, config: DetectorConfig, threshold: float) -> None:
        self.session = ort_session
        self.config = config
        self.threshold = threshold

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.classes

    def at_input_size(self, min_size: int, max_size: int) -> OnnxDetector:
        """The same session fed at another input size: person crops."""
        config = dataclasses.replace(self.config, min_size=min_size, max_size=max_size)
        return OnnxDetector(self.session, config, self.threshold)

    def raw(self, images: Sequence[np.ndarray]) -> tuple[list[RawDetections], list[float]]:
        raw: list[RawDetections] = []
        scales = []
        for image in images:
            array, scale = prepare_input(image, self.config)
            boxes, labels, scores, masks = self.session.run(None, {"image": array[None]})
            raw.append((boxes, labels, scores, masks))
            scales.append(scale)
        return raw, scales

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        raw, scales = self.raw(images)
        return [
            postprocess(r, image.shape[:2], s, self.class_names, self.threshold)
            for r, image, s in zip(raw, images, scales, strict=True)
        ]


class OnnxAttributeRunner:
    """The attribute classifier's ONNX graph behind the same `prepare`/`predict` the tagger
    uses with the torch classifier. `prepare` and the label lists come from the classifier."""

    def __init__(
        self,
        ort_session: Any,
        heads: Mapping[str, Sequence[str]],
        input_size: int,
        prepare: Callable[[np.ndarray, Box | None, np.ndarray | None], np.ndarray],
        mean: Sequence[float],
        std: Sequence[float],
        max_batch: int = 32,
        embedding_version: str = "",
    ) -> None:
        self.session = ort_session
        # the graph's last output is the embedding when the classifier had an embedding head
        self.embedding_version = embedding_version
        self.heads = {h: tuple(v) for h, v in heads.items()}
        self.input_size = input_size
        self.prepare = prepare
        self._mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
        self.max_batch = max_batch
        self._lock = threading.Lock()

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return self.predict_embedded(crops)[0]

    def predict_embedded(
        self, crops: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
        """Probabilities per crop and the (B, D) embeddings of the same run (None without an
        embedding output)."""
        from models.attributes.classifier import split_outputs

        out: list[dict[str, np.ndarray]] = []
        vectors: list[np.ndarray] = []
        embedded = bool(self.embedding_version)
        for start in range(0, len(crops), self.max_batch):
            chunk = np.stack(crops[start : start + self.max_batch]).astype(np.float32)
            x = (chunk.transpose(0, 3, 1, 2) / 255.0 - self._mean) / self._std
            outputs = self.session.run(None, {"crops": x.astype(np.float32)})
            probs, emb = split_outputs(outputs, self.heads, embedded)
            out.extend(probs)
            if emb is not None:
                vectors.append(emb)
        if not embedded or not crops:
            return out, None
        return out, np.concatenate(vectors)
