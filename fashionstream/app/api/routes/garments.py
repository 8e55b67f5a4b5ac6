"""GET /v1/garments: tagged garments newest first, filtered, keyset-paginated."""

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
from sinks.lookups import MAX_PAGE, GarmentQuery, garments_page

router = APIRouter(tags=["garments"])

Text = Annotated[str | None, Query(min_length=1, max_length=MAX_ID_CHARS)]


@router.get("/v1/garments")
async def list_garments(
    svc: Annotated[Services, Depends(services)],
    category: Annotated[Text, Query(description="detector category, e.g. top, dress")] = None,
    colour: Annotated[Text, Query(description="measured colour or colour-head label")] = None,
    source: Annotated[Text, Query(description="feed name or camera id")] = None,
    since: Annotated[
        dt.datetime | None, Query(description="captured at or after (ISO 8601)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description=PAGE_LIMIT_DOC)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(description=CURSOR_DOC)] = None,
) -> dict[str, Any]:
    """Garments newest capture first; `next_cursor` fetches the next page (null: the last)."""
    query = GarmentQuery(
        category=category,
        colour=colour,
        source=source,
        since=utc_aware(since),
        limit=limit,
        after=page_start(cursor),
    )
    page = await fetch_page(svc, lambda conn: garments_page(conn, query))
    return page_body(page, "garments")
