"""A user's own ONNX models in the tagger, by configuration: FASHIONSTREAM_PLUGINS lists model
specs (weights/README.md, "The model spec format"). A classifier spec gives an attribute head:
it replaces the shipped head of the same name or adds one, computed on the same garment crops.
A detector spec whose classes map onto `person` replaces the person detector. Each plug-in is
named in the rows' model version with its file's sha256; a spec that does not match its graph
stops the tagger at start-up, naming the field. No torch.
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
from models.taxonomy import PERSON

Box = tuple[float, float, float, float]


class AttributeRunner(Protocol):
    """The shipped attribute classifier as the tagger uses it (models.tagger.AttributeRunner)."""

    @property
    def heads(self) -> Mapping[str, Sequence[str]]: ...

    def prepare(
        self, image: np.ndarray, box: Box | None, mask: np.ndarray | None
    ) -> np.ndarray: ...

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]: ...


@dataclass(frozen=True)
class Plugins:
    """The plug-ins of FASHIONSTREAM_PLUGINS, loaded and checked."""

    people: OnnxSpecDetector | None = None
    classifiers: tuple[OnnxSpecClassifier, ...] = ()

    @property
    def versions(self) -> tuple[str, ...]:
        """Each plug-in's `<spec name>-<sha256[:8]>`, in the setting's order."""
        people = () if self.people is None else (_version(self.people),)
        return people + tuple(c.version for c in self.classifiers)

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
) -> Plugins:
    """Every spec of `paths`, its file's sha256 and its graph checked."""
    people: OnnxSpecDetector | None = None
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
        if targets != [PERSON]:
            raise SpecError(
                f"model spec {spec.name}: class_map: a plug-in detector replaces the person "
                f"detector, so it maps onto {PERSON!r} only, got {targets} (a garment detector "
                "plug-in would need instance masks: not supported)"
            )
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
    return Plugins(people, tuple(classifiers))


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
