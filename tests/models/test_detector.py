"""The shipped detector: loads from weights/ (sha256 checked), finds the people and garments of
held-out CCP photos it never trained on, and `fashionstream eval detector` scores them."""

import json

import numpy as np
import pytest
import torch

from fashionstream.app.cli import main
from fashionstream.core.settings import REPO_ROOT
from models import weights as W
from models.detection import ccp
from models.detection.processing import Detector, score_floor
from models.detection.runner import TorchDetector
from models.registry import default_registry
from models.runtime.build import detector_runner
from models.runtime.placement import resolve_runtime
from models.taxonomy import DETECTOR_CLASSES

pytestmark = pytest.mark.models

WEIGHTS = REPO_ROOT / "weights"
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "ccp"
PERSON = DETECTOR_CLASSES.index("person")
# Measured with the shipped weights (torch, CPU, threshold 0.5) on the four fixture photos; see
# also weights/detector.md. Tolerances: a mask IoU 0.03 either way, one garment, 0.05 of an AP.
PERSON_MASK_IOU = {"0010": 0.923, "0042": 0.844, "0043": 0.836, "0253": 0.895}
GARMENTS_FOUND = 14  # of the 19 garments of the four photos
EVAL_AP = {
    "box_ap": 0.387, "box_ap50": 0.625, "mask_ap": 0.435, "mask_ap50": 0.686, "person_ap50": 1.0,
}  # fmt: skip


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Detector:
    torch.set_num_threads(2)
    runtime = resolve_runtime("torch", "cpu", 2, tmp_path_factory.mktemp("onnx"))
    runner, _, _ = detector_runner(WEIGHTS, default_registry(), runtime, threshold=0.5)
    return runner


def test_the_manifest_entry_describes_the_shipped_file() -> None:
    entry = W.entry(WEIGHTS, "detector")
    path = entry.verified_path(WEIGHTS)
    assert path.stat().st_size < 25 * 1024 * 1024
    assert entry.architecture in default_registry().names()
    assert entry.classes["detector"] == list(DETECTOR_CLASSES)
    assert entry.training["duration_s"] > 0
    held_out = entry.metrics["ccp_held_out"]
    assert held_out["images"] == 147  # the held-out share of CCP's 921 photos
    assert 0.0 < held_out["mask_ap50"] <= 1.0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_it_finds_the_person_and_most_garments_of_held_out_photos(detector: Detector) -> None:
    samples = list(ccp.iter_samples(FIXTURE, ccp.image_ids(FIXTURE)))
    found = detector.detect([s.image for s in samples])
    matched = total = 0
    for sample, detections in zip(samples, found, strict=True):
        people = detections.masks[detections.class_ids == PERSON]
        truth_person = sample.masks[sample.class_ids == PERSON][0]
        assert len(people) == 1, sample.image_id  # each photo shows one person
        best = max(_iou(p, truth_person) for p in people)
        assert best == pytest.approx(PERSON_MASK_IOU[sample.image_id], abs=0.03), sample.image_id
        for mask, class_id in zip(sample.masks, sample.class_ids, strict=True):
            if class_id == PERSON:
                continue
            total += 1
            same = detections.masks[detections.class_ids == class_id]
            matched += any(_iou(mask, m) > 0.5 for m in same)
    assert total == 19
    assert abs(matched - GARMENTS_FOUND) <= 1, f"{matched}/{total} garments found"


def test_eval_command_scores_a_ccp_folder(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "detector", "--ccp", str(FIXTURE), "--backend", "torch", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 4
    assert set(report) >= {"box_ap", "box_ap50", "mask_ap", "mask_ap50", "person_ap50"}
    assert report["per_category"]["skirt"]["instances"] == 1
    assert {k: report[k] for k in EVAL_AP} == pytest.approx(EVAL_AP, abs=0.05)


def test_the_score_floor_drops_only_boxes_the_runner_would_drop(
    detector: Detector, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A runner at threshold 0.5 has the network drop boxes under it before the mask head
    (models.runtime.build.score_floor); the detections it keeps are exactly those a network with
    Mask R-CNN's own floor (0.05) gives, and evaluation (threshold 0) keeps that floor."""
    assert score_floor(0.05, 0.0) == 0.05
    assert score_floor(0.05, 0.5) == pytest.approx(0.5)
    assert score_floor(0.05, 0.5) < 0.5
    runtime = resolve_runtime("torch", "cpu", 2, tmp_path_factory.mktemp("onnx"))
    unfloored, _, _ = detector_runner(WEIGHTS, default_registry(), runtime, threshold=0.0)
    assert isinstance(unfloored, TorchDetector)
    assert isinstance(detector, TorchDetector)
    assert detector.core.roi_heads.score_thresh > 0.49
    assert unfloored.core.roi_heads.score_thresh == 0.05
    images = [s.image for s in ccp.iter_samples(FIXTURE, ccp.image_ids(FIXTURE))]
    floored_raw, _ = detector.raw(images)
    all_raw, _ = unfloored.raw(images)
    assert sum(len(r[0]) for r in all_raw) > 2 * sum(len(r[0]) for r in floored_raw)
    unfloored.threshold = 0.5  # the network keeps everything over 0.05, the runner drops it
    for got, want in zip(detector.detect(images), unfloored.detect(images), strict=True):
        assert got.class_ids.tolist() == want.class_ids.tolist()
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
        assert (got.masks == want.masks).mean() > 0.999
