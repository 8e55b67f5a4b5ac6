"""The shipped person detector: loads from weights/ (sha256 checked), finds the people of camera
frames it never trained on (counted by eye), agrees between torch and ONNX Runtime, and `eval
people` scores it beside the garment detector's people on the same frames."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fashionstream.app.cli import main
from fashionstream.core.settings import REPO_ROOT, Settings
from models import weights as W
from models.people.network import PEOPLE_ARCH
from models.people.runner import PeopleDetector
from models.runtime.build import resolve_runtime, shipped_people_runner

pytestmark = pytest.mark.models

WEIGHTS = REPO_ROOT / "weights"
FRAMES = REPO_ROOT / "tests" / "fixtures" / "frames"
VIDEOS = REPO_ROOT.parent / "shared" / "data" / "videos"
THRESHOLD = Settings().person_threshold
BOX_IOU = 0.99
SCORE_TOLERANCE = 1e-3


def _rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return np.ascontiguousarray(image[:, :, ::-1])


def _frame(video: Path, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = capture.read()
    capture.release()
    assert ok, f"{video}: no frame {index}"
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PeopleDetector]:
    torch.set_num_threads(2)
    cache = tmp_path_factory.mktemp("onnx")
    out = {}
    for backend in ("torch", "onnx"):
        runtime = resolve_runtime(backend, "cpu", 2, cache)
        out[backend], _ = shipped_people_runner(WEIGHTS, runtime, threshold=0.0)
    return out


def test_the_manifest_entry_describes_the_shipped_file() -> None:
    entry = W.entry(WEIGHTS, "people")
    path = entry.verified_path(WEIGHTS)
    assert path.stat().st_size < 25 * 1024 * 1024
    assert entry.architecture == PEOPLE_ARCH
    assert entry.training["duration_s"] > 0
    val = entry.metrics["people_val"]
    assert val["images"] == 1208  # the validation share of the built set (by recording)
    assert 0.0 < val["person_ap50"] <= 1.0


def _people(runner: PeopleDetector, image: np.ndarray) -> int:
    (found,) = runner.detect([image])
    return int((found.scores >= THRESHOLD).sum())


def test_one_person_in_each_store_frame_and_nobody_in_the_empty_room(
    runners: dict[str, PeopleDetector],
) -> None:
    counts = {p.stem: _people(runners["onnx"], _rgb(p)) for p in sorted(FRAMES.glob("*.jpg"))}
    assert counts == {
        "intel_empty_0000": 0,
        "intel_person_0120": 1,
        "intel_person_0360": 1,
        "intel_person_1320": 1,
    }


# (clip, frame index, people counted by eye, people the shipped detector finds at the default
# threshold): the detector still misses people in crowds (weights/people.md), so the expected
# figure is the measured one, within 2, and never more people than are there
CROWDS = [
    ("tram_stop_cctv_640x480.mp4", 90, 18, 11),
    ("street_crossing_640x360.mp4", 90, 10, 5),
]


@pytest.mark.parametrize(("video", "index", "counted", "measured"), CROWDS)
def test_crowds_on_shared_clips_find_the_measured_share_of_the_people(
    runners: dict[str, PeopleDetector], video: str, index: int, counted: int, measured: int
) -> None:
    if not (VIDEOS / video).is_file():
        pytest.skip(f"{VIDEOS / video} is not here (../shared/data/videos)")
    found = _people(runners["onnx"], _frame(VIDEOS / video, index))
    assert abs(found - measured) <= 2, f"{found} people found, {measured} when measured"
    assert found <= counted, f"{found} people found, {counted} counted by eye"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x1, y1 = np.minimum(a[:, 2], b[:, 2]), np.minimum(a[:, 3], b[:, 3])
    inter = (x1 - x0).clip(0) * (y1 - y0).clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    result: np.ndarray = inter / (area_a + area_b - inter)
    return result


def test_torch_and_onnx_agree(runners: dict[str, PeopleDetector]) -> None:
    images = [_rgb(p) for p in sorted(FRAMES.glob("*.jpg"))]
    for a, b in zip(runners["torch"].detect(images), runners["onnx"].detect(images), strict=True):
        keep_a, keep_b = a.scores >= 0.1, b.scores >= 0.1
        assert keep_a.sum() == keep_b.sum()
        assert (_iou(a.boxes[keep_a], b.boxes[keep_b]) > BOX_IOU).all()
        np.testing.assert_allclose(a.scores[keep_a], b.scores[keep_b], atol=SCORE_TOLERANCE)


def test_eval_people_scores_both_detectors_on_the_same_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASHIONSTREAM_STATE_DIR", str(tmp_path / "state"))
    boxes = {  # the store frames' one person, boxed by eye (COCO xywh)
        "intel_person_0120.jpg": [322.0, 15.0, 140.0, 425.0],
        "intel_person_0360.jpg": [320.0, 5.0, 178.0, 420.0],
    }
    coco = {
        "images": [
            {"id": i, "file_name": name, "width": 640, "height": 480}
            for i, name in enumerate(boxes, 1)
        ],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": box, "area": 1.0, "iscrowd": 0}
            for i, box in enumerate(boxes.values(), 1)
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    (tmp_path / "people.json").write_text(json.dumps(coco))
    args = ["eval", "people", "--coco", str(tmp_path / "people.json"), "--images", str(FRAMES)]
    assert main([*args, "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert main([*args, "--garment-detector", "--json"]) == 0
    theirs = json.loads(capsys.readouterr().out)
    assert ours["people"] == theirs["people"] == 2
    assert ours["detector"].startswith("person detector people-effnet-lite0-")
    assert theirs["detector"].startswith("garment detector ")
    # one large person per frame: both detectors find them
    assert ours["recall"] == pytest.approx(1.0)
    assert theirs["recall"] == pytest.approx(1.0)
