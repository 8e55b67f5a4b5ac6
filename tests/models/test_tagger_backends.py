"""torch and ONNX Runtime agree: the detector's raw outputs, the classifier's probabilities and
the whole tagger's results, on held-out street photos and camera frames.

Stated tolerance (weights/detector.md): the same detections (count, labels), boxes IoU > 0.99,
scores within 1e-3; attribute probabilities within 1e-3. GPU runs compare torch on CUDA with
the CPU and allow boxes IoU > 0.9 and probabilities within 1e-2 (TF32 convolutions)."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from fashionstream.core.settings import REPO_ROOT, Backend, Device, Settings
from models.detection import ccp
from models.detection.processing import RawDetections
from models.tagger import FashionTagger
from models.tags import ImageTags

pytestmark = pytest.mark.models

FIXTURES = REPO_ROOT / "tests" / "fixtures"
SCORE_TOLERANCE = 1e-3
PROBABILITY_TOLERANCE = 1e-3
BOX_IOU = 0.99


def _images() -> list[np.ndarray]:
    samples = ccp.iter_samples(FIXTURES / "ccp", ccp.image_ids(FIXTURES / "ccp"))
    photos = [s.image for s in samples]
    frames = [ccp.read_rgb(p) for p in sorted((FIXTURES / "frames").glob("*.jpg"))]
    return photos + frames


def _tagger(backend: Backend, device: Device, state: Path) -> FashionTagger:
    return FashionTagger.from_settings(
        Settings(
            weights_dir=REPO_ROOT / "weights",
            state_dir=state,
            backend=backend,
            device=device,
            torch_threads=2,
            batch_size=8,
        )
    )


@pytest.fixture(scope="module")
def taggers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FashionTagger]:
    state = tmp_path_factory.mktemp("state")
    return {
        "torch": _tagger(Backend.TORCH, Device.CPU, state),
        "onnx": _tagger(Backend.ONNX, Device.CPU, state),
    }


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 1.0


def _raw(tagger: FashionTagger, images: list[np.ndarray]) -> list[RawDetections]:
    raw, _ = tagger.detector.raw(images)  # type: ignore[attr-defined]
    return list(raw)


def _assert_raw_agree(a: RawDetections, b: RawDetections, iou: float, score_tol: float) -> None:
    boxes_a, labels_a, scores_a, _ = a
    boxes_b, labels_b, scores_b, _ = b
    # detections near the 0.05 score floor may appear in one backend only: compare the rest
    keep_a, keep_b = scores_a >= 0.1, scores_b >= 0.1
    assert keep_a.sum() == keep_b.sum()
    np.testing.assert_array_equal(labels_a[keep_a], labels_b[keep_b])
    np.testing.assert_allclose(scores_a[keep_a], scores_b[keep_b], atol=score_tol)
    for box_a, box_b in zip(boxes_a[keep_a], boxes_b[keep_b], strict=True):
        assert _box_iou(box_a, box_b) > iou


def test_the_detector_agrees(taggers: dict[str, FashionTagger]) -> None:
    images = _images()
    for a, b in zip(_raw(taggers["torch"], images), _raw(taggers["onnx"], images), strict=True):
        _assert_raw_agree(a, b, BOX_IOU, SCORE_TOLERANCE)


def test_the_classifier_agrees(taggers: dict[str, FashionTagger]) -> None:
    images = _images()
    torch_tags = taggers["torch"].tag(images)
    crops = [
        taggers["torch"].classifier.prepare(image, g.box, g.mask.decode())
        for image, tags in zip(images, torch_tags, strict=True)
        for g in tags.garments
    ]
    assert len(crops) >= 10
    for p, q in zip(
        taggers["torch"].classifier.predict(crops),
        taggers["onnx"].classifier.predict(crops),
        strict=True,
    ):
        for head in p:
            np.testing.assert_allclose(p[head], q[head], atol=PROBABILITY_TOLERANCE)


def _assert_tags_agree(a: ImageTags, b: ImageTags, iou: float, prob_tol: float) -> None:
    assert len(a.people) == len(b.people)
    assert [g.category for g in a.garments] == [g.category for g in b.garments]
    for ga, gb in zip(a.garments, b.garments, strict=True):
        assert _box_iou(ga.box, gb.box) > iou
        assert ga.person_index == gb.person_index
        for head, labels in ga.probabilities.items():
            for label, p in labels.items():
                assert abs(p - gb.probabilities[head][label]) < prob_tol


def test_the_whole_tagger_agrees(taggers: dict[str, FashionTagger]) -> None:
    images = _images()
    for a, b in zip(taggers["torch"].tag(images), taggers["onnx"].tag(images), strict=True):
        _assert_tags_agree(a, b, BOX_IOU, PROBABILITY_TOLERANCE)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_agrees_with_the_cpu(
    taggers: dict[str, FashionTagger], tmp_path_factory: pytest.TempPathFactory
) -> None:
    cuda = _tagger(Backend.TORCH, Device.CUDA, tmp_path_factory.mktemp("cuda"))
    images = _images()
    for a, b in zip(_raw(taggers["torch"], images), _raw(cuda, images), strict=True):
        _assert_raw_agree(a, b, 0.9, 1e-2)
    for tags_cpu, tags_cuda in zip(taggers["torch"].tag(images), cuda.tag(images), strict=True):
        _assert_tags_agree(tags_cpu, tags_cuda, 0.9, 1e-2)
