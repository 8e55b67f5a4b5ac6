"""Issue 9, cases 1-4 on the real worker, broker and Postgres: records that used to stop the
pipeline for good (a crash loop of the fetch agent, a sink retrying forever with Postgres up)
each end as one dead letter -- or, for the id in two letter cases, as one row -- while the worker
stays alive and good records sent after them still land."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg2.extensions

from fashionstream.app.local_run import start_group_at_end
from fashionstream.core.errors import DeadLetterReason
from fashionstream.core.records import ImageRequest, SourceKind, Topic, event_id_for_item
from fashionstream.core.settings import Settings
from tests.support.pipeline import (
    DeadLetterReader,
    ImageServer,
    event_ids,
    produce_raw,
    running_worker,
    send_feed,
    unique,
    wait_for_images,
    worker_command,
)
from tests.support.records import tagged_image

TIMEOUT_S = 240.0


def request(feed: str, item_id: str, url: str, **attributes: str) -> bytes:
    return ImageRequest(
        feed=feed, item_id=item_id, image_url=url, submitted_at=time.time(), attributes=attributes
    ).to_json()


def test_poison_records_end_as_one_dead_letter_each_and_the_pipeline_goes_on(
    local_stack: Settings, db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    group = unique("it-poison")
    feed = unique("poison")
    run = feed  # dead-letter keys unique to this run: the topic is read from its beginning
    start_group_at_end(local_stack, group)
    letters = DeadLetterReader(local_stack)
    with ImageServer() as server:
        base = server.base_url
        long_id = "L" * 4000
        huge_url = base + "missing-" + "u" * (4_500_000) + ".jpg"
        bad = {
            # case 1: a 4.5 MB URL that fails; its dead letter carried it twice (9 MB)
            f"{run}-huge-url": (request(feed, "huge-url", huge_url), Topic.IMAGES),
            # case 2: a 7.8 MB column and a 1024x1024 noise JPEG: the frame is over 8 MiB
            f"{run}-big-frame": (
                request(feed, "big-frame", base + "noise.jpg", description="d" * 7_800_000),
                Topic.IMAGES,
            ),
            # case 3: an id Postgres cannot index (54000), on the images topic and as a tagged
            # record straight onto the items topic
            f"{run}-long-id": (
                json.dumps(
                    {
                        "schema": ImageRequest.SCHEMA,
                        "feed": feed,
                        "item_id": long_id,
                        "image_url": base + "dress-1.jpg",
                        "submitted_at": time.time(),
                        "attributes": {},
                    }
                ).encode(),
                Topic.IMAGES,
            ),
            f"{run}-long-tagged": (
                tagged_image(
                    index=4000, source_kind=SourceKind.FEED, source_id=feed, item_id="T" * 4000
                ).to_json(),
                Topic.ITEMS,
            ),
        }
        # case 4: one event id in two letter cases, in one sink batch: one row
        twin = tagged_image(index=7, source_kind=SourceKind.FEED, source_id=feed)
        twins = [
            twin.to_json(),
            tagged_image(
                index=7, source_kind=SourceKind.FEED, source_id=feed, event_id=twin.event_id.upper()
            ).to_json(),
        ]
        good = [
            {"id": f"good-{n}", "image_link": base + name}
            for n, name in enumerate(("dress-1.jpg", "shirt-1.jpg", "street-1.jpg"))
        ]
        expected = {event_id_for_item(feed, r["id"], r["image_link"]) for r in good}
        expected.add(twin.event_id)

        with running_worker(
            local_stack, group, tmp_path / "worker.log", worker_command()
        ) as worker:
            for key, (value, topic) in bad.items():
                produce_raw(local_stack, topic, key.encode(), value)
            for value in twins:
                produce_raw(local_stack, Topic.ITEMS, f"{run}-twin".encode(), value)
            assert send_feed(local_stack, good, feed) == len(good)

            wait_for_images(db, feed, len(expected), TIMEOUT_S, worker)
            seen = letters.wait_for(lambda got: set(bad) <= {d.key for d in got}, TIMEOUT_S)
            time.sleep(3.0)  # a second dead letter or a late row would arrive by now
            seen = letters.wait_for(lambda _: False, 1.0)
            assert worker.alive(), worker.tail()

        mine = [d for d in seen if d.key in bad or d.key == f"{run}-twin"]
        per_key = {key: [d for d in mine if d.key == key] for key in bad}
        assert {k: len(v) for k, v in per_key.items()} == dict.fromkeys(bad, 1), worker.tail()
        assert all(d.key != f"{run}-twin" for d in mine)
        reasons = {k: v[0].reason for k, v in per_key.items()}
        assert reasons[f"{run}-big-frame"] is DeadLetterReason.OVERSIZE_MESSAGE
        assert reasons[f"{run}-long-id"] is DeadLetterReason.BAD_RECORD
        assert reasons[f"{run}-long-tagged"] is DeadLetterReason.BAD_RECORD
        assert "4000 characters" in per_key[f"{run}-long-id"][0].detail
        huge = per_key[f"{run}-huge-url"][0]
        assert huge.reference is not None
        assert "truncated" in huge.reference
        assert len(huge.reference) <= 2000
    letters.close()
    assert sorted(event_ids(db, feed)) == sorted(expected)  # each good record exactly one row
