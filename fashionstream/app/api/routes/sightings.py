"""GET /v1/sightings: people seen by cameras, newest first, keyset-paginated."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from fashionstream.app.api.routes.pages import (
    CURSOR_DOC,
    DEFAULT_PAGE,
    PAGE_LIMIT_DOC,
    fetch_page,
    page_body,
    page_start,
    utc_aware,
)
from fashionstream.app.api.services import Services, services
from fashionstream.core.records import MAX_ID_CHARS
from sinks.lookups import MAX_PAGE, SightingQuery, sightings_page

router = APIRouter(tags=["sightings"])


@router.get("/v1/sightings")
async def list_sightings(
    svc: Annotated[Services, Depends(services)],
    camera: Annotated[
        str | None, Query(min_length=1, max_length=MAX_ID_CHARS, description="camera id")
    ] = None,
    since: Annotated[
        dt.datetime | None, Query(description="first seen at or after (ISO 8601)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description=PAGE_LIMIT_DOC)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(description=CURSOR_DOC)] = None,
) -> dict[str, Any]:
    """Sightings (one per person a camera tracked) with the garments voted over each."""
    query = SightingQuery(
        camera=camera, since=utc_aware(since), limit=limit, after=page_start(cursor)
    )
    page = await fetch_page(svc, lambda conn: sightings_page(conn, query))
    return page_body(page, "sightings")
