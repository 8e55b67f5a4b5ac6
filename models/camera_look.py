"""What a camera does to a small person: the person shrunk to a few dozen pixels, blurred,
compressed, noisy, dim or against the light, colour-cast, then scaled back up by whoever crops
them. Used to train the garment detector on person crops and to calibrate the attribute
classifier's confidence on crops like those."""

from __future__ import annotations

import cv2
import numpy as np


def degrade(
    image: np.ndarray,
    subject_height: float,
    rng: np.random.Generator,
    *,
    heights: tuple[float, float] = (30.0, 150.0),
    jpeg: tuple[int, int] = (20, 70),
) -> np.ndarray:
    """A sharp image whose subject is `subject_height` px tall -> as if that subject had been
    `heights` px tall (drawn uniformly) in a compressed camera frame, scaled back up to this
    size."""
    h, w = image.shape[:2]
    target = rng.uniform(*heights)
    scale = min(1.0, target / max(subject_height, 1.0))
    small = (max(4, round(w * scale)), max(4, round(h * scale)))
    out = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    if rng.random() < 0.3:  # motion blur at the camera's resolution
        length = int(rng.integers(2, 5)) * 2 + 1
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1.0 / length
        angle = float(rng.uniform(0, 180))
        rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1.0)
        rotated = cv2.warpAffine(kernel, rotation, (length, length))
        out = cv2.filter2D(out, -1, (rotated / max(float(rotated.sum()), 1e-6)).astype(np.float32))
    pixels = out.astype(np.float32)
    light = rng.random()
    if light < 0.25:  # dim: darker, flatter, a gamma lift
        pixels = 255.0 * (pixels / 255.0 * rng.uniform(0.25, 0.6)) ** rng.uniform(0.8, 1.0)
    elif light < 0.4:  # against the light: the person dark, the background bright
        pixels = pixels * rng.uniform(0.3, 0.6) + rng.uniform(40, 110)
    if rng.random() < 0.5:  # white balance off (sodium lamps, shop lighting)
        pixels *= rng.uniform(0.8, 1.2, 3).astype(np.float32)
    if rng.random() < 0.6:  # sensor noise
        pixels += np.asarray(rng.normal(0, rng.uniform(2, 10), pixels.shape), np.float32)
    out = np.clip(pixels, 0, 255).astype(np.uint8)
    quality = int(rng.integers(jpeg[0], jpeg[1] + 1))
    ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if ok else None
    if decoded is not None:
        out = decoded
    interpolation = cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR
    out = cv2.resize(out, (w, h), interpolation=interpolation)
    if rng.random() < 0.3:  # out of focus
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    return np.ascontiguousarray(out)
