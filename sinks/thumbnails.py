"""Rows of the thumbnail tables (infra/migrations/0004): a JPEG and its size, read from the JPEG's
header (Pillow reads only the header for `.size`)."""

from __future__ import annotations

import io
import logging

import psycopg2
from PIL import Image, UnidentifiedImageError

UPSERT_SIGHTING_THUMBNAILS = """
INSERT INTO sighting_thumbnails (sighting_pk, jpeg, width, height) VALUES %s
ON CONFLICT (sighting_pk) DO UPDATE SET
    jpeg = EXCLUDED.jpeg, width = EXCLUDED.width, height = EXCLUDED.height
"""
UPSERT_IMAGE_THUMBNAILS = """
INSERT INTO image_thumbnails (image_id, jpeg, width, height) VALUES %s
ON CONFLICT (image_id) DO UPDATE SET
    jpeg = EXCLUDED.jpeg, width = EXCLUDED.width, height = EXCLUDED.height
"""
MAX_BYTES = 65536  # the tables' CHECK

log = logging.getLogger(__name__)


def thumbnail_row(pk: int, jpeg: bytes) -> tuple[int, object, int, int] | None:
    """(pk, bytes, width, height), or None for a thumbnail that is not a readable JPEG or is
    over MAX_BYTES: a bad picture never costs its sighting or image (it is logged)."""
    if len(jpeg) > MAX_BYTES:
        log.warning("thumbnail of row %d skipped: %d bytes, over %d", pk, len(jpeg), MAX_BYTES)
        return None
    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            if image.format != "JPEG":
                raise UnidentifiedImageError(f"a {image.format} image, not a JPEG")
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        log.warning("thumbnail of row %d skipped: not a readable JPEG (%s)", pk, exc)
        return None
    return (pk, psycopg2.Binary(jpeg), width, height)


__all__ = [
    "MAX_BYTES",
    "UPSERT_IMAGE_THUMBNAILS",
    "UPSERT_SIGHTING_THUMBNAILS",
    "thumbnail_row",
]
