"""Exporting the networks trained here to the ONNX graphs the runtime runs (the training stack:
torch, torchvision, onnx). `export_graphs` is `fashionstream export graphs`: it writes each
shipped network's graph into weights/ beside its trainable weights and records file, sha256 and
source in the manifest entry's `graph` block, so no install exports anything at run time.
`cached_export` is for weights that ship no graph (a training run being evaluated).

Storage: the trained weights are stored in float16 (models.detection.checkpoint), so most of a
graph's float32 initializers are float16 values. `store_exact_halves` stores each such tensor as
float16 followed by a Cast to float32: the file is about half the size and the network computes
with exactly the same float32 numbers (ONNX Runtime folds the Casts when it loads the graph).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN

from models import weights as W
from models.attributes.classifier import AttributeClassifier
from models.detection.checkpoint import load_detector
from models.detection.network import DetectorConfig
from models.detection.runner import DetectorCore
from models.registry import ModelRegistry

log = logging.getLogger(__name__)

OPSET = 17
EXPORTER = f"torch {torch.__version__.split('+')[0]} torch.onnx (TorchScript), opset {OPSET}"
# the manifest entries whose networks the tagger runs and which are trained here
DETECTOR_ENTRIES = (W.DETECTOR_ENTRY, W.PERSON_CROPS_ENTRY)
# tensors smaller than this stay float32: a Cast node costs more than the bytes it saves
MIN_HALVED_ELEMENTS = 1024


class DetectorGraph(nn.Module):
    """`DetectorCore` for one unpadded image, with the score floor as an input: the exported
    form. torchvision's RoI heads compare scores with `roi_heads.score_thresh`; a tensor there
    is traced as the graph's input instead of being baked in as a constant, so one graph serves
    every threshold (models.detection.processing.score_floor)."""

    def __init__(self, model: MaskRCNN) -> None:
        super().__init__()
        self.core = DetectorCore(model)

    def forward(self, image: Tensor, score_floor: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.core.roi_heads.score_thresh = score_floor
        return self.core(image, [(image.shape[-2], image.shape[-1])])[0]


def export_detector(model: MaskRCNN, config: DetectorConfig, path: Path) -> None:
    """The detector's graph: `image` (1, 3, H, W) of any H, W and `score_floor` () float32 in;
    boxes, labels, scores, masks out (models.detection.processing has the tensors)."""
    graph = DetectorGraph(model).eval()
    trained_floor = model.roi_heads.score_thresh
    h = config.min_size + (-config.min_size) % 32
    example = (torch.zeros(1, 3, h, h * 4 // 3 // 32 * 32), torch.tensor(0.05))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about torchvision's control flow
            torch.onnx.export(
                graph,
                example,
                str(path),
                opset_version=OPSET,
                dynamo=False,
                input_names=["image", "score_floor"],
                output_names=["boxes", "labels", "scores", "masks"],
                dynamic_axes={"image": {2: "height", 3: "width"}},
            )
    finally:
        model.roi_heads.score_thresh = trained_floor
    store_exact_halves(path)


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
            # keeps BatchNormalization nodes instead of folding them into the convolutions:
            # the weights stay float16 values (stored at half the size) and ONNX Runtime fuses
            # them when it loads the graph (measured: 8.1 MB instead of 14.5 MB, same speed,
            # outputs within 3e-6)
            training=torch.onnx.TrainingMode.PRESERVE,
        )
    store_exact_halves(path)


def store_exact_halves(path: Path) -> int:
    """Rewrite the graph at `path` with every float32 initializer whose values are exactly
    float16 values stored as float16 + a Cast back to float32; returns how many were."""
    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for initializer in graph.initializer:
        if initializer.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(initializer)
        if values.size < MIN_HALVED_ELEMENTS:
            continue
        halved = values.astype(np.float16)
        if not np.array_equal(halved.astype(np.float32), values):
            continue
        name = initializer.name
        initializer.CopyFrom(numpy_helper.from_array(halved, f"{name}.fp16"))
        casts.append(
            helper.make_node("Cast", [f"{name}.fp16"], [name], to=TensorProto.FLOAT, name=name)
        )
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(casts)


def cached_export(
    cache_dir: Path, name: str, weights_sha256: str, export: Callable[[Path], None]
) -> Path:
    """The cached graph of weights that ship none, exported first if missing. Writes are
    atomic (temp file + rename), so workers starting together never read half a file."""
    key = f"opset{OPSET}-torch{torch.__version__.split('+')[0]}"
    path = cache_dir / f"{name}-{weights_sha256[:16]}-{key}.onnx"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        _export_to(path, export)
    return path


def detector_graph_block(config: DetectorConfig) -> dict[str, Any]:
    """What a detector graph adds to the `graph` block beyond file, sha256 and source."""
    return {
        "inputs": {"image": "(1, 3, H, W) float32", "score_floor": "() float32"},
        "score_floor": config.score_thresh,
    }


def export_graphs(weights_dir: Path, registry: ModelRegistry) -> list[W.WeightsEntry]:
    """Export every network the tagger runs that was trained here (the garment detectors and
    the attribute classifier with its embedding head) into `weights_dir`, and record each graph
    in its manifest entry. Returns the updated entries."""
    manifest = W.load_manifest(weights_dir)
    updated = []
    for name in DETECTOR_ENTRIES:
        if name not in manifest:
            continue
        entry = manifest[name]
        model, config = load_detector(entry.verified_path(weights_dir), registry)
        _check_detector_entry(entry, config)
        file = f"{Path(entry.file).stem}.onnx"
        _export_to(weights_dir / file, partial(export_detector, model, config))
        updated.append(
            _record(weights_dir, entry, file, {name: entry.sha256}, detector_graph_block(config))
        )
    if W.ATTRIBUTES_ENTRY in manifest:
        entry = manifest[W.ATTRIBUTES_ENTRY]
        classifier = AttributeClassifier.from_weights(weights_dir, manifest=manifest)
        sources = {W.ATTRIBUTES_ENTRY: entry.sha256}
        if classifier.embedding_version:
            sources[W.EMBEDDING_ENTRY] = manifest[W.EMBEDDING_ENTRY].sha256
        file = f"{Path(entry.file).stem}.onnx"
        _export_to(
            weights_dir / file,
            lambda out: export_classifier(classifier.module, classifier.input_size, out),
        )
        block = {"inputs": {"crops": f"(B, 3, {classifier.input_size}, {classifier.input_size})"}}
        updated.append(_record(weights_dir, entry, file, sources, block))
    return updated


def _check_detector_entry(entry: W.WeightsEntry, config: DetectorConfig) -> None:
    """The runtime reads input size and classes from the manifest, not the weights file: they
    must agree, or the graph would be fed other inputs than it was trained on."""
    pre = entry.preprocessing
    stated = (pre.get("min_size"), pre.get("max_size"), tuple(entry.classes.get("detector", ())))
    actual = (config.min_size, config.max_size, tuple(config.classes))
    if stated != actual:
        raise W.WeightsError(
            f"{entry.name}: manifest says min_size, max_size, classes {stated}, the weights "
            f"file {actual}"
        )


def _export_to(path: Path, export: Callable[[Path], None]) -> None:
    """`export` into a temp file beside `path`, then renamed onto it: whoever reads `path`
    (workers starting together, git) never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".onnx")
    os.close(fd)
    try:
        log.info("exporting %s", path)
        export(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _record(
    weights_dir: Path,
    entry: W.WeightsEntry,
    file: str,
    sources: dict[str, str],
    block: dict[str, Any],
) -> W.WeightsEntry:
    graph = {
        "file": file,
        "sha256": W.sha256_of(weights_dir / file),
        "exported_from": sources,
        "exporter": EXPORTER,
        "storage": "float32 graph; initializers that are exact float16 values stored as "
        "float16 + Cast (models.runtime.export.store_exact_halves)",
        **block,
    }
    new = dataclasses.replace(entry, graph=graph)
    W.write_entry(weights_dir, new)
    return new
