"""Training and held-out data of the attribute classifier, read from a ../shared/data-style folder.

Sources (weights/attributes.md lists their licences):
- catalogue: `products/styles.csv` + `products/images/<id>.jpg`, one product per photo;
- CCP: `street/ccp/{images,masks,labels.json}`, one crop per garment region (labels.py says which
  CCP labels make a crop and what they mean);
- clothing-small: `street/clothing-small/{train,validation}/<class>/*.jpg`.

Held-out rule (deterministic, never moves an item when data is added): a catalogue id or CCP
photo id is held out when the first 4 bytes of sha256(id), as a big-endian integer, fall below
`share * 2**32` (catalogue 10%, CCP 15% of whole photos, the detector's CCP rule); clothing-small
keeps its own `validation/` folder as the held-out set.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.attributes import labels as L
from models.attributes.crop import crop_canvas, product_mask

CATALOGUE_HELD_OUT = 0.10
CCP_HELD_OUT = 0.15
# A CCP region makes a crop only if it has this many pixels (at CCP's 550 px width) and both
# box sides are at least MIN_REGION_SIDE: smaller ones are unreadable even to a person.
MIN_REGION_PIXELS = 600
MIN_REGION_SIDE = 20
# A footwear/bag region smaller than this share of its label's largest region is a fragment.
FRAGMENT_SHARE = 0.2
# CCP labels that are one garment per person: all their regions in a photo are one crop.
_MANY_PER_PERSON = frozenset({"footwear", "bag"})

SOURCES = ("catalogue", "ccp", "clothing")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def is_held_out(key: str, share: float) -> bool:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "big") < share * 2**32


@dataclass(frozen=True)
class Item:
    """One training or held-out crop: where it comes from and the head labels it has."""

    source: str
    key: str  # catalogue id, "<ccp id>/<label>/<n>", or "<split>/<class>/<file>"
    labels: Mapping[str, str]
    held_out: bool

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"Item.source: expected one of {SOURCES}, got {self.source!r}")
        unknown = set(self.labels) - set(L.HEAD_NAMES)
        if unknown:
            raise ValueError(f"Item.labels: unknown heads {sorted(unknown)}")


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_styles(products_dir: Path, *, require_image: bool = True) -> list[dict[str, str]]:
    """styles.csv rows (only those whose photo exists, unless `require_image` is False), in
    file order."""
    path = products_dir / "styles.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: a products folder needs styles.csv")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "id" not in reader.fieldnames:
            raise ValueError(f"{path}: expected a header with an `id` column")
        rows = [row for row in reader if row.get("id")]
    if not require_image:
        return rows
    return [r for r in rows if (products_dir / "images" / f"{r['id']}.jpg").is_file()]


def catalogue_image(products_dir: Path, product_id: str) -> np.ndarray:
    return read_rgb(products_dir / "images" / f"{product_id}.jpg")


def catalogue_items(products_dir: Path) -> list[Item]:
    return [
        Item(
            "catalogue",
            row["id"],
            L.catalogue_heads(row),
            is_held_out(row["id"], CATALOGUE_HELD_OUT),
        )
        for row in read_styles(products_dir)
    ]


def clothing_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(class, path) for every image of a `<class>/*.jpg` folder, sorted; unknown class
    folders are an error (they would be silently unscored otherwise)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of <class>/ image folders")
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if class_dir.name not in L.CLOTHING_CLASSES:
            raise ValueError(
                f"{class_dir}: {class_dir.name!r} is not a clothing-small class "
                f"({', '.join(L.CLOTHING_CLASSES)})"
            )
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield class_dir.name, path


def clothing_items(clothing_dir: Path) -> list[tuple[Item, Path]]:
    items = []
    for split, held_out in (("train", False), ("validation", True)):
        if not (clothing_dir / split).is_dir():
            continue
        for cls, path in clothing_files(clothing_dir / split):
            key = f"{split}/{cls}/{path.name}"
            items.append((Item("clothing", key, L.clothing_folder_heads(cls), held_out), path))
    return items


def read_ccp_labels(ccp_dir: Path) -> tuple[str, ...]:
    names = json.loads((ccp_dir / "labels.json").read_text())
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{ccp_dir / 'labels.json'}: expected a JSON list of label names")
    return tuple(names)


def ccp_ids(ccp_dir: Path) -> list[str]:
    images = {p.stem for p in (ccp_dir / "images").glob("*.jpg")}
    masks = {p.stem for p in (ccp_dir / "masks").glob("*.png")}
    return sorted(images & masks)


def ccp_photo(ccp_dir: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, label map of the same size)."""
    image = read_rgb(ccp_dir / "images" / f"{image_id}.jpg")
    label_map = cv2.imread(str(ccp_dir / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
    if label_map is None or label_map.ndim != 2:
        raise ValueError(f"{ccp_dir}/masks/{image_id}.png: expected an 8-bit label map")
    if label_map.shape != image.shape[:2]:  # a few masks are a row off their photo
        label_map = cv2.resize(
            label_map, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST
        )
    return image, label_map


def ccp_regions(
    label_map: np.ndarray, names: tuple[str, ...]
) -> list[tuple[str, Mapping[str, str], np.ndarray]]:
    """(CCP label, head labels, (H, W) bool mask) for every garment region of one photo."""
    present = frozenset(names[v] for v in np.unique(label_map) if v < len(names))
    regions = []
    for value in np.unique(label_map):
        if value >= len(names):
            continue
        name = names[value]
        heads = L.ccp_heads(name, present)
        if heads is None:
            continue
        pixels = label_map == value
        many = heads.get("category") in _MANY_PER_PERSON
        for part in _large_components(pixels) if many else [pixels]:
            if _big_enough(part):
                regions.append((name, heads, part))
    return regions


def _large_components(mask: np.ndarray) -> list[np.ndarray]:
    pixels: np.ndarray = mask.astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(pixels, connectivity=8)
    if count <= 1:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= FRAGMENT_SHARE * areas.max()) + 1
    return [labels == k for k in keep]


def _big_enough(mask: np.ndarray) -> bool:
    if mask.sum() < MIN_REGION_PIXELS:
        return False
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return bool(rows[-1] - rows[0] >= MIN_REGION_SIDE and cols[-1] - cols[0] >= MIN_REGION_SIDE)


def ccp_items(ccp_dir: Path) -> Iterator[tuple[Item, np.ndarray, np.ndarray]]:
    """(item, photo, region mask) for every garment region of every CCP photo."""
    names = read_ccp_labels(ccp_dir)
    for image_id in ccp_ids(ccp_dir):
        image, label_map = ccp_photo(ccp_dir, image_id)
        held_out = is_held_out(image_id, CCP_HELD_OUT)
        counts: dict[str, int] = {}
        for name, heads, mask in ccp_regions(label_map, names):
            n = counts[name] = counts.get(name, 0) + 1
            yield Item("ccp", f"{image_id}/{name}/{n}", dict(heads), held_out), image, mask


@dataclass(frozen=True)
class DataLayout:
    """Where each source lives under a ../shared/data-style root."""

    root: Path

    @property
    def products(self) -> Path:
        return self.root / "products"

    @property
    def ccp(self) -> Path:
        return self.root / "street" / "ccp"

    @property
    def clothing(self) -> Path:
        return self.root / "street" / "clothing-small"

    def check(self) -> None:
        for path in (self.products / "styles.csv", self.ccp / "labels.json", self.clothing):
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: --data must be a shared/data folder")


def canvas_of(
    item: Item, image: np.ndarray, mask: np.ndarray | None, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The training canvas of one item (the crop rule's steps 1-2) and its foreground: for a
    catalogue photo the whole photo with the product mask as foreground; for a CCP region the
    padded box of its mask; for clothing-small the whole photo."""
    if item.source == "catalogue":
        h, w = image.shape[:2]
        return crop_canvas(image, (0.0, 0.0, float(w), float(h)), product_mask(image), size)
    if item.source == "ccp":
        return crop_canvas(image, None, mask, size)
    return crop_canvas(image, None, None, size)
