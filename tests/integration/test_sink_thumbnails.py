"""Thumbnails on the real Postgres: a sighting's best-view crop commits with the sighting, a
catalogue image's picture with its image row, and re-writes keep one of each."""

from __future__ import annotations

import dataclasses

import numpy as np
import psycopg2.extensions

from fashionstream.core.records import SourceKind, TaggedImage
from fashionstream.core.settings import Settings
from stream_processors.thumbnails import jpeg_thumbnail
from tests.integration.test_sink_sightings import camera_frames, sinks, track, write_for
from tests.support.records import tagged_image


def _jpeg(shade: int) -> bytes:
    image = np.full((300, 120, 3), shade, np.uint8)
    jpeg = jpeg_thumbnail(image)
    assert jpeg is not None
    return jpeg


def _with_crops(frames: list[TaggedImage]) -> list[TaggedImage]:
    out = []
    for n, record in enumerate(frames):
        people = tuple(
            dataclasses.replace(p, thumbnail=_jpeg(10 * n % 250), score=0.5 + 0.02 * n)
            for p in record.people
        )
        out.append(dataclasses.replace(record, people=people))
    return out


def test_the_best_view_thumbnail_commits_with_its_sighting(
    local_stack: Settings, db: psycopg2.extensions.connection
) -> None:
    rows, sightings, _ = sinks(local_stack)
    frames = _with_crops(camera_frames("cam-t", 12))
    for record in frames:
        rows.add(record)
    rows.flush()
    tracker, result = track("cam-t", frames)
    assert len(result.sightings) == 1
    best = result.sightings[0].best
    assert best.thumbnail == frames[best.frame_number].people[0].thumbnail
    for expected_version in (0, 1):  # the second write is a re-run: still one thumbnail
        sightings.add(write_for("cam-t", tracker, result, expected_version=expected_version))
        sightings.flush()
    with db.cursor() as cur:
        cur.execute(
            "SELECT t.jpeg, t.width, t.height, s.best_frame FROM sighting_thumbnails t"
            " JOIN sightings s ON s.id = t.sighting_pk"
        )
        stored = cur.fetchall()
    assert len(stored) == 1
    jpeg, width, height, best_frame = stored[0]
    assert bytes(jpeg) == best.thumbnail
    assert best_frame == best.frame_number
    assert (width, height) == (58, 144)


def test_a_catalogue_image_keeps_its_picture_and_a_bad_one_is_skipped(
    local_stack: Settings, db: psycopg2.extensions.connection
) -> None:
    rows, _, _ = sinks(local_stack)
    good = tagged_image(index=1, source_kind=SourceKind.FEED, source_id="feed-t")
    bad = tagged_image(index=2, source_kind=SourceKind.FEED, source_id="feed-t")
    rows.add(dataclasses.replace(good, thumbnail=_jpeg(90)))
    rows.add(dataclasses.replace(bad, thumbnail=b"\xff\xd8\xff not really a jpeg"))
    rows.flush()
    rows.add(dataclasses.replace(good, thumbnail=_jpeg(200)))  # a re-tag replaces it
    rows.flush()
    with db.cursor() as cur:
        cur.execute(
            "SELECT c.item_id, t.jpeg FROM image_thumbnails t JOIN images i ON i.id = t.image_id"
            " JOIN catalogue_items c ON c.id = i.item_pk"
        )
        stored = cur.fetchall()
        cur.execute("SELECT count(*) FROM images")
        images = cur.fetchone()
    assert [(item, bytes(jpeg)) for item, jpeg in stored] == [("sku-1", _jpeg(200))]
    assert images == (2,)  # the image with the unreadable thumbnail is still written
