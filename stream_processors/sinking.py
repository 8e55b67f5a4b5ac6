"""The sink agent: `fashion.items.v1` -> Postgres, batched, idempotent, acknowledged after commit.

Each batch (`take_events(sink_batch_size, within=sink_batch_within_s)`) is added to the sink and
committed through the stage's `DurableWriter` (durable.py): in the sink's own worker thread
(psycopg2 blocks), flushed again with exponential backoff up to `sink_retry_max_s` while
Postgres is unavailable, for as long as it takes; its offsets stay uncommitted meanwhile, so
nothing is lost, and the idempotent upsert means nothing is duplicated when it finally commits.
Records Postgres itself refuses are dead-lettered as SINK_REJECTED; the rest of the batch is
committed. The sink tells an outage from bad data (sinks/errors.py); should it ever raise
anything else, the batch is written again one record at a time and a record that still fails is
dead-lettered as `internal_error`: no record can stall the partition. A batch whose write was
abandoned because the worker is stopping is left held, for the next worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

from fashionstream.core.errors import BadRecordError, DeadLetterReason, SinkError
from fashionstream.core.metrics import Metrics, Stage
from fashionstream.core.records import TaggedImage, Topic, normal_event_id
from fashionstream.core.settings import Settings
from sinks.errors import RecordsRejectedError, RejectedRecord
from stream_processors.acks import Holds
from stream_processors.deadletters import DeadLetterer, internal_error, unexpected
from stream_processors.durable import DurableWriter, WriteAbandoned

log = logging.getLogger(__name__)


class ItemSink(Protocol):
    """What the agent needs of `sinks.postgres.PostgresSink` (tests inject a fake)."""

    def add(self, tagged: TaggedImage) -> None: ...

    def flush(self) -> int:
        """Commit everything added; raises PostgresUnavailableError (kept, retry) or
        RecordsRejectedError (the rest committed)."""
        ...

    def discard(self) -> None:
        """Forget everything added since the last successful flush."""
        ...

    def close(self) -> None: ...


class SinkStage:
    """Writes batches of tagged images; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        sink: Callable[[], ItemSink],
        dead_letters: DeadLetterer,
        metrics: Metrics,
        sink_executor: Executor,
        consumer: Callable[[], Any],
        holds: Holds | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._sink_factory = sink
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._consumer = consumer
        self._holds = holds or Holds(consumer)
        self._writer = DurableWriter(
            executor=sink_executor,
            holds=self._holds,
            retry_max_s=settings.sink_retry_max_s,
            sleep=sleep,
        )
        self._sink: ItemSink | None = None

    async def run(self, stream: Any) -> None:
        """The agent body."""
        settings = self._settings
        self._sink = await self._writer.call(self._sink_factory)
        try:
            async for events in stream.take_events(
                settings.sink_batch_size, settings.sink_batch_within_s
            ):
                held = self._holds.hold(events)
                self._metrics.messages_in.labels(Topic.ITEMS).inc(len(events))
                try:
                    await self._write_batch(events)
                except WriteAbandoned:
                    continue  # the worker is stopping: the batch stays held (durable.py)
                held.release()
        finally:
            sink, self._sink = self._sink, None
            if sink is not None:
                await self._writer.call(sink.close)

    async def _write_batch(self, events: Sequence[Any]) -> None:
        deliveries: list[Awaitable[Any]] = []
        by_key: dict[tuple[str, str], list[Any]] = {}
        tagged: list[TaggedImage] = []
        for event in events:
            try:
                record = TaggedImage.from_json(event.value)
            except BadRecordError as exc:
                deliveries.append(await self._dead_letters.send(exc, event, Stage.SINK))
                continue
            except Exception as exc:
                error = unexpected(exc, DeadLetterReason.BAD_RECORD)
                deliveries.append(await self._dead_letters.send(error, event, Stage.SINK))
                continue
            tagged.append(record)
            key = (normal_event_id(record.event_id), record.model_version)
            by_key.setdefault(key, []).append(event)
        if tagged:
            for rejected in await self._write_isolated(tagged):
                record = rejected.tagged
                error = SinkError(rejected.reason, rejected.detail)
                key = (normal_event_id(record.event_id), record.model_version)
                for event in by_key.get(key, []):
                    deliveries.append(
                        await self._dead_letters.send(
                            error,
                            event,
                            Stage.SINK,
                            source_id=record.source_id,
                            reference=record.image_url
                            or f"{record.source_id}#{record.frame_number}",
                        )
                    )
        await asyncio.gather(*deliveries)

    async def _write_isolated(self, batch: Sequence[TaggedImage]) -> list[RejectedRecord]:
        """`_flush_until_committed`, with a last resort: when the sink raises what it should
        not (neither an outage nor rejected records), each record is written alone and one
        that still fails is rejected as `internal_error`."""
        try:
            return await self._flush_until_committed(batch)
        except WriteAbandoned:
            sink = self._sink
            if sink is not None:
                await self._writer.call(sink.discard)
            raise
        except Exception as exc:
            sink = self._sink
            if sink is None:
                raise
            await self._writer.call(sink.discard)
            if len(batch) == 1:
                error = internal_error(exc)
                return [RejectedRecord(batch[0], error.detail, DeadLetterReason.INTERNAL_ERROR)]
            log.error("a sink batch of %d failed; writing it one by one", len(batch))
            rejected: list[RejectedRecord] = []
            for record in batch:
                rejected.extend(await self._write_isolated([record]))
            return rejected

    async def _flush_until_committed(self, batch: Sequence[TaggedImage]) -> list[RejectedRecord]:
        """Add + flush in the sink thread, through outages (durable.py). Returns the records
        Postgres rejected (everything else is committed on return)."""
        sink = self._sink
        if sink is None:
            raise RuntimeError("sink agent is not running")

        def add_all() -> None:
            for record in batch:
                sink.add(record)

        await self._writer.call(add_all)
        try:
            await self._writer.commit(sink.flush, holding=f"{len(batch)} records")
        except RecordsRejectedError as exc:
            return list(exc.rejected)
        return []
