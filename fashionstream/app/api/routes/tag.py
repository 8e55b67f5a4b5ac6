"""POST /v1/images:tag: tag one uploaded image now, without Kafka (tests, one-off use).

The same byte and pixel limits and the same decoder as the fetch agent
(`stream_processors.images.prepare_image`), and the same adapter to the wire record as the
tagging agent, so the answer is what the pipeline would store for that image. The model stack is
imported and the tagger loaded on the first call, on the tagger's own thread.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, UploadFile

from fashionstream.app.api.errors import ApiError
from fashionstream.app.api.routes.uploads import no_model_stack, read_upload, undecodable
from fashionstream.app.api.services import Services, services
from fashionstream.core.errors import DecodeError, PipelineError
from fashionstream.core.records import Frame, SourceKind, event_id_for_item
from fashionstream.core.settings import Settings

router = APIRouter(tags=["images"])

UPLOAD_FEED = "api-upload"  # the source id the answer names


@router.post("/v1/images:tag")
async def tag_image(
    file: Annotated[UploadFile, File(description="a JPEG, PNG, GIF, BMP, TIFF or WebP image")],
    svc: Annotated[Services, Depends(services)],
) -> dict[str, Any]:
    """Tag one uploaded image synchronously: its garments, people and attributes."""
    settings = svc.settings
    data = await read_upload(file, settings.fetch_max_bytes)
    received_at = time.time()
    try:
        frame = await svc.blocking(_frame, data, settings, received_at)
    except DecodeError as exc:
        raise undecodable(exc) from None
    try:
        return await svc.tag(lambda tagger: _tag(tagger, frame, settings))
    except ImportError as exc:
        raise no_model_stack(exc) from None
    except PipelineError as exc:
        raise ApiError(500, exc.reason.value, exc.detail) from None


def _frame(data: bytes, settings: Settings, received_at: float) -> Frame:
    """The upload as the fetch agent would pass it on: sniffed, pixel-checked, upright,
    resized, re-encoded. Raises DecodeError."""
    from stream_processors.images import prepare_fetched

    prepared = prepare_fetched(data, settings)
    digest = hashlib.sha256(data).hexdigest()
    item_id = f"sha256-{digest[:32]}"
    return Frame(
        event_id=event_id_for_item(UPLOAD_FEED, item_id, f"upload:{digest}"),
        source_kind=SourceKind.FEED,
        source_id=UPLOAD_FEED,
        captured_at=received_at,
        submitted_at=received_at,
        jpeg=prepared.jpeg,
        item_id=item_id,
    )


def _tag(tagger: Any, frame: Frame, settings: Settings) -> dict[str, Any]:
    from stream_processors.adapters import tagged_image
    from stream_processors.images import decode_jpeg

    started = time.perf_counter()
    image = decode_jpeg(frame.jpeg, settings.fetch_max_pixels)
    (tags,) = tagger.tag([image])
    tagged = tagged_image(frame, tags, {"infer": time.perf_counter() - started})
    record: dict[str, Any] = json.loads(tagged.to_json())
    for wire_only in ("schema", "version", "submitted_at", "end_of_stream", "stream_ref"):
        record.pop(wire_only, None)
    return record
