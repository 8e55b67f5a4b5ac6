"""The worker's tagger in a process of its own, behind the same `Tagger` interface.

The tagger's own Python (fitting frames, decoding boxes, masks, colours, the track gate) is
about a third of its time on busy camera frames. In the worker process it shares one GIL with
Faust's event loop, the sink and the tracking agent, whose Python (records to and from JSON,
Postgres rows) then stalls it: every stage of the tagger ran 30-80% slower in the worker than
alone on the same 2 cores. In a child process it has a GIL of its own; the worker's inference
thread only sends the batch's pixels down a pipe and waits (without the GIL) for the tags.

The child is started with `spawn` (the worker has threads; forking them is unsafe), ignores
SIGINT and SIGTERM (the worker decides when it stops, and a batch in flight is finished), and
ends when the worker closes it or its pipe closes (the worker died). A child that dies in a call
(a crash in native code, the kernel's OOM killer) makes that call raise `TaggerProcessDied`; the
next call starts a new child, so the pipeline's per-image retry dead-letters only the image
that kills it, where a crash in the worker's own process ended the worker.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import signal
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from models.tags import FrameSource, ImageTags, Tagger

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0  # loading the models; a first ONNX export can take minutes
STOP_TIMEOUT_S = 10.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [tagger process]: %(message)s"


class TaggerProcessDied(RuntimeError):
    """The tagger's process ended while it was tagging (or before it was ready)."""


class TaggerProcess:
    """A `Tagger` whose `tag` runs `build()`'s tagger in a child process. `build` must be
    picklable (a module-level function or a functools.partial of one): the child calls it."""

    def __init__(self, build: Callable[[], Tagger], *, log_level: str = "INFO") -> None:
        self._build = build
        self._log_level = log_level
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()  # one call at a time: the pipe carries one exchange
        self._process: Any = None
        self._conn: Connection | None = None
        self._model_version = ""
        self._closed = False
        self._start()

    @property
    def model_version(self) -> str:
        return self._model_version

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def tag(
        self,
        images: Sequence[np.ndarray],
        *,
        catalogue: Sequence[bool] | None = None,
        sources: Sequence[FrameSource | None] | None = None,
    ) -> list[ImageTags]:
        with self._lock:
            if self._closed:
                raise TaggerProcessDied("the tagger process was closed")
            if self._conn is None:
                self._start()
            conn = self._conn
            assert conn is not None
            request = (list(images), None if catalogue is None else list(catalogue),
                       None if sources is None else list(sources))  # fmt: skip
            try:
                conn.send(request)
                status, value = conn.recv()
            except (EOFError, OSError) as exc:
                code = self._reap()
                raise TaggerProcessDied(
                    f"the tagger process ended while tagging {len(images)} images "
                    f"(exit code {code}): {exc!r}"
                ) from None
            if status == "error":
                raise value
            result: list[ImageTags] = value
            return result

    def close(self) -> None:
        """Stop the child: it finishes the call in flight, if any, then exits."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                with contextlib.suppress(OSError):  # already gone
                    self._conn.send(None)
            self._reap()

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve,
            args=(child, self._build, self._log_level),
            name="fashionstream-tagger",
            daemon=True,  # never outlives the worker
        )
        process.start()
        child.close()  # the child's end lives in the child: EOF here when it dies
        self._conn, self._process = parent, process
        try:
            if not parent.poll(START_TIMEOUT_S):
                raise TaggerProcessDied(f"the tagger was not ready in {START_TIMEOUT_S:.0f} s")
            status, value = parent.recv()
        except (EOFError, OSError) as exc:
            code = self._reap()
            raise TaggerProcessDied(
                f"the tagger process ended while loading its models (exit code {code}): {exc!r}"
            ) from None
        except TaggerProcessDied:
            self._reap()
            raise
        if status == "error":
            self._reap()
            raise value
        self._model_version = value
        log.info("tagger process %d ready: model %s", process.pid, value)

    def _reap(self) -> int | None:
        """Forget the child (dead, given up on, or told to stop), killing it if it has not
        ended within STOP_TIMEOUT_S; the next call starts another. Its exit code."""
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            log.warning("the tagger process did not end in %.0f s: killed", STOP_TIMEOUT_S)
            process.kill()
            process.join()
        return process.exitcode


def _serve(conn: Connection, build: Callable[[], Tagger], log_level: str) -> None:
    """The child: build the tagger, then answer one batch at a time until told to stop (None)
    or the worker is gone (EOF)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    try:
        tagger = build()
        conn.send(("ready", tagger.model_version))
    except Exception as exc:
        conn.send(("error", _sendable(exc)))
        return
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        images, catalogue, sources = request
        try:
            tags = tagger.tag(images, catalogue=catalogue, sources=sources)
            reply: tuple[str, Any] = ("ok", tags)
        except Exception as exc:
            reply = ("error", _sendable(exc))
        try:
            conn.send(reply)
        except OSError:  # the worker is gone
            return
        except Exception as exc:  # the answer does not pickle (nothing was written yet)
            conn.send(("error", RuntimeError(f"the tagger's answer cannot be sent: {exc!r}")))


def _sendable(exc: Exception) -> Exception:
    """The exception itself when it survives pickling, else a RuntimeError that names it."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, just made
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
