"""The tracking agent: `fashion.items.v1` -> sightings in Postgres, one tracker per camera.

Why it reads `fashion.items.v1` (and not the frames inside the tagging agent): items are keyed by
camera id, so one camera's tagged frames arrive in order on one partition, and tracking (cheap,
sequential per camera) runs beside inference without changing the tagging agent's batching or its
contract. The price: no frames reach this stage, so a sighting's best view is a reference (the
frame's event id and the person's index) plus the small crop the tagging agent cut for each
person while it had the pixels (stream_processors/thumbnails.py), kept with the best view.

Where a camera's track state lives, and why: in Postgres (`tracker_states`), written in the SAME
transaction as the sightings and sighting frames the batch produced (sinks/sightings.py), and
only then are the batch's offsets released (acks.HeldBatch). So after a worker is killed at any
point, the committed state is exactly as far as the committed sightings:
- killed before the commit: neither the new state nor its sightings exist; the frames are
  consumed again from the committed offsets and tracked again from the old state, producing the
  same sightings (tracking is deterministic in the frames; sighting ids come from the data);
- killed after the commit, before the offsets: the frames come again, and the state already
  counts them (their frame numbers are not above the state's last frame): skipped as duplicates.
Nothing is lost and nothing is written twice, on any broker: no Kafka transactions are needed
(Tansu refuses them) and no changelog topic has to be recovered (Tansu's high-watermark bug
breaks Faust table recovery; a real Kafka changelog would still be committed apart from the
sightings). A Faust table would have needed both. The state row carries a version: a write that
does not follow the version this worker loaded is refused (StaleTrackerStateError), so a worker
that lost the camera's partition in a rebalance cannot overwrite the new owner's state; the batch
is then tracked again from the stored state.

Between batches the state is kept as the committed bytes, not as live objects: every batch starts
from exactly what is committed (unpickling a camera's state takes well under a millisecond).

A recording's last frame (marked by the producer) closes its open tracks. A source that stops
without that mark (a producer killed, a live session stopped) has its tracks closed after
`track_idle_flush_s` of wall-clock time without a frame (EndReason.IDLE), counted from when this
worker loaded the camera, so a restart never closes tracks just because it took a while.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from fashionstream.core.errors import BadRecordError
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import SourceKind, TaggedImage, Topic
from fashionstream.core.settings import Settings
from models.tracking import (
    STATE_FORMAT,
    CameraTracker,
    EndReason,
    FrameDetections,
    TrackerStateError,
    TrackingConfig,
    TrackingResult,
    frame_detections,
)
from sinks.errors import PostgresUnavailableError
from sinks.sightings import CameraWrite, StaleTrackerStateError, StoredState
from stream_processors.acks import Holds
from stream_processors.durable import DurableWriter, WriteAbandoned

log = logging.getLogger(__name__)

MAX_STALE_RETRIES = 5  # a camera's state taken over this often in a row: something is wrong
IDLE_CHECK_S = 5.0


class SightingStore(Protocol):
    """What the agent needs of `sinks.sightings.SightingSink` (tests inject a fake)."""

    def load(self, camera: str) -> StoredState | None: ...
    def cameras_with_open_tracks(self, partitions: Collection[int]) -> list[str]: ...
    def add(self, write: CameraWrite) -> None: ...
    def flush(self) -> int: ...
    def discard(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class _Camera:
    """A camera this worker tracks: its committed state and when a frame last came."""

    state: bytes | None
    version: int
    partition: int | None
    open_tracks: int
    last_arrival: float  # monotonic seconds: last frame, or when the state was loaded


@dataclass
class _Outcome:
    """One camera's part of a batch, committed or not yet."""

    write: CameraWrite
    result: TrackingResult = field(default_factory=TrackingResult)
    outcomes: dict[str, int] = field(default_factory=dict)  # tracked / duplicate / late


