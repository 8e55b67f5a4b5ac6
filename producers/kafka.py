"""The producers' Kafka side: a kafka-python producer built from settings, and delivery tracking.

Every record is sent asynchronously; `Deliveries` counts broker acknowledgements and failures
(callbacks run on kafka-python's sender thread), and `Deliveries.wait` flushes before a producer
reports, so a summary never counts a record the broker has not acknowledged.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fashionstream.core.settings import Settings

log = logging.getLogger(__name__)

# Room for the record's key, headers and batch framing beyond the value itself.
REQUEST_OVERHEAD_BYTES = 64 * 1024


class RecordFuture(Protocol):
    """What kafka-python's `send()` returns (FutureRecordMetadata), as far as we use it."""

    def add_callback(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def add_errback(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


class RecordProducer(Protocol):
    """The slice of `kafka.KafkaProducer` the producers use; tests pass a fake."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> RecordFuture: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


def build_producer(settings: Settings, *, client_id: str) -> RecordProducer:
    """A kafka-python producer for `settings.kafka_bootstrap` that accepts frame-sized records,
    connected on its first send (so a run with nothing to send never needs the broker).

    kafka-python raises KafkaTimeoutError from that first send when the broker cannot be reached.
    """
    return LazyProducer(lambda: _kafka_producer(settings, client_id))


class LazyProducer:
    """Builds the real producer on the first `send`; `flush`/`close` before that do nothing."""

    def __init__(self, build: Callable[[], RecordProducer]) -> None:
        self._build = build
        self._producer: RecordProducer | None = None

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> RecordFuture:
        if self._producer is None:
            self._producer = self._build()
        return self._producer.send(topic, value=value, key=key, headers=headers)

    def flush(self, timeout: float | None = None) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        if self._producer is not None:
            self._producer.close(timeout=timeout)


def _kafka_producer(settings: Settings, client_id: str) -> RecordProducer:
    from kafka import KafkaProducer
    from kafka.record import util as record_util

    if record_util.crc32c_c is None:  # the pure-Python CRC makes produce ~20x slower
        log.warning("crc32c is not installed: kafka-python falls back to a slow pure-Python CRC")
    producer: RecordProducer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        client_id=client_id,
        acks="all",
        # Downstream is idempotent by event id, so a retried duplicate is harmless; idempotent
        # produce needs InitProducerId, which not every Kafka-protocol broker implements.
        enable_idempotence=False,
        retries=5,
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=settings.max_message_bytes + REQUEST_OVERHEAD_BYTES,
        request_timeout_ms=30_000,
        delivery_timeout_ms=120_000,
        max_block_ms=30_000,
    )
    return producer


@dataclass
class Deliveries:
    """Counts broker acknowledgements and failures of records sent asynchronously."""

    delivered: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def track(
        self,
        future: RecordFuture,
        on_delivered: Callable[[], None] | None = None,
        on_failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        def ok(_metadata: object) -> None:
            with self._lock:
                self.delivered += 1
            if on_delivered is not None:
                on_delivered()

        def failed(exc: BaseException) -> None:
            with self._lock:
                self.failed[type(exc).__name__] += 1
            log.error("delivery failed: %r", exc)
            if on_failed is not None:
                on_failed(exc)

        future.add_callback(ok)
        future.add_errback(failed)

    def wait(self, producer: RecordProducer, timeout_s: float) -> None:
        """Flush `producer`: every record tracked so far is acknowledged or failed on return.

        Raises kafka-python's KafkaTimeoutError when the broker did not answer within the timeout.
        """
        producer.flush(timeout=timeout_s)

    @property
    def failed_total(self) -> int:
        with self._lock:
            return sum(self.failed.values())
