"""The training stack's side of building the networks trained here: the torch backend, and ONNX
graphs exported on demand for weights that ship none (a training run being evaluated). The
shipped networks on the onnx backend need none of this (models.runtime.shipped).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torchvision.models.detection import FasterRCNN

from models import weights as W
from models.attributes.classifier import AttributeClassifier
from models.detection.checkpoint import load_detector
from models.detection.network import DetectorConfig
from models.detection.processing import score_floor
from models.detection.runner import TorchDetector, input_normalisation
from models.onnx_models import sessions
from models.people.boxes import PeopleDetector
from models.people.network import PeopleConfig
from models.people.runner import (
    OnnxPeopleDetector,
    TorchPeopleDetector,
    export_people,
)
from models.registry import ModelRegistry
from models.runtime import export
from models.runtime.graphs import GraphAttributeRunner, GraphDetector, Sizing
from models.runtime.placement import Runtime


def resolve_device(device: str) -> torch.device:
    """FASHIONSTREAM_DEVICE made concrete for the trainers: auto = cuda when torch sees a GPU,
    else cpu; cuda without a GPU is an error, never a silent fall back to hours on the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda asked for, but torch sees no CUDA GPU")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def detector_runner(
    weights_dir: Path,
    registry: ModelRegistry,
    runtime: Runtime,
    threshold: float,
    *,
    min_size: int | None = None,
    entry_name: str = W.DETECTOR_ENTRY,
    manifest: W.Manifest | None = None,
) -> tuple[TorchDetector | GraphDetector, W.WeightsEntry, DetectorConfig]:
    """The manifest's detector `entry_name` (sha256 checked) from its trainable weights on
    `runtime`, keeping detections scoring at least `threshold`; `min_size` overrides the input
    size it was shipped with (a speed/accuracy trade for experiments). On the onnx backend its
    graph is exported into the runtime's cache once per weights file."""
    entry = W.entry(weights_dir, entry_name, manifest)
    path = entry.verified_path(weights_dir)
    model, config = load_detector(path, registry)
    if config.arch != entry.architecture:
        raise W.WeightsError(f"{path} holds {config.arch}, the manifest says {entry.architecture}")
    if min_size is not None:
        config = dataclasses.replace(config, min_size=min_size)
    if runtime.backend == "torch":
        model.roi_heads.score_thresh = score_floor(config.score_thresh, threshold)
        return TorchDetector(model, config, torch.device(runtime.device), threshold), entry, config
    graph = export.cached_export(
        runtime.onnx_cache,
        entry_name,
        entry.sha256,
        lambda out: export.export_detector(model, config, out),
    )
    runner = GraphDetector(
        sessions.session(graph, runtime.threads, cuda=runtime.cuda),
        config.classes,
        Sizing(config.min_size, config.max_size),
        input_normalisation(config),
        threshold,
        config.score_thresh,
    )
    return runner, entry, config


def attribute_runner(
    classifier: AttributeClassifier,
    runtime: Runtime,
    *,
    weights_sha256: str,
    normalisation: W.Normalisation,
) -> AttributeClassifier | GraphAttributeRunner:
    """The classifier itself for torch; its graph (exported into the runtime's cache) behind
    the same interface for onnx (`normalisation`: from its manifest entry)."""
    if runtime.backend == "torch":
        return classifier
    # with an embedding head the graph has one more output: another cache key
    name = W.ATTRIBUTES_ENTRY
    if classifier.embedding_version:
        name = f"{W.ATTRIBUTES_ENTRY}+{classifier.embedding_version}"
    path = export.cached_export(
        runtime.onnx_cache,
        name,
        weights_sha256,
        lambda out: export.export_classifier(classifier.module, classifier.input_size, out),
    )
    return GraphAttributeRunner(
        sessions.session(path, runtime.threads, cuda=runtime.cuda),
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
    """The person detector trained here on `runtime`; `sha256` keys its cached ONNX export."""
    if runtime.backend == "torch":
        return TorchPeopleDetector(model, config, torch.device(runtime.device), threshold)
    path = export.cached_export(
        runtime.onnx_cache,
        W.PEOPLE_ENTRY,
        sha256,
        lambda out: export_people(model, config, out, export.OPSET),
    )
    return OnnxPeopleDetector(
        sessions.session(path, runtime.threads, cuda=runtime.cuda), config, threshold
    )