class TrackingStage:
    """Tracks camera frames and commits sightings; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Callable[[], SightingStore],
        config: TrackingConfig,
        metrics: Metrics,
        executor: Executor,
        consumer: Callable[[], Any],
        holds: Holds | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._store_factory = store
        self._config = config
        self._metrics = metrics
        self._consumer = consumer
        self._holds = holds or Holds(consumer)
        self._writer = DurableWriter(
            executor=executor,
            holds=self._holds,
            retry_max_s=settings.sink_retry_max_s,
            sleep=sleep,
        )
        self._clock = clock
        self._store: SightingStore | None = None
        self._cameras: dict[str, _Camera] = {}
        self._lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ agent and timer

    async def run(self, stream: Any) -> None:
        """The agent body."""
        settings = self._settings
        self._store = await self._writer.call(self._store_factory)
        try:
            async for events in stream.take_events(
                settings.sink_batch_size, settings.sink_batch_within_s
            ):
                held = self._holds.hold(events)
                frames = self._parse(events)
                if frames:
                    async with self._guard():
                        try:
                            await self._commit_or_skip(frames)
                        except WriteAbandoned:
                            continue  # the worker is stopping: the batch stays held
                held.release()
        finally:
            store, self._store = self._store, None
            if store is not None:
                await self._writer.call(store.close)

    async def close_idle(self) -> None:
        """Timer: emit the open tracks of cameras that sent nothing for `track_idle_flush_s`."""
        if self._store is None:
            return
        async with self._guard():
            try:
                await self._adopt_assigned_cameras()
                now = self._clock()
                idle = [
                    camera
                    for camera, c in sorted(self._cameras.items())
                    if c.open_tracks > 0
                    and now - c.last_arrival > self._settings.track_idle_flush_s
                ]
                if idle:
                    log.info("closing the open tracks of idle cameras %s", ", ".join(idle))
                    await self._commit([(camera, None, None) for camera in idle], idle=True)
            except PostgresUnavailableError as exc:
                log.warning("idle check skipped, Postgres unavailable: %s", exc)
            except WriteAbandoned as exc:
                log.warning("idle check abandoned, the worker is stopping: %s", exc)

    async def _commit_or_skip(
        self, frames: list[tuple[str, FrameDetections | None, int | None]]
    ) -> None:
        """`_commit`, except that a batch which can never be committed (Postgres refused its
        sightings, or tracking raised) is logged, counted and skipped, so that no record stops
        the partition. Outages never get here: `_commit` retries them until it succeeds, or
        raises `WriteAbandoned` once the worker is stopping (then the batch stays held and the
        cameras are reloaded from what is committed). The frames themselves are the sink
        agent's: it writes or dead-letters each of them."""
        try:
            await self._commit(frames, idle=False)
        except WriteAbandoned:
            raise
        except Exception as exc:
            log.error(
                "tracking a batch of %d frames failed; the batch is skipped",
                len(frames),
                exc_info=exc,
            )
            await self._forget(frames)
            for camera, _frame, _partition in frames:
                self._metrics.tracking_frames.labels(camera, "failed").inc()

    async def _forget(self, frames: list[tuple[str, FrameDetections | None, int | None]]) -> None:
        """Drop what was added for `frames` and not committed; their cameras are reloaded
        from what is committed."""
        store = self._store
        if store is not None:
            await self._writer.call(store.discard)
        for camera, _frame, _partition in frames:
            self._cameras.pop(camera, None)

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    # ------------------------------------------------------------------ parsing

    def _parse(self, events: Sequence[Any]) -> list[tuple[str, FrameDetections | None, int | None]]:
        """(camera, frame, partition) for the camera frames of a batch, in offset order.
        Records that are not valid items are the sink agent's to dead-letter; skipped here."""
        frames: list[tuple[str, FrameDetections | None, int | None]] = []
        for event in events:
            try:
                record = TaggedImage.from_json(event.value)
            except BadRecordError:
                continue
            except Exception as exc:  # the sink agent dead-letters the same record
                log.error("an item not tracked: %r", exc)
                continue
            if record.source_kind is not SourceKind.CAMERA:
                continue
            try:
                frame = frame_detections(record)
            except Exception as exc:
                log.warning("camera %s: frame not tracked: %s", record.source_id, exc)
                self._metrics.tracking_frames.labels(record.source_id, "invalid").inc()
                continue
            frames.append((record.source_id, frame, int(event.message.partition)))
        return frames

    # ------------------------------------------------------------------ tracking + commit

    async def _commit(
        self, frames: list[tuple[str, FrameDetections | None, int | None]], *, idle: bool
    ) -> None:
        """Track `frames` (a None frame: close the camera's tracks as idle) from the committed
        states and commit the result; retried until committed (durable.py)."""
        store = self._store
        if store is None:
            raise RuntimeError("tracking agent is not running")
        stale_rounds = 0
        while True:
            outcomes = await self._writer.call(self._track, frames, idle)
            await self._writer.call(_add_all, store, [o.write for o in outcomes])
            cameras = len(outcomes)
            try:
                await self._writer.commit(store.flush, holding=f"sightings of {cameras} cameras")
            except WriteAbandoned:
                await self._forget(frames)
                raise
            except StaleTrackerStateError as exc:
                await self._writer.call(store.discard)
                stale_rounds += 1
                log.warning("%s: tracking the batch again from the stored state", exc)
                for camera in exc.cameras:
                    self._cameras.pop(camera, None)
                if stale_rounds >= MAX_STALE_RETRIES:
                    raise
                continue
            break
        now = self._clock()
        for outcome in outcomes:
            self._committed(outcome, now, idle)

    def _track(
        self, frames: list[tuple[str, FrameDetections | None, int | None]], idle: bool
    ) -> list[_Outcome]:
        """In the tracking thread: each camera's frames through its tracker (from its committed
        state), and the writes that commit the results."""
        by_camera: dict[str, list[tuple[FrameDetections | None, int | None]]] = {}
        for camera, frame, partition in frames:
            by_camera.setdefault(camera, []).append((frame, partition))
        outcomes = []
        for camera, items in by_camera.items():
            known = self._camera(camera)
            tracker = self._tracker(camera, known.state)
            outcome = _Outcome(write=_placeholder(camera))
            partition = known.partition
            for frame, frame_partition in items:
                partition = frame_partition if frame_partition is not None else partition
                if frame is None:
                    outcome.result.extend(tracker.close_all(EndReason.IDLE))
                    continue
                result = tracker.update(frame)
                outcome.result.extend(result)
                key = result.skipped.value if result.skipped is not None else "tracked"
                outcome.outcomes[key] = outcome.outcomes.get(key, 0) + 1
            outcome.write = CameraWrite(
                camera=camera,
                partition=partition,
                state=tracker.to_bytes(),
                state_format=STATE_FORMAT,
                stream_ref=tracker.stream_ref,
                last_frame=tracker.last_frame if tracker.last_frame >= 0 else None,
                open_tracks=tracker.open_tracks,
                expected_version=known.version,
                sightings=tuple(outcome.result.sightings),
                frames=tuple(outcome.result.frames),
            )
            outcomes.append(outcome)
        return outcomes

    def _camera(self, camera: str) -> _Camera:
        """The camera's committed state: cached, else loaded (in the tracking thread)."""
        known = self._cameras.get(camera)
        if known is None:
            known = self._load(camera)
            self._cameras[camera] = known
        return known

    def _load(self, camera: str) -> _Camera:
        store = self._store
        if store is None:
            raise RuntimeError("tracking agent is not running")
        stored = store.load(camera)
        if stored is None:
            return _Camera(None, 0, None, 0, self._clock())
        open_tracks = self._tracker(camera, stored.state).open_tracks
        return _Camera(stored.state, stored.version, None, open_tracks, self._clock())

    def _tracker(self, camera: str, state: bytes | None) -> CameraTracker:
        if state is None:
            return CameraTracker(camera, self._config)
        try:
            return CameraTracker.from_bytes(state, self._config)
        except TrackerStateError as exc:
            # e.g. a state written by another version of the tracking code: its open tracks
            # are lost (logged); the camera starts afresh
            log.error(
                "camera %s: stored tracker state not usable, starting afresh: %s", camera, exc
            )
            return CameraTracker(camera, self._config)

    def _committed(self, outcome: _Outcome, now: float, idle: bool) -> None:
        write = outcome.write
        camera = write.camera
        self._cameras[camera] = _Camera(
            state=write.state,
            version=write.expected_version + 1,
            partition=write.partition,
            open_tracks=write.open_tracks,
            last_arrival=self._cameras[camera].last_arrival if idle else now,
        )
        m = self._metrics
        for key, n in outcome.outcomes.items():
            m.tracking_frames.labels(camera, key).inc(n)
        for sighting in write.sightings:
            m.sightings.labels(camera, sighting.end_reason.value).inc()
        if outcome.result.discarded:
            m.tracks_discarded.labels(camera).inc(outcome.result.discarded)
        m.tracks_active.labels(camera).set(write.open_tracks)

    async def _adopt_assigned_cameras(self) -> None:
        """Forget cameras whose partition this worker no longer has; load those on its
        partitions whose committed state holds open tracks (a restart after their source
        stopped), so that the idle rule reaches them too."""
        store = self._store
        if store is None:
            return
        assigned = {
            tp.partition for tp in self._consumer().assignment() if tp.topic == Topic.ITEMS.value
        }
        for camera, known in list(self._cameras.items()):
            if known.partition is not None and known.partition not in assigned:
                del self._cameras[camera]
        waiting = await self._writer.call(store.cameras_with_open_tracks, assigned)
        for camera in waiting:
            if camera not in self._cameras:
                self._cameras[camera] = await self._writer.call(self._load, camera)


def _add_all(store: SightingStore, writes: Sequence[CameraWrite]) -> None:
    for write in writes:
        store.add(write)


def _placeholder(camera: str) -> CameraWrite:
    return CameraWrite(
        camera=camera,
        partition=None,
        state=b"",
        state_format=STATE_FORMAT,
        stream_ref=None,
        last_frame=None,
        open_tracks=0,
        expected_version=0,
    )
