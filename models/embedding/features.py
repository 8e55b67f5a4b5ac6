"""Pooled attribute-network features of catalogue photos and CCP garment regions, cached on disk
in parts so an interrupted extraction resumes where it stopped.

A catalogue photo is cropped the way the tagger crops a product shot it finds no garment on
(its catalogue fallback: the product mask of `models.tagger.catalogue_product_mask`, box and
mask through the classifier's crop rule); a CCP region the way the tagger crops a detected
garment (the region's box and mask). Layout of a cache folder: `part-<n>.npz` with `features`
(n, 1280) float16 and `keys`, plus `items.json` (source, key, labels, held_out of every row).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from models.attributes import data as D
from models.attributes.classifier import AttributeClassifier

log = logging.getLogger(__name__)
PART_SIZE = 256
FEATURES_FORMAT = 1


@dataclass(frozen=True)
class FeatureSet:
    """Pooled features (N, D) float32 and the item of every row."""

    features: np.ndarray
    items: list[D.Item]

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[0] != len(self.items):
            raise ValueError(
                f"features: expected ({len(self.items)}, D), got {self.features.shape}"
            )

    def select(self, rows: np.ndarray) -> FeatureSet:
        return FeatureSet(self.features[rows], [self.items[int(i)] for i in rows])

    def joined(self, other: FeatureSet) -> FeatureSet:
        return FeatureSet(np.concatenate([self.features, other.features]), self.items + other.items)

    def where(self, keep: Callable[[D.Item], bool]) -> FeatureSet:
        return self.select(np.flatnonzero([keep(i) for i in self.items]))


def catalogue_crop(classifier: AttributeClassifier, image: np.ndarray) -> np.ndarray:
    """The tagger's crop of a catalogue product shot it finds no garment on."""
    from models.tagger import TaggerThresholds, catalogue_product_mask, mask_box

    mask = catalogue_product_mask(image, TaggerThresholds())
    if mask is None:  # not a studio photo: the whole image, as the tagger's classifier sees it
        return classifier.prepare(image, None, None)
    return classifier.prepare(image, mask_box(mask), mask)


def region_crop(classifier: AttributeClassifier, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The tagger's crop of a detected garment with this mask."""
    from models.tagger import mask_box

    return classifier.prepare(image, mask_box(mask), mask)


def pooled_features(classifier: AttributeClassifier, crops: Sequence[np.ndarray]) -> np.ndarray:
    """(B, 1280) float32 pooled trunk features of prepared crops."""
    with torch.inference_mode():
        return classifier.network.features(classifier.to_batch(crops)).float().cpu().numpy()


def _catalogue_crop_of(classifier: AttributeClassifier, products: Path, key: str) -> np.ndarray:
    return catalogue_crop(classifier, D.catalogue_image(products, key))


def _lazy_crops(
    layout: D.DataLayout, classifier: AttributeClassifier, sources: Sequence[str]
) -> Iterator[tuple[D.Item, Callable[[], np.ndarray]]]:
    """Every item with a function making its crop (not called for parts already cached)."""
    if "catalogue" in sources:
        for item in D.catalogue_items(layout.products):
            yield item, functools.partial(_catalogue_crop_of, classifier, layout.products, item.key)
    if "ccp" in sources:
        for item, image, mask in D.ccp_items(layout.ccp):
            yield item, functools.partial(region_crop, classifier, image, mask)


def extract(
    layout: D.DataLayout,
    classifier: AttributeClassifier,
    folder: Path,
    *,
    sources: Sequence[str] = ("catalogue", "ccp"),
    batch: int = 64,
    limit: int | None = None,
) -> FeatureSet:
    """Features of every item of `sources` (the first `limit`), cached in `folder` in parts of
    PART_SIZE rows; a part already on disk is not computed again."""
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "items.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("format") == FEATURES_FORMAT:
        return load(folder)
    items: list[D.Item] = []
    chunk: list[tuple[D.Item, Callable[[], np.ndarray]]] = []
    started = time.monotonic()

    def write_part(index: int) -> None:
        path = folder / f"part-{index:04d}.npz"
        if not path.is_file():
            rows = []
            for start in range(0, len(chunk), batch):
                crops = [make() for _, make in chunk[start : start + batch]]
                rows.append(pooled_features(classifier, crops))
            tmp = folder / f".part-{index:04d}.npz"
            np.savez(tmp, features=np.concatenate(rows).astype(np.float16))
            tmp.replace(path)
        rate = len(items) / max(time.monotonic() - started, 1e-6)
        log.info("features: %d items (%.1f/s)", len(items), rate)

    for item, make in _lazy_crops(layout, classifier, sources):
        if limit is not None and len(items) >= limit:
            break
        items.append(item)
        chunk.append((item, make))
        if len(chunk) == PART_SIZE:
            write_part(len(items) // PART_SIZE - 1)
            chunk = []
    if chunk:
        write_part((len(items) - 1) // PART_SIZE)
    meta = {"format": FEATURES_FORMAT, "items": [asdict(i) for i in items]}
    meta_path.write_text(json.dumps(meta))
    return load(folder)


def load(folder: Path) -> FeatureSet:
    meta = json.loads((folder / "items.json").read_text())
    items = [D.Item(**raw) for raw in meta["items"]]
    parts = sorted(folder.glob("part-*.npz"))
    features = np.concatenate([np.load(p)["features"] for p in parts]).astype(np.float32)
    return FeatureSet(features, items)


def embeddings(classifier: AttributeClassifier, crops: Sequence[np.ndarray]) -> np.ndarray:
    """(B, D) shipped embeddings of prepared crops: the classifier's own forward, attributes
    and embedding together, as the tagger runs it."""
    _, vectors = classifier.predict_embedded(crops)
    if vectors is None:
        raise ValueError("the classifier has no embedding head (weights manifest `embedding`)")
    return vectors


def catalogue_embeddings(
    classifier: AttributeClassifier,
    products_dir: Path,
    ids: Sequence[str],
    *,
    batch: int = 64,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(N, D) embeddings of catalogue photos `products_dir/images/<id>.jpg`, each cropped as
    the tagger crops a product shot (`catalogue_crop`)."""
    out: list[np.ndarray] = []
    for start in range(0, len(ids), batch):
        crops = [
            catalogue_crop(classifier, D.catalogue_image(products_dir, i))
            for i in ids[start : start + batch]
        ]
        out.append(embeddings(classifier, crops))
        if progress is not None:
            progress(min(start + batch, len(ids)))
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out)
