"""sinks.queries over rows the real sink wrote."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import psycopg2.extensions
import pytest
from prometheus_client import CollectorRegistry

from fashionstream.core.metrics import Metrics
from fashionstream.core.records import SourceKind, WireLabel
from fashionstream.core.settings import Settings
from sinks import queries
from sinks.postgres import PostgresSink
from tests.support.records import tagged_image


@pytest.fixture
def written(local_stack: Settings, db: psycopg2.extensions.connection) -> list[str]:
    sink = PostgresSink.from_settings(
        local_stack, Metrics(CollectorRegistry(), process_metrics=False)
    )
    frames = [tagged_image(index=i, garments=3, source_id="cam-a") for i in range(3)]
    feed = tagged_image(index=1, source_kind=SourceKind.FEED, source_id="feed-x", garments=1)
    # one garment with another gender, so the top labels have an order to check
    men = replace(feed.garments[0], attributes={"gender": WireLabel("Men", 0.7)})
    feed = replace(feed, garments=(men,))
    for record in (*frames, feed):
        sink.add(record)
    sink.flush()
    sink.close()
    return [f.event_id for f in frames]


def test_counts_and_categories(db: psycopg2.extensions.connection, written: list[str]) -> None:
    assert queries.count_rows(db) == {
        "sources": 2,
        "catalogue_items": 1,
        "images": 4,
        "people": 4,
        "garments": 10,
    }
    per_category = queries.garments_per_category(db)
    assert [(c.label, c.count) for c in per_category] == [
        ("top", 4),
        ("footwear", 3),
        ("trousers", 3),
    ]
    camera_only = queries.garments_per_category(db, queries.Scope(sources=["cam-a"]))
    assert sum(c.count for c in camera_only) == 9
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert queries.garments_per_category(db, queries.Scope(captured_since=future)) == []


def test_top_attribute_values(db: psycopg2.extensions.connection, written: list[str]) -> None:
    top = queries.top_attribute_values(db, limit=2)
    assert [(c.label, c.count) for c in top["gender"]] == [("Women", 9), ("Men", 1)]
    assert [(c.label, c.count) for c in top["colour"]] == [("Navy Blue", 10)]
    assert [(c.label, c.count) for c in top["style"]] == [("Casual", 10)]
    assert set(top) == {"gender", "masterCategory", "articleType", "season", "colour", "style"}


def test_mean_timings_and_popular_looks(
    db: psycopg2.extensions.connection, written: list[str]
) -> None:
    assert queries.mean_timings(db) == {
        "decode": pytest.approx(0.004),
        "infer": pytest.approx(0.7),
        "queue": pytest.approx(0.2),
    }
    looks = queries.popular_looks(db, limit=1)
    assert looks == [("top", "Navy Blue", "Casual", 4)]


def test_garments_for_event(db: psycopg2.extensions.connection, written: list[str]) -> None:
    garments = queries.garments_for_event(db, written[1])
    assert [g.garment_index for g in garments] == [0, 1, 2]
    assert garments[0].category == "top"
    assert garments[0].attributes["gender"] == {"label": "Women", "prob": 0.91}
    assert garments[0].box == (30.0, 40.0, 180.0, 240.0)
    assert queries.garments_for_event(db, written[1], model_version="other") == []


def test_scope_by_source_and_write_time(
    db: psycopg2.extensions.connection, written: list[str]
) -> None:
    assert queries.image_counts(db) == {"images": 1, "frames": 3, "garments": 10, "people": 4}
    camera = queries.Scope(sources=["cam-a"])
    counts = queries.image_counts(db, camera)
    assert (counts["images"], counts["frames"]) == (0, 3)
    assert sum(c.count for c in queries.garments_per_category(db, camera)) == 9
    assert queries.top_attribute_values(db, camera, limit=1)["gender"] == [
        queries.LabelCount("Women", 9)
    ]
    later = queries.Scope(written_since=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert queries.image_counts(db, later) == {"images": 0, "frames": 0, "garments": 0, "people": 0}
    assert queries.mean_timings(db, later) == {}
    assert queries.last_written(db, later) is None
    last = queries.last_written(db)
    assert last is not None
    assert last <= dt.datetime.now(dt.UTC)
    assert queries.popular_looks(db, later) == []


def test_latencies_run_from_submission_to_write(
    db: psycopg2.extensions.connection, written: list[str]
) -> None:
    values = queries.latencies(db)
    assert len(values) == 4
    assert values == sorted(values)
    # every sample record was submitted before the sink's transaction began
    assert all(v > 0 for v in values)
