"""A kafka-python producer stand-in for producer tests: records sends and acknowledges (or
fails) them on `flush` from another thread, as kafka-python's sender thread does."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class FakeFuture:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], None]] = []
        self.errbacks: list[Callable[[BaseException], None]] = []

    def add_callback(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FakeFuture:
        self.callbacks.append(fn)
        return self

    def add_errback(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FakeFuture:
        self.errbacks.append(fn)
        return self


class FakeProducer:
    """Records sends; `flush` acknowledges them from another thread (as kafka-python's sender
    thread does), failing those whose key is in `fail_keys`."""

    def __init__(self, fail_keys: frozenset[bytes] = frozenset()) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self._pending: list[tuple[bytes | None, FakeFuture]] = []
        self.fail_keys = fail_keys
        self.flushed = 0

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Any = None,
    ) -> FakeFuture:
        future = FakeFuture()
        self.sent.append((topic, key, value, headers))
        self._pending.append((key, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        pending, self._pending = self._pending, []

        def deliver() -> None:
            for key, future in pending:
                if key in self.fail_keys:
                    for errback in future.errbacks:
                        errback(RuntimeError("broker said no"))
                else:
                    for callback in future.callbacks:
                        callback(object())

        thread = threading.Thread(target=deliver)
        thread.start()
        thread.join()
        self.flushed += 1

    def close(self, timeout: float | None = None) -> None:
        pass
