"""Clothing Co-Parsing (CCP) as detection data: its 59 pixel labels mapped to our categories,
per-pixel label maps turned into garment and person instances, and the deterministic split.

CCP has no instance ids. A garment instance is a connected region of one category (after mapping),
with fragments cleaned up as `extract_instances` documents; the person is the union of every
labelled pixel (body, hair, garments, accessories). weights/README.md writes the mapping down.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.detection.samples import InstanceSample
from models.taxonomy import DETECTOR_CLASSES, PERSON

# CCP label -> our category. Labels not listed (skin, hair, belts, jewellery, scarves, socks,
# stockings, tights, underwear, glasses, gloves, ties, watches, wallets, ...) are not garments
# to detect but still belong to the person.
CCP_TO_CATEGORY: Mapping[str, str] = {
    **dict.fromkeys(
        ("blouse", "shirt", "t-shirt", "top", "sweater", "jumper", "sweatshirt", "hoodie"), "top"
    ),
    **dict.fromkeys(("blazer", "cape", "coat", "jacket", "cardigan", "suit"), "outerwear"),
    **dict.fromkeys(("dress", "romper"), "dress"),
    "skirt": "skirt",
    "shorts": "shorts",
    **dict.fromkeys(("pants", "jeans", "leggings"), "trousers"),
    **dict.fromkeys(
        (
            "boots",
            "clogs",
            "flats",
            "heels",
            "loafers",
            "pumps",
            "sandals",
            "shoes",
            "sneakers",
            "wedges",
        ),
        "footwear",
    ),
    **dict.fromkeys(("bag", "purse"), "bag"),
    "hat": "hat",
}

# Labels CCP uses for two different things, decided per photo (looked at: runs of 50 "vest" and
# 9 "bodysuit" photos). "vest" is a waistcoat/gilet worn over a top or dress about half the time
# and a tank top otherwise; "bodysuit" is labelled on jumpsuits and dresses unless the photo has
# separate trousers/skirt/shorts, when it is a top.
_LAYER_OVER = "vest"
_ONE_PIECE = "bodysuit"

# Categories a person wears once: all their regions in one photo are one instance (a coat split in
# two by a bag strap is still one coat). Footwear and bags come in several: connected regions.
SINGLE_PER_PERSON = frozenset({"top", "outerwear", "dress", "skirt", "shorts", "trousers", "hat"})

# A region smaller than this share of its category's largest region in the photo is a fragment:
# it joins the nearest large region of that category instead of becoming an instance of its own.
FRAGMENT_SHARE = 0.2
# Regions below this many pixels (at CCP's 550 px width) are noise, dropped unless joined.
MIN_REGION_PIXELS = 64
# The held-out split: images whose id hashes below this share of 2**32 are held out.
HELD_OUT_SHARE = 0.15


@dataclass(frozen=True)
class CcpLabels:
    """A CCP-format folder's label names, and the lookup tables built from them."""

    names: tuple[str, ...]

    def category_of(self, label_map: np.ndarray) -> np.ndarray:
        """(H, W) CCP label map -> (H, W) int64 DETECTOR_CLASSES ids; 0 = not a garment.
        The per-photo rules for "vest" and "bodysuit" use the labels present in this photo."""
        lut = np.zeros(256, np.int64)
        present = {self.names[v] for v in np.unique(label_map) if v < len(self.names)}
        for index, name in enumerate(self.names):
            category = _category_in_photo(name, present)
            if category is not None:
                lut[index] = DETECTOR_CLASSES.index(category)
        return lut[label_map]


def _category_in_photo(name: str, present: set[str]) -> str | None:
    mapped = {n: CCP_TO_CATEGORY.get(n) for n in present}
    if name == _LAYER_OVER:
        worn_under = any(c in ("top", "dress") for c in mapped.values())
        return "outerwear" if worn_under else "top"
    if name == _ONE_PIECE:
        has_bottom = any(c in ("trousers", "skirt", "shorts") for c in mapped.values())
        return "top" if has_bottom else "dress"
    return CCP_TO_CATEGORY.get(name)


def read_labels(ccp_dir: Path) -> CcpLabels:
    path = ccp_dir / "labels.json"
    try:
        names = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: a CCP folder needs labels.json") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a JSON list of label names")
    return CcpLabels(names=tuple(names))


