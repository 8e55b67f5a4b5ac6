"""The tracking agent in-process: camera items become sightings committed with the camera's
tracker state, offsets are released only after that commit, Postgres outages are retried, a
state another worker wrote is reloaded and the batch tracked again, a restarted agent goes on
from the committed state, and cameras that went quiet have their tracks closed.

The store is a fake with the version rule of sinks.sightings.SightingSink (the real one runs
against Postgres in tests/integration/test_sink_sightings.py)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from fashionstream.core.metrics import Metrics
from fashionstream.core.records import (
    SourceKind,
    TaggedImage,
    WireMask,
    WirePerson,
    event_id_for_frame,
)
from fashionstream.core.settings import Settings
from models.tracking import EndReason, Sighting, TrackingConfig
from sinks.errors import PostgresUnavailableError
from sinks.sightings import CameraWrite, StaleTrackerStateError, StoredState
from stream_processors.app import Pipeline, faust_app
from stream_processors.tracking import TrackingStage
from tests.support.agents import FakeSink, Recorder, put, run, until
from tests.support.fake_tagger import FakeTagger

STREAM = "clip.mp4:1"
MASK = WireMask(size=(480, 640), counts="PPYo1k0O2N1O1N2")
T0 = 1_800_000_000.0


class FakeStore:
    """SightingSink's contract in memory: a write must follow the stored version."""

    def __init__(self, unavailable: int = 0) -> None:
        self.unavailable = unavailable
        self.states: dict[str, StoredState] = {}
        self.partitions: dict[str, int | None] = {}
        self.open: dict[str, int] = {}
        self.sightings: dict[str, Sighting] = {}
        self.frames: set[tuple[str, str]] = set()
        self.pending: dict[str, CameraWrite] = {}
        self.flushes = 0
        self.threads: set[str] = set()

    def load(self, camera: str) -> StoredState | None:
        return self.states.get(camera)

    def cameras_with_open_tracks(self, partitions: Collection[int]) -> list[str]:
        return sorted(c for c, n in self.open.items() if n and self.partitions[c] in partitions)

    def add(self, write: CameraWrite) -> None:
        self.pending[write.camera] = write

    def flush(self) -> int:
        self.flushes += 1
        self.threads.add(threading.current_thread().name)
        if self.unavailable:
            self.unavailable -= 1
            raise PostgresUnavailableError("connection refused")
        stale = [
            c
            for c, w in self.pending.items()
            if (self.states[c].version if c in self.states else 0) != w.expected_version
        ]
        if stale:
            self.pending.clear()
            raise StaleTrackerStateError(stale)
        written = 0
        for c, w in self.pending.items():
            self.states[c] = StoredState(w.state, w.state_format, w.expected_version + 1)
            self.partitions[c] = w.partition
            self.open[c] = w.open_tracks
            for s in w.sightings:
                self.sightings[s.sighting_id] = s
            self.frames.update((f.sighting_id, f.event_id) for f in w.frames)
            written += len(w.sightings)
        self.pending.clear()
        return written

    def discard(self) -> None:
        self.pending.clear()

    def close(self) -> None:
        pass


def item(n: int, camera: str = "cam-1", *, people: int = 1, end: bool = False) -> TaggedImage:
    """A tagged camera frame at 2 fps with `people` people standing still."""
    return TaggedImage(
        event_id=event_id_for_frame(camera, STREAM, n),
        source_kind=SourceKind.CAMERA,
        source_id=camera,
        captured_at=T0 + n / 2,
        submitted_at=T0 + n / 2,
        width=640,
        height=480,
        model_version="fake-tagger-1",
        timings={"infer": 0.1},
        garments=(),
        people=tuple(
            WirePerson(
                index=i, score=0.9, box=(10.0 + 300 * i, 20.0, 200.0 + 300 * i, 470.0), mask=MASK
            )
            for i in range(people)
        ),
        frame_number=n,
        stream_ref=STREAM,
        end_of_stream=end,
    )


def settings(tmp_path: Path, **changes: Any) -> Settings:
    return Settings.from_env(
        {}, state_dir=tmp_path, sink_batch_size=4, sink_batch_within_s=0.05, **changes
    )


