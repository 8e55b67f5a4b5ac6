"""Issue 9, case 7 on the real worker, broker and Postgres: a slow host holds one fetch slot,
not a batch. Sixteen catalogue rows, two of them (one in every eight) on a host that answers
only after SLOW_S; the fourteen others are all written long before that (before the fix, the
second batch of eight waited for the first batch's slow member)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg2.extensions

from fashionstream.app.local_run import start_group_at_end
from fashionstream.core.records import event_id_for_item
from fashionstream.core.settings import Settings
from tests.support.pipeline import (
    ImageServer,
    catalogue_rows,
    event_ids,
    running_worker,
    send_feed,
    unique,
    wait_for_images,
    worker_command,
)

SLOW_S = 12.0
TIMEOUT_S = 180.0


def test_one_slow_host_in_eight_does_not_hold_back_the_others(
    local_stack: Settings, db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    group = unique("it-fair")
    feed = unique("fair")
    start_group_at_end(local_stack, group)
    with ImageServer() as server:
        base = server.base_url
        rows = catalogue_rows(base, prefix="")[:16]
        for n in (0, 8):  # one slow host in every eight rows
            name = rows[n]["image_link"].rsplit("/", 1)[1]
            rows[n] = {**rows[n], "image_link": f"{base}slow/{name}?s={SLOW_S}"}
        slow = {event_id_for_item(feed, rows[n]["id"], rows[n]["image_link"]) for n in (0, 8)}
        with running_worker(
            local_stack,
            group,
            tmp_path / "worker.log",
            worker_command(),
            fetch_read_timeout_s=2 * SLOW_S,  # the slow host is slow, not dead
        ) as worker:
            # the worker is up once it has written a first image
            warm = {"id": "warm-up", "image_link": base + "dress-1.jpg"}
            send_feed(local_stack, [warm], feed)
            wait_for_images(db, feed, 1, TIMEOUT_S, worker)
            started = time.monotonic()
            assert send_feed(local_stack, rows, feed) == len(rows)
            wait_for_images(db, feed, 1 + len(rows) - 2, TIMEOUT_S, worker)
            fast_s = time.monotonic() - started
            written = set(event_ids(db, feed))
            wait_for_images(db, feed, 1 + len(rows), TIMEOUT_S, worker)
            all_s = time.monotonic() - started
    print(
        f"fair fetch: 14 fast images written in {fast_s:.1f} s, all 16 in {all_s:.1f} s"
        f" (slow host {SLOW_S:.0f} s)"
    )
    assert not (slow & written), "the slow ones came before the fast ones were done?"
    assert fast_s < SLOW_S, f"the fast images waited for the slow host: {fast_s:.1f} s"
