"""End to end against the real broker and Postgres: a catalogue feed and a video become rows,
re-running the same feed adds none, and the worker's /metrics shows the traffic."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import psycopg2.extensions
from PIL import Image

from fashionstream.app.local_run import start_group_at_end
from fashionstream.core.records import (
    Frame,
    SourceKind,
    Topic,
    event_id_for_frame,
    event_id_for_item,
)
from fashionstream.core.settings import REPO_ROOT, Settings
from infra.processes import free_port
from producers.kafka import Deliveries, build_producer
from tests.support.pipeline import (
    DeadLetterReader,
    ImageServer,
    catalogue_rows,
    event_ids,
    metric_value,
    running_worker,
    scrape,
    send_feed,
    send_video,
    unique,
    wait_for_images,
    worker_command,
)

CLIP = REPO_ROOT / "tests" / "fixtures" / "video" / "person_4s.mp4"
TIMEOUT_S = 300.0  # the real tagger on 2 shared CPU cores


def big_frame(camera: str) -> Frame:
    """A 2400x1800 frame of noise at JPEG quality 95: several MB on the wire."""
    pixels = np.random.default_rng(7).integers(0, 256, (1800, 2400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95)
    now = time.time()
    return Frame(
        event_id=event_id_for_frame(camera, "big", 0),
        source_kind=SourceKind.CAMERA,
        source_id=camera,
        captured_at=now,
        submitted_at=now,
        jpeg=out.getvalue(),
        frame_number=0,
    )


def send_frame(settings: Settings, frame: Frame) -> None:
    producer = build_producer(settings, client_id="test-big-frame")
    try:
        deliveries = Deliveries()
        key, value, headers = frame.to_kafka()
        deliveries.track(producer.send(Topic.FRAMES.value, value=value, key=key, headers=headers))
        deliveries.wait(producer, 60)
        assert deliveries.delivered == 1, deliveries.failed
    finally:
        producer.close()


def test_feed_and_video_become_rows_and_a_rerun_adds_none(
    local_stack: Settings, db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    group = unique("it-feed")
    feed = unique("catalogue")
    camera = unique("cam")
    metrics_port = free_port()
    start_group_at_end(local_stack, group)
    letters = DeadLetterReader(local_stack)
    with (
        ImageServer() as images,
        running_worker(
            local_stack,
            group,
            tmp_path / "worker.log",
            worker_command(),
            worker_metrics_port=metrics_port,
        ) as worker,
    ):
        rows = catalogue_rows(images.base_url, prefix="")
        expected_items = {event_id_for_item(feed, r["id"], r["image_link"]) for r in rows}
        n = len(rows)
        assert n >= 20
        assert send_feed(local_stack, rows, feed) == n
        expected_frames = set(send_video(local_stack, CLIP, camera, fps=2.0))
        assert len(expected_frames) == 8
        big = big_frame(unique("big-cam"))
        assert len(big.jpeg) > 2 * 1024 * 1024  # over Kafka's 1 MB default message size
        send_frame(local_stack, big)

        wait_for_images(db, feed, n, TIMEOUT_S, worker)
        wait_for_images(db, camera, 8, TIMEOUT_S, worker)
        assert set(event_ids(db, feed)) == expected_items
        assert set(event_ids(db, camera)) == expected_frames
        wait_for_images(db, big.source_id, 1, TIMEOUT_S, worker)
        with db.cursor() as cur:
            cur.execute(
                "SELECT count(*), count(DISTINCT item_pk), min(width), max(greatest(width, height))"
                " FROM images i JOIN sources s ON s.id = i.source_pk WHERE s.source_id = %s",
                (feed,),
            )
            count, items, min_width, max_side = cur.fetchone()
            assert (count, items) == (n, n)
            assert min_width > 0
            assert max_side <= local_stack.image_max_side
            cur.execute(
                "SELECT count(*) FROM catalogue_items c JOIN sources s ON s.id = c.source_pk"
                " WHERE s.source_id = %s AND c.title IS NOT NULL AND c.brand = 'sample'",
                (feed,),
            )
            assert cur.fetchone()[0] == n  # the feed's attributes reached Postgres
            cur.execute(
                "SELECT count(*) FROM garments g JOIN images i ON i.id = g.image_id"
                " JOIN sources s ON s.id = i.source_pk WHERE s.source_id IN (%s, %s)",
                (feed, camera),
            )
            garments_before = cur.fetchone()[0]
            # every garment came with its appearance embedding, through Kafka, in its row's
            # transaction; the catalogue's are the searchable side
            cur.execute(
                "SELECT count(e.garment_id), count(*) FILTER (WHERE e.catalogue),"
                " count(DISTINCT e.model_version) FROM garments g"
                " JOIN images i ON i.id = g.image_id JOIN sources s ON s.id = i.source_pk"
                " LEFT JOIN garment_embeddings e ON e.garment_id = g.id"
                " WHERE s.source_id IN (%s, %s)",
                (feed, camera),
            )
            with_vectors, catalogue_vectors, versions = cur.fetchone()
            # every catalogue image came with its product vector (the real worker told the
            # tagger which frames are feed rows), of that same embedding version; no camera
            # frame has one
            cur.execute(
                "SELECT s.source_id, count(*), count(p.image_id), count(DISTINCT p.model_version),"
                " min(p.model_version), bool_and(p.image_id IS NULL OR i.item_pk IS NOT NULL)"
                " FROM images i JOIN sources s ON s.id = i.source_pk"
                " LEFT JOIN image_embeddings p ON p.image_id = i.id"
                " WHERE s.source_id IN (%s, %s) GROUP BY s.source_id",
                (feed, camera),
            )
            products = {row[0]: row[1:] for row in cur.fetchall()}
            cur.execute(
                "SELECT min(e.model_version) FROM garment_embeddings e"
                " JOIN garments g ON g.id = e.garment_id JOIN images i ON i.id = g.image_id"
                " JOIN sources s ON s.id = i.source_pk WHERE s.source_id = %s",
                (feed,),
            )
            (garment_version,) = cur.fetchone()
        assert garments_before > 0
        assert with_vectors == garments_before
        assert catalogue_vectors > 0
        assert versions == 1
        assert products[feed] == (n, n, 1, garment_version, True), products
        assert products[camera][:2] == (8, 0), products

        # the same feed again: every image is written again (written_at moves), none is added
        rerun_at = time.time()
        assert send_feed(local_stack, rows, feed) == n
        deadline = time.monotonic() + TIMEOUT_S
        rewritten = 0
        while time.monotonic() < deadline and rewritten < n:
            with db.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM images i JOIN sources s ON s.id = i.source_pk"
                    " WHERE s.source_id = %s AND i.written_at > to_timestamp(%s)",
                    (feed, rerun_at),
                )
                rewritten = cur.fetchone()[0]
            time.sleep(0.3)
        assert rewritten == n, worker.tail()
        assert len(event_ids(db, feed)) == n
        with db.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM garments g JOIN images i ON i.id = g.image_id"
                " JOIN sources s ON s.id = i.source_pk WHERE s.source_id IN (%s, %s)",
                (feed, camera),
            )
            assert cur.fetchone()[0] == garments_before

        text = scrape(metrics_port)
        assert (
            metric_value(text, "fashionstream_messages_in_total", topic="fashion.images.v1") or 0
        ) >= 2 * n
        images_written = metric_value(text, "fashionstream_rows_written_total", table="images")
        assert (images_written or 0) >= 2 * n + len(expected_frames)
        assert metric_value(text, "fashionstream_stage_duration_seconds_count", stage="infer")
        assert metric_value(text, "fashionstream_stage_duration_seconds_count", stage="fetch")
        deadline = time.monotonic() + 15  # sampled every 5 s
        while (
            metric_value(text, "fashionstream_consumer_lag_messages", topic="fashion.items.v1")
            is None
            and time.monotonic() < deadline
        ):
            time.sleep(1.0)
            text = scrape(metrics_port)
        assert (
            metric_value(text, "fashionstream_consumer_lag_messages", topic="fashion.items.v1")
            is not None
        )
        assert worker.stop() == 0, worker.tail()

    mine = letters.wait_for(lambda _: False, timeout_s=1.0)
    assert [d for d in mine if d.source_id in (feed, camera)] == []
    letters.close()
