"""The mask-aware garment crop: what the attribute classifier sees, identical in training and at
inference, and the catalogue product mask (the non-white pixels of a studio photo).

Crop rule (`crop_canvas`, `prepare_crop`):
1. region = the box (or the mask's bounding box when only a mask is given, or the whole image),
   grown by `BOX_PAD` of its width/height on every side and clipped to the image;
2. the region is scaled, aspect kept, so its long side is `size`, and centred on a square of
   `FILL` grey (letterbox);
3. with a mask, every pixel outside the mask is set to `FILL` (`prepare_crop`), so the garment
   is classified on its own pixels, not its neighbour's.
`FILL` is 0 after the network's [-1, 1] normalisation.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

FILL: tuple[int, int, int] = (128, 128, 128)
BOX_PAD = 0.1
# A studio background pixel: every channel at least this bright.
WHITE_LEVEL = 235

Box = tuple[float, float, float, float]


def check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image: empty, shape {image.shape}")


def check_mask(mask: np.ndarray, image: np.ndarray) -> None:
    if mask.shape != image.shape[:2] or mask.dtype != np.bool_:
        raise ValueError(
            f"mask: expected {image.shape[:2]} bool like the image, got {mask.shape} {mask.dtype}"
        )


def crop_region(
    image_shape: tuple[int, ...], box: Box | None, mask: np.ndarray | None
) -> tuple[int, int, int, int]:
    """Integer (x1, y1, x2, y2) of the padded, clipped crop region (step 1 of the rule)."""
    h, w = image_shape[:2]
    if box is None and mask is not None:
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            raise ValueError("mask is empty: nothing to crop")
        box = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
    if box is None:
        return 0, 0, w, h
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ValueError(f"box: expected 4 finite numbers x1, y1, x2, y2, got {box}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box: expected x2 > x1 and y2 > y1, got {box}")
    pad_x, pad_y = BOX_PAD * (x2 - x1), BOX_PAD * (y2 - y1)
    left = max(0, math.floor(x1 - pad_x))
    top = max(0, math.floor(y1 - pad_y))
    right = min(w, math.ceil(x2 + pad_x))
    bottom = min(h, math.ceil(y2 + pad_y))
    if right <= left or bottom <= top:
        raise ValueError(f"box {box} lies outside the {w}x{h} image")
    return left, top, right, bottom


def crop_canvas(
    image: np.ndarray, box: Box | None, mask: np.ndarray | None, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-2 of the crop rule: the letterboxed (size, size, 3) uint8 crop, and its (size,
    size) bool foreground (the mask's pixels; without a mask, the whole photo area)."""
    check_image(image)
    if mask is not None:
        check_mask(mask, image)
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    left, top, right, bottom = crop_region(image.shape, box, mask)
    crop = image[top:bottom, left:right]
    ch, cw = crop.shape[:2]
    scale = size / max(ch, cw)
    nh, nw = max(1, round(ch * scale)), max(1, round(cw * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (nw, nh), interpolation=interpolation)
    oy, ox = (size - nh) // 2, (size - nw) // 2
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = FILL
    canvas[oy : oy + nh, ox : ox + nw] = resized
    foreground = np.zeros((size, size), bool)
    if mask is None:
        foreground[oy : oy + nh, ox : ox + nw] = True
    else:
        inside = mask[top:bottom, left:right]
        if not inside.any():
            raise ValueError("mask has no pixel inside the box")
        small = cv2.resize(inside.astype(np.uint8) * 255, (nw, nh), interpolation=cv2.INTER_AREA)
        foreground[oy : oy + nh, ox : ox + nw] = small >= 128
    return canvas, foreground


def apply_foreground(canvas: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Step 3: every pixel outside the foreground set to FILL (a new array)."""
    out = canvas.copy()
    out[~foreground] = FILL
    return out


def prepare_crop(
    image: np.ndarray, box: Box | None, mask: np.ndarray | None, size: int
) -> np.ndarray:
    """The whole crop rule: (size, size, 3) uint8, ready for normalisation."""
    canvas, foreground = crop_canvas(image, box, mask, size)
    return apply_foreground(canvas, foreground) if mask is not None else canvas


def product_mask(image: np.ndarray, white_level: int = WHITE_LEVEL) -> np.ndarray:
    """The product in a studio photo: every pixel except the near-white background connected
    to the photo's border (so white garments inside an outline stay in). (H, W) bool."""
    check_image(image)
    near_white: np.ndarray = np.asarray((image >= white_level).all(axis=2), dtype=np.uint8)
    count, labels = cv2.connectedComponents(near_white, connectivity=4)
    border = np.unique(
        np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    )  # fmt: skip
    background = (
        np.isin(labels, border[border > 0]) if count > 1 else np.zeros_like(near_white, bool)
    )
    return ~background
