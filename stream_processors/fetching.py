"""The fetch agent: `fashion.images.v1` (ImageRequest) -> `fashion.frames.v1` (Frame JPEG).

Several fetches run at once (a batch of `fetch_concurrency` requests, fetched concurrently on the
event loop); decoding and re-encoding run in one worker thread. A request that cannot be
fetched or decoded is dead-lettered with its reason and the batch carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from fashionstream.errors import BadRecordError, DecodeError, PipelineError
from fashionstream.records import DeadLetterReason, Frame, ImageRequest, SourceKind, Topic
from fashionstream.settings import Settings
from sinks.metrics import Metrics, Stage
from stream_processors.acks import HeldBatch
from stream_processors.deadletters import DeadLetterer, unexpected
from stream_processors.fetch import ImageFetcher
from stream_processors.images import PreparedImage, prepare_image
from stream_processors.sending import Send

log = logging.getLogger(__name__)


class FetchStage:
    """Consumes image requests in batches; see the module docstring."""

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
    ) -> None:
        self._settings = settings
        self._fetcher_factory = fetcher_factory
        self._send = send
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._executor = image_executor
        self._consumer = consumer
        self._fetcher: ImageFetcher | None = None

    async def run(self, stream: Any) -> None:
        """The agent body."""
        settings = self._settings
        self._fetcher = self._fetcher_factory()
        try:
            async for events in stream.take_events(
                settings.fetch_concurrency, settings.batch_within_s
            ):
                held = HeldBatch(events, self._consumer())
                self._metrics.messages_in.labels(Topic.IMAGES).inc(len(events))
                deliveries = await asyncio.gather(*(self._handle(e) for e in events))
                await asyncio.gather(*deliveries)  # every frame / dead letter acknowledged
                held.release()
        finally:
            fetcher, self._fetcher = self._fetcher, None
            if fetcher is not None:
                await fetcher.close()

    async def _handle(self, event: Any) -> Awaitable[Any]:
        """Fetch + prepare one request; returns the delivery future of what it produced."""
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
            if len(frame.jpeg) > self._settings.max_message_bytes:
                raise DecodeError(
                    DeadLetterReason.OVERSIZE_MESSAGE,
                    f"re-encoded image is {len(frame.jpeg)} bytes, over max_message_bytes",
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
        self._metrics.message_bytes_out.labels(Topic.FRAMES).inc(len(frame.jpeg))
        return await self._send(Topic.FRAMES, frame.key.encode(), frame.jpeg, frame.headers())

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
            lambda: prepare_image(
                fetched.body,
                max_pixels=settings.fetch_max_pixels,
                max_side=settings.image_max_side,
                quality=settings.jpeg_quality,
            ),
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
        )
