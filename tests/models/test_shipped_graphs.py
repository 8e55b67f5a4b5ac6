"""The ONNX graphs shipped in weights/ (`fashionstream export graphs`): every network the tagger
runs has one, the runtime refuses one that is not the manifest's or was exported from other
weights, and each computes what its trainable weights compute in torch, on real photos."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from fashionstream.core.settings import REPO_ROOT
from models import weights as W
from models.attributes.classifier import AttributeClassifier
from models.detection import ccp
from models.detection.checkpoint import load_detector
from models.detection.crops import CROP_HEIGHT, CROP_WIDTH
from models.detection.processing import score_floor
from models.detection.runner import TorchDetector
from models.onnx_models import sessions
from models.registry import default_registry
from models.runtime import graphs
from models.runtime.export import store_exact_halves
from models.runtime.placement import resolve_runtime

pytestmark = pytest.mark.models

WEIGHTS = REPO_ROOT / "weights"
FIXTURES = REPO_ROOT / "tests" / "fixtures"
GRAPHED = (W.DETECTOR_ENTRY, W.PERSON_CROPS_ENTRY, W.ATTRIBUTES_ENTRY)


def _photos() -> list[np.ndarray]:
    samples = ccp.iter_samples(FIXTURES / "ccp", ccp.image_ids(FIXTURES / "ccp"))
    photos = [s.image for s in samples][:3]
    frames = [ccp.read_rgb(p) for p in sorted((FIXTURES / "frames").glob("*.jpg"))][1:3]
    return photos + frames


@pytest.fixture(scope="module")
def manifest() -> dict[str, W.WeightsEntry]:
    return W.load_manifest(WEIGHTS)


def test_every_network_the_tagger_runs_ships_a_checked_graph(
    manifest: dict[str, W.WeightsEntry],
) -> None:
    for name in GRAPHED:
        entry = manifest[name]
        path = graphs.graph_path(WEIGHTS, entry, manifest)  # file, sha256 and sources checked
        assert path.parent == WEIGHTS
        assert entry.graph["exported_from"][name] == entry.sha256
    # the attribute graph carries the embedding head it was exported with
    attributes = manifest[W.ATTRIBUTES_ENTRY].graph["exported_from"]
    assert attributes[W.EMBEDDING_ENTRY] == manifest[W.EMBEDDING_ENTRY].sha256
    # the imported person detector is an ONNX file already, run as its spec says
    assert manifest[W.PEOPLE_ENTRY].file.endswith(".onnx")


def _copy_weights(tmp_path: Path, manifest: dict[str, W.WeightsEntry]) -> Path:
    shutil.copy(WEIGHTS / W.MANIFEST, tmp_path / W.MANIFEST)
    for name in GRAPHED:
        (tmp_path / manifest[name].graph["file"]).symlink_to(WEIGHTS / manifest[name].graph["file"])
    return tmp_path


def test_a_graph_exported_from_other_weights_is_refused(
    tmp_path: Path, manifest: dict[str, W.WeightsEntry]
) -> None:
    weights = _copy_weights(tmp_path, manifest)
    raw = json.loads((weights / W.MANIFEST).read_text())
    raw["models"]["detector"]["sha256"] = "0" * 64  # retrained, graph not re-exported
    (weights / W.MANIFEST).write_text(json.dumps(raw))
    retrained = W.load_manifest(weights)
    with pytest.raises(W.WeightsError, match="rerun `fashionstream export graphs`"):
        graphs.graph_path(weights, retrained["detector"], retrained)
    # the attribute graph names the embedding it carries: a new embedding head needs it too
    raw["models"]["embedding"]["sha256"] = "1" * 64
    (weights / W.MANIFEST).write_text(json.dumps(raw))
    retrained = W.load_manifest(weights)
    with pytest.raises(W.WeightsError, match="exported from embedding"):
        graphs.graph_path(weights, retrained["attributes"], retrained)


def test_a_graph_file_that_is_not_the_manifests_is_refused(
    tmp_path: Path, manifest: dict[str, W.WeightsEntry]
) -> None:
    entry = manifest[W.ATTRIBUTES_ENTRY]
    data = bytearray((WEIGHTS / entry.graph["file"]).read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / entry.graph["file"]).write_bytes(bytes(data))
    with pytest.raises(W.WeightsError, match="sha256"):
        graphs.graph_path(tmp_path, entry, manifest)
    missing = dataclasses.replace(entry, graph={})
    with pytest.raises(W.WeightsError, match="graph needs file, sha256 and exported_from"):
        graphs.graph_path(tmp_path, missing, manifest)


@pytest.mark.parametrize("name", [W.DETECTOR_ENTRY, W.PERSON_CROPS_ENTRY])
@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_a_detector_graph_finds_what_torch_finds_at_every_threshold(
    name: str, threshold: float, manifest: dict[str, W.WeightsEntry], tmp_path: Path
) -> None:
    # one graph, the score floor an input: evaluation (0) and the tagger (0.5) alike
    runtime = resolve_runtime("onnx", "cpu", 2, tmp_path)
    graph = graphs.shipped_detector(WEIGHTS, manifest[name], manifest, runtime, threshold)
    model, config = load_detector(manifest[name].verified_path(WEIGHTS), default_registry())
    model.roi_heads.score_thresh = score_floor(config.score_thresh, threshold)
    reference = TorchDetector(model, config, torch.device("cpu"), threshold)
    images = _photos()
    if name == W.PERSON_CROPS_ENTRY:  # fed as the tagger feeds it
        graph = graph.at_input_size(CROP_WIDTH, CROP_HEIGHT)
        reference = reference.at_input_size(CROP_WIDTH, CROP_HEIGHT)
    found = 0
    for ours, theirs in zip(graph.detect(images), reference.detect(images), strict=True):
        assert len(ours) == len(theirs)
        np.testing.assert_array_equal(ours.class_ids, theirs.class_ids)
        np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-4)
        np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=0.05)
        assert (ours.masks != theirs.masks).mean() < 1e-4
        found += len(ours)
    assert found >= 5  # the comparison saw real detections


def test_the_attribute_graph_classifies_and_embeds_as_torch_does(
    manifest: dict[str, W.WeightsEntry], tmp_path: Path
) -> None:
    runtime = resolve_runtime("onnx", "cpu", 2, tmp_path)
    graph = graphs.shipped_attributes(WEIGHTS, manifest[W.ATTRIBUTES_ENTRY], manifest, runtime)
    classifier = AttributeClassifier.from_weights(WEIGHTS, manifest=manifest)
    assert graph.embedding_version == classifier.embedding_version != ""
    assert graph.heads == classifier.heads
    crops = [graph.prepare(image, None, None) for image in _photos()]
    ours, our_vectors = graph.predict_embedded(crops)
    theirs, their_vectors = classifier.predict_embedded(crops)
    for a, b in zip(ours, theirs, strict=True):
        for head in classifier.heads:
            np.testing.assert_allclose(a[head], b[head], atol=1e-4)
    assert our_vectors is not None
    assert their_vectors is not None
    np.testing.assert_allclose(our_vectors, their_vectors, atol=1e-4)


def test_exact_float16_weights_are_stored_at_half_size_and_compute_the_same(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    exact = rng.normal(size=(64, 32)).astype(np.float16).astype(np.float32)
    inexact = rng.normal(size=(32, 64)).astype(np.float32)  # float32 values: kept as they are
    model = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("MatMul", ["x", "exact"], ["h"]),
                helper.make_node("MatMul", ["h", "inexact"], ["y"]),
            ],
            "two_layers",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])],
            [numpy_helper.from_array(exact, "exact"), numpy_helper.from_array(inexact, "inexact")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    path = tmp_path / "two_layers.onnx"
    onnx.save(model, str(path))
    x = rng.normal(size=(3, 64)).astype(np.float32)
    before = sessions.session(path, 1).run(None, {"x": x})[0]
    size = path.stat().st_size
    assert store_exact_halves(path) == 1
    stored = {i.name: i.data_type for i in onnx.load(str(path)).graph.initializer}
    assert stored == {"exact.fp16": TensorProto.FLOAT16, "inexact": TensorProto.FLOAT}
    assert path.stat().st_size < size - exact.nbytes // 2 + 200
    np.testing.assert_array_equal(sessions.session(path, 1).run(None, {"x": x})[0], before)
