"""Hostile inputs against the real worker, broker and Postgres: each reaches the dead-letter
topic with the right reason and its topic/partition/offset, while good items in the same run
still land in Postgres."""

from __future__ import annotations

from pathlib import Path

import psycopg2.extensions

from fashionstream.app.local_run import start_group_at_end
from fashionstream.core.errors import DeadLetterReason
from fashionstream.core.records import DeadLetter, Topic
from fashionstream.core.settings import Settings
from tests.support.pipeline import (
    IMAGE_HOST,
    DeadLetterReader,
    ImageServer,
    produce_raw,
    running_worker,
    send_feed,
    unique,
    wait_for_images,
    worker_command,
)

TIMEOUT_S = 180.0


def test_hostile_inputs_are_dead_lettered_and_good_items_still_land(
    local_stack: Settings, db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    group = unique("it-hostile")
    feed = unique("hostile")
    run = unique("h")
    start_group_at_end(local_stack, group)
    letters = DeadLetterReader(local_stack)
    with ImageServer() as server:
        base = server.base_url
        hostile = {
            "404": (base + "no-such-image.jpg", DeadLetterReason.HTTP_STATUS),
            "html": (base + "not-an-image.jpg", DeadLetterReason.NOT_AN_IMAGE),
            "truncated": (base + "truncated.jpg", DeadLetterReason.TRUNCATED_IMAGE),
            "huge": (base + "huge.jpg", DeadLetterReason.TOO_LARGE),
            "bomb": (base + "bomb.png", DeadLetterReason.DECOMPRESSION_BOMB),
            "to-loopback": (
                f"{base}redirect?to=http://127.0.0.1:{server.port}/dress-1.jpg",
                DeadLetterReason.ADDRESS_REFUSED,
            ),
            "to-metadata": (
                f"{base}redirect?to=http://169.254.169.254/latest/meta-data/",
                DeadLetterReason.ADDRESS_REFUSED,
            ),
            "ftp": (f"ftp://{IMAGE_HOST}/dress-1.jpg", DeadLetterReason.SCHEME_NOT_ALLOWED),
        }
        good = {"good-1": "dress-1.jpg", "good-2": "shirt-1.jpg", "good-3": "street-1.jpg"}
        rows = [
            {"id": f"{run}-{name}", "image_link": url, "title": name}
            for name, (url, _reason) in hostile.items()
        ] + [{"id": f"{run}-{name}", "image_link": base + f} for name, f in good.items()]
        garbage = {
            Topic.IMAGES: f"{run}-garbage-images",
            Topic.FRAMES: f"{run}-garbage-frames",
            Topic.ITEMS: f"{run}-garbage-items",
        }
        expected = {f"{run}-{name}": reason for name, (_url, reason) in hostile.items()}
        expected.update(dict.fromkeys(garbage.values(), DeadLetterReason.BAD_RECORD))

        with running_worker(
            local_stack, group, tmp_path / "worker.log", worker_command()
        ) as worker:
            for topic, key in garbage.items():
                produce_raw(local_stack, topic, key.encode(), b"\x00\xffgarbage, not a record")
            assert send_feed(local_stack, rows, feed) == len(rows)

            def complete(seen: list[DeadLetter]) -> bool:
                return set(expected) <= {d.key for d in seen}

            seen = letters.wait_for(complete, TIMEOUT_S)
            mine = {d.key: d for d in seen if d.key in expected}
            assert set(mine) == set(expected), worker.tail()
            assert {k: d.reason for k, d in mine.items()} == expected
            wait_for_images(db, feed, len(good), TIMEOUT_S, worker)
            assert worker.alive(), worker.tail()

    letters.close()
    for key, letter in mine.items():
        assert letter.origin is not None, key
        assert letter.origin.offset >= 0
        assert letter.detail
    for topic, key in garbage.items():
        origin = mine[key].origin
        assert origin is not None
        assert origin.topic == topic.value
    stages = {key: mine[key].stage for key in mine}
    assert stages[garbage[Topic.IMAGES]] == "fetch"
    assert stages[garbage[Topic.FRAMES]] == "tag"
    assert stages[garbage[Topic.ITEMS]] == "sink"
    assert stages[f"{run}-html"] == "decode"
    assert stages[f"{run}-ftp"] == "fetch"
    assert mine[f"{run}-ftp"].reference == f"ftp://{IMAGE_HOST}/dress-1.jpg"
    assert mine[f"{run}-404"].source_id == feed
    with db.cursor() as cur:
        cur.execute(
            "SELECT c.item_id FROM images i JOIN catalogue_items c ON c.id = i.item_pk"
            " JOIN sources s ON s.id = i.source_pk WHERE s.source_id = %s",
            (feed,),
        )
        landed = sorted(row[0] for row in cur.fetchall())
    assert landed == sorted(f"{run}-{name}" for name in good)
