"""Tracking in the real pipeline (the real `fashionstream worker`, broker and Postgres): a
camera's recording becomes exactly the sightings `fashionstream track` finds in it offline, and
sending the same recording again rewrites them without adding a row."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg2.extensions

from fashionstream.app.local_run import start_group_at_end
from fashionstream.core.settings import REPO_ROOT, Settings
from tests.support import fake_worker
from tests.support.pipeline import (
    offline_sightings,
    running_worker,
    send_video,
    sighting_keys,
    stored_sightings,
    unique,
    wait_for_images,
    wait_for_sightings,
    worker_command,
)
from tests.support.stack import count_rows

CLIP = REPO_ROOT / "tests" / "fixtures" / "video" / "person_4s.mp4"  # 8 frames at 2 fps
TIMEOUT_S = 300.0  # the real tagger on 2 shared CPU cores


def sighting_rows(db: psycopg2.extensions.connection) -> dict[str, int]:
    return {t: count_rows(db, t) for t in ("sightings", "sighting_garments", "sighting_frames")}


def test_a_recording_becomes_the_offline_sightings_and_sending_it_again_adds_no_row(
    local_stack: Settings, db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    group = unique("it-track")
    camera = unique("track-cam")
    start_group_at_end(local_stack, group)
    expected = sighting_keys(offline_sightings(local_stack, CLIP, camera, fps=2.0))
    assert expected, "the clip shows a person: the offline tracker must find a sighting"
    with running_worker(local_stack, group, tmp_path / "worker.log", worker_command()) as worker:
        frames = send_video(local_stack, CLIP, camera, fps=2.0)
        wait_for_images(db, camera, len(frames), TIMEOUT_S, worker)
        # the last frame is marked as the recording's end: its sightings close at once
        assert wait_for_sightings(db, camera, len(expected), TIMEOUT_S, worker) == expected
        first = sighting_rows(db)
        assert first["sighting_frames"] == sum(k[3] for k in expected)
        # each sighting's best view came with its crop, cut by the tagging agent
        with db.cursor() as cur:
            cur.execute(
                "SELECT t.width, t.height, octet_length(t.jpeg) FROM sighting_thumbnails t"
                " JOIN sightings x ON x.id = t.sighting_pk JOIN sources s ON s.id = x.source_pk"
                " WHERE s.source_id = %s",
                (camera,),
            )
            pictures = cur.fetchall()
        assert len(pictures) == len(expected)
        for width, height, size in pictures:
            assert 0 < width <= 96
            assert 0 < height <= 144
            assert 200 < size < 16384

        # the same recording again: tracked again from its first frame, same sightings
        with db.cursor() as cur:
            cur.execute("SELECT max(written_at) FROM sightings")
            (written,) = cur.fetchone()
        send_video(local_stack, CLIP, camera, fps=2.0)
        rewritten = 0
        deadline = time.monotonic() + TIMEOUT_S
        while rewritten < len(expected):
            assert worker.alive(), worker.tail()
            assert time.monotonic() < deadline, f"{rewritten} sightings rewritten\n{worker.tail()}"
            time.sleep(0.3)
            with db.cursor() as cur:
                cur.execute("SELECT count(*) FROM sightings WHERE written_at > %s", (written,))
                (rewritten,) = cur.fetchone()
        assert stored_sightings(db, camera) == expected
        assert sighting_rows(db) == first
        assert worker.stop() == 0, worker.tail()


def test_bench_video_measures_a_camera_through_the_pipeline(local_stack: Settings) -> None:
    """`fashionstream bench video`'s plumbing, with the instant fake tagger: every frame sent is
    tagged, the recording's end closes its one sighting, and the lag is measured."""
    from fashionstream.app.bench_video import run_bench_video

    report = run_bench_video(
        local_stack,
        CLIP,
        cameras=[2],
        workers=[1],
        duration_s=None,
        pace=True,
        timeout_s=TIMEOUT_S,
        progress=False,
        worker_command=fake_worker.command(),
    )
    (run,) = report["runs"]
    assert (run["cameras"], run["workers"], run["frames"]) == (2, 1, 16)
    assert run["sightings"] == 2  # the fake sees one person in every frame: one per camera
    assert 0.0 < run["lag_p50_s"] <= run["lag_p95_s"] <= run["lag_max_s"] < 60.0
    assert run["needed_fps"] == 4.0
    assert run["tagged_fps"] > 0.0
    assert run["worker_rss_mb_start"][0] > 50.0
    assert report["source_decode"]["sampled_frames_per_second"] > 2.0
