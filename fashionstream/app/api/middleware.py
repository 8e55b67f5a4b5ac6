"""Pure ASGI middleware, outermost first: request metrics, API-key check, request body limit.

Pure ASGI (not BaseHTTPMiddleware) so a body is never buffered by the middleware itself and the
limit holds while it streams in: a declared Content-Length over the limit is refused before any
of it is read, and a chunked body is cut off at the limit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fashionstream.app.api.auth import key_is_valid, needs_key, presented_key
from fashionstream.app.api.errors import error_body
from fashionstream.core.metrics import Metrics

UNMATCHED = "unmatched"  # the route label of paths no route serves (scans add no series)


async def send_json(send: Send, status: int, body: dict[str, Any], **headers: str) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *((k.encode(), v.encode()) for k, v in headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


class MetricsMiddleware:
    """Counts every answered request by route template, method and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = scope.get("method", "")
            self.metrics.api_requests.labels(template, method, str(status)).inc()
            self.metrics.api_request_duration.labels(template, method).observe(
                time.perf_counter() - started
            )


class ApiKeyMiddleware:
    """401 with a JSON body unless the request presents a configured key (see auth.py)."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and needs_key(scope["path"], self.keys):
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            presented = presented_key(headers)
            if not key_is_valid(presented, self.keys):
                detail = "an API key is required" if presented is None else "wrong API key"
                await send_json(
                    send,
                    401,
                    error_body("unauthorized", detail + " (X-API-Key or Authorization: Bearer)"),
                    **{"www-authenticate": "Bearer"},
                )
                return
        await self.app(scope, receive, send)


class BodyTooLargeError(Exception):
    pass


class BodyLimitMiddleware:
    """413 for a request body over `limit_for(path)` bytes."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send, limit)
            return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not refused:
                    # answer now: whatever the app makes of the error below (FastAPI turns a
                    # failed body read into a 400) is dropped by `guarded_send`
                    refused = True
                    await self._refuse(send, limit)
                if refused:
                    raise BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLargeError:
            if not refused:
                raise

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        await send_json(
            send, 413, error_body("too_large", f"the request body is over {limit} bytes")
        )


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
