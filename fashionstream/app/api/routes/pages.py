"""What the paged listings share: the cursor parameter and the page body."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fashionstream.app.api.cursor import InvalidCursorError, decode_cursor, encode_cursor
from fashionstream.app.api.errors import ApiError
from fashionstream.app.api.services import Services
from sinks.errors import PostgresUnavailableError
from sinks.lookups import MAX_PAGE, Page, PageKey

DEFAULT_PAGE = 50
PAGE_LIMIT_DOC = f"rows per page, 1..{MAX_PAGE}"
CURSOR_DOC = "next_cursor of the previous page; absent for the first page"


def page_start(cursor: str | None) -> PageKey | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor)
    except InvalidCursorError as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None


def page_body(page: Page, name: str) -> dict[str, Any]:
    next_cursor = None if page.next_key is None else encode_cursor(page.next_key)
    return {name: page.rows, "count": len(page.rows), "next_cursor": next_cursor}


async def fetch_page(svc: Services, query: Any) -> Page:
    try:
        page: Page = await svc.query(query)
    except PostgresUnavailableError as exc:
        raise ApiError(503, "database_unavailable", str(exc)) from None
    return page


def utc_aware(when: dt.datetime | None) -> dt.datetime | None:
    """A time without a zone is UTC (the database's times are all zoned)."""
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=dt.UTC)
