"""The tagging agent: `fashion.frames.v1` -> `fashion.items.v1`, one TaggedImage per frame.

Batches come from `take_events(batch_size, within=batch_within_s)`. The event loop only moves
bytes: JPEG decoding runs in one decode thread, inference in ONE dedicated inference thread (a
single-worker executor, so torch's own thread pool is not multiplied; the production tagger
answers it from a process of its own, see `tagger_process.py`). Two batches holding decoded
pixels are in flight at most: while batch k is inferred, batch k+1 is collected and decoded, so
the model never waits for Kafka (batches of live frames only: see below). Results are
produced in batch order, and a batch's offsets are released (see `acks.HeldBatch`) only after
the broker acknowledged every record produced for it.

Live camera frames are for now, not for later: a batch that holds them is inferred in chunks of
`live_batch_size`, each published as soon as it is tagged, and a live frame is skipped (counted
per camera, released without a row) when a newer frame of its camera has already reached the
worker (`live_newest_only`) or it is already older than `live_max_age_s` when its chunk starts,
so a worker behind its cameras tags their newest frames with a bounded delay instead of an ever
longer queue. Recordings and catalogue photos are never skipped.

Live frames are decoded only once their chunk is to be tagged, so a batch of them holds JPEG
bytes, not pixels, and up to `LIVE_BATCHES_IN_FLIGHT` such batches are taken ahead of the one
being inferred. The worker then sees its cameras' newest frames, not only the next batch: with
eight cameras behind one worker, the frames the old two-batch window offered were already
older than `live_max_age_s`, and which camera got tagged depended on which partition Faust's
buffer had filled from (4 to 56 frames per camera in two minutes).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashionstream.core.errors import BadRecordError, DeadLetterReason, ModelError, PipelineError
from fashionstream.core.metrics import Metrics, Stage
from fashionstream.core.records import Frame, SourceKind, TaggedImage, Topic
from fashionstream.core.settings import Settings
from models.tags import FrameSource, ImageTags, Tagger
from stream_processors.acks import HeldBatch, Holds
from stream_processors.adapters import tagged_image
from stream_processors.deadletters import DeadLetterer, internal_error, unexpected
from stream_processors.images import check_jpeg, decode_jpeg
from stream_processors.sending import Send
from stream_processors.thumbnails import Thumbnails, thumbnails

log = logging.getLogger(__name__)

MAX_BATCHES_IN_FLIGHT = 2
# batches holding no decoded pixels (live frames, decoded when their chunk starts): ~50-400 KB
# of JPEG per frame, so looking this far ahead costs a few MB to tens of MB
LIVE_BATCHES_IN_FLIGHT = 16


@dataclass
class _Item:
    """One event of a batch on its way through decode and inference."""

    event: Any
    frame: Frame | None = None
    image: np.ndarray | None = None
    error: PipelineError | None = None
    stage: Stage = Stage.TAG
    decode_s: float = 0.0
    queued_s: float = 0.0


class TaggingStage:
    """Runs the tagger over batches of frames; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        tagger: Callable[[], Awaitable[Tagger]],
        send: Send,
        dead_letters: DeadLetterer,
        metrics: Metrics,
        decode_executor: Executor,
        infer_executor: Executor,
        consumer: Callable[[], Any],
        holds: Holds | None = None,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self._settings = settings
        self._tagger = tagger
        self._send = send
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._decode_executor = decode_executor
        self._infer_executor = infer_executor
        self._consumer = consumer
        self._holds = holds or Holds(consumer)
        self._on_failure = on_failure
        self._skips = _SkipLog(metrics)
        self._heard_at: dict[str, float] = {}  # live camera -> newest capture time received
        self._infer_lock = asyncio.Lock()
        self._last_tagged: dict[str, float] = {}  # live camera -> when its last frame was tagged

    async def run(self, stream: Any) -> None:
        """The agent body."""
        settings = self._settings
        # each batch in flight, and whether it holds decoded pixels
        in_flight: collections.deque[tuple[asyncio.Task[None], bool]] = collections.deque()
        previous: asyncio.Task[None] | None = None

        def full() -> bool:
            limit = (
                MAX_BATCHES_IN_FLIGHT
                if any(pixels for _, pixels in in_flight)
                else LIVE_BATCHES_IN_FLIGHT
            )
            return len(in_flight) >= limit or in_flight[0][0].done()

        try:
            async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
                held = self._holds.hold(events)
                self._metrics.messages_in.labels(Topic.FRAMES).inc(len(events))
                self._metrics.batch_size.labels(Stage.INFER).observe(len(events))
                items = self._parse(events)
                # in the decode thread, while the batch before is inferred
                await self._decode(items, live_pixels=False)
                task = asyncio.create_task(self._complete(items, held, previous))
                task.add_done_callback(self._batch_done)
                in_flight.append((task, any(item.image is not None for item in items)))
                previous = task
                while in_flight and full():
                    await in_flight.popleft()[0]  # re-raises a batch's failure: the worker crashes
            while in_flight:
                await in_flight.popleft()[0]
        finally:
            for task, _ in in_flight:
                task.cancel()  # stopping: unreleased offsets are simply read again

    def _saw(self, frame: Frame) -> None:
        """A live camera's newest capture time, for the silent-camera alert (a camera whose
        frames are all skipped is still heard from)."""
        if not frame.live:
            return
        if frame.captured_at > self._heard_at.get(frame.source_id, 0.0):
            self._heard_at[frame.source_id] = frame.captured_at
            self._metrics.camera_last_frame.labels(frame.source_id).set(frame.captured_at)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        """A batch that failed as a whole (not per record) stops the worker at once, even when
        no further batch arrives to notice it: its offsets stay uncommitted."""
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if exc is not None:
                log.error("a tagging batch failed; stopping the worker", exc_info=exc)
                self._on_failure(exc)

    def _parse(self, events: Sequence[Any]) -> list[_Item]:
        """Parse headers (cheap, on the loop); a record that does not parse keeps its error."""
        items: list[_Item] = []
        for event in events:
            item = _Item(event)
            try:
                item.frame = Frame.from_kafka(event.value, event.message.headers)
            except BadRecordError as exc:
                item.error = exc
            except Exception as exc:
                item.error = unexpected(exc, DeadLetterReason.BAD_RECORD)
            else:
                self._saw(item.frame)
            items.append(item)
        return items

    async def _decode(self, items: Sequence[_Item], *, live_pixels: bool = True) -> None:
        """Decode the items' JPEGs in the decode thread; a failure is kept on its item. With
        `live_pixels` false, live frames are only checked (`check_jpeg`: a bad one still gets
        its dead letter) and decoded when their chunk starts, as most of them are skipped."""
        items = [item for item in items if item.frame is not None and item.error is None]
        if not items:
            return
        max_pixels = self._settings.fetch_max_pixels

        def decode_all() -> None:
            for item in items:
                if item.frame is None:  # filtered above; keeps mypy honest
                    continue
                began = time.perf_counter()
                try:
                    if live_pixels or not item.frame.live:
                        item.image = decode_jpeg(item.frame.jpeg, max_pixels)
                    else:
                        check_jpeg(item.frame.jpeg, max_pixels)
                except PipelineError as exc:
                    item.error, item.stage = exc, Stage.DECODE
                except Exception as exc:
                    item.error = unexpected(exc, DeadLetterReason.CORRUPT_IMAGE)
                    item.stage = Stage.DECODE
                item.decode_s = time.perf_counter() - began

        await asyncio.get_running_loop().run_in_executor(self._decode_executor, decode_all)
        decode_metric = self._metrics.stage_duration.labels(Stage.DECODE)
        for item in items:
            if item.image is not None:
                decode_metric.observe(item.decode_s)

    async def _complete(
        self, items: list[_Item], held: HeldBatch, previous: asyncio.Task[None] | None
    ) -> None:
        """Infer (a batch with live frames in chunks, each published as soon as it is tagged
        once the previous batch is), then produce dead letters, await the broker's
        acknowledgements, and release the batch's offsets.

        The inference lock covers inference only: a chunk's thumbnails and records are made
        while the next chunk, or the next batch, is inferred (holding the lock through them
        left the inference thread idle a quarter of the time on busy camera frames)."""
        tagger = await self._tagger()
        # decoded, or live and decoded when its chunk starts
        ready = [item for item in items if item.image is not None or _live(item)]
        publications: list[asyncio.Task[list[Awaitable[Any]]]] = []
        try:
            async with self._infer_lock:
                for chunk in self._chunks(ready):
                    results = await self._infer(tagger, chunk)
                    self._note_tagged(chunk, results)
                    # results in batch order: each chunk's records after the previous chunk's,
                    # the first after the previous batch's (which raises if that batch failed)
                    after = publications[-1] if publications else previous
                    publications.append(
                        asyncio.create_task(self._publish_chunk(chunk, results, after))
                    )
            deliveries: list[Awaitable[Any]] = []
            for publication in publications:
                deliveries.extend(await publication)
        except BaseException:
            for publication in publications:
                publication.cancel()
            raise
        if previous is not None:
            await previous
        for item in items:
            if item.error is not None:
                frame = item.frame
                deliveries.append(
                    await self._dead_letters.send(
                        item.error,
                        item.event,
                        item.stage,
                        source_id=frame.source_id if frame else None,
                        reference=frame.reference if frame else None,
                    )
                )
        await asyncio.gather(*deliveries)
        held.release()

    def _chunks(self, ready: list[_Item]) -> list[list[_Item]]:
        """The batch as one inference call, or, when it holds live frames, chunks of
        `live_batch_size`: a live frame's row then waits for its chunk, not for the whole
        batch, and each chunk's staleness is judged when it starts. Live frames go first, the
        cameras tagged longest ago before the others (each camera's frames in their order), so
        that when only some of a batch can be tagged in time, every camera gets its turn."""
        if not ready:
            return []
        if not any(item.frame is not None and item.frame.live for item in ready):
            return [ready]
        never = float("-inf")

        def turn(item: _Item) -> tuple[int, float]:
            frame = item.frame
            if frame is None or not frame.live:
                return (1, 0.0)  # never skipped: after the live frames
            return (0, self._last_tagged.get(frame.source_id, never))

        ordered = sorted(ready, key=turn)  # stable: a camera's frames keep their order
        size = self._settings.live_batch_size
        return [ordered[i : i + size] for i in range(0, len(ordered), size)]

    def _note_tagged(self, chunk: list[_Item], results: list[Outcome]) -> None:
        """When each live camera last had a frame tagged: the next batch's chunks put the
        cameras tagged longest ago first (`_chunks`)."""
        now = time.monotonic()
        for item, (tags, _) in zip(chunk, results, strict=True):
            if isinstance(tags, ImageTags) and item.frame is not None and item.frame.live:
                self._last_tagged[item.frame.source_id] = now

    async def _publish_chunk(
        self, chunk: list[_Item], results: list[Outcome], after: asyncio.Task[Any] | None
    ) -> list[Awaitable[Any]]:
        """A tagged chunk's thumbnails, then, once `after` (the chunk or batch before it) is
        done, its records."""
        thumbs = await self._thumbnails(chunk, results)
        if after is not None:
            await after
        return await self._publish_results(chunk, results, thumbs)

    async def _publish_results(
        self, items: list[_Item], results: list[Outcome], thumbs: list[Thumbnails | None]
    ) -> list[Awaitable[Any]]:
        """Produce each tagged item's record; a failure is kept on its item for its dead
        letter, a skipped frame is counted. Every record of the chunk is made before the first
        is sent: made and sent one by one they left the worker over ~50 ms of a busy batch, and
        the sink took them in two or three fetches and transactions, each a fetch wait later."""
        made: list[tuple[_Item, TaggedImage, bytes]] = []
        for item, (tags, infer_s), thumb in zip(items, results, thumbs, strict=True):
            if isinstance(tags, Skipped):
                self._skips.count(item.frame, tags)
                continue
            if isinstance(tags, PipelineError):
                if item.error is None:  # a live frame whose decode failed has its own stage
                    item.error, item.stage = tags, Stage.INFER
                continue
            frame = item.frame
            if frame is None:  # ready items always have a frame; keeps mypy honest
                raise RuntimeError("decoded item without a frame")
            try:
                record = tagged_image(
                    frame,
                    tags,
                    {"decode": item.decode_s, "infer": infer_s, "queue": item.queued_s},
                    thumb,
                )
            except PipelineError as exc:
                item.error, item.stage = exc, Stage.TAG
                continue
            except Exception as exc:
                item.error, item.stage = unexpected(exc, DeadLetterReason.MODEL_ERROR), Stage.TAG
                continue
            try:
                made.append((item, record, record.to_json()))
            except Exception as exc:  # the last resort: this record's dead letter
                item.error, item.stage = internal_error(exc), Stage.TAG
        deliveries: list[Awaitable[Any]] = []
        for item, record, value in made:
            try:
                deliveries.append(await self._publish(record, value))
            except PipelineError as exc:  # e.g. a result over max_message_bytes
                item.error, item.stage = exc, Stage.TAG
            except Exception as exc:  # the last resort: this record's dead letter
                item.error, item.stage = internal_error(exc), Stage.TAG
        return deliveries

    async def _thumbnails(
        self, items: list[_Item], results: list[Outcome]
    ) -> list[Thumbnails | None]:
        """Cut the batch's thumbnails (people of camera frames, the whole catalogue photo) in
        the decode thread, while the pixels are still here; None for a failed image."""

        def cut_all() -> list[Thumbnails | None]:
            out: list[Thumbnails | None] = []
            for item, (tags, _) in zip(items, results, strict=True):
                if not isinstance(tags, ImageTags) or item.image is None or item.frame is None:
                    out.append(None)
                    continue
                try:
                    whole = item.frame.source_kind is SourceKind.FEED
                    out.append(thumbnails(item.image, tags, whole_image=whole))
                except (ValueError, OSError) as exc:  # a thumbnail is never worth the record
                    log.warning("no thumbnails for %s: %r", item.frame.reference, exc)
                    out.append(None)
            return out

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._decode_executor, cut_all)

    async def _publish(self, record: TaggedImage, value: bytes) -> Awaitable[Any]:
        self._metrics.messages_out.labels(Topic.ITEMS).inc()
        self._metrics.message_bytes_out.labels(Topic.ITEMS).inc(len(value))
        return await self._send(Topic.ITEMS, record.key.encode(), value, None)

    async def _infer(self, tagger: Tagger, items: list[_Item]) -> list[Outcome]:
        """Tag the chunk in the inference thread. Decided now, under the inference lock, when
        it is known how old the chunk's frames are as tagging starts: a live frame whose
        camera already has a newer frame in this worker (`live_newest_only`), or that is older
        than `live_max_age_s`, is skipped (`Skipped`), so a worker that cannot keep up with its
        cameras tags their newest frames instead of queueing ever older ones. The live frames
        left are decoded then. When the batch fails, each image is tagged alone so that one
        poisoned image is dead-lettered (MODEL_ERROR), not the batch."""
        loop = asyncio.get_running_loop()
        started = time.time()
        for item in items:
            if item.frame is not None:
                item.queued_s = max(0.0, started - _entered_frames_topic(item))
        newest = self._heard_at if self._settings.live_newest_only else {}
        max_age = self._settings.live_max_age_s
        skipped = [_skip(item.frame, started, max_age, newest) for item in items]
        chosen = [item for item, skip in zip(items, skipped, strict=True) if skip is None]
        await self._decode([item for item in chosen if _live(item)])
        fresh = [item for item in chosen if item.image is not None]

        def tag_fresh() -> tuple[list[ImageTags] | Exception, float]:
            began = time.perf_counter()
            try:
                out = tagger.tag(
                    [item.image for item in fresh if item.image is not None],
                    catalogue=[_is_product(item) for item in fresh],
                    sources=[_source(item.frame) for item in fresh],
                )
            except Exception as exc:  # judged below, per image, on the loop
                return exc, time.perf_counter() - began
            return out, time.perf_counter() - began

        tagged: Iterator[tuple[ImageTags | PipelineError, float]] = iter(())
        if fresh:
            outcome, seconds = await loop.run_in_executor(self._infer_executor, tag_fresh)
            self._metrics.stage_duration.labels(Stage.INFER).observe(seconds)
            tagged = iter(await self._judge(tagger, fresh, outcome, seconds))
        results: list[Outcome] = []
        for item, skip in zip(items, skipped, strict=True):
            if skip is not None:
                results.append((skip, 0.0))
            elif item.image is None and item.error is not None:  # its decode failed just now
                results.append((item.error, 0.0))
            else:
                results.append(next(tagged))
        return results

    async def _judge(
        self,
        tagger: Tagger,
        items: list[_Item],
        outcome: list[ImageTags] | Exception,
        seconds: float,
    ) -> list[tuple[ImageTags | PipelineError, float]]:
        """The batch's tags, one per item; when the batch failed, each item tagged alone."""
        share = seconds / max(1, len(items))
        if isinstance(outcome, list) and len(outcome) == len(items):
            return [(tags, share) for tags in outcome]
        if isinstance(outcome, list):
            log.error("tagger returned %d results for %d images", len(outcome), len(items))
        else:
            log.error("tagging a batch of %d failed: %r", len(items), outcome, exc_info=outcome)
        if len(items) == 1:
            return [(_model_error(outcome, 1), seconds)]
        loop = asyncio.get_running_loop()
        results: list[tuple[ImageTags | PipelineError, float]] = []
        for item in items:
            if item.image is None:  # only decoded items are tagged; keeps mypy honest
                raise RuntimeError("tagging an item without pixels")
            one, one_s = await loop.run_in_executor(
                self._infer_executor,
                _tag_one,
                tagger,
                item.image,
                _is_product(item),
                _source(item.frame),
            )
            self._metrics.stage_duration.labels(Stage.INFER).observe(one_s)
            results.append((one, one_s))
        return results


