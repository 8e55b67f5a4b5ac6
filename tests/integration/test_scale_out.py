"""Scale-out: several workers of one consumer group on the real embedded broker and Postgres,
with rebalances in the middle of the run. Four cameras (two recordings queued, two sending at a
camera's pace throughout) and a catalogue feed flow; two workers
start, a third joins mid-run, one is killed with SIGKILL mid-batch and another stopped with
SIGTERM mid-batch; the third finishes. Every catalogue item and frame ends as exactly one row
(none is a dead letter here), each camera's sightings are exactly those of one uninterrupted
tracker over the same frames, and the records tagged twice (a batch redone after its worker
died or lost its partition before committing) are counted and printed.

The workers run the fake tagger (0.1 s an image, so that every event lands mid-batch and the run
stays short on 2 cores): what is tested is the group's semantics, not the models.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2.extensions
import pytest
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from fashionstream.app.local_run import WorkerProcess, start_group_at_end
from fashionstream.app.video_tracking import track_recording
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import TaggedImage, Topic, event_id_for_item
from fashionstream.core.settings import REPO_ROOT, BrokerKind, Settings
from models.tracking import TrackingConfig
from producers.decoding import VideoOptions
from producers.video import VideoProducer, VideoReport
from tests.support import fake_worker
from tests.support.fake_tagger import FakeTagger
from tests.support.pipeline import (
    DeadLetterReader,
    ImageServer,
    catalogue_rows,
    event_ids,
    expected_frame_ids,
    running_worker,
    send_feed,
    send_video,
    sighting_keys,
    stored_sightings,
    unique,
    wait_for_images,
    wait_for_sightings,
)
from tests.support.stack import KAFKA_ENV, broker_under_test

CLIP = REPO_ROOT / "fashionstream" / "app" / "samples" / "store_camera.mp4"  # 48 frames at 2 fps
CAMERAS = 4
SECONDS_PER_IMAGE = 0.1
TIMEOUT_S = 240.0  # the whole run, rebalances and a killed member's session timeout included


def rows_for(db: psycopg2.extensions.connection, sources: list[str]) -> int:
    return sum(len(event_ids(db, s)) for s in sources)


def wait_until_written(
    db: psycopg2.extensions.connection,
    sources: list[str],
    at_least: int,
    workers: list[WorkerProcess],
) -> int:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        done = rows_for(db, sources)
        if done >= at_least:
            return done
        for w in workers:
            assert w.alive(), w.tail()
        time.sleep(0.1)
    raise AssertionError(f"{rows_for(db, sources)} of {at_least} rows after {TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def cameras_sending(settings: Settings, cameras: list[str]) -> Iterator[list[VideoReport]]:
    """Each camera sends CLIP at its own pace (as a camera films) in its own thread while the
    block runs; the reports are complete once it has ended."""
    reports: list[VideoReport] = []

    def send(camera: str) -> None:
        producer = VideoProducer.from_settings(
            settings, Metrics(CollectorRegistry(), process_metrics=False)
        )
        try:
            reports.append(producer.send_file(CLIP, camera, pace=True))
        finally:
            producer.close()

    threads = [threading.Thread(target=send, args=(c,), daemon=True) for c in cameras]
    for t in threads:
        t.start()
    try:
        yield reports
    finally:
        for t in threads:
            t.join(timeout=TIMEOUT_S)


def items_end_offsets(settings: Settings) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","))
    try:
        partitions = consumer.partitions_for_topic(Topic.ITEMS.value) or set()
        tps = [TopicPartition(Topic.ITEMS.value, p) for p in sorted(partitions)]
        return dict(consumer.end_offsets(tps))
    finally:
        consumer.close()


def tagged_counts(
    settings: Settings, since: dict[TopicPartition, int], sources: set[str]
) -> collections.Counter[str]:
    """How many tagged records each event id of `sources` got on fashion.items.v1 after `since`:
    1 for a frame tagged once, 2 for one redone after a rebalance or a kill."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    counts: collections.Counter[str] = collections.Counter()
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        for record in consumer:
            tagged = TaggedImage.from_json(record.value)
            if tagged.source_id in sources:
                counts[tagged.event_id] += 1
    finally:
        consumer.close()
    return counts


