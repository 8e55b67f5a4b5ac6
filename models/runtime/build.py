"""Building the shipped networks for inference on a chosen backend and device: what
FashionTagger.from_settings and the eval/bench commands share."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from models import weights as W
from models.attributes.classifier import AttributeClassifier
from models.detection.checkpoint import load_detector
from models.detection.network import DetectorConfig
from models.detection.runner import TorchDetector
from models.onnx_models import sessions
from models.onnx_models.detector import OnnxSpecDetector
from models.people.boxes import PeopleDetector
from models.people.network import PeopleConfig
from models.people.runner import (
    OnnxPeopleDetector,
    TorchPeopleDetector,
    export_people,
    load_people,
)
from models.registry import ModelRegistry
from models.runtime import onnx as onnx_rt

DETECTOR_ENTRY = "detector"
# the garment detector fine-tuned on camera person crops (the tagger's per-person path)
PERSON_CROPS_ENTRY = "person_crops"
ATTRIBUTES_ENTRY = "attributes"
PEOPLE_ENTRY = "people"


@dataclass(frozen=True)
class Runtime:
    """Where and how inference runs: backend "torch" or "onnx", a torch device, CPU threads."""

    backend: str
    device: torch.device
    threads: int
    onnx_cache: Path


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_device(device: str) -> torch.device:
    """FASHIONSTREAM_DEVICE made concrete, the one meaning inference and every trainer share:
    auto = cuda when torch sees a GPU, else cpu; cuda without a GPU is an error, never a
    silent fall back to hours on the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda asked for, but torch sees no CUDA GPU")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def resolve_runtime(backend: str, device: str, threads: int, onnx_cache: Path) -> Runtime:
    """ "auto" choices made concrete: the device by `resolve_device`; torch on a GPU, ONNX
    Runtime on a CPU (backend auto). threads 0 = every core; never more than the cores."""
    cores = available_cores()
    threads = min(threads or cores, cores)
    resolved = resolve_device(device)
    if backend == "auto":
        backend = "torch" if resolved.type == "cuda" else "onnx"
    if backend not in ("torch", "onnx"):
        raise ValueError(f"backend must be auto, torch or onnx, got {backend!r}")
    if backend == "onnx" and resolved.type == "cuda":
        raise ValueError("the onnx backend runs on the CPU; use backend torch on a GPU")
    return Runtime(backend, resolved, threads, onnx_cache)


def detector_runner(
    weights_dir: Path,
    registry: ModelRegistry,
    runtime: Runtime,
    threshold: float,
    *,
    min_size: int | None = None,
    entry_name: str = DETECTOR_ENTRY,
    manifest: W.Manifest | None = None,
) -> tuple[TorchDetector | onnx_rt.OnnxDetector, W.WeightsEntry, DetectorConfig]:
    """The manifest's detector `entry_name` (sha256 checked) on `runtime`, keeping detections
    scoring at least `threshold`; `min_size` overrides the input size it was shipped with (a
    speed/accuracy trade for experiments)."""
    entry = W.entry(weights_dir, entry_name, manifest)
    path = entry.verified_path(weights_dir)
    model, config = load_detector(path, registry)
    if config.arch != entry.architecture:
        raise W.WeightsError(f"{path} holds {config.arch}, the manifest says {entry.architecture}")
    if min_size is not None:
        config = dataclasses.replace(config, min_size=min_size)
    name = entry_name
    floor = score_floor(config.score_thresh, threshold)
    if floor != config.score_thresh:
        model.roi_heads.score_thresh = floor
        name = f"{entry_name}-floor{threshold:g}"  # another graph: another cache key
    if runtime.backend == "torch":
        return TorchDetector(model, config, runtime.device, threshold), entry, config
    onnx_path = onnx_rt.cached_export(
        runtime.onnx_cache,
        name,
        entry.sha256,
        lambda out: onnx_rt.export_detector(model, config, out),
    )
    session = sessions.session(onnx_path, runtime.threads)
    return onnx_rt.OnnxDetector(session, config, threshold), entry, config


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


def attribute_runner(
    classifier: AttributeClassifier,
    runtime: Runtime,
    *,
    weights_sha256: str,
    normalisation: W.Normalisation,
) -> AttributeClassifier | onnx_rt.OnnxAttributeRunner:
    """The classifier itself for torch; its exported graph behind the same interface for onnx
    (`normalisation`: the classifier's input normalisation, from its manifest entry)."""
    if runtime.backend == "torch":
        return classifier
    # with an embedding head the graph has one more output: another cache key
    name = ATTRIBUTES_ENTRY
    if classifier.embedding_version:
        name = f"{ATTRIBUTES_ENTRY}+{classifier.embedding_version}"
    path = onnx_rt.cached_export(
        runtime.onnx_cache,
        name,
        weights_sha256,
        lambda out: onnx_rt.export_classifier(classifier.module, classifier.input_size, out),
    )
    return onnx_rt.OnnxAttributeRunner(
        sessions.session(path, runtime.threads),
        classifier.heads,
        classifier.input_size,
        classifier.prepare,
        normalisation.mean,
        normalisation.std,
        embedding_version=classifier.embedding_version,
    )


def people_runner(
    model: FasterRCNN, config: PeopleConfig, runtime: Runtime, threshold: float, *, sha256: str
) -> PeopleDetector:
    """The person detector on `runtime`; `sha256` keys its cached ONNX export."""
    if runtime.backend == "torch":
        return TorchPeopleDetector(model, config, runtime.device, threshold)
    path = onnx_rt.cached_export(
        runtime.onnx_cache,
        PEOPLE_ENTRY,
        sha256,
        lambda out: export_people(model, config, out, onnx_rt.OPSET),
    )
    return OnnxPeopleDetector(sessions.session(path, runtime.threads), config, threshold)


def shipped_people_runner(
    weights_dir: Path,
    runtime: Runtime,
    threshold: float,
    manifest: W.Manifest | None = None,
    *,
    input_sizes: tuple[int, ...] = (),
) -> tuple[PeopleDetector, W.WeightsEntry]:
    """The manifest's person detector (sha256 checked) on `runtime`: an imported ONNX model
    run as its model spec says (ONNX Runtime on the CPU whatever the backend; `input_sizes`:
    FASHIONSTREAM_PERSON_INPUT_SIZES), or the detector trained here."""
    entry = W.entry(weights_dir, PEOPLE_ENTRY, manifest)
    if entry.spec:
        # the spec names the file and its sha256 and `from_spec_file` hashes it once; the
        # manifest must name the same file, so it is compared, not hashed again
        detector = OnnxSpecDetector.from_spec_file(
            weights_dir / entry.spec,
            threads=runtime.threads,
            threshold=threshold,
            input_sizes=input_sizes,
        )
        if (detector.spec.file, detector.spec.sha256) != (entry.file, entry.sha256):
            raise W.WeightsError(
                f"{entry.name}: the manifest names {entry.file} ({entry.sha256[:12]}), its spec "
                f"{detector.spec.file} ({detector.spec.sha256[:12]})"
            )
        return detector, entry
    path = entry.verified_path(weights_dir)
    model, config = load_people(path)
    if config.arch != entry.architecture:
        raise W.WeightsError(f"{path} holds {config.arch}, the manifest says {entry.architecture}")
    return people_runner(model, config, runtime, threshold, sha256=entry.sha256), entry
