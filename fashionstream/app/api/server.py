"""Runs the API under uvicorn until SIGINT/SIGTERM (`fashionstream api`), and in a background
thread for tests and the demo (`ApiServer`)."""

from __future__ import annotations

import threading
import time
from typing import Any

from fashionstream.app.api.app import create_app
from fashionstream.app.api.services import Services
from fashionstream.core.settings import Settings


def uvicorn_server(
    settings: Settings, services: Services | None = None, *, port: int | None = None
) -> Any:
    import uvicorn

    config = uvicorn.Config(
        create_app(settings, services),
        host=settings.api_host,
        port=settings.api_port if port is None else port,
        log_level=settings.log_level.lower(),
        # the app's own logging is configured at the entry point; keep uvicorn's access log
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def serve(settings: Settings) -> int:
    """Blocks until interrupted; uvicorn handles the signals."""
    server = uvicorn_server(settings)
    server.run()
    return 0


class ApiServer:
    """The API on a daemon thread: `with ApiServer(settings, port=...) as api: api.url`."""

    def __init__(self, settings: Settings, *, port: int, services: Services | None = None) -> None:
        self._server = uvicorn_server(settings, services, port=port)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)
        host = settings.api_host
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self, timeout_s: float = 30.0) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the API server stopped while starting (port taken?)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API did not start within {timeout_s} s")
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=timeout_s)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
