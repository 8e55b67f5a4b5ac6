"""Training views for the person detector: what the labelled photos lack, made from them.

Each view is a square crop of one photo (or a 2x2 mosaic of four) after a random zoom, so one
photo yields people from a few pixels to the whole frame, cut by the crop's edge as a camera
cuts them; then the camera's faults: dim and night light with a colour cast, backlight, blur
and motion blur, sensor noise, JPEG blocks. The view of item i in epoch e depends only on
(seed, e, i), so a resumed run sees the same data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class PersonPhoto:
    """One labelled photo on disk: person boxes (n, 4) float32 xyxy in its pixels."""

    path: Path
    boxes: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"PersonPhoto.boxes: expected (n, 4), got {self.boxes.shape}")


@dataclass(frozen=True)
class ViewConfig:
    size: int = 384  # square training view
    zoom: tuple[float, float] = (0.35, 1.6)  # log-uniform scale of the photo before cropping
    mosaic: float = 0.3  # share of views made of four photos
    min_visible: float = 0.35  # a cut person stays a label while this share of its box is in view
    min_height: float = 6.0  # smaller people (px) are dropped: too few pixels to be anyone
    flip: float = 0.5
    night: float = 0.15
    backlight: float = 0.1
    blur: float = 0.25
    noise: float = 0.25
    jpeg: float = 0.4


def read_coco_photos(annotations: Path, images: Path) -> list[PersonPhoto]:
    """A COCO person-box file (the `data people` output) as PersonPhotos; iscrowd boxes are
    left out (there are none in the built sets)."""
    content = json.loads(annotations.read_text())
    boxes: dict[int, list[list[float]]] = {im["id"]: [] for im in content["images"]}
    for ann in content["annotations"]:
        if ann.get("iscrowd"):
            continue
        x, y, w, h = ann["bbox"]
        boxes[ann["image_id"]].append([x, y, x + w, y + h])
    return [
        PersonPhoto(
            images / im["file_name"], np.asarray(boxes[im["id"]], np.float32).reshape(-1, 4)
        )
        for im in content["images"]
    ]


def _place(
    image: np.ndarray, boxes: np.ndarray, scale: float, out: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`image` scaled by `scale`, a random out x out window of it (padded with grey when the
    scaled photo is smaller), its boxes in window pixels, and the share of each box in view."""
    h, w = image.shape[:2]
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = cv2.resize(
        image, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    canvas = np.full((out, out, 3), 114, np.uint8)
    # window origin in scaled-photo pixels; negative = the photo sits inside the canvas
    ox = int(rng.integers(0, sw - out + 1)) if sw > out else -int(rng.integers(0, out - sw + 1))
    oy = int(rng.integers(0, sh - out + 1)) if sh > out else -int(rng.integers(0, out - sh + 1))
    sx0, sy0 = max(ox, 0), max(oy, 0)
    sx1, sy1 = min(ox + out, sw), min(oy + out, sh)
    canvas[sy0 - oy : sy1 - oy, sx0 - ox : sx1 - ox] = scaled[sy0:sy1, sx0:sx1]
    moved = boxes * scale - np.array([ox, oy, ox, oy], np.float32)
    clipped = np.clip(moved, 0, out)
    full = np.maximum((moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1]), 1e-6)
    inside = (clipped[:, 2] - clipped[:, 0]).clip(0) * (clipped[:, 3] - clipped[:, 1]).clip(0)
    return canvas, clipped, inside / full


