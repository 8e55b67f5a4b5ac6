"""Fetched bytes -> a safe, upright, bounded JPEG: magic-byte sniffing, the pixel limit checked
from the header before decoding, EXIF orientation, resize, re-encode. CPU work: call it from a
worker thread, never on the event loop."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from fashionstream.core.errors import DeadLetterReason, DecodeError
from fashionstream.core.settings import Settings

# (format name Pillow uses, magic prefix test). Content-Type headers lie; the bytes do not.
_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("JPEG", b"\xff\xd8\xff", 0),
    ("PNG", b"\x89PNG\r\n\x1a\n", 0),
    ("GIF", b"GIF87a", 0),
    ("GIF", b"GIF89a", 0),
    ("BMP", b"BM", 0),
    ("TIFF", b"II*\x00", 0),
    ("TIFF", b"MM\x00*", 0),
)


def sniff_format(data: bytes) -> str | None:
    """The Pillow format name of an image by its magic bytes, or None for anything else."""
    for name, magic, offset in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


@dataclass(frozen=True)
class PreparedImage:
    jpeg: bytes
    width: int  # of the re-encoded image
    height: int
    source_format: str
    source_width: int  # as stored, before EXIF orientation and resize
    source_height: int


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Raises DecodeError(DECOMPRESSION_BOMB) when width x height is over the limit."""
    if width <= 0 or height <= 0:
        raise DecodeError(DeadLetterReason.CORRUPT_IMAGE, f"image claims size {width}x{height}")
    if width * height > max_pixels:
        raise DecodeError(
            DeadLetterReason.DECOMPRESSION_BOMB,
            f"{width}x{height} = {width * height} pixels, over fetch_max_pixels={max_pixels}",
        )


def open_image(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """Open (not decode) an image, with its size checked from the header.

    Raises DecodeError: NOT_AN_IMAGE, DECOMPRESSION_BOMB or CORRUPT_IMAGE.
    """
    fmt = sniff_format(data)
    if fmt is None:
        head = data[:16].hex(" ")
        raise DecodeError(
            DeadLetterReason.NOT_AN_IMAGE, f"no image signature in the first bytes ({head})"
        )
    try:
        with warnings.catch_warnings():
            # Our own limit is checked just below; Pillow's global one is only a backstop.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise DecodeError(DeadLetterReason.DECOMPRESSION_BOMB, str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _failure(f"{fmt} header unreadable", exc) from None
    check_pixels(image.width, image.height, max_pixels)
    return image, fmt


def prepare_image(data: bytes, *, max_pixels: int, max_side: int, quality: int) -> PreparedImage:
    """Bytes of any supported format -> an upright RGB JPEG whose long side is <= max_side.

    Raises DecodeError with NOT_AN_IMAGE, DECOMPRESSION_BOMB, TRUNCATED_IMAGE or CORRUPT_IMAGE.
    """
    image, fmt = open_image(data, max_pixels)
    source_size = image.size
    if fmt == "JPEG" and max(source_size) > max_side:
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the result stays at least the target
        # size: a 6000 px catalogue photo costs a fraction of a full decode.
        scale = max_side / max(source_size)
        image.draft(
            "RGB", (max(1, int(source_size[0] * scale)), max(1, int(source_size[1] * scale)))
        )
    _load(image, fmt)
    upright = ImageOps.exif_transpose(image)
    rgb = _to_rgb(upright)
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=quality)
    return PreparedImage(
        jpeg=out.getvalue(),
        width=rgb.width,
        height=rgb.height,
        source_format=fmt,
        source_width=source_size[0],
        source_height=source_size[1],
    )


def prepare_fetched(data: bytes, settings: Settings) -> PreparedImage:
    """`prepare_image` with the pipeline's limits (FASHIONSTREAM_FETCH_MAX_PIXELS, _IMAGE_MAX_SIDE,
    _JPEG_QUALITY): what the fetch agent makes of a fetched image, and so what an uploaded or
    searched photo must become to be tagged the same way."""
    return prepare_image(
        data,
        max_pixels=settings.fetch_max_pixels,
        max_side=settings.image_max_side,
        quality=settings.jpeg_quality,
    )


def decode_jpeg(data: bytes, max_pixels: int) -> np.ndarray:
    """A frame's JPEG -> RGB uint8 (H, W, 3), the tagger's input. The same header checks as a
    fetched image: frames come from producers we do not control either.

    Raises DecodeError (NOT_AN_IMAGE, DECOMPRESSION_BOMB, TRUNCATED_IMAGE, CORRUPT_IMAGE).
    """
    image, fmt = open_image(data, max_pixels)
    _load(image, fmt)
    return np.asarray(_to_rgb(image))


def check_jpeg(data: bytes, max_pixels: int) -> None:
    """decode_jpeg's checks without keeping the pixels, for a frame that may never be tagged (a
    live frame the worker may skip): the whole stream is read, so a truncated or corrupt JPEG
    raises as in decode_jpeg, but libjpeg scales it down 8x as it decodes (5-10x faster).

    Raises DecodeError (NOT_AN_IMAGE, DECOMPRESSION_BOMB, TRUNCATED_IMAGE, CORRUPT_IMAGE).
    """
    image, fmt = open_image(data, max_pixels)
    if fmt == "JPEG":
        image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
    _load(image, fmt)


def _load(image: Image.Image, fmt: str) -> None:
    """Decode an opened image's pixels; a failure becomes its dead letter's reason."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _failure(f"{fmt} does not decode", exc) from None


def _failure(what: str, exc: BaseException) -> DecodeError:
    """TRUNCATED_IMAGE when the data ends early (Pillow says so in its message), else
    CORRUPT_IMAGE."""
    message = str(exc).lower()
    truncated = "truncated" in message or "premature end" in message
    reason = DeadLetterReason.TRUNCATED_IMAGE if truncated else DeadLetterReason.CORRUPT_IMAGE
    return DecodeError(reason, f"{what}: {exc}")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Catalogue PNGs are often cut-outs: put them on white, as a shop page shows them.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
