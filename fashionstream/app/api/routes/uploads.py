"""What the routes that take a photo share (POST /v1/images:tag, POST /v1/similar): the upload's
size limit, and one answer for a photo that does not decode and for a missing model stack."""

from __future__ import annotations

from fastapi import UploadFile

from fashionstream.app.api.errors import ApiError
from fashionstream.core.errors import DeadLetterReason, DecodeError


async def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """The uploaded bytes; 413 over `max_bytes` (the fetch agent's limit), 422 when empty."""
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(413, "too_large", f"the image is over fetch_max_bytes={max_bytes}")
    if not data:
        raise ApiError(422, "not_an_image", "the uploaded file is empty")
    return data


def undecodable(exc: DecodeError) -> ApiError:
    """413 for a decompression bomb (too many pixels), else 422 named by the dead-letter reason
    the pipeline would give the same bytes."""
    if exc.reason is DeadLetterReason.DECOMPRESSION_BOMB:
        return ApiError(413, "too_large", exc.detail)
    return ApiError(422, exc.reason.value, exc.detail)


def no_model_stack(exc: ImportError) -> ApiError:
    """An API-only install (no torch) asked to tag: 503 with the install that fixes it."""
    return ApiError(
        503,
        "tagger_unavailable",
        f"the model stack is not installed ({exc.name}): pip install 'fashionstream[all]'",
    )
