"""The API application: `create_app(settings, ...)` wires the routers, the error handlers and the
middleware (metrics, API keys, body limits) around one `Services`.

Adding an endpoint group: a module with a FastAPI `router` (see routes/), then one line in
`ROUTERS` below, or `create_app(..., routers=[...])` for a router built elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline

from fashionstream.app.api.errors import install_error_handlers
from fashionstream.app.api.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    MetricsMiddleware,
)
from fashionstream.app.api.routes import (
    garments,
    health,
    images,
    report,
    sightings,
    similar,
    tag,
)
from fashionstream.app.api.services import Services
from fashionstream.core.metrics import Metrics
from fashionstream.core.settings import Settings

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    images.router,
    tag.router,
    garments.router,
    sightings.router,
    similar.router,
    report.router,
)
# an upload's multipart framing (boundaries, part headers) beyond the image bytes themselves
UPLOAD_OVERHEAD_BYTES = 64 * 1024
UPLOAD_PATHS = frozenset({"/v1/images:tag"})
DOCS_ASSETS = "/docs-assets"


def create_app(
    settings: Settings,
    services: Services | None = None,
    *,
    metrics: Metrics | None = None,
    routers: Iterable[APIRouter] = (),
) -> FastAPI:
    """The API for `settings`. `services` defaults to the real ones (built from settings, with
    `metrics` or a fresh registry); they are closed when the app shuts down."""
    if services is None:
        from prometheus_client import CollectorRegistry

        services = Services.from_settings(settings, metrics or Metrics(CollectorRegistry()))
    built = services

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        built.start()
        try:
            yield
        finally:
            built.close()

    # the docs pages (/docs, /redoc) from the wheel's own Swagger UI and ReDoc files: FastAPI's
    # defaults load them from a CDN, which these machines (and many deployments) cannot reach
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="fashionstream",
        summary="Submit fashion images for tagging and query what the pipeline found.",
        version="1",
        lifespan=lifespan,
    )
    app.state.services = built
    install_error_handlers(app)
    for router in (*ROUTERS, *routers):
        app.include_router(router)

    def body_limit(path: str) -> int:
        if path in UPLOAD_PATHS:
            return settings.fetch_max_bytes + UPLOAD_OVERHEAD_BYTES
        return settings.api_max_body_bytes

    # added innermost first: a request meets metrics, then the key check, then the body limit
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys)
    app.add_middleware(MetricsMiddleware, metrics=built.metrics)
    return app