def test_workers_join_die_and_leave_mid_run_and_every_record_is_one_row(
    local_stack: Settings, db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    if broker_under_test() is BrokerKind.NOIDA and not os.environ.get(KAFKA_ENV):
        pytest.skip("noida-db never expires a killed group member; run on tansu or Kafka")
    started = time.monotonic()
    group = unique("it-scale")
    feed = unique("scale-feed")
    cameras = [unique(f"scale-cam{i}") for i in range(CAMERAS)]
    start_group_at_end(local_stack, group)
    letters = DeadLetterReader(local_stack)
    since = items_end_offsets(local_stack)
    tracking = TrackingConfig.from_settings(local_stack)
    expected_sightings = {
        camera: sighting_keys(
            track_recording(
                CLIP,
                FakeTagger(),
                camera=camera,
                config=tracking,
                options=VideoOptions.from_settings(local_stack),
                batch_size=local_stack.batch_size,
            ).sightings
        )
        for camera in cameras
    }
    command = fake_worker.command(seconds_per_image=SECONDS_PER_IMAGE)
    sources = [feed, *cameras]
    events: list[tuple[str, int, float]] = []  # (what, rows written by then, wall clock)
    with ImageServer() as images:
        rows = catalogue_rows(images.base_url, prefix="")
        expected_items = {event_id_for_item(feed, r["id"], r["image_link"]) for r in rows}
        # two cameras' recordings wait in Kafka; the other two send live-paced during the run
        queued, paced = cameras[: CAMERAS // 2], cameras[CAMERAS // 2 :]
        expected_frames = {c: set(send_video(local_stack, CLIP, c, fps=2.0)) for c in queued}
        expected_frames |= {c: set(expected_frame_ids(CLIP, c, 2.0)) for c in paced}
        assert send_feed(local_stack, rows, feed) == len(rows)
        total = len(expected_items) + sum(len(f) for f in expected_frames.values())

        def log(n: int) -> Path:
            return tmp_path / f"worker-{n}.log"

        with (
            running_worker(local_stack, group, log(1), command) as first,
            running_worker(local_stack, group, log(2), command) as second,
            cameras_sending(local_stack, paced) as reports,
        ):
            done = wait_until_written(db, sources, total // 5, [first, second])
            events.append(("a third worker joins", done, time.time()))
            with running_worker(local_stack, group, log(3), command) as third:
                workers = [first, second, third]
                done = wait_until_written(db, sources, total * 2 // 5, workers)
                events.append(("one is SIGKILLed", done, time.time()))
                first.kill()
                assert first.process.returncode == -9
                done = wait_until_written(db, sources, total * 3 // 5, [second, third])
                events.append(("one is SIGTERMed", done, time.time()))
                assert second.stop() == 0, second.tail()
                assert rows_for(db, sources) < total, "the run ended before the last stop"

                wait_for_images(db, feed, len(expected_items), TIMEOUT_S, third)
                for camera in cameras:
                    wait_for_images(db, camera, len(expected_frames[camera]), TIMEOUT_S, third)
                    wait_for_sightings(
                        db, camera, len(expected_sightings[camera]), TIMEOUT_S, third
                    )
                time.sleep(3.0)  # anything redelivered after the last rebalance lands by now
                assert third.stop() == 0, third.tail()
        assert all(r.completed and r.frames_sent == len(expected_frames[r.camera]) for r in reports)

    # every item and frame one row: none lost (sets equal), none twice (the lists have no
    # repeats: the sink upserts by event id, and the images table's key forbids a second row)
    assert sorted(event_ids(db, feed)) == sorted(expected_items)
    for camera in cameras:
        assert sorted(event_ids(db, camera)) == sorted(expected_frames[camera])
        # the same sightings as one uninterrupted tracker: none lost, none twice, none cut in two
        assert stored_sightings(db, camera) == expected_sightings[camera], camera
    stray = [d for d in letters.wait_for(lambda _: False, 1.0) if d.source_id in sources]
    letters.close()
    assert stray == []
    counts = tagged_counts(local_stack, since, set(sources))
    assert set(counts) == expected_items | set().union(*expected_frames.values())
    redone = sum(n - 1 for n in counts.values())
    # what each rebalance cost: the longest time without a row committed in the 20 s after it
    commits = committed_at(db, sources)
    pauses = [
        f"{what} at {done}/{total}: longest pause {longest_pause(commits, at, at + 20.0):.1f} s"
        for what, done, at in events
    ]
    print(
        f"{'; '.join(pauses)}; {total} records, {redone} tagged more than once (batches redone"
        f" after a rebalance or the kill), each a single row; {time.monotonic() - started:.0f} s"
    )


def committed_at(db: psycopg2.extensions.connection, sources: list[str]) -> list[float]:
    with db.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM i.written_at)::float8 FROM images i"
            " JOIN sources s ON s.id = i.source_pk WHERE s.source_id = ANY(%s) ORDER BY 1",
            (sources,),
        )
        return [float(r[0]) for r in cur.fetchall()]


def longest_pause(commits: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] without a commit (ends at the last commit)."""
    inside = [t for t in commits if start <= t <= end]
    marks = [start, *inside]
    return max((b - a for a, b in itertools.pairwise(marks)), default=end - start)
