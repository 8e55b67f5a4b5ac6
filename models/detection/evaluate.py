"""COCO-style evaluation of a detector on labelled photos, with pycocotools: box and mask AP
over the garment categories, person AP, and AP per category."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from models.detection.processing import Detector
from models.detection.samples import InstanceSample, boxes_from_masks
from models.tags import Detections
from models.taxonomy import DETECTOR_CLASSES, GARMENT_CATEGORIES, PERSON


@dataclass
class DetectionMetrics:
    """COCO figures; -1.0 where a category has no ground truth (pycocotools' convention)."""

    images: int
    box_ap: float
    box_ap50: float
    mask_ap: float
    mask_ap50: float
    person_ap50: float
    person_mask_ap50: float
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds_per_image: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "box_ap": self.box_ap,
            "box_ap50": self.box_ap50,
            "mask_ap": self.mask_ap,
            "mask_ap50": self.mask_ap50,
            "person_ap50": self.person_ap50,
            "person_mask_ap50": self.person_mask_ap50,
            "per_category": self.per_category,
            "seconds_per_image": self.seconds_per_image,
        }


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _xywh(box: np.ndarray) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def evaluate_detector(
    detector: Detector,
    samples: Iterable[InstanceSample],
    *,
    batch_size: int = 1,
    progress: Callable[[int], None] | None = None,
) -> DetectionMetrics:
    """Runs `detector` over `samples` (class ids in DETECTOR_CLASSES) and scores it.
    The detector's class names must be DETECTOR_CLASSES' (same ids)."""
    if tuple(detector.class_names) != DETECTOR_CLASSES:
        raise ValueError(f"detector classes {detector.class_names} are not {DETECTOR_CLASSES}")
    return score_in_batches(
        samples,
        detector.detect,
        lambda _, detections: detections,
        batch_size=batch_size,
        progress=progress,
    )


R = TypeVar("R")


def score_in_batches(
    samples: Iterable[InstanceSample],
    run: Callable[[list[np.ndarray]], list[R]],
    to_detections: Callable[[InstanceSample, R], Detections],
    *,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> DetectionMetrics:
    """`run` over the samples' images `batch_size` at a time (only `run` is timed), each
    result turned into Detections over DETECTOR_CLASSES against its sample, then scored."""
    scores = DetectionScoring()
    batch: list[InstanceSample] = []

    def flush() -> None:
        start = time.perf_counter()
        results = run([s.image for s in batch])
        scores.seconds += time.perf_counter() - start
        for sample, result in zip(batch, results, strict=True):
            scores.add(sample, to_detections(sample, result))
            if progress is not None:
                progress(len(scores.images))
        batch.clear()

    for sample in samples:
        batch.append(sample)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return scores.metrics()


@dataclass
class DetectionScoring:
    """Ground truth and detections gathered image by image, then scored with pycocotools.
    Detections' class ids index DETECTOR_CLASSES."""

    images: list[dict[str, Any]] = field(default_factory=list)
    truth: list[dict[str, Any]] = field(default_factory=list)
    found: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # time spent detecting, for seconds_per_image

    def add(self, sample: InstanceSample, detections: Detections) -> None:
        image_id = len(self.images) + 1
        h, w = sample.image.shape[:2]
        self.images.append({"id": image_id, "width": w, "height": h, "file_name": sample.image_id})
        for mask, class_id, box in zip(
            sample.masks, sample.class_ids, boxes_from_masks(sample.masks), strict=True
        ):
            self.truth.append(
                {
                    "id": len(self.truth) + 1,
                    "image_id": image_id,
                    "category_id": int(class_id),
                    "segmentation": _rle(mask),
                    "area": float(mask.sum()),
                    "bbox": _xywh(box),
                    "iscrowd": 0,
                }
            )
        for i in range(len(detections)):
            self.found.append(
                {
                    "image_id": image_id,
                    "category_id": int(detections.class_ids[i]),
                    "segmentation": _rle(detections.masks[i]),
                    "bbox": _xywh(detections.boxes[i]),
                    "score": float(detections.scores[i]),
                }
            )

    def metrics(self) -> DetectionMetrics:
        if not self.images:
            raise ValueError("no samples to evaluate")
        return _score(self.images, self.truth, self.found, self.seconds / len(self.images))


def _score(
    images: list[dict[str, Any]],
    truth: list[dict[str, Any]],
    found: list[dict[str, Any]],
    seconds_per_image: float,
) -> DetectionMetrics:
    categories = [{"id": i, "name": n} for i, n in enumerate(DETECTOR_CLASSES) if i]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": truth, "categories": categories}
        gt.createIndex()
        dt = gt.loadRes(found) if found else COCO()
        if not found:
            dt.dataset = {"images": images, "annotations": [], "categories": categories}
            dt.createIndex()
        garment_ids = [DETECTOR_CLASSES.index(c) for c in GARMENT_CATEGORIES]
        person_id = [DETECTOR_CLASSES.index(PERSON)]
        box = _coco_eval(gt, dt, "bbox", garment_ids)
        segm = _coco_eval(gt, dt, "segm", garment_ids)
        person_box = _coco_eval(gt, dt, "bbox", person_id)
        person_segm = _coco_eval(gt, dt, "segm", person_id)
    per_category: dict[str, dict[str, float]] = {}
    counts = np.bincount([a["category_id"] for a in truth], minlength=len(DETECTOR_CLASSES))
    for k, class_id in enumerate(garment_ids):
        per_category[DETECTOR_CLASSES[class_id]] = {
            "instances": int(counts[class_id]),
            "box_ap": _ap(box, k, iou=None),
            "box_ap50": _ap(box, k, iou=0),
            "mask_ap": _ap(segm, k, iou=None),
            "mask_ap50": _ap(segm, k, iou=0),
        }
    return DetectionMetrics(
        images=len(images),
        box_ap=float(box.stats[0]),
        box_ap50=float(box.stats[1]),
        mask_ap=float(segm.stats[0]),
        mask_ap50=float(segm.stats[1]),
        person_ap50=float(person_box.stats[1]),
        person_mask_ap50=float(person_segm.stats[1]),
        per_category=per_category,
        seconds_per_image=seconds_per_image,
    )


def _coco_eval(gt: COCO, dt: COCO, kind: str, category_ids: list[int]) -> COCOeval:
    evaluation = COCOeval(gt, dt, kind)
    evaluation.params.catIds = category_ids
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return evaluation


def _ap(evaluation: COCOeval, k: int, iou: int | None) -> float:
    """AP of the k-th evaluated category, all areas, 100 detections; at one IoU index or
    averaged over 0.5:0.95. -1 when the category has no ground truth."""
    precision = evaluation.eval["precision"]  # (iou, recall, category, area, max dets)
    p = precision[:, :, k, 0, -1] if iou is None else precision[iou, :, k, 0, -1]
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else -1.0
