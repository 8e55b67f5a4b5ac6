"""Dead letters from the agents: the reason, the failed record's reference and its
topic/partition/offset, a log line with the same, and a metric per reason."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fashionstream.errors import PipelineError
from fashionstream.records import DeadLetter, DeadLetterReason, Origin, Topic
from sinks.metrics import Metrics, Stage
from stream_processors.sending import Send

log = logging.getLogger(__name__)


def origin_of(event: Any) -> Origin:
    message = event.message
    return Origin(topic=message.topic, partition=message.partition, offset=message.offset)


def key_of(event: Any) -> str | None:
    key = event.message.key
    if key is None:
        return None
    if isinstance(key, bytes | bytearray):
        return bytes(key).decode("utf-8", errors="replace")
    return str(key)


class DeadLetterer:
    """Builds and sends dead letters. `send` returns the broker-acknowledgement future, which
    the caller awaits before releasing the failed record's offset."""

    def __init__(
        self,
        send: Send,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._send = send
        self._metrics = metrics
        self._clock = clock

    async def send(
        self,
        error: PipelineError,
        event: Any,
        stage: Stage,
        *,
        source_id: str | None = None,
        reference: str | None = None,
    ) -> Awaitable[Any]:
        origin = origin_of(event)
        key = key_of(event)
        letter = DeadLetter(
            reason=error.reason,
            detail=error.detail,
            stage=stage.value,
            failed_at=self._clock(),
            source_id=source_id,
            reference=reference,
            key=key,
            origin=origin,
        )
        log.warning(
            "dead letter %s at %s[%d]@%d (%s): %s",
            error.reason.value,
            origin.topic,
            origin.partition,
            origin.offset,
            reference or key or "-",
            error.detail,
        )
        self._metrics.dead_letters.labels(error.reason, stage).inc()
        self._metrics.messages_out.labels(Topic.DEADLETTER).inc()
        encoded_key = key.encode() if key is not None else None
        return await self._send(Topic.DEADLETTER, encoded_key, letter.to_json(), None)


def unexpected(exc: BaseException, reason: DeadLetterReason) -> PipelineError:
    """An exception no stage anticipated, as a PipelineError for one record. The traceback is
    logged here; the dead letter carries the exception's type and message."""
    log.error("unexpected %s while handling a record", type(exc).__name__, exc_info=exc)
    return PipelineError(reason, f"unexpected {type(exc).__name__}: {exc}")
