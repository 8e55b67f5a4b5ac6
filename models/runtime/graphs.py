"""The shipped inference graphs in ONNX Runtime, without torch: the garment detectors (Mask
R-CNN) and the attribute classifier as `fashionstream export graphs` wrote them into weights/
(models.runtime.export), each read from its manifest entry's `graph` block and checked against
the entry it was exported from. What the runtime install tags every image and frame with.

The detector graph takes one unpadded image and its score floor (see
models.detection.processing.score_floor): one file serves every detection threshold.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from models import weights as W
from models.attributes.crop import prepare_crop
from models.attributes.outputs import split_outputs
from models.detection.processing import (
    Normalisation,
    RawDetections,
    postprocess,
    prepare_input,
    score_floor,
)
from models.onnx_models import sessions
from models.runtime.placement import Runtime
from models.tags import Detections

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sizing:
    """torchvision's resize rule: the shorter side to min_size, the longer at most max_size."""

    min_size: int
    max_size: int


def graph_path(weights_dir: Path, entry: W.WeightsEntry, manifest: W.Manifest) -> Path:
    """The entry's shipped graph, checked: its file and sha256, and that every entry it was
    exported from is the one the manifest ships now (weights retrained, graph not re-exported
    would run old weights under the new version)."""
    graph = entry.graph
    try:
        file, sha256, sources = str(graph["file"]), str(graph["sha256"]), graph["exported_from"]
    except (KeyError, TypeError):
        raise W.WeightsError(f"{entry.name}: graph needs file, sha256 and exported_from") from None
    for name, exported in dict(sources).items():
        shipped = manifest.get(name)
        if shipped is None or shipped.sha256 != exported:
            now = "no such entry" if shipped is None else f"ships {shipped.sha256[:12]}"
            raise W.WeightsError(
                f"{entry.name}: graph {file} was exported from {name} {str(exported)[:12]}, the "
                f"manifest {now}; rerun `fashionstream export graphs`"
            )
    path = weights_dir / file
    problem = W.file_problem(path, sha256)
    if problem is not None:
        raise W.WeightsError(f"{entry.name}: graph: {problem} (the manifest's)")
    return path


class GraphDetector:
    """A Mask R-CNN graph in ONNX Runtime: one image per run (the exported graph is
    single-image), the numpy pre/post-processing every backend shares around it."""

    def __init__(
        self,
        ort_session: Any,
        classes: Sequence[str],
        sizing: Sizing,
        normalisation: Normalisation,
        threshold: float,
        trained_floor: float,
    ) -> None:
        self.session = ort_session
        self.classes = tuple(classes)
        self.sizing = sizing
        self.normalisation = normalisation
        self.threshold = threshold
        # the network drops boxes under this before its mask head runs (same kept detections)
        self._floor = np.asarray(score_floor(trained_floor, threshold), np.float32)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes

    def at_input_size(self, min_size: int, max_size: int) -> GraphDetector:
        """The same session fed at another input size: person crops."""
        view = copy.copy(self)
        view.sizing = Sizing(min_size, max_size)
        return view

    def raw(self, images: Sequence[np.ndarray]) -> tuple[list[RawDetections], list[float]]:
        raw: list[RawDetections] = []
        scales = []
        for image in images:
            array, scale = prepare_input(image, self.sizing, self.normalisation)
            boxes, labels, scores, masks = self.session.run(
                None, {"image": array[None], "score_floor": self._floor}
            )
            raw.append((boxes, labels, scores, masks))
            scales.append(scale)
        return raw, scales

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        raw, scales = self.raw(images)
        return [
            postprocess(r, image.shape[:2], s, self.class_names, self.threshold)
            for r, image, s in zip(raw, images, scales, strict=True)
        ]


class GraphAttributeRunner:
    """The attribute classifier's graph behind the `prepare`/`predict` the tagger uses (the
    torch classifier offers the same). Heads, crop rule and normalisation from the manifest."""

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

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return self.predict_embedded(crops)[0]

    def predict_embedded(
        self, crops: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
        """Probabilities per crop and the (B, D) embeddings of the same run (None without an
        embedding output)."""
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


def shipped_detector(
    weights_dir: Path,
    entry: W.WeightsEntry,
    manifest: W.Manifest,
    runtime: Runtime,
    threshold: float,
) -> GraphDetector:
    """A garment detector entry's shipped graph (sha256 and source checked) on `runtime`,
    keeping detections scoring at least `threshold`."""
    path = graph_path(weights_dir, entry, manifest)
    pre = entry.preprocessing
    try:
        sizing = Sizing(int(pre["min_size"]), int(pre["max_size"]))
        classes = tuple(str(c) for c in entry.classes["detector"])
        trained_floor = float(entry.graph["score_floor"])
    except (KeyError, TypeError, ValueError) as exc:
        raise W.WeightsError(
            f"{entry.name}: needs preprocessing min_size/max_size, classes.detector and "
            f"graph.score_floor: {exc!r}"
        ) from None
    normalisation = entry.normalisation
    return GraphDetector(
        sessions.session(path, runtime.threads, cuda=runtime.cuda),
        classes,
        sizing,
        (np.asarray(normalisation.mean, np.float32), np.asarray(normalisation.std, np.float32)),
        threshold,
        trained_floor,
    )


def shipped_attributes(
    weights_dir: Path, entry: W.WeightsEntry, manifest: W.Manifest, runtime: Runtime
) -> GraphAttributeRunner:
    """The attribute classifier's shipped graph (with the embedding head's output when it was
    exported with one) on `runtime`."""
    path = graph_path(weights_dir, entry, manifest)
    try:
        input_size = int(entry.preprocessing["input_size"])
    except (KeyError, TypeError, ValueError):
        raise W.WeightsError(f"{entry.name}: preprocessing needs input_size") from None
    embedding_version = ""
    if W.EMBEDDING_ENTRY in entry.graph["exported_from"]:
        embedding_version = manifest[W.EMBEDDING_ENTRY].version
    normalisation = entry.normalisation
    return GraphAttributeRunner(
        sessions.session(path, runtime.threads, cuda=runtime.cuda),
        {head: tuple(labels) for head, labels in entry.classes.items()},
        input_size,
        partial(prepare_crop, size=input_size),
        normalisation.mean,
        normalisation.std,
        embedding_version=embedding_version,
    )
