"""GET /healthz (the broker and Postgres answer; no API key needed) and GET /metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fashionstream.app.api.services import Services, services
from sinks.lookups import ping

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz(svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """200 when Kafka and Postgres both answer, else 503 naming which did not."""
    kafka, postgres = await asyncio.gather(
        svc.kafka_reachable(), _postgres_ok(svc), return_exceptions=True
    )
    checks = {
        "kafka": "ok" if kafka is True else "unreachable",
        "postgres": "ok" if postgres is True else "unreachable",
    }
    failed = [name for name, state in checks.items() if state != "ok"]
    if not failed:
        return JSONResponse({"status": "ok", "checks": checks})
    return JSONResponse(
        {
            "status": "unavailable",
            "checks": checks,
            "error": "unavailable",
            "detail": f"{' and '.join(failed)} not reachable",
        },
        status_code=503,
    )


async def _postgres_ok(svc: Services) -> bool:
    await svc.query(ping)
    return True


@router.get("/metrics", response_class=Response)
async def metrics(svc: Annotated[Services, Depends(services)]) -> Response:
    """Prometheus exposition of this process (requests per route and status, latency, ...)."""
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
