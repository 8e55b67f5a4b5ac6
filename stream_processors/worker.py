"""`fashionstream worker`: runs the Pipeline's Faust app until SIGINT/SIGTERM, with /metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from fashionstream.core.metrics import Metrics, serve_metrics
from fashionstream.core.settings import Settings
from models.tags import Tagger
from stream_processors.app import Pipeline, SinkFactory
from stream_processors.sinking import ItemSink

log = logging.getLogger(__name__)


# exit status when the shutdown bound was reached and the process was ended without finishing
# its stop (nothing is lost: what was not durable was never committed)
EXIT_SHUTDOWN_BOUND = 3
# a plug-in model spec (FASHIONSTREAM_PLUGINS) that does not fit its graph: nothing started
EXIT_BAD_PLUGIN = 2


class BoundedStopWorker(faust.Worker):
    """faust.Worker whose stop on SIGTERM/SIGINT takes at most `shutdown_timeout_s`.

    On the signal the pipeline withdraws what it holds (nothing more is committed; acks.py), so
    Faust's own stop does not wait for batches that cannot become durable now (a Postgres
    outage being retried, a slow fetch). A watchdog ends the process if the stop still takes
    longer than the bound -- a last resort, e.g. for a thread blocked in a C call.
    """

    def __init__(self, *args: Any, pipeline: Pipeline, bound_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pipeline = pipeline
        self._bound_s = bound_s
        self._watchdog: threading.Timer | None = None

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if self._watchdog is None:
            log.info("%s: stopping within %.0f s", getattr(signum, "name", signum), self._bound_s)
            self._pipeline.begin_shutdown()
            self._watchdog = threading.Timer(
                self._bound_s, _shutdown_bound_reached, (self._bound_s,)
            )
            self._watchdog.daemon = True
            self._watchdog.start()
        super()._schedule_shutdown(signum)


def _shutdown_bound_reached(bound_s: float) -> None:
    log.error("the worker did not stop within %.0f s; exiting now", bound_s)
    logging.shutdown()
    os._exit(EXIT_SHUTDOWN_BOUND)  # the stop hangs: only ending the process bounds it


def run_worker(
    settings: Settings,
    *,
    tagger: Tagger | Callable[[], Tagger] | None = None,
    sink: ItemSink | SinkFactory | None = None,
) -> int:
    """Blocks until the worker stops; returns the process exit status (0 after a clean stop)."""
    # Faust creates its data dir (settings.state_dir / "faust") without parents
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if tagger is None and settings.plugins:
        from models.onnx_models.spec import SpecError
        from models.runtime.plugins import check_plugins

        try:  # before the worker joins its group: a plug-in that does not fit takes nothing
            check_plugins(settings.plugins)
        except SpecError as exc:
            log.error("%s", exc)
            return EXIT_BAD_PLUGIN
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    server = serve_metrics(registry, settings.metrics_host, settings.worker_metrics_port)
    if server is not None:
        log.info("worker metrics on %s", server.url)
    pipeline = Pipeline.from_settings(settings, metrics=metrics, tagger=tagger, sink=sink)
    worker = BoundedStopWorker(
        pipeline.app,
        pipeline=pipeline,
        bound_s=settings.shutdown_timeout_s,
        loglevel=settings.log_level,
        # keep the process's logging as the CLI configured it; Faust would reconfigure it
        override_logging=False,
        redirect_stdouts=False,
    )
    pipeline.put_inference_first()  # before Faust starts its threads: they inherit it
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except asyncio.CancelledError:
        # mode re-raises what ended the loop after a crash: the crash reason is logged below
        if not pipeline.app.crashed:
            raise
        code = 1
    finally:
        pipeline.close()
        if server is not None:
            server.close()
    if pipeline.app.crashed:
        log.error("worker stopped after a crash: %r", pipeline.app.crash_reason)
        code = code or 1
    return code