def is_held_out(image_id: str, share: float = HELD_OUT_SHARE) -> bool:
    """The deterministic whole-image split: a stable hash of the id, so adding photos never
    moves an old one between train and held-out."""
    digest = hashlib.sha256(image_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") < share * 2**32


def image_ids(ccp_dir: Path, split: str = "all") -> list[str]:
    """Ids (file stems) of the photos that have both an image and a mask, sorted.
    split: "all", "train" or "held_out"."""
    if split not in ("all", "train", "held_out"):
        raise ValueError(f"split must be all, train or held_out, got {split!r}")
    images = {p.stem for p in (ccp_dir / "images").glob("*.jpg")}
    masks = {p.stem for p in (ccp_dir / "masks").glob("*.png")}
    ids = sorted(images & masks)
    if not ids:
        raise FileNotFoundError(f"{ccp_dir}: no images/*.jpg with a matching masks/*.png")
    if split == "all":
        return ids
    return [i for i in ids if is_held_out(i) == (split == "held_out")]


def extract_instances(categories: np.ndarray, label_map: np.ndarray) -> InstanceSample:
    """Instances of one photo, image left empty: see `load_sample`.

    categories: (H, W) int64 DETECTOR_CLASSES ids (0 = none); label_map: (H, W) CCP labels,
    only used for the person (every non-zero label)."""
    h, w = categories.shape
    masks: list[np.ndarray] = []
    class_ids: list[int] = []
    person = label_map > 0
    if person.sum() >= MIN_REGION_PIXELS:
        masks.append(person)
        class_ids.append(DETECTOR_CLASSES.index(PERSON))
    for class_id in np.unique(categories):
        if class_id == 0:
            continue
        name = DETECTOR_CLASSES[class_id]
        for region in _category_regions(categories == class_id, name in SINGLE_PER_PERSON):
            masks.append(region)
            class_ids.append(int(class_id))
    return InstanceSample(
        image_id="",
        image=np.zeros((h, w, 3), np.uint8),
        masks=np.stack(masks) if masks else np.zeros((0, h, w), bool),
        class_ids=np.array(class_ids, np.int64),
    )


def _category_regions(mask: np.ndarray, single: bool) -> list[np.ndarray]:
    """A category's pixels -> its instances: one if `single`, else connected regions with
    fragments joined to the nearest large region and noise dropped."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count <= 1 or areas.max() < MIN_REGION_PIXELS:
        return []
    if single:
        keep = np.flatnonzero(areas >= MIN_REGION_PIXELS) + 1
        return [np.isin(labels, keep)]
    large = [
        i + 1 for i in np.flatnonzero(areas >= max(MIN_REGION_PIXELS, FRAGMENT_SHARE * areas.max()))
    ]
    regions = {i: labels == i for i in large}
    boxes = {i: stats[i, :4] for i in large}
    for small in range(1, count):
        if small in regions:
            continue
        nearest = min(large, key=lambda i: _box_gap(stats[small, :4], boxes[i]))
        regions[nearest] |= labels == small
    return [regions[i] for i in large]


def _box_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two (x, y, w, h) boxes; 0 when they overlap."""
    dx = max(0, max(a[0], b[0]) - min(a[0] + a[2], b[0] + b[2]))
    dy = max(0, max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3]))
    return float(np.hypot(dx, dy))


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_sample(ccp_dir: Path, image_id: str, labels: CcpLabels) -> InstanceSample:
    """One CCP photo with its garment and person instances."""
    image = read_rgb(ccp_dir / "images" / f"{image_id}.jpg")
    label_map = cv2.imread(str(ccp_dir / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
    if label_map is None or label_map.ndim != 2:
        raise ValueError(f"{ccp_dir / 'masks' / image_id}.png: expected an 8-bit label map")
    if label_map.shape != image.shape[:2]:
        # a few CCP masks differ from their photo by a row: the label map is resized to fit
        label_map = cv2.resize(
            label_map, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST
        )
    found = extract_instances(labels.category_of(label_map), label_map)
    return InstanceSample(
        image_id=image_id, image=image, masks=found.masks, class_ids=found.class_ids
    )


def iter_samples(ccp_dir: Path, ids: Sequence[str]) -> Iterator[InstanceSample]:
    labels = read_labels(ccp_dir)
    for image_id in ids:
        yield load_sample(ccp_dir, image_id, labels)
