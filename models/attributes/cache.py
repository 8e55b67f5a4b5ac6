"""Decoded training canvases kept on disk as uint8 .npy files (memory-mapped while training), so
each epoch reads pixels instead of decoding JPEGs on 2 CPU cores.

Layout under the cache folder: `<source>.npy` (N, S, S, 4) uint8 = RGB + foreground*255 per
item, `backgrounds.npy` (M, S, S, 3) street-photo patches for pasting catalogue products on, and
`items.json` (the Item of every row, plus the settings the cache was built with).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from models.attributes import data as D

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
BACKGROUND_PATCHES = 1500

T = TypeVar("T")
Progress = Callable[[Iterable[T], str, int | None], Iterator[T]]


def _no_progress(items: Iterable[T], _desc: str, _total: int | None) -> Iterator[T]:
    yield from items


@dataclass
class Cache:
    items: list[D.Item]
    canvases: dict[str, np.ndarray]  # source -> (N, S, S, 4) uint8
    rows: list[tuple[str, int]]  # item index -> (source, row in that source's array)
    backgrounds: np.ndarray

    def canvas(self, index: int) -> np.ndarray:
        source, row = self.rows[index]
        return self.canvases[source][row]


def load_cache(folder: Path, size: int, data_root: Path) -> Cache | None:
    """The cache in `folder` if it was built for this size and data root, else None."""
    meta_path = folder / "items.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CACHE_FORMAT or meta.get("size") != size:
        return None
    if meta.get("data_root") != str(data_root.resolve()):
        return None
    items = [D.Item(**raw) for raw in meta["items"]]
    canvases = {s: np.load(folder / f"{s}.npy", mmap_mode="r") for s in D.SOURCES}
    rows: list[tuple[str, int]] = []
    seen = dict.fromkeys(D.SOURCES, 0)
    for item in items:
        rows.append((item.source, seen[item.source]))
        seen[item.source] += 1
    if any(len(canvases[s]) != seen[s] for s in D.SOURCES):
        return None
    backgrounds = np.load(folder / "backgrounds.npy", mmap_mode="r")
    return Cache(items, canvases, rows, backgrounds)


def build_cache(
    layout: D.DataLayout, folder: Path, size: int, progress: Progress[Any] = _no_progress
) -> Cache:
    """Decodes every source once into canvases of `size` (the crop rule's steps 1-2)."""
    layout.check()
    folder.mkdir(parents=True, exist_ok=True)
    items: list[D.Item] = []

    catalogue = D.catalogue_items(layout.products)
    out = np.lib.format.open_memmap(
        folder / "catalogue.npy", "w+", np.uint8, (len(catalogue), size, size, 4)
    )
    for row, item in enumerate(progress(catalogue, "cache catalogue", len(catalogue))):
        image = D.catalogue_image(layout.products, item.key)
        out[row] = _pack(*D.canvas_of(item, image, None, size))
    out.flush()
    items += catalogue

    clothing = D.clothing_items(layout.clothing)
    out = np.lib.format.open_memmap(
        folder / "clothing.npy", "w+", np.uint8, (len(clothing), size, size, 4)
    )
    for row, (item, path) in enumerate(progress(clothing, "cache clothing-small", len(clothing))):
        out[row] = _pack(*D.canvas_of(item, D.read_rgb(path), None, size))
    out.flush()
    items += [item for item, _ in clothing]

    ccp_rows: list[np.ndarray] = []
    for item, image, mask in progress(D.ccp_items(layout.ccp), "cache CCP regions", None):
        ccp_rows.append(_pack(*D.canvas_of(item, image, mask, size)))
        items.append(item)
    np.save(folder / "ccp.npy", np.stack(ccp_rows))

    np.save(folder / "backgrounds.npy", _background_patches(layout, size))
    meta = {
        "format": CACHE_FORMAT,
        "size": size,
        "data_root": str(layout.root.resolve()),
        "items": [asdict(i) for i in _in_source_order(items)],
    }
    (folder / "items.json").write_text(json.dumps(meta))
    cache = load_cache(folder, size, layout.root)
    if cache is None:  # pragma: no cover - the files were just written
        raise RuntimeError(f"{folder}: the cache just built does not read back")
    return cache


def _in_source_order(items: list[D.Item]) -> list[D.Item]:
    # items.json lists each source's items in the order of its array, sources in SOURCES order
    return [i for s in D.SOURCES for i in items if i.source == s]


def _pack(canvas: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    return np.concatenate([canvas, foreground[..., None].astype(np.uint8) * 255], axis=2)


def _background_patches(layout: D.DataLayout, size: int) -> np.ndarray:
    """Square windows (30-80% of the short side) of training CCP photos: street clutter."""
    rng = np.random.default_rng(0)
    ids = [i for i in D.ccp_ids(layout.ccp) if not D.is_held_out(i, D.CCP_HELD_OUT)]
    per_photo = max(1, BACKGROUND_PATCHES // max(1, len(ids)) + 1)
    patches = []
    for image_id in ids:
        image = D.read_rgb(layout.ccp / "images" / f"{image_id}.jpg")
        h, w = image.shape[:2]
        for _ in range(per_photo):
            side = int(rng.uniform(0.3, 0.8) * min(h, w))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            window = image[y : y + side, x : x + side]
            patches.append(cv2.resize(window, (size, size), interpolation=cv2.INTER_AREA))
    if not patches:  # no training CCP photo (a tiny data root): plain random colours instead
        colours = rng.integers(0, 256, (64, 1, 1, 3), dtype=np.uint8)
        return np.broadcast_to(colours, (64, size, size, 3)).copy()
    order = rng.permutation(len(patches))[:BACKGROUND_PATCHES]
    return np.stack([patches[i] for i in order])
