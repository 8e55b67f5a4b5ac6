"""Every error the API answers is JSON `{"error": CODE, "detail": TEXT}`: a short machine code
and a sentence saying what was wrong. Nothing else ever leaves: validation errors are reworded,
and anything unexpected is logged with its traceback and answered with a generic 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by a route: answered as `http_status` with `{"error": code, "detail": detail}` and
    any `extra` fields."""

    def __init__(self, http_status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(f"{http_status} {code}: {detail}")
        self.http_status = http_status
        self.code = code
        self.detail = detail
        self.extra = extra


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


def error_response(http_status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, detail, **extra), status_code=http_status)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.http_status, exc.code, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_describe(e) for e in exc.errors()]
        return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such endpoint"
        return JSONResponse(
            error_body(code, detail), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "the server failed; the error is logged")


def _describe(error: Any) -> str:
    """One pydantic/FastAPI validation error as `where: message`, without echoing the input
    (which may be megabytes)."""
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    message = str(error.get("msg", "invalid"))
    return f"{where}: {message}" if where else message
