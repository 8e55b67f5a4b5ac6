"""Running an ONNX classifier described by a model spec (kind "classifier"): a user's own network
plugged in as an attribute head (FASHIONSTREAM_PLUGINS). It is fed the garment crops the shipped
classifier is fed (the mask-aware crop rule of models.attributes.crop), resized to its input
size, in its channel order, layout and normalisation; its output becomes one head's
probabilities. numpy and OpenCV around ONNX Runtime: no torch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.onnx_models.sessions import session
from models.onnx_models.spec import ModelSpec, SpecError, load_spec
from models.weights import file_problem

MAX_BATCH = 32


class OnnxSpecClassifier:
    """One attribute head from an ONNX classifier; one caller at a time."""

    def __init__(self, ort_session: Any, spec: ModelSpec) -> None:
        if spec.kind != "classifier":
            raise SpecError(f"model spec {spec.name}: kind: {spec.kind!r}, expected 'classifier'")
        self.session = ort_session
        self.spec = spec
        self.head = spec.output.head
        self.labels = spec.labels()
        # a graph fixed at batch 1 (some exports are) runs one crop at a time
        self.max_batch = check_classifier_session(ort_session, spec)
        self._mean = np.asarray(spec.input.mean, np.float32)
        self._std = np.asarray(spec.input.std, np.float32)
        self._lock = threading.Lock()

    @classmethod
    def from_spec_file(cls, path: Path, *, threads: int, cuda: bool = False) -> OnnxSpecClassifier:
        """The spec at `path` and its ONNX file beside it (sha256 checked)."""
        spec = load_spec(path)
        model = path.parent / spec.file
        problem = file_problem(model, spec.sha256)
        if problem is not None:
            raise SpecError(f"model spec {spec.name}: file, sha256: {problem} (the spec's)")
        return cls(session(model, threads, cuda=cuda), spec)

    @property
    def version(self) -> str:
        """What the rows' model version names it by: the spec's name and its file's sha256."""
        return f"{self.spec.name}-{self.spec.sha256[:8]}"

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """RGB uint8 (S, S, 3) garment crops -> {head: (n_labels,) float32 probabilities} each."""
        out: list[dict[str, np.ndarray]] = []
        for start in range(0, len(crops), self.max_batch):
            batch = self.inputs(crops[start : start + self.max_batch])
            with self._lock:
                outputs = self.session.run(None, {self.spec.input.name: batch})
            scores = np.asarray(outputs[self.spec.output.index], np.float64)
            if scores.ndim != 2 or scores.shape != (len(batch), len(self.labels)):
                raise SpecError(
                    f"model spec {self.spec.name}: classes: expected ({len(batch)}, "
                    f"{len(self.labels)}) scores, the graph gave {scores.shape}"
                )
            if self.spec.output.decode == "softmax":
                scores = np.exp(scores - scores.max(axis=1, keepdims=True))
                scores /= scores.sum(axis=1, keepdims=True)
            out.extend({self.head: row.astype(np.float32)} for row in scores)
        return out

    def inputs(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """The graph's input for `crops`: resized, in its channel order, normalised, laid out."""
        size = self.spec.input.size[0]
        pixels = []
        for crop in crops:
            if crop.shape[:2] != (size, size):
                shrink = crop.shape[0] > size
                interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
                crop = cv2.resize(crop, (size, size), interpolation=interpolation)
            pixels.append(crop if self.spec.input.channels == "RGB" else crop[:, :, ::-1])
        x = (np.stack(pixels).astype(np.float32) / self.spec.input.scale - self._mean) / self._std
        if self.spec.input.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, np.float32)


def check_classifier_session(ort_session: Any, spec: ModelSpec) -> int:
    """The graph is the one the spec describes: input name, layout (3 channels where the layout
    puts them), a fixed spatial size equal to the spec's, and an output `output.index` with
    one score per class. Raises SpecError naming the field; returns the largest batch the
    graph takes (1 when it fixes it)."""
    inputs = ort_session.get_inputs()
    names = [i.name for i in inputs]
    if spec.input.name not in names:
        raise SpecError(f"model spec {spec.name}: input.name: {spec.input.name!r} not in {names}")
    shape = next(i.shape for i in inputs if i.name == spec.input.name)
    channels_at = 1 if spec.input.layout == "NCHW" else 3
    if len(shape) != 4 or shape[channels_at] not in (3, "3"):
        raise SpecError(
            f"model spec {spec.name}: input.layout: {spec.input.layout} with 3 channels, the "
            f"graph takes {shape}"
        )
    spatial = shape[2:] if spec.input.layout == "NCHW" else shape[1:3]
    fixed = [d for d in spatial if isinstance(d, int)]
    if fixed and fixed != list(spec.input.size)[: len(fixed)]:
        raise SpecError(
            f"model spec {spec.name}: input.size: the graph takes {spatial}, the spec says "
            f"{list(spec.input.size)}"
        )
    outputs = ort_session.get_outputs()
    if spec.output.index >= len(outputs):
        raise SpecError(
            f"model spec {spec.name}: output.index: {spec.output.index}, the graph has "
            f"{len(outputs)} output(s)"
        )
    last = outputs[spec.output.index].shape[-1]
    if isinstance(last, int) and last != len(spec.classes):
        raise SpecError(
            f"model spec {spec.name}: classes: {len(spec.classes)} classes, the graph's output "
            f"{outputs[spec.output.index].name!r} gives {last} scores"
        )
    return 1 if shape[0] == 1 else MAX_BATCH
