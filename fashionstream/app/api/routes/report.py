"""GET /v1/report: the popular-items report (fashionstream/app/report) as JSON or one HTML page,
the same report `fashionstream report` writes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from fashionstream.app.api.errors import ApiError
from fashionstream.app.api.services import Services, services
from fashionstream.app.report import build_report, parse_period, render_html
from fashionstream.core.settings import time_zone
from sinks.errors import PostgresUnavailableError

router = APIRouter(tags=["report"])
MAX_SOURCES = 50


@router.get("/v1/report", response_model=None)
async def get_report(
    svc: Annotated[Services, Depends(services)],
    since: Annotated[
        str, Query(max_length=64, description="a duration before `until` (7d, 24h, 2w) or ISO time")
    ] = "7d",
    until: Annotated[str, Query(max_length=64, description="an ISO time, or now")] = "now",
    sources: Annotated[
        str | None, Query(max_length=4096, description="comma-separated camera ids and feeds")
    ] = None,
    format: Annotated[Literal["json", "html"], Query(description="json or html")] = "json",
    tz: Annotated[
        str | None,
        Query(max_length=64, description="IANA time zone of the days (default: the server's)"),
    ] = None,
) -> dict[str, Any] | HTMLResponse:
    """What people on camera wore and what the catalogue feeds hold over a period, with trends
    against the period of the same length before it."""
    timezone = tz or svc.settings.report_timezone
    try:
        zone = time_zone(timezone)
    except ValueError as exc:
        raise ApiError(400, "invalid_timezone", str(exc)) from None
    try:
        start, end = parse_period(since, until, dt.datetime.now(dt.UTC), zone)
    except ValueError as exc:
        raise ApiError(400, "invalid_period", str(exc)) from None
    names = [s.strip() for s in (sources or "").split(",") if s.strip()]
    if len(names) > MAX_SOURCES:
        raise ApiError(400, "too_many_sources", f"at most {MAX_SOURCES} sources per report")
    try:
        closest = svc.similar().report_matches  # stored vectors only: loads no model
        report = await svc.query(
            lambda conn: build_report(
                conn, start, end, names or None, similar=closest, timezone=timezone
            )
        )
    except PostgresUnavailableError as exc:
        raise ApiError(503, "database_unavailable", str(exc)) from None
    if format == "html":
        return HTMLResponse(render_html(report))
    return report.to_json()
