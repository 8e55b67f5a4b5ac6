"""Dead letters from the agents: the reason, the failed record's reference and its
topic/partition/offset, a log line with the same, and a metric per reason.

A dead letter always fits: its free text is bounded by `DeadLetter` itself (truncated with a
marker and a hash of the original), and its size is checked before it is sent. A record that
still cannot be dead-lettered (refused as too large, not encodable) is logged, counted in
`fashionstream_dead_letters_failed_total` and skipped: its partition moves on. A broker that is
gone is not the record's fault: that failure propagates and stops the worker, and the record is
read again by the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from fashionstream.core.errors import DeadLetterReason, PipelineError
from fashionstream.core.metrics import Metrics, Stage
from fashionstream.core.records import DEAD_LETTER_ID_CHARS, DeadLetter, Origin, Topic
from stream_processors.sending import OversizeMessageError, Send

log = logging.getLogger(__name__)

# what a producer or broker raises for a record it will never take, however often it is sent
RECORD_REFUSED: tuple[type[BaseException], ...] = (
    OversizeMessageError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    UnicodeError,
    ValueError,
    TypeError,
)


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
    """Builds and sends dead letters. `send` returns the broker-acknowledgement awaitable, which
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
        try:
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
                letter.reference or letter.key or "-",
                letter.detail,
            )
            encoded_key, value = letter.to_kafka()
            delivery = await self._send(Topic.DEADLETTER, encoded_key, value, None)
        except RECORD_REFUSED as exc:
            return self._undeliverable(exc, origin, stage)
        self._metrics.dead_letters.labels(error.reason, stage).inc()
        self._metrics.messages_out.labels(Topic.DEADLETTER).inc()
        return self._delivered(delivery, origin, stage)

    async def _delivered(self, delivery: Awaitable[Any], origin: Origin, stage: Stage) -> Any:
        try:
            return await delivery
        except RECORD_REFUSED as exc:  # the broker refused this letter; other errors propagate
            return await self._undeliverable(exc, origin, stage)

    def _undeliverable(self, exc: BaseException, origin: Origin, stage: Stage) -> Awaitable[None]:
        log.error(
            "record at %s[%d]@%d cannot be dead-lettered (%s: %s); skipped",
            origin.topic,
            origin.partition,
            origin.offset,
            type(exc).__name__,
            str(exc)[:DEAD_LETTER_ID_CHARS],
        )
        self._metrics.dead_letters_failed.labels(stage).inc()
        return _done()


async def _done() -> None:
    return None


def unexpected(exc: BaseException, reason: DeadLetterReason) -> PipelineError:
    """An exception no stage anticipated, as a PipelineError for one record. The traceback is
    logged here; the dead letter carries the exception's type and message."""
    log.error("unexpected %s while handling a record", type(exc).__name__, exc_info=exc)
    return PipelineError(reason, f"unexpected {type(exc).__name__}: {exc}")


def internal_error(exc: BaseException) -> PipelineError:
    """The last-resort verdict on one record whose handling raised what nobody anticipated:
    reason `internal_error`, the exception's type in the detail (and the traceback in the log)."""
    return unexpected(exc, DeadLetterReason.INTERNAL_ERROR)
