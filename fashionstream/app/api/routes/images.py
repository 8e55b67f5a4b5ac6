"""POST /v1/images (submit a URL to the pipeline) and GET /v1/images/{event_id} (its tags).

A submission is a one-row catalogue feed: the same `ImageRequest` on the same topic with the
same key, so the fetch agent applies the SSRF guard, the limits and the dead letters, and the
event id (feed, item id, URL) makes the same submission one row however often it is sent.
What can be judged without fetching is judged here first (URL syntax, scheme, length, an IP
literal in a refused range) so the caller hears about it at once instead of in a dead letter.
What only the fetch can tell arrives later as a dead letter (failures.py): the status URL and a
`?wait` then answer 422 with its reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from fashionstream.app.api.errors import ApiError
from fashionstream.app.api.services import Services, services
from fashionstream.core.errors import DeadLetterReason, FetchError, PipelineError
from fashionstream.core.records import MAX_ID_CHARS, event_id_for_item, normal_event_id
from producers.feed import SkippedRow, submitted_item
from producers.image_feed import DeliveryFailedError
from sinks.errors import PostgresUnavailableError
from sinks.lookups import StoredImage, image_by_event
from stream_processors.ssrf import AddressPolicy, validate_url

router = APIRouter(tags=["images"])

DEFAULT_FEED = "api"  # the source of submissions that name no feed
MAX_URL_CHARS = 4096
WAIT_POLL_S = 0.25

AttributeValue = str | int | float | bool | None


class ImageSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=MAX_URL_CHARS, description="http(s) image URL")
    id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="the item id (a SKU); default: derived from the URL, so one URL is one item",
    )
    feed: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_ID_CHARS,
        description=f"the feed the item belongs to (default {DEFAULT_FEED!r})",
    )
    attributes: dict[str, AttributeValue] | None = Field(
        None,
        description="catalogue columns kept with the item (title, brand, price, link, ...)",
    )


class Submitted(BaseModel):
    event_id: str
    status: str  # queued | tagged
    status_url: str
    image: dict[str, Any] | None = None


@router.post(
    "/v1/images",
    status_code=202,
    response_model=Submitted,
    responses={
        200: {"model": Submitted, "description": "tagged within ?wait"},
        422: {"description": "invalid input, or the pipeline dead-lettered it within ?wait"},
    },
)
async def submit_image(
    body: ImageSubmission,
    svc: Annotated[Services, Depends(services)],
    wait: Annotated[
        float,
        Query(ge=0, description="seconds to wait for the tagged result (capped by the server)"),
    ] = 0.0,
) -> JSONResponse:
    """Queue an image URL for tagging; 202 with its event id, or 200 with its tags when they
    are written within `wait` seconds."""
    policy = AddressPolicy.from_cidrs(svc.settings.fetch_allow_networks)
    try:
        validate_url(body.url.strip(), policy)
    except FetchError as exc:
        if exc.reason is DeadLetterReason.ADDRESS_REFUSED:
            raise ApiError(400, "refused_address", f"refused address: {exc.detail}") from None
        raise ApiError(422, exc.reason.value, exc.detail) from None
    item = submitted_item(body.url, body.id, body.attributes)
    if isinstance(item, SkippedRow):
        raise ApiError(422, item.reason.value, item.detail)
    feed = body.feed or DEFAULT_FEED
    # a new submission of an image that failed before starts over
    svc.failures.forget(event_id_for_item(feed, item.item_id, item.image_url))
    try:
        request = await svc.blocking(svc.submitter.send_one, item, feed)
    except PipelineError as exc:  # over max_message_bytes
        raise ApiError(413, "too_large", exc.detail) from None
    except DeliveryFailedError as exc:
        raise ApiError(503, "broker_unavailable", str(exc)) from None
    event_id = request.event_id
    status_url = f"/v1/images/{event_id}"
    deadline = time.monotonic() + min(wait, svc.settings.api_wait_max_s)
    while True:
        stored = await _stored(svc, event_id) if wait > 0 else None
        if stored is not None:
            body_out = Submitted(
                event_id=event_id, status="tagged", status_url=status_url, image=_image(stored)
            )
            return JSONResponse(body_out.model_dump(mode="json"), status_code=200)
        if wait > 0:
            _raise_if_failed(svc, event_id)
        if time.monotonic() + WAIT_POLL_S > deadline:
            break
        await asyncio.sleep(WAIT_POLL_S)
    queued = Submitted(event_id=event_id, status="queued", status_url=status_url)
    return JSONResponse(
        queued.model_dump(mode="json", exclude_none=True),
        status_code=202,
        headers={"Location": status_url},
    )


@router.get("/v1/images/{event_id}")
async def get_image(event_id: str, svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    """The stored tags of one image or frame (its latest write)."""
    stored = await _stored(svc, event_id)
    if stored is None:
        _raise_if_failed(svc, event_id)
        raise ApiError(
            404,
            "not_found",
            f"no tagged image with event id {event_id[:100]!r} (unknown, or not tagged yet)",
        )
    return _image(stored)


def _raise_if_failed(svc: Services, event_id: str) -> None:
    """422 with the dead letter's reason when the pipeline gave up on this submission."""
    failure = svc.failures.get(event_id)
    if failure is not None:
        raise ApiError(
            422,
            failure.reason,
            f"the pipeline could not tag this image ({failure.stage}): {failure.detail}",
            status="failed",
            event_id=normal_event_id(event_id),
        )


async def _stored(svc: Services, event_id: str) -> StoredImage | None:
    try:
        return await svc.query(lambda conn: image_by_event(conn, event_id))
    except PostgresUnavailableError as exc:
        raise ApiError(503, "database_unavailable", str(exc)) from None


def _image(stored: StoredImage) -> dict[str, Any]:
    out = dataclasses.asdict(stored)
    out["garment_count"] = len(stored.garments)
    return out