def _camera_faults(image: np.ndarray, config: ViewConfig, rng: np.random.Generator) -> np.ndarray:
    out: np.ndarray = image.astype(np.float32)
    if rng.random() < config.night:
        # dim light: gamma > 1 darkens mid-tones, a blue or sodium-orange cast
        out = 255.0 * (out / 255.0) ** rng.uniform(1.5, 2.8) * rng.uniform(0.4, 0.8)
        out *= np.array(rng.choice([(1.15, 1.0, 0.8), (0.8, 0.95, 1.2)]), np.float32)
    elif rng.random() < config.backlight:
        # against the light: people are dark on a bright scene
        out = np.clip(out * rng.uniform(0.4, 0.7) + rng.uniform(60, 120), 0, 255)
    else:
        out = out * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)
    if rng.random() < config.noise:
        out += rng.normal(0, rng.uniform(3, 12), out.shape).astype(np.float32)
    view: np.ndarray = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < config.blur:
        if rng.random() < 0.5:
            view = cv2.GaussianBlur(view, (0, 0), rng.uniform(0.6, 1.8))
        else:
            length = int(rng.integers(3, 9))
            line = np.zeros((length, length), np.float32)
            line[length // 2, :] = 1.0 / length
            angle = rng.uniform(0, 180)
            rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1.0)
            kernel: np.ndarray = cv2.warpAffine(line, rot, (length, length))
            view = cv2.filter2D(view, -1, kernel / max(float(kernel.sum()), 1e-6))
    if rng.random() < config.jpeg:
        ok, encoded = cv2.imencode(
            ".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 70))]
        )
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            view = decoded
    return view


class PeopleViews(Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Augmented training views of `photos` in torchvision's detection format: (3, S, S)
    float RGB in [0, 1] and {boxes (n, 4) float32 xyxy, labels (n,) int64 all 1}."""

    def __init__(
        self,
        photos: Sequence[PersonPhoto],
        config: ViewConfig,
        seed: int,
        *,
        views_per_epoch: int = 0,
    ) -> None:
        if not photos:
            raise ValueError("PeopleViews: no photos")
        self.photos = list(photos)
        self.config = config
        self.seed = seed
        # an epoch may be a random subset of the photos (a new one each epoch): on 2 CPU cores
        # a whole pass takes longer than one session
        self.length = min(views_per_epoch or len(self.photos), len(self.photos))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, epoch, 11]).permutation(len(self.photos))

    def __len__(self) -> int:
        return self.length

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        photo = self.photos[index]
        bgr = cv2.imread(str(photo.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read {photo.path}")
        return bgr, photo.boxes

    def _single(
        self, index: int, size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        image, boxes = self._load(index)
        low, high = np.log(self.config.zoom[0]), np.log(self.config.zoom[1])
        # the zoom is relative to fitting the photo's longer side into the view's 640-px frame
        base = 640.0 / max(image.shape[:2]) * size / 384.0
        scale = base * float(np.exp(rng.uniform(low, high)))
        view, placed, visible = _place(image, boxes, scale, size, rng)
        heights = placed[:, 3] - placed[:, 1]
        keep = (visible >= self.config.min_visible) & (heights >= self.config.min_height)
        return view, placed[keep]

    def view(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The (S, S, 3) BGR uint8 view of item `index` this epoch and its (n, 4) boxes."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        size = self.config.size
        if rng.random() < self.config.mosaic:
            half = size // 2
            image = np.empty((size, size, 3), np.uint8)
            parts = [int(self.order[index]), *rng.integers(0, len(self.photos), 3).tolist()]
            all_boxes = []
            for k, part in enumerate(parts):
                tile, boxes = self._single(int(part), half, rng)
                oy, ox = (k // 2) * half, (k % 2) * half
                image[oy : oy + half, ox : ox + half] = tile
                all_boxes.append(boxes + np.array([ox, oy, ox, oy], np.float32))
            boxes = np.concatenate(all_boxes)
        else:
            image, boxes = self._single(int(self.order[index]), size, rng)
        if rng.random() < self.config.flip:
            image = image[:, ::-1].copy()
            boxes = boxes.copy()
            boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
        return _camera_faults(image, self.config, rng), boxes

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        bgr, boxes = self.view(index)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        tensor = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
        target = {
            "boxes": torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4),
            "labels": torch.ones(len(boxes), dtype=torch.int64),
        }
        return tensor, target