def pipeline(tmp_path: Path, store: FakeStore) -> Pipeline:
    conf = settings(tmp_path)
    return Pipeline(
        conf,
        app=faust_app(conf, app_id=f"test-{uuid.uuid4().hex[:8]}"),
        tagger=FakeTagger(),
        sink=FakeSink(),
        metrics=Metrics(CollectorRegistry(), process_metrics=False),
        send=Recorder(),
        sightings=store,
    )


def test_camera_items_become_sightings_and_are_acked_only_after_the_commit(
    tmp_path: Path,
) -> None:
    store = FakeStore(unavailable=2)
    p = pipeline(tmp_path, store)

    async def go() -> None:
        assert p.track_agent is not None
        async with p.track_agent.test_context() as agent:
            messages = [await put(agent, b"cam-1", item(n, end=n == 5).to_json()) for n in range(6)]
            await until(lambda: store.flushes >= 2, "flushes while Postgres is down")
            assert not store.sightings
            assert not any(m.acked for m in messages)
            await until(lambda: len(store.sightings) == 1, "the sighting once Postgres is back")
            await until(lambda: all(m.acked for m in messages), "acks after the commit")

    run(go())
    (sighting,) = store.sightings.values()
    assert (sighting.first_frame, sighting.last_frame, sighting.frames) == (0, 5, 6)
    assert sighting.end_reason is EndReason.END_OF_STREAM
    assert len(store.frames) == 6
    assert all(name.startswith("fs-track") for name in store.threads)


def test_feed_items_and_garbage_are_acked_and_not_tracked(tmp_path: Path) -> None:
    store = FakeStore()
    p = pipeline(tmp_path, store)
    feed = TaggedImage(**{**item(0).__dict__, "source_kind": SourceKind.FEED,
                          "frame_number": None, "item_id": "sku-1"})  # fmt: skip

    async def go() -> None:
        assert p.track_agent is not None
        async with p.track_agent.test_context() as agent:
            messages = [
                await put(agent, b"shop", feed.to_json()),
                await put(agent, b"junk", b"not json"),
            ]
            await until(lambda: all(m.acked for m in messages), "acks")

    run(go())
    assert store.states == {}


# ---------------------------------------------------------------------------------------------
# the stage on its own, with a stream of hand-made events


class FakeMessage:
    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.refs = 1
        self.acked = False

    def incref(self) -> None:
        self.refs += 1

    def ack(self, _consumer: Any) -> None:
        self.refs -= 1
        self.acked = self.refs == 0


class FakeEvent:
    def __init__(self, value: bytes, partition: int = 0) -> None:
        self.value = value
        self.message = FakeMessage(partition)


class FakeStream:
    """`take_events` over fixed batches; Faust's own ack after each batch body."""

    def __init__(self, batches: Sequence[Sequence[FakeEvent]]) -> None:
        self.batches = batches

    async def take_events(self, _n: int, _within: float) -> AsyncIterator[list[FakeEvent]]:
        for batch in self.batches:
            yield list(batch)
            for event in batch:
                event.message.ack(None)


class FakeConsumer:
    def __init__(self, partitions: Collection[int]) -> None:
        self.partitions = partitions

    def assignment(self) -> set[Any]:
        from faust.types import TP

        return {TP("fashion.items.v1", p) for p in self.partitions}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stage(
    tmp_path: Path, store: FakeStore, clock: Clock | None = None, **changes: Any
) -> TrackingStage:
    conf = settings(tmp_path, **changes)

    async def no_sleep(_s: float) -> None:
        return None

    return TrackingStage(
        conf,
        store=lambda: store,
        config=TrackingConfig.from_settings(conf),
        metrics=Metrics(CollectorRegistry(), process_metrics=False),
        executor=ThreadPoolExecutor(1, thread_name_prefix="fs-track"),
        consumer=lambda: FakeConsumer([0]),
        clock=clock or Clock(),
        sleep=no_sleep,
    )


def events(items: Sequence[TaggedImage]) -> list[FakeEvent]:
    return [FakeEvent(i.to_json()) for i in items]


