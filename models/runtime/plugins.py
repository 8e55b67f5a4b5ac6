"""A user's own ONNX models in the tagger, by configuration: FASHIONSTREAM_PLUGINS lists model
specs (weights/README.md, "The model spec format"). A classifier spec gives an attribute head:
it replaces the shipped head of the same name or adds one, computed on the same garment crops.
A detector spec whose classes map onto `person` replaces the person detector; one whose classes
map onto garment categories replaces the garment detectors (on whole images and on person
crops), its boxes standing in for masks. Each plug-in is named in the rows' model version with
its file's sha256; a spec that does not match its graph stops the tagger at start-up, naming
the field. No torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from models.onnx_models.classifier import OnnxSpecClassifier
from models.onnx_models.detector import OnnxSpecDetector
from models.onnx_models.spec import SpecError, load_spec
from models.runtime.placement import Runtime
from models.tags import Detections
from models.taxonomy import GARMENT_CATEGORIES, PERSON

Box = tuple[float, float, float, float]


class AttributeRunner(Protocol):
    """The shipped attribute classifier as the tagger uses it (models.tagger.AttributeRunner)."""

    @property
    def heads(self) -> Mapping[str, Sequence[str]]: ...

    def prepare(
        self, image: np.ndarray, box: Box | None, mask: np.ndarray | None
    ) -> np.ndarray: ...

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]: ...


class BoxGarmentDetector:
    """A plug-in garment detector as the tagger's garment detector: its boxes of our garment
    categories, each box standing in for the garment's mask (a box detector has none, so the
    mask-aware crop and the colour reading see the background inside the box too). It fits
    each image itself, so a person crop needs no other input size."""

    def __init__(self, detector: OnnxSpecDetector) -> None:
        self.detector = detector
        self.class_names = tuple(dict.fromkeys(detector.spec.class_map.values()))

    @property
    def version(self) -> str:
        return _version(self.detector)

    def at_input_size(self, min_size: int, max_size: int) -> BoxGarmentDetector:
        return self

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for image, found in zip(images, self.detector.detect_classes(images), strict=True):
            height, width = image.shape[:2]
            masks = np.zeros((len(found.scores), height, width), bool)
            for k, (x0, y0, x1, y1) in enumerate(found.boxes):
                masks[k, int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
            ids = np.asarray([self.class_names.index(c) for c in found.classes], np.int64)
            out.append(Detections(found.boxes, masks, found.scores, ids, self.class_names))
        return out


@dataclass(frozen=True)
class Plugins:
    """The plug-ins of FASHIONSTREAM_PLUGINS, loaded and checked."""

    people: OnnxSpecDetector | None = None
    classifiers: tuple[OnnxSpecClassifier, ...] = ()
    garments: BoxGarmentDetector | None = None

    @property
    def versions(self) -> tuple[str, ...]:
        """Each plug-in's `<spec name>-<sha256[:8]>`, in the setting's order."""
        people = () if self.people is None else (_version(self.people),)
        garments = () if self.garments is None else (self.garments.version,)
        return people + garments + tuple(c.version for c in self.classifiers)

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(c.head for c in self.classifiers)


def _version(detector: OnnxSpecDetector) -> str:
    return f"{detector.spec.name}-{detector.spec.sha256[:8]}"


def load_plugins(
    paths: Sequence[Path],
    runtime: Runtime,
    *,
    person_threshold: float,
    person_input_sizes: Sequence[int] = (),
    garment_threshold: float = 0.5,
) -> Plugins:
    """Every spec of `paths`, its file's sha256 and its graph checked."""
    people: OnnxSpecDetector | None = None
    garments: BoxGarmentDetector | None = None
    classifiers: list[OnnxSpecClassifier] = []
    for path in paths:
        spec = load_spec(path)
        if spec.kind == "classifier":
            classifier = OnnxSpecClassifier.from_spec_file(
                path, threads=runtime.threads, cuda=runtime.cuda
            )
            if classifier.head in {c.head for c in classifiers}:
                raise SpecError(
                    f"model spec {spec.name}: output.head: another plug-in gives "
                    f"{classifier.head!r} already"
                )
            classifiers.append(classifier)
            continue
        targets = sorted(set(spec.class_map.values()))
        if targets != [PERSON] and not set(targets) <= set(GARMENT_CATEGORIES):
            raise SpecError(
                f"model spec {spec.name}: class_map: onto {PERSON!r} alone (a person detector) "
                f"or onto garment categories {GARMENT_CATEGORIES} (a garment detector), got "
                f"{targets}"
            )
        if targets != [PERSON]:
            if garments is not None:
                raise SpecError(
                    f"model spec {spec.name}: kind: a second plug-in garment detector "
                    f"({garments.detector.spec.name} is the first)"
                )
            garments = BoxGarmentDetector(
                OnnxSpecDetector.from_spec_file(
                    path, threads=runtime.threads, threshold=garment_threshold, cuda=runtime.cuda
                )
            )
            continue
        if people is not None:
            raise SpecError(
                f"model spec {spec.name}: kind: a second plug-in person detector "
                f"({people.spec.name} is the first)"
            )
        people = OnnxSpecDetector.from_spec_file(
            path,
            threads=runtime.threads,
            threshold=person_threshold,
            input_sizes=person_input_sizes,
            cuda=runtime.cuda,
        )
    return Plugins(people, tuple(classifiers), garments)


def check_plugins(paths: Sequence[Path]) -> None:
    """Raise SpecError, naming the field, unless every spec of `paths` fits its graph: what a
    worker checks before it joins its consumer group."""
    load_plugins(paths, Runtime("onnx", "cpu", 1, Path()), person_threshold=0.0)


class PluggedAttributes:
    """The shipped attribute classifier with plug-in heads: every crop goes through the shipped
    network and each plug-in classifier (at its own input size); a plug-in head replaces the
    shipped head of its name, in its place, or comes after the shipped ones."""

    def __init__(self, base: AttributeRunner, classifiers: Sequence[OnnxSpecClassifier]) -> None:
        self.base = base
        self.classifiers = tuple(classifiers)
        heads = {h: tuple(labels) for h, labels in base.heads.items()}
        for classifier in self.classifiers:
            heads[classifier.head] = classifier.labels
        self.heads: dict[str, tuple[str, ...]] = heads

    @property
    def embedding_version(self) -> str:
        return str(getattr(self.base, "embedding_version", ""))

    def prepare(self, image: np.ndarray, box: Box | None, mask: np.ndarray | None) -> np.ndarray:
        return self.base.prepare(image, box, mask)

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return self._with_plugins(self.base.predict(crops), crops)

    def predict_embedded(
        self, crops: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
        predict_embedded = getattr(self.base, "predict_embedded", None)
        if predict_embedded is None:
            return self.predict(crops), None
        probabilities, vectors = predict_embedded(crops)
        return self._with_plugins(probabilities, crops), vectors

    def _with_plugins(
        self, probabilities: list[dict[str, np.ndarray]], crops: Sequence[np.ndarray]
    ) -> list[dict[str, np.ndarray]]:
        merged = [dict(p) for p in probabilities]
        for classifier in self.classifiers:
            for row, plugged in zip(merged, classifier.predict(crops), strict=True):
                row.update(plugged)
        # the shipped heads' order, replaced heads in their place
        return [{head: row[head] for head in self.heads} for row in merged]
