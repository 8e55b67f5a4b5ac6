"""DeepFashion2 as detection data, read from its official layout: `image/NNNNNN.jpg` beside
`annos/NNNNNN.json`, one JSON per image with `item1`, `item2`, ... each holding `category_id`
(1..13), `category_name`, `bounding_box` [x1, y1, x2, y2], `segmentation` (polygons
[[x1, y1, x2, y2, ...], ...]), `landmarks`, `style`, `occlusion`, ... plus `source` and `pair_id`.

DeepFashion2 labels clothing only: no person, footwear, bag or hat instances come from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.detection.ccp import read_rgb
from models.detection.samples import InstanceSample
from models.taxonomy import DETECTOR_CLASSES

# DeepFashion2 category_id -> (its name, our category)
DF2_CATEGORIES: Mapping[int, tuple[str, str]] = {
    1: ("short sleeve top", "top"),
    2: ("long sleeve top", "top"),
    3: ("short sleeve outwear", "outerwear"),
    4: ("long sleeve outwear", "outerwear"),
    5: ("vest", "top"),
    6: ("sling", "top"),
    7: ("shorts", "shorts"),
    8: ("trousers", "trousers"),
    9: ("skirt", "skirt"),
    10: ("short sleeve dress", "dress"),
    11: ("long sleeve dress", "dress"),
    12: ("vest dress", "dress"),
    13: ("sling dress", "dress"),
}


class DeepFashion2FormatError(ValueError):
    """An annotation file that does not follow DeepFashion2's per-image JSON format."""


@dataclass(frozen=True)
class DeepFashion2Source:
    """A DeepFashion2 split folder (e.g. `train/` or `validation/`) with `image/` and `annos/`."""

    root: Path
    ids: tuple[str, ...]

    @classmethod
    def open(cls, root: Path) -> DeepFashion2Source:
        annos = {p.stem for p in (root / "annos").glob("*.json")}
        images = {p.stem for p in (root / "image").glob("*.jpg")}
        ids = tuple(sorted(annos & images))
        if not ids:
            raise FileNotFoundError(f"{root}: no image/*.jpg with a matching annos/*.json")
        return cls(root, ids)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> InstanceSample:
        image_id = self.ids[index]
        image = read_rgb(self.root / "image" / f"{image_id}.jpg")
        path = self.root / "annos" / f"{image_id}.json"
        try:
            annotation = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DeepFashion2FormatError(f"{path}: not JSON: {exc}") from None
        masks, class_ids = parse_annotation(annotation, image.shape[:2], str(path))
        return InstanceSample(image_id, image, masks, class_ids)


def parse_annotation(
    annotation: Mapping[str, Any], shape: tuple[int, int], where: str = "annotation"
) -> tuple[np.ndarray, np.ndarray]:
    """One image's JSON -> (masks (n, H, W) bool, class ids (n,) in DETECTOR_CLASSES), items in
    their numeric order (item1, item2, ...). Items whose polygons cover no pixel are skipped."""
    if not isinstance(annotation, Mapping):
        raise DeepFashion2FormatError(f"{where}: expected a JSON object")
    keys = [k for k in annotation if k.startswith("item") and k[4:].isdigit()]
    h, w = shape
    masks: list[np.ndarray] = []
    class_ids: list[int] = []
    for key in sorted(keys, key=lambda k: int(k[4:])):
        item = annotation[key]
        try:
            category_id = int(item["category_id"])
            polygons = item["segmentation"]
        except (KeyError, TypeError, ValueError) as exc:
            raise DeepFashion2FormatError(f"{where}: {key} lacks {exc}") from None
        if category_id not in DF2_CATEGORIES:
            raise DeepFashion2FormatError(
                f"{where}: {key} has category_id {category_id}, not 1..13"
            )
        mask = np.zeros((h, w), np.uint8)
        for polygon in polygons:
            points = np.asarray(polygon, np.float64)
            if points.ndim != 1 or len(points) < 6 or len(points) % 2:
                raise DeepFashion2FormatError(
                    f"{where}: {key} has a polygon that is not [x1, y1, x2, y2, x3, y3, ...]"
                )
            cv2.fillPoly(mask, [np.round(points.reshape(-1, 2)).astype(np.int32)], 1)
        if mask.any():
            masks.append(mask > 0)
            class_ids.append(DETECTOR_CLASSES.index(DF2_CATEGORIES[category_id][1]))
    stacked = np.stack(masks) if masks else np.zeros((0, h, w), bool)
    return stacked, np.array(class_ids, np.int64)