def test_a_restarted_agent_goes_on_from_the_committed_state(tmp_path: Path) -> None:
    """Two agents (a worker, then its replacement) over one recording give exactly the
    sightings of one agent over all of it."""
    items = [item(n, people=2 if n < 8 else 1, end=n == 11) for n in range(12)]
    whole = FakeStore()
    asyncio.run(stage(tmp_path, whole).run(FakeStream([events(items)])))

    resumed = FakeStore()
    asyncio.run(stage(tmp_path, resumed).run(FakeStream([events(items[:5])])))
    assert resumed.open["cam-1"] == 2
    # the replacement gets the first batch again (its offsets were committed, but say a
    # rebalance redelivered part of it): duplicates are skipped by frame number
    again = events(items[3:])
    asyncio.run(stage(tmp_path, resumed).run(FakeStream([again])))
    assert resumed.sightings == whole.sightings
    assert resumed.frames == whole.frames
    assert len(whole.sightings) == 2
    assert all(e.message.acked for e in again)


def test_a_state_another_worker_wrote_is_reloaded_and_the_batch_tracked_again(
    tmp_path: Path,
) -> None:
    store = FakeStore()
    first = events([item(n) for n in range(4)])
    tracking = stage(tmp_path, store)

    class Interloper(FakeStream):
        """Between the two batches, another worker commits a state of its own for cam-1."""

        async def take_events(self, n: int, within: float) -> AsyncIterator[list[FakeEvent]]:
            other = FakeStore()
            await stage(tmp_path, other).run(FakeStream([events([item(n) for n in range(6)])]))
            batches = iter([list(b) for b in self.batches])
            yield next(batches)
            current = store.states["cam-1"]
            store.states["cam-1"] = StoredState(
                other.states["cam-1"].state, current.state_format, current.version + 1
            )
            for batch in batches:
                yield batch

    later = events([item(n, end=n == 9) for n in range(6, 10)])
    asyncio.run(tracking.run(Interloper([first, later])))
    # tracked again from the other worker's state (frames 0-5), then 6-9: one sighting of 10
    (sighting,) = store.sightings.values()
    assert (sighting.first_frame, sighting.frames) == (0, 10)
    assert store.states["cam-1"].version == 3


def test_a_camera_that_went_quiet_has_its_tracks_closed_as_idle(tmp_path: Path) -> None:
    store = FakeStore()
    clock = Clock()
    tracking = stage(tmp_path, store, clock, track_idle_flush_s=60.0)

    async def go() -> None:
        stream = FakeStream([events([item(n) for n in range(4)])])
        task = asyncio.create_task(tracking.run(_held_open(stream)))
        await until(lambda: store.open.get("cam-1") == 1, "an open track")
        clock.now += 30.0
        await tracking.close_idle()
        assert store.sightings == {}
        clock.now += 31.0
        await tracking.close_idle()
        assert [s.end_reason for s in store.sightings.values()] == [EndReason.IDLE]
        assert store.open["cam-1"] == 0
        task.cancel()

    asyncio.run(go())


def test_a_restarted_worker_closes_the_tracks_a_stopped_source_left_open(tmp_path: Path) -> None:
    store = FakeStore()
    asyncio.run(stage(tmp_path, store).run(FakeStream([events([item(n) for n in range(4)])])))
    assert store.open["cam-1"] == 1
    clock = Clock()
    restarted = stage(tmp_path, store, clock, track_idle_flush_s=60.0)

    async def go() -> None:
        task = asyncio.create_task(restarted.run(_held_open(FakeStream([]))))
        await until(lambda: restarted._store is not None, "the agent to start")
        await restarted.close_idle()  # adopts cam-1 (its partition is assigned here) ...
        assert store.sightings == {}  # ... but counts its quiet time from now
        clock.now += 61.0
        await restarted.close_idle()
        assert len(store.sightings) == 1
        task.cancel()

    asyncio.run(go())


class _held_open:  # reads like the function it stands for
    """A stream that yields `stream`'s batches and then waits (a worker with no new frames)."""

    def __init__(self, stream: FakeStream) -> None:
        self.stream = stream

    async def take_events(self, n: int, within: float) -> AsyncIterator[list[FakeEvent]]:
        async for batch in self.stream.take_events(n, within):
            yield batch
        await asyncio.Event().wait()
