"""Small JPEG thumbnails cut where the pixels still exist (the tagging stage): each person's crop
of a camera frame (the tracker keeps its track's best one for the sighting) and the whole of a
catalogue image. They ride on `fashion.items.v1` so the report can show the garments people wore
without keeping frames. CPU work: call it from a worker thread, never on the event loop."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from models.tags import ImageTags

# A report card shows 96 px wide; 144 px high fits a standing person. Quality 70 keeps a crop at
# about 2-4 KB, so ten people add well under 64 KB (base64 included) to a frame's item record.
MAX_WIDTH = 96
MAX_HEIGHT = 144
QUALITY = 70
MARGIN = 0.08  # of the box's size on each side: a little context around the person
# A catalogue photo is kept whole and larger: the report zooms onto each garment in it (a pair of
# shoes on a full-length photo), which needs the pixels; about 8-12 KB, once per product image.
IMAGE_MAX_WIDTH = 192
IMAGE_MAX_HEIGHT = 288


@dataclass(frozen=True)
class Thumbnails:
    """The thumbnails of one tagged image: per person (by index) and of the whole image."""

    people: tuple[bytes | None, ...] = ()
    image: bytes | None = None


def jpeg_thumbnail(
    rgb: np.ndarray,
    box: tuple[float, float, float, float] | None = None,
    max_size: tuple[int, int] = (MAX_WIDTH, MAX_HEIGHT),
) -> bytes | None:
    """A JPEG of `box` (x1, y1, x2, y2 pixels, widened by MARGIN, clipped to the image) of an
    (h, w, 3) uint8 RGB image, or of the whole image when `box` is None, scaled to fit
    `max_size` (width, height). None when the crop is empty."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"jpeg_thumbnail: expected an (h, w, 3) image, got {rgb.shape}")
    height, width = rgb.shape[:2]
    if box is None:
        x1, y1, x2, y2 = 0, 0, width, height
    else:
        bw, bh = box[2] - box[0], box[3] - box[1]
        x1 = max(0, int(box[0] - MARGIN * bw))
        y1 = max(0, int(box[1] - MARGIN * bh))
        x2 = min(width, round(box[2] + MARGIN * bw))
        y2 = min(height, round(box[3] + MARGIN * bh))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    crop = Image.fromarray(np.ascontiguousarray(rgb[y1:y2, x1:x2]))
    crop.thumbnail(max_size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    crop.save(out, format="JPEG", quality=QUALITY, optimize=True)
    return out.getvalue()


def thumbnails(rgb: np.ndarray, tags: ImageTags, *, whole_image: bool) -> Thumbnails:
    """Each detected person's crop, plus the whole image when `whole_image` (catalogue photos:
    the product is the photo)."""
    return Thumbnails(
        people=tuple(jpeg_thumbnail(rgb, p.box) for p in tags.people),
        image=jpeg_thumbnail(rgb, None, (IMAGE_MAX_WIDTH, IMAGE_MAX_HEIGHT))
        if whole_image
        else None,
    )
