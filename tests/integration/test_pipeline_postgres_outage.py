"""Postgres stopped in the middle of a run and started again: the sink agent retries with
backoff, and afterwards nothing is lost or duplicated (real worker, broker and Postgres)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg2
import psycopg2.extensions

from fashionstream.app.local_run import start_group_at_end
from fashionstream.core.records import event_id_for_item
from fashionstream.core.settings import REPO_ROOT, Settings
from infra.processes import free_port
from tests.support.pipeline import (
    ImageServer,
    catalogue_rows,
    event_ids,
    metric_value,
    running_worker,
    scrape,
    send_feed,
    send_video,
    unique,
    worker_command,
)
from tests.support.stack import PostgresControl, connect

CLIP = REPO_ROOT / "fashionstream" / "app" / "samples" / "store_camera.mp4"
TIMEOUT_S = 600.0


def test_postgres_down_mid_run_loses_and_duplicates_nothing(
    local_stack: Settings,
    db: psycopg2.extensions.connection,
    postgres_control: PostgresControl,
    tmp_path: Path,
) -> None:
    group = unique("it-pg")
    feed = unique("pg-feed")
    camera = unique("pg-cam")
    metrics_port = free_port()
    start_group_at_end(local_stack, group)
    with ImageServer() as images:
        rows = catalogue_rows(images.base_url, prefix="")
        expected = {event_id_for_item(feed, r["id"], r["image_link"]) for r in rows}
        with running_worker(
            local_stack,
            group,
            tmp_path / "worker.log",
            worker_command(slow_fake=True),
            worker_metrics_port=metrics_port,
        ) as worker:
            assert send_feed(local_stack, rows, feed) == len(rows)
            expected_frames = set(send_video(local_stack, CLIP, camera, fps=2.0))
            total = len(expected) + len(expected_frames)

            deadline = time.monotonic() + TIMEOUT_S
            while (written := len(event_ids(db, feed)) + len(event_ids(db, camera))) < 4:
                assert time.monotonic() < deadline, worker.tail()
                assert worker.alive(), worker.tail()
                time.sleep(0.05)
            assert written < total, "the run finished before Postgres could be stopped"
            db.close()
            postgres_control.stop()
            stopped_at = time.monotonic()
            # while Postgres is down the worker keeps fetching and tagging, and the sink retries
            while time.monotonic() - stopped_at < 8.0:
                assert worker.alive(), worker.tail()
                time.sleep(0.5)
            unavailable = metric_value(
                scrape(metrics_port), "fashionstream_sink_errors_total", error="unavailable"
            )
            assert (unavailable or 0) >= 2, worker.tail()
            postgres_control.start()

            conn = connect(local_stack)
            try:
                deadline = time.monotonic() + TIMEOUT_S
                while len(event_ids(conn, feed)) + len(event_ids(conn, camera)) < total:
                    assert time.monotonic() < deadline, worker.tail()
                    assert worker.alive(), worker.tail()
                    time.sleep(0.2)
                time.sleep(3.0)  # a duplicate write would land by now
                assert sorted(event_ids(conn, feed)) == sorted(expected)
                assert sorted(event_ids(conn, camera)) == sorted(expected_frames)
            finally:
                conn.close()
            assert worker.stop() == 0, worker.tail()
