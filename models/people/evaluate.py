"""Person-box accuracy on COCO-format annotations, the way the pipeline sees frames: each image
resized so its long side is at most the video frame size, the detector run on that, boxes
scored in the annotation's own pixels by pycocotools (iscrowd boxes are ignore regions).

Height buckets: COCO only knows area ranges, so each ground-truth and detected box's `area` is
set to its height squared in the *resized* frame; the area ranges [0, 50^2), [50^2, 100^2),
[100^2, 200^2), [200^2, inf) then select people by the height the pipeline gives them.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from models.people.boxes import PeopleDetector

HEIGHT_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("lt50", 0.0, 50.0),
    ("50_100", 50.0, 100.0),
    ("100_200", 100.0, 200.0),
    ("ge200", 200.0, 1e5),
)


@dataclass(frozen=True)
class PeopleScores:
    images: int
    people: int  # non-crowd ground-truth boxes
    person_ap50: float
    person_ap: float  # AP at IoU 0.50:0.95
    recall: float  # at IoU 0.5, up to 100 detections per image
    ap50_by_height: dict[str, float]  # bucket -> AP50 (-1: no person of that height)
    people_by_height: dict[str, int]
    detections_per_image: float  # above the reporting threshold
    # the score threshold where F1 at IoU 0.5 peaks: how the tagger's person threshold is chosen
    best_f1: float
    best_f1_threshold: float
    seconds_per_image: float

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def pipeline_frame(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The frame the pipeline would tag: long side at most `max_side` (never enlarged)."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def evaluate_people(
    detector: PeopleDetector,
    annotations: Path,
    images_dir: Path,
    *,
    max_side: int = 640,
    count_threshold: float = 0.5,
    limit: int = 0,
    report: Callable[[str], None] = lambda _: None,
) -> PeopleScores:
    """Runs `detector` over the annotated images and scores its person boxes. Every category
    in the file counts as a person (the built sets and pedestrian benchmarks have one)."""
    import time

    content = json.loads(annotations.read_text())
    images = content["images"][:limit] if limit else content["images"]
    keep_ids = {im["id"] for im in images}
    gt_anns = [a for a in content["annotations"] if a["image_id"] in keep_ids]
    scale_of: dict[int, float] = {}
    detections: list[dict[str, Any]] = []
    spent = 0.0
    counted = 0
    for n, im in enumerate(images, 1):
        bgr = cv2.imread(str(images_dir / im["file_name"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read {images_dir / im['file_name']}")
        frame, scale = pipeline_frame(np.ascontiguousarray(bgr[:, :, ::-1]), max_side)
        scale_of[im["id"]] = scale
        start = time.perf_counter()
        found = detector.detect([frame])[0]
        spent += time.perf_counter() - start
        counted += int((found.scores >= count_threshold).sum())
        for box, score in zip(found.boxes / scale, found.scores, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            detections.append(
                {
                    "image_id": im["id"],
                    "category_id": 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score),
                }
            )
        if n % 100 == 0:
            report(f"{n}/{len(images)} images")
    gt = {
        "images": images,
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {
                **a,
                "category_id": 1,
                "area": (a["bbox"][3] * scale_of[a["image_id"]]) ** 2,
                "iscrowd": int(a.get("iscrowd", 0)),
            }
            for a in gt_anns
        ],
    }
    for number, det in enumerate(detections, 1):
        det.update(id=number, iscrowd=0, area=(det["bbox"][3] * scale_of[det["image_id"]]) ** 2)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = gt
        coco_dt.dataset = {**gt, "annotations": detections}
        coco_gt.createIndex()
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.areaRng = [[0.0, 1e10]] + [[lo**2, hi**2] for _, lo, hi in HEIGHT_BUCKETS]
        evaluator.params.areaRngLbl = ["all"] + [name for name, _, _ in HEIGHT_BUCKETS]
        evaluator.params.maxDets = [1, 10, 100]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]  # (iou, recall, class, area, maxdet)
    recall = evaluator.eval["recall"]  # (iou, class, area, maxdet)

    def ap(iou: slice | int, area: int) -> float:
        values = precision[iou, :, 0, area, -1]
        values = values[values > -1]
        return float(values.mean()) if values.size else -1.0

    # precision and the score reached at each of COCO's 101 recall points (IoU 0.5, all sizes)
    p_at = precision[0, :, 0, 0, -1]
    s_at = evaluator.eval["scores"][0, :, 0, 0, -1]
    r_at = evaluator.params.recThrs
    f1 = np.where(p_at > 0, 2 * p_at * r_at / np.maximum(p_at + r_at, 1e-9), 0.0)
    best = int(np.argmax(f1))
    people = [a for a in gt["annotations"] if not a["iscrowd"]]
    heights = [a["bbox"][3] * scale_of[a["image_id"]] for a in people]
    return PeopleScores(
        images=len(images),
        people=len(people),
        person_ap50=round(ap(0, 0), 4),
        person_ap=round(ap(slice(None), 0), 4),
        recall=round(float(recall[0, 0, 0, -1]), 4),
        ap50_by_height={
            name: round(ap(0, k + 1), 4) for k, (name, _, _) in enumerate(HEIGHT_BUCKETS)
        },
        people_by_height={
            name: sum(lo <= h < hi for h in heights) for name, lo, hi in HEIGHT_BUCKETS
        },
        detections_per_image=round(counted / max(1, len(images)), 2),
        best_f1=round(float(f1[best]), 4),
        best_f1_threshold=round(float(s_at[best]), 3),
        seconds_per_image=round(spent / max(1, len(images)), 4),
    )
