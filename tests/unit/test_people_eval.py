"""`eval people`'s scoring on made-up annotations and a detector that answers exactly what it
is told: perfect, half-found, wrong places, ignore regions, frames resized as the pipeline does."""

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.people.boxes import PersonBoxes
from models.people.evaluate import evaluate_people, pipeline_frame


class ScriptedDetector:
    """Returns, per call, the next image's boxes (in the frame it is given) with scores."""

    def __init__(self, answers: Sequence[list[tuple[float, list[float]]]]) -> None:
        self.answers = list(answers)
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonBoxes]:
        out = []
        for image in images:
            self.shapes.append(image.shape)
            answer = self.answers.pop(0)
            out.append(
                PersonBoxes(
                    boxes=np.array([b for _, b in answer], np.float32).reshape(-1, 4),
                    scores=np.array([s for s, _ in answer], np.float32),
                )
            )
        return out


def _write_set(tmp_path: Path, width: int, boxes: list[list[list[float]]], crowd: int = -1) -> Path:
    """One image per entry of `boxes` (COCO xywh boxes); annotation number `crowd` is iscrowd."""
    content: dict[str, list[dict[str, object]]] = {"images": [], "annotations": []}
    for number, image_boxes in enumerate(boxes, 1):
        name = f"im{number}.jpg"
        cv2.imwrite(str(tmp_path / name), np.zeros((width * 3 // 4, width, 3), np.uint8))
        content["images"].append(
            {"id": number, "file_name": name, "width": width, "height": width * 3 // 4}
        )
        for box in image_boxes:
            index = len(content["annotations"])
            content["annotations"].append(
                {
                    "id": index + 1,
                    "image_id": number,
                    "category_id": 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": int(index == crowd),
                }
            )
    content["categories"] = [{"id": 1, "name": "person"}]
    path = tmp_path / "people.json"
    path.write_text(json.dumps(content))
    return path


def _xyxy(box: list[float], scale: float = 1.0) -> list[float]:
    x, y, w, h = box
    return [x * scale, y * scale, (x + w) * scale, (y + h) * scale]


BOXES: list[list[list[float]]] = [[[10, 10, 20, 40], [100, 50, 40, 120]], [[200, 100, 60, 250]]]


def test_finding_every_person_exactly_scores_one(tmp_path: Path) -> None:
    annotations = _write_set(tmp_path, 640, BOXES)
    detector = ScriptedDetector([[(0.9, _xyxy(b)) for b in image] for image in BOXES])
    scores = evaluate_people(detector, annotations, tmp_path)
    assert scores.person_ap50 == pytest.approx(1.0)
    assert scores.recall == pytest.approx(1.0)
    assert scores.people == 3
    assert scores.people_by_height == {"lt50": 1, "50_100": 0, "100_200": 1, "ge200": 1}
    assert scores.ap50_by_height["lt50"] == pytest.approx(1.0)
    assert scores.ap50_by_height["50_100"] == -1.0  # nobody that tall
    assert scores.detections_per_image == 1.5
    assert scores.best_f1 == pytest.approx(1.0)


def test_missing_people_and_false_alarms_lower_recall_and_ap(tmp_path: Path) -> None:
    annotations = _write_set(tmp_path, 640, BOXES)
    detector = ScriptedDetector(
        [
            [
                (0.9, _xyxy(BOXES[0][1])),
                (0.95, [400.0, 300.0, 420.0, 330.0]),
            ],  # 30-px false alarm
            [],  # the tall person is missed
        ]
    )
    scores = evaluate_people(detector, annotations, tmp_path)
    assert scores.recall == pytest.approx(1 / 3, abs=0.01)
    # ranked: false alarm (0.95) then a hit (0.9): precision 1/2 at recall 1/3
    assert scores.person_ap50 == pytest.approx(0.5 * 34 / 101, abs=0.01)
    # per height: the false alarm counts only among people of its own height
    assert scores.ap50_by_height["100_200"] == pytest.approx(1.0)
    assert scores.ap50_by_height["lt50"] == 0.0
    assert scores.ap50_by_height["ge200"] == 0.0
    assert scores.best_f1_threshold == pytest.approx(0.9)


def test_a_crowd_region_is_ignored_not_missed(tmp_path: Path) -> None:
    annotations = _write_set(tmp_path, 640, BOXES, crowd=2)
    detector = ScriptedDetector([[(0.9, _xyxy(b)) for b in BOXES[0]], []])
    scores = evaluate_people(detector, annotations, tmp_path)
    assert scores.people == 2
    assert scores.recall == pytest.approx(1.0)


def test_images_are_scored_in_their_own_pixels_after_the_pipelines_resize(
    tmp_path: Path,
) -> None:
    annotations = _write_set(tmp_path, 1280, BOXES)
    # the detector sees 640-px frames and answers in their pixels
    detector = ScriptedDetector([[(0.9, _xyxy(b, 0.5)) for b in image] for image in BOXES])
    scores = evaluate_people(detector, annotations, tmp_path, max_side=640)
    assert detector.shapes == [(480, 640, 3), (480, 640, 3)]
    assert scores.person_ap50 == pytest.approx(1.0)
    # heights are those of the resized frame: 20, 60 and 125 px
    assert scores.people_by_height == {"lt50": 1, "50_100": 1, "100_200": 1, "ge200": 0}


def test_the_pipeline_never_enlarges_a_frame() -> None:
    small = np.zeros((100, 200, 3), np.uint8)
    frame, scale = pipeline_frame(small, 640)
    assert frame is small
    assert scale == 1.0
    frame, scale = pipeline_frame(np.zeros((720, 1280, 3), np.uint8), 640)
    assert frame.shape == (360, 640, 3)
    assert scale == 0.5
