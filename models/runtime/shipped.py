"""The shipped networks built for a runtime: what FashionTagger.from_settings and the benches
share. On the onnx backend every network runs from the graph shipped in weights/ (the garment
detectors and the attribute classifier from `fashionstream export graphs`, the person detector
from its model spec): no torch. The torch backend, and an entry that ships no graph, go
through the training stack (models.runtime.build), imported only then.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from models import weights as W
from models.detection.processing import Detector
from models.onnx_models.detector import OnnxSpecDetector
from models.people.boxes import PeopleDetector
from models.runtime import graphs
from models.runtime.placement import Runtime, require_torch

if TYPE_CHECKING:  # the training stack: imported only when the torch backend runs it
    from models.attributes.classifier import AttributeClassifier


class GarmentDetector(Detector, Protocol):
    """A garment detector that can be fed at another input size (person crops)."""

    def at_input_size(self, min_size: int, max_size: int) -> GarmentDetector: ...


def _needs_the_training_stack(runtime: Runtime, entry: W.WeightsEntry) -> bool:
    """Whether `entry` runs through the training stack on `runtime` (the torch backend, or no
    shipped graph); raises TrainingStackMissing, naming why, where that stack is not here."""
    if runtime.backend == "onnx" and entry.graph:
        return False
    why = (
        "the torch backend"
        if runtime.backend == "torch"
        else f"weights entry {entry.name!r}, which ships no ONNX graph (`fashionstream export "
        "graphs` writes one),"
    )
    require_torch(why)
    return True


def garment_detector(
    weights_dir: Path,
    entry_name: str,
    runtime: Runtime,
    threshold: float,
    manifest: W.Manifest,
) -> tuple[GarmentDetector, W.WeightsEntry]:
    """The garment detector `entry_name` on `runtime`, keeping detections scoring at least
    `threshold`."""
    entry = W.entry(weights_dir, entry_name, manifest)
    if not _needs_the_training_stack(runtime, entry):
        return graphs.shipped_detector(weights_dir, entry, manifest, runtime, threshold), entry
    from models.registry import default_registry
    from models.runtime.build import detector_runner

    runner, entry, _ = detector_runner(
        weights_dir,
        default_registry(),
        runtime,
        threshold,
        entry_name=entry_name,
        manifest=manifest,
    )
    return runner, entry


def attribute_classifier(
    weights_dir: Path, runtime: Runtime, manifest: W.Manifest
) -> tuple[graphs.GraphAttributeRunner | AttributeClassifier, W.WeightsEntry]:
    """The attribute classifier (with the embedding head when shipped) on `runtime`."""
    entry = W.entry(weights_dir, W.ATTRIBUTES_ENTRY, manifest)
    if not _needs_the_training_stack(runtime, entry):
        return graphs.shipped_attributes(weights_dir, entry, manifest, runtime), entry
    from models.attributes.classifier import AttributeClassifier
    from models.runtime.build import attribute_runner

    classifier = AttributeClassifier.from_weights(
        weights_dir, device=runtime.device, manifest=manifest
    )
    runner = attribute_runner(
        classifier,
        runtime,
        weights_sha256=entry.sha256,
        normalisation=entry.normalisation,
    )
    return runner, entry


def people_detector(
    weights_dir: Path,
    runtime: Runtime,
    threshold: float,
    manifest: W.Manifest | None = None,
    *,
    input_sizes: Sequence[int] = (),
) -> tuple[PeopleDetector, W.WeightsEntry]:
    """The manifest's person detector (sha256 checked) on `runtime`: an imported ONNX model run
    as its model spec says (ONNX Runtime whatever the backend; `input_sizes`:
    FASHIONSTREAM_PERSON_INPUT_SIZES), or the detector trained here (the training stack)."""
    entry = W.entry(weights_dir, W.PEOPLE_ENTRY, manifest)
    if entry.spec:
        # the spec names the file and its sha256 and `from_spec_file` hashes it once; the
        # manifest must name the same file, so it is compared, not hashed again
        detector = OnnxSpecDetector.from_spec_file(
            weights_dir / entry.spec,
            threads=runtime.threads,
            threshold=threshold,
            input_sizes=input_sizes,
            cuda=runtime.cuda,
        )
        if (detector.spec.file, detector.spec.sha256) != (entry.file, entry.sha256):
            raise W.WeightsError(
                f"{entry.name}: the manifest names {entry.file} ({entry.sha256[:12]}), its spec "
                f"{detector.spec.file} ({detector.spec.sha256[:12]})"
            )
        return detector, entry
    require_torch(f"the person detector {entry.file}, trained here,")
    from models.people.runner import load_people
    from models.runtime.build import people_runner

    path = entry.verified_path(weights_dir)
    model, config = load_people(path)
    if config.arch != entry.architecture:
        raise W.WeightsError(f"{path} holds {config.arch}, the manifest says {entry.architecture}")
    return people_runner(model, config, runtime, threshold, sha256=entry.sha256), entry
