"""The fetch agent: `fashion.images.v1` (ImageRequest) -> `fashion.frames.v1` (Frame JPEG).

Fair fetching: up to `fetch_concurrency` requests are fetched at once, each in its own slot; a
slow host occupies one slot for as long as it takes (at most `fetch_total_timeout_s`), while the
other slots go on with the requests behind it. Decoding and re-encoding run in one worker thread.
A request is released (its offset made committable, see acks.py) once what it produced -- a
frame or a dead letter -- is acknowledged by the broker, and only after every earlier request of
its partition was released, so offsets are still committed in order.

Every request ends as a frame or a dead letter: anticipated failures carry their reason, and a
last-resort handler turns anything else into `internal_error` with the exception's type.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from fashionstream.core.errors import BadRecordError, DeadLetterReason, DecodeError, PipelineError
from fashionstream.core.metrics import Metrics, Stage
from fashionstream.core.records import Frame, ImageRequest, SourceKind, Topic
from fashionstream.core.settings import Settings
from stream_processors.acks import HeldBatch, Holds
from stream_processors.deadletters import DeadLetterer, internal_error, unexpected
from stream_processors.fetch import ImageFetcher
from stream_processors.images import PreparedImage, prepare_fetched
from stream_processors.sending import Send, message_size

log = logging.getLogger(__name__)

Slot = tuple[HeldBatch, "asyncio.Task[None]"]
# Requests finished but not yet releasable (an earlier one of their partition is still being
# fetched) are held in memory with their values: at most this many per fetch slot, then the
# agent waits for the slow head before it takes more.
UNRELEASED_PER_SLOT = 16


class FetchStage:
    """Consumes image requests, a bounded number at once; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        fetcher_factory: Callable[[], ImageFetcher],
        send: Send,
        dead_letters: DeadLetterer,
        metrics: Metrics,
        image_executor: Executor,
        consumer: Callable[[], Any],
        holds: Holds | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._settings = settings
        self._fetcher_factory = fetcher_factory
        self._send = send
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._executor = image_executor
        self._consumer = consumer
        self._holds = holds or Holds(consumer)
        self._on_failure = on_failure
        self._fetcher: ImageFetcher | None = None
        # per partition, the requests not yet released, in offset order
        self._unreleased: dict[tuple[str, int], collections.deque[Slot]] = {}
        self._failure: BaseException | None = None
        self._stopping = False
        self._released = asyncio.Event()  # set whenever a request is released

    async def run(self, stream: Any) -> None:
        """The agent body."""
        self._fetcher = self._fetcher_factory()
        concurrency = max(1, self._settings.fetch_concurrency)
        slots = asyncio.Semaphore(concurrency)
        self._released = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for event in stream.events():
                if self._failure is not None:
                    raise self._failure
                while self._unreleased_count() >= UNRELEASED_PER_SLOT * concurrency:
                    self._released.clear()
                    await self._released.wait()
                held = self._holds.hold([event])
                self._metrics.messages_in.labels(Topic.IMAGES).inc()
                await slots.acquire()
                task = asyncio.create_task(self._one(event))
                tasks.add(task)
                partition = (str(event.message.topic), int(event.message.partition))
                self._unreleased.setdefault(partition, collections.deque()).append((held, task))

                def done(task: asyncio.Task[None], partition: tuple[str, int] = partition) -> None:
                    slots.release()
                    tasks.discard(task)
                    self._release_ready(partition)

                task.add_done_callback(done)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            self._stopping = True
            for task in tasks:
                task.cancel()  # stopping: unreleased offsets are simply read again
            fetcher, self._fetcher = self._fetcher, None
            if fetcher is not None:
                await fetcher.close()

    def _unreleased_count(self) -> int:
        return sum(len(queue) for queue in self._unreleased.values())

    async def _one(self, event: Any) -> None:
        delivery = await self._handle(event)
        await delivery  # the frame or dead letter acknowledged by the broker

    def _release_ready(self, partition: tuple[str, int]) -> None:
        """Release the finished requests at the head of `partition`'s queue. A request whose
        delivery failed (the broker, not the record) stops the releases and the worker."""
        queue = self._unreleased.get(partition)
        while queue and queue[0][1].done() and self._failure is None:
            held, task = queue.popleft()
            if task.cancelled() and self._stopping:
                queue.clear()  # left held: read again after the restart
                return
            if task.cancelled():
                self._failure = RuntimeError("a fetch was cancelled before it was durable")
            elif task.exception() is not None:
                self._failure = task.exception()
            if self._failure is not None:
                log.error("a fetch failed as a whole; stopping the worker", exc_info=self._failure)
                if self._on_failure is not None:
                    self._on_failure(self._failure)
                return
            held.release()
            self._released.set()

    async def _handle(self, event: Any) -> Awaitable[Any]:
        """Fetch + prepare one request; returns the delivery awaitable of what it produced.
        Whatever goes wrong with this record ends in its dead letter."""
        try:
            return await self._fetch_one(event)
        except Exception as exc:
            # the last resort: nobody anticipated this failure, but it is this record's
            return await self._dead_letters.send(internal_error(exc), event, Stage.FETCH)

    async def _fetch_one(self, event: Any) -> Awaitable[Any]:
        try:
            request = ImageRequest.from_json(event.value)
        except BadRecordError as exc:
            return await self._dead_letters.send(exc, event, Stage.FETCH)
        except Exception as exc:
            return await self._dead_letters.send(
                unexpected(exc, DeadLetterReason.BAD_RECORD), event, Stage.FETCH
            )
        stage = Stage.FETCH
        try:
            frame = await self._frame_for(request, event)
            stage = Stage.DECODE
            key, value, headers = frame.to_kafka()
            size = message_size(key, value, headers)
            if size > self._settings.max_message_bytes:
                # the whole record counts: the feed row's columns travel in a header
                raise DecodeError(
                    DeadLetterReason.OVERSIZE_MESSAGE,
                    f"the frame record would be {size} bytes (JPEG {len(value)}, headers"
                    f" {size - len(value) - len(key)}), over max_message_bytes"
                    f"={self._settings.max_message_bytes}",
                )
        except PipelineError as exc:
            stage = Stage.DECODE if isinstance(exc, DecodeError) else stage
            return await self._dead_letters.send(
                exc, event, stage, source_id=request.feed, reference=request.image_url
            )
        except Exception as exc:
            reason = (
                DeadLetterReason.CONNECT_ERROR
                if stage is Stage.FETCH
                else DeadLetterReason.CORRUPT_IMAGE
            )
            return await self._dead_letters.send(
                unexpected(exc, reason),
                event,
                stage,
                source_id=request.feed,
                reference=request.image_url,
            )
        self._metrics.messages_out.labels(Topic.FRAMES).inc()
        self._metrics.message_bytes_out.labels(Topic.FRAMES).inc(len(value))
        return await self._send(Topic.FRAMES, key, value, headers)

    async def _frame_for(self, request: ImageRequest, event: Any) -> Frame:
        fetcher = self._fetcher
        if fetcher is None:  # only between run()'s start and end
            raise RuntimeError("fetch agent is not running")
        settings = self._settings
        began = time.perf_counter()
        fetched = await fetcher.fetch(request.image_url)
        fetch_s = time.perf_counter() - began
        fetched_at = time.time()
        self._metrics.stage_duration.labels(Stage.FETCH).observe(fetch_s)
        self._metrics.bytes_fetched.labels(request.feed).inc(len(fetched.body))
        began = time.perf_counter()
        loop = asyncio.get_running_loop()
        prepared: PreparedImage = await loop.run_in_executor(
            self._executor,
            lambda: prepare_fetched(fetched.body, settings),
        )
        self._metrics.stage_duration.labels(Stage.DECODE).observe(time.perf_counter() - began)
        return Frame(
            event_id=request.event_id,
            source_kind=SourceKind.FEED,
            source_id=request.feed,
            captured_at=fetched_at,
            submitted_at=request.submitted_at,
            jpeg=prepared.jpeg,
            item_id=request.item_id,
            image_url=request.image_url,
            fetch_s=fetch_s,
            attributes=dict(request.attributes),
            catalogue=request.catalogue,
        )
