"""Issue 9, case 5: SIGTERM stops a worker within its stated bound (`shutdown_timeout_s`, 15 s)
even while its sink is retrying a Postgres outage, and what was not durable is read again by the
next worker: nothing lost, nothing twice (real worker, broker and Postgres)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg2.extensions

from fashionstream.app.local_run import start_group_at_end
from fashionstream.core.records import event_id_for_item
from fashionstream.core.settings import Settings
from tests.support.pipeline import (
    ImageServer,
    event_ids,
    running_worker,
    send_feed,
    unique,
    wait_for_images,
    worker_command,
)
from tests.support.stack import PostgresControl, connect

TIMEOUT_S = 240.0
SHUTDOWN_BOUND_S = Settings.shutdown_timeout_s  # the documented default: 15 s


def wait_for_log(path: Path, text: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not logged {count} times in {timeout_s:.0f} s")


def test_sigterm_stops_the_worker_within_its_bound_while_postgres_is_down(
    local_stack: Settings,
    db: psycopg2.extensions.connection,
    postgres_control: PostgresControl,
    tmp_path: Path,
) -> None:
    group = unique("it-stop")
    feed = unique("stop")
    start_group_at_end(local_stack, group)
    with ImageServer() as server:
        names = ("dress-1.jpg", "shirt-1.jpg", "street-1.jpg", "street-2.jpg", "street-3.jpg")
        rows = [
            {"id": f"i{n}", "image_link": server.base_url + name} for n, name in enumerate(names)
        ]
        expected = {event_id_for_item(feed, r["id"], r["image_link"]) for r in rows}
        log = tmp_path / "worker-1.log"
        with running_worker(local_stack, group, log, worker_command()) as worker:
            assert send_feed(local_stack, rows[:2], feed) == 2
            wait_for_images(db, feed, 2, TIMEOUT_S, worker)
            db.close()
            postgres_control.stop()
            assert send_feed(local_stack, rows[2:], feed) == 3
            # the rest is fetched and tagged; its sink batch is held and retried
            wait_for_log(log, "Postgres unavailable (attempt 2", 1, TIMEOUT_S)
            started = time.monotonic()
            status = worker.stop(timeout_s=120.0)
            stop_s = time.monotonic() - started
            print(f"stopped in {stop_s:.1f} s (bound {SHUTDOWN_BOUND_S:.0f} s), status {status}")
            assert stop_s < SHUTDOWN_BOUND_S, worker.tail()
            assert status == 0, worker.tail()
            assert "left for redelivery" in log.read_text()

        postgres_control.start()
        conn = connect(local_stack)
        try:
            with running_worker(
                local_stack, group, tmp_path / "worker-2.log", worker_command()
            ) as w2:
                wait_for_images(conn, feed, len(rows), TIMEOUT_S, w2)
                time.sleep(3.0)  # a duplicate would land by now
                assert w2.stop() == 0, w2.tail()
            assert sorted(event_ids(conn, feed)) == sorted(expected)
        finally:
            conn.close()