@dataclass(frozen=True)
class Skipped:
    """A live frame not tagged, and why (`reason`, a metric label)."""

    reason: str
    age_s: float


STALE = "stale"  # older than live_max_age_s when its inference could start
SUPERSEDED = "superseded"  # a newer frame of the camera had reached the worker
Outcome = tuple[ImageTags | PipelineError | Skipped, float]  # and the inference seconds


class _SkipLog:
    """Counts skipped frames (metric, per camera and reason) and says so in the log at most
    once per camera every SKIP_LOG_EVERY_S, with how many and how old since the last line."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._pending: dict[str, tuple[int, float]] = {}  # camera -> (frames, oldest age)
        self._last_line: dict[str, float] = {}

    def count(self, frame: Frame | None, skip: Skipped) -> None:
        camera = frame.source_id if frame is not None else "?"
        self._metrics.frames_skipped.labels(camera, skip.reason).inc()
        frames, oldest = self._pending.get(camera, (0, 0.0))
        frames, oldest = frames + 1, max(oldest, skip.age_s)
        now = time.monotonic()
        if now - self._last_line.get(camera, -SKIP_LOG_EVERY_S) < SKIP_LOG_EVERY_S:
            self._pending[camera] = (frames, oldest)
            return
        self._pending.pop(camera, None)
        self._last_line[camera] = now
        log.warning(
            "camera %s: %d live frame(s) skipped as %s (oldest %.1f s old): the worker is"
            " behind this camera and tags its newest frames",
            camera,
            frames,
            skip.reason,
            oldest,
        )


SKIP_LOG_EVERY_S = 30.0


def _skip(
    frame: Frame | None, now: float, max_age_s: float, newest: Mapping[str, float]
) -> Skipped | None:
    """Skipped when `frame` is a live camera frame and a newer frame of its camera has reached
    the worker (`newest`: camera -> newest capture time received; the worker is behind the
    camera), or it was captured more than `max_age_s` ago."""
    if frame is None or not frame.live:
        return None
    age = now - frame.captured_at
    if frame.captured_at < newest.get(frame.source_id, frame.captured_at):
        return Skipped(SUPERSEDED, age)
    if max_age_s > 0 and age > max_age_s:
        return Skipped(STALE, age)
    return None


def _live(item: _Item) -> bool:
    """A live camera frame that parsed: decoded only when its chunk is about to be tagged."""
    return item.error is None and item.frame is not None and item.frame.live


def _is_product(item: _Item) -> bool:
    """A feed row is a catalogue product photo: the tagger adds its whole-product vector."""
    return item.frame is not None and item.frame.source_kind is SourceKind.FEED


def _source(frame: Frame | None) -> FrameSource | None:
    if frame is None or frame.source_kind is not SourceKind.CAMERA:
        return None
    return FrameSource(frame.source_id, frame.captured_at)


def _tag_one(
    tagger: Tagger, image: np.ndarray, is_product: bool, source: FrameSource | None
) -> tuple[ImageTags | PipelineError, float]:
    began = time.perf_counter()
    try:
        out = tagger.tag([image], catalogue=[is_product], sources=[source])
    except Exception as exc:
        log.error("tagging one image failed", exc_info=exc)
        return _model_error(exc, 1), time.perf_counter() - began
    if len(out) != 1:
        return _model_error(out, 1), time.perf_counter() - began
    return out[0], time.perf_counter() - began


def _model_error(outcome: object, expected: int) -> PipelineError:
    if isinstance(outcome, ModelError):
        return outcome
    if isinstance(outcome, BaseException):
        return ModelError(
            DeadLetterReason.MODEL_ERROR, f"tagger raised {type(outcome).__name__}: {outcome}"
        )
    got = len(outcome) if isinstance(outcome, list) else "no"
    return ModelError(DeadLetterReason.MODEL_ERROR, f"tagger returned {got} results for {expected}")


def _entered_frames_topic(item: _Item) -> float:
    """Epoch seconds when the frame's record was produced (the Kafka message timestamp)."""
    timestamp = getattr(item.event.message, "timestamp", None)
    if isinstance(timestamp, int | float) and timestamp > 0:
        return float(timestamp) if timestamp < 1e11 else float(timestamp) / 1000.0
    frame = item.frame
    return frame.submitted_at if frame is not None else time.time()
