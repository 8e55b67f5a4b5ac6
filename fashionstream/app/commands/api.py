"""`fashionstream api`: the HTTP API (submit and query) on FASHIONSTREAM_API_HOST:_PORT."""

from __future__ import annotations

import argparse
import dataclasses

from fashionstream.app.commands import Commands
from fashionstream.core.settings import Settings


def register(commands: Commands) -> None:
    api = commands.add_parser(
        "api",
        help="serve the HTTP API (submit images, query tags); OpenAPI docs at /docs",
        description="Serves POST /v1/images, POST /v1/images:tag, GET /v1/images/{id},"
        " /v1/garments, /v1/sightings, /healthz and /metrics until SIGINT/SIGTERM. Keys:"
        " FASHIONSTREAM_API_KEYS. Interactive docs at /docs.",
    )
    api.add_argument("--host", help="listen address (default FASHIONSTREAM_API_HOST)")
    api.add_argument("--port", type=int, help="port (default FASHIONSTREAM_API_PORT)")
    api.set_defaults(func=_api)


def _api(settings: Settings, args: argparse.Namespace) -> int:
    from fashionstream.app.api.server import serve

    changes = {
        name: value
        for name, value in (("api_host", args.host), ("api_port", args.port))
        if value is not None
    }
    return serve(dataclasses.replace(settings, **changes))
