"""sinks.sightings against the real Postgres of the session stack: a camera's tracker state, its
sightings and their frames commit together, a re-run of the same frames adds no row, a stale
state version commits nothing, and the sightings join the per-frame rows they came from."""

from __future__ import annotations

import psycopg2.extensions
import pytest
from prometheus_client import CollectorRegistry

from fashionstream.core.metrics import Metrics
from fashionstream.core.records import TaggedImage
from fashionstream.core.settings import Settings
from models.tracking import (
    STATE_FORMAT,
    CameraTracker,
    TrackingConfig,
    TrackingResult,
    frame_detections,
)
from sinks.postgres import PostgresSink
from sinks.sightings import CameraWrite, SightingSink, StaleTrackerStateError
from tests.support.records import tagged_image
from tests.support.stack import count_rows

STREAM = "test.mp4"
T0 = 1_750_000_000.0
TABLES = ("tracker_states", "sightings", "sighting_garments", "sighting_frames")


def camera_frames(
    camera: str, n: int, *, people: int = 1, gap: range = range(0)
) -> list[TaggedImage]:
    """`n` tagged frames of one recording at 2 fps: `people` standing still (the conftest
    record's boxes), absent in the frames of `gap`, the last frame marked as the end."""
    return [
        tagged_image(
            index=i,
            source_id=camera,
            people=0 if i in gap else people,
            garments=0 if i in gap else 2,
            captured_at=T0 + i / 2,
            submitted_at=T0 + i / 2,
            stream_ref=STREAM,
            end_of_stream=i == n - 1,
        )
        for i in range(n)
    ]


def track(
    camera: str, frames: list[TaggedImage], tracker: CameraTracker | None = None
) -> tuple[CameraTracker, TrackingResult]:
    """What the tracking agent does with a batch: each record through the stream adapter."""
    tracker = tracker or CameraTracker(camera, TrackingConfig(fps=2.0))
    result = TrackingResult()
    for record in frames:
        result.extend(tracker.update(frame_detections(record)))
    return tracker, result


def write_for(
    camera: str, tracker: CameraTracker, result: TrackingResult, expected_version: int
) -> CameraWrite:
    return CameraWrite(
        camera=camera,
        partition=0,
        state=tracker.to_bytes(),
        state_format=STATE_FORMAT,
        stream_ref=tracker.stream_ref,
        last_frame=tracker.last_frame,
        open_tracks=tracker.open_tracks,
        expected_version=expected_version,
        sightings=tuple(result.sightings),
        frames=tuple(result.frames),
    )


def counts(db: psycopg2.extensions.connection) -> dict[str, int]:
    return {t: count_rows(db, t) for t in TABLES}


def sinks(settings: Settings) -> tuple[PostgresSink, SightingSink, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_metrics=False)
    return (
        PostgresSink.from_settings(settings, metrics),
        SightingSink.from_settings(settings, metrics),
        registry,
    )


