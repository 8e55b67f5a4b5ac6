"""Person crops: the window the garment detector sees around one person of a camera frame.

A CCP photo is a one-person crop, so the garment detector is run on each person the person
detector finds, cut out with some context and scaled to one fixed size. Training (the camera
crop views of `augment`), the tagger and `eval detector --person-height` all cut with these
functions, so the detector is trained on the crops it is later given.
"""

from __future__ import annotations

import cv2
import numpy as np

# the crop every person is scaled to: 2:3 like a standing person with context, the person
# about 300 px tall (within the 60-400 px people of the detector's training views)
CROP_WIDTH = 224
CROP_HEIGHT = 336
# context around the person box, as a share of its height, on every side
CROP_MARGIN = 0.08

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels; may run past the frame


def crop_window(
    box: tuple[float, float, float, float],
    margin: float = CROP_MARGIN,
    shift: tuple[float, float] = (0.0, 0.0),
) -> Window:
    """The CROP_WIDTH:CROP_HEIGHT window around a person box with `margin` of its height on
    every side; a person wider than 2:3 (seated, arms out) widens the window instead.
    `shift` moves the centre by that share of the box's width/height (training jitter)."""
    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    height = max(bh * (1 + 2 * margin), (bw + 2 * margin * bh) * CROP_HEIGHT / CROP_WIDTH)
    width = height * CROP_WIDTH / CROP_HEIGHT
    cx = (x0 + x1) / 2 + shift[0] * bw
    cy = (y0 + y1) / 2 + shift[1] * bh
    left, top = round(cx - width / 2), round(cy - height / 2)
    return left, top, left + max(1, round(width)), top + max(1, round(height))


def cut(image: np.ndarray, window: Window) -> np.ndarray:
    """The window of an RGB image scaled to CROP_WIDTH x CROP_HEIGHT; outside the frame the
    edge pixels repeat (a black band would be a border no camera frame has)."""
    x0, y0, x1, y1 = window
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    part = image[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    scale = CROP_HEIGHT / part.shape[0]
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(part, (CROP_WIDTH, CROP_HEIGHT), interpolation=interpolation)


def cut_masks(masks: np.ndarray, window: Window) -> np.ndarray:
    """(n, H, W) bool masks -> (n, CROP_HEIGHT, CROP_WIDTH) bool of the window (False outside
    the frame), nearest neighbour."""
    x0, y0, x1, y1 = window
    n, h, w = masks.shape
    out = np.zeros((n, y1 - y0, x1 - x0), bool)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if fx1 > fx0 and fy1 > fy0:
        out[:, fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] = masks[:, fy0:fy1, fx0:fx1]
    resized = np.zeros((n, CROP_HEIGHT, CROP_WIDTH), bool)
    for i in range(n):
        resized[i] = (
            cv2.resize(
                out[i].view(np.uint8), (CROP_WIDTH, CROP_HEIGHT), interpolation=cv2.INTER_NEAREST
            )
            > 0
        )
    return resized


def crop_scale(window: Window) -> float:
    """Crop pixels per frame pixel."""
    return CROP_HEIGHT / (window[3] - window[1])


def boxes_to_frame(boxes: np.ndarray, window: Window) -> np.ndarray:
    """(n, 4) xyxy boxes in crop pixels -> frame pixels."""
    scale = crop_scale(window)
    out = boxes.astype(np.float32) / scale
    out[:, 0::2] += window[0]
    out[:, 1::2] += window[1]
    return out


def mask_to_frame(mask: np.ndarray, window: Window, frame_shape: tuple[int, int]) -> np.ndarray:
    """A (CROP_HEIGHT, CROP_WIDTH) bool mask -> the frame's (H, W) bool mask (the part of the
    window inside the frame)."""
    x0, y0, x1, y1 = window
    h, w = frame_shape
    out = np.zeros((h, w), bool)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if fx1 <= fx0 or fy1 <= fy0:
        return out
    size = (x1 - x0, y1 - y0)
    scaled = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) >= 0.5
    out[fy0:fy1, fx0:fx1] = scaled[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    return out