def test_sightings_state_and_frames_commit_together_and_a_rerun_adds_no_row(
    local_stack: Settings, db: psycopg2.extensions.connection
) -> None:
    rows, sightings, registry = sinks(local_stack)
    # one person, away for 5 s in the middle: two sightings of two garments each
    frames = camera_frames("cam-s", 30, gap=range(10, 20))
    for record in frames:
        rows.add(record)
    rows.flush()

    # the first batch (frames 0-17): the first sighting closes (3.5 s unseen at frame 16)
    tracker, first = track("cam-s", frames[:18])
    assert len(first.sightings) == 1
    assert sightings.load("cam-s") is None
    sightings.add(write_for("cam-s", tracker, first, expected_version=0))
    assert sightings.flush() == 1
    assert counts(db) == {
        "tracker_states": 1,
        "sightings": 1,
        "sighting_garments": 2,
        "sighting_frames": 10,
    }
    stored = sightings.load("cam-s")
    assert stored is not None
    assert (stored.version, stored.state_format) == (1, STATE_FORMAT)
    assert sightings.cameras_with_open_tracks([0]) == []  # the track closed, none open

    # the second batch continues from the stored state, as a restarted worker would
    resumed = CameraTracker.from_bytes(stored.state, TrackingConfig(fps=2.0))
    resumed, second = track("cam-s", frames[18:], resumed)
    assert len(second.sightings) == 1
    sightings.add(write_for("cam-s", resumed, second, expected_version=1))
    assert sightings.flush() == 1
    expected = {"tracker_states": 1, "sightings": 2, "sighting_garments": 4, "sighting_frames": 20}
    assert counts(db) == expected

    # the whole recording processed again from its start (a re-run of the same video):
    # the same sightings, rewritten in place
    again_tracker, again = track("cam-s", frames, resumed)
    assert again.sightings == first.sightings + second.sightings
    sightings.add(write_for("cam-s", again_tracker, again, expected_version=2))
    assert sightings.flush() == 2
    assert counts(db) == expected

    with db.cursor() as cur:
        cur.execute(
            "SELECT s.first_frame, s.last_frame, s.frames_seen, s.end_reason, src.source_id,"
            " s.first_seen_at = to_timestamp(%s)"
            " FROM sightings s JOIN sources src ON src.id = s.source_pk ORDER BY s.first_frame",
            (T0,),
        )
        assert cur.fetchall() == [
            (0, 9, 10, "lost", "cam-s", True),
            (20, 29, 10, "end_of_stream", "cam-s", False),
        ]
        # every sighting frame is a frame the per-frame sink wrote, with that person and the
        # garments they wore in it
        cur.execute(
            "SELECT count(*), count(p.id), count(DISTINCT g.id)"
            " FROM sighting_frames f JOIN images i ON i.event_id = f.event_id"
            " AND i.model_version = f.model_version"
            " LEFT JOIN people p ON p.image_id = i.id AND p.person_index = f.person_index"
            " LEFT JOIN garments g ON g.image_id = i.id"
            " AND g.garment_index = ANY(f.garment_indexes)"
        )
        assert cur.fetchone() == (40, 40, 40)
        # the garments voted over each sighting
        cur.execute(
            "SELECT category, frames_seen, attributes -> 'articleType' ->> 'label', colour_name"
            " FROM sighting_garments ORDER BY sighting_pk, garment_index"
        )
        garments = cur.fetchall()
        assert sorted({g[0] for g in garments}) == ["top", "trousers"]
        assert {(g[1], g[2], g[3]) for g in garments} == {(10, "Tshirts", "Navy Blue")}
        cur.execute("SELECT version, open_tracks, last_frame, stream_ref FROM tracker_states")
        assert cur.fetchone() == (3, 0, 29, STREAM)
    assert registry.get_sample_value(
        "fashionstream_rows_written_total", {"table": "sightings"}
    ) == pytest.approx(4.0)
    rows.close()
    sightings.close()


def test_a_stale_state_version_commits_nothing_of_the_batch(
    local_stack: Settings, db: psycopg2.extensions.connection
) -> None:
    _, sightings, _ = sinks(local_stack)
    frames = camera_frames("cam-a", 6)
    tracker, result = track("cam-a", frames[:3])  # one open track, no sighting yet
    sightings.add(write_for("cam-a", tracker, result, expected_version=0))
    sightings.flush()
    assert sightings.cameras_with_open_tracks([0]) == ["cam-a"]
    assert sightings.cameras_with_open_tracks([1, 2]) == []
    before = counts(db)

    # another worker's view: it loaded cam-a at version 0 too, and has cam-b in the same batch
    tracker, result = track("cam-a", frames)
    other_tracker, other = track("cam-b", camera_frames("cam-b", 6))
    sightings.add(write_for("cam-a", tracker, result, expected_version=0))
    sightings.add(write_for("cam-b", other_tracker, other, expected_version=0))
    with pytest.raises(StaleTrackerStateError) as raised:
        sightings.flush()
    assert raised.value.cameras == ("cam-a",)
    assert counts(db) == before  # cam-b's sighting was not committed either
    assert sightings.pending == 0
    sightings.close()


def test_a_state_written_by_another_tracking_format_is_loaded_as_stored(
    local_stack: Settings, db: psycopg2.extensions.connection
) -> None:
    """The sink stores and returns the bytes and their format; deciding they cannot be used
    (and starting afresh) is the agent's job (stream_processors/tracking.py)."""
    _, sightings, _ = sinks(local_stack)
    write = CameraWrite(
        camera="cam-old",
        partition=3,
        state=b"\x00old",
        state_format="fashionstream.tracking/0",
        stream_ref=None,
        last_frame=None,
        open_tracks=1,
        expected_version=0,
    )
    sightings.add(write)
    assert sightings.flush() == 0
    stored = sightings.load("cam-old")
    assert stored is not None
    assert (stored.state, stored.state_format, stored.version) == (
        b"\x00old",
        "fashionstream.tracking/0",
        1,
    )
    assert sightings.cameras_with_open_tracks([3]) == ["cam-old"]
    assert counts(db)["tracker_states"] == 1
    sightings.close()
