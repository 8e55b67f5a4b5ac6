"""sinks.postgres against the real Postgres of the session stack: rows, idempotency, rejection of
one bad record, and surviving a Postgres stop/start."""

from __future__ import annotations

import dataclasses
import time

import psycopg2.extensions
import pytest
from prometheus_client import CollectorRegistry

from fashionstream.core.metrics import Metrics
from fashionstream.core.records import SourceKind
from fashionstream.core.settings import Settings
from producers.feed import catalogue_fields
from sinks.errors import PostgresUnavailableError, RecordsRejectedError
from sinks.postgres import PostgresSink
from tests.support.records import tagged_image
from tests.support.stack import PostgresControl, count_rows


def _sink(settings: Settings) -> tuple[PostgresSink, CollectorRegistry]:
    registry = CollectorRegistry()
    return PostgresSink.from_settings(settings, Metrics(registry, process_metrics=False)), registry


def _counts(db: psycopg2.extensions.connection) -> dict[str, int]:
    return {
        t: count_rows(db, t) for t in ("sources", "catalogue_items", "images", "people", "garments")
    }


def test_writes_a_tagged_image_and_a_second_write_adds_no_rows(
    local_stack: Settings, db: psycopg2.extensions.connection
) -> None:
    sink, registry = _sink(local_stack)
    frame = tagged_image(index=7, garments=3, people=2)
    row: dict[str, str | int | float | bool | None] = {
        "title": "Linen shirt",
        "Brand": "Acme",
        "price": "19.99 EUR",
        "link": "x",
    }
    item = tagged_image(
        index=1,
        source_kind=SourceKind.FEED,
        source_id="spring-feed",
        people=0,
        attributes=row,
        catalogue=catalogue_fields(row),  # what the producer read from the feed row
    )
    sink.add(frame)
    sink.add(item)
    assert sink.flush() == 2
    expected = {"sources": 2, "catalogue_items": 1, "images": 2, "people": 2, "garments": 5}
    assert _counts(db) == expected

    # redelivery: the same records again, in one batch and twice within a batch
    sink.add(frame)
    sink.add(item)
    sink.add(frame)
    assert sink.flush() == 2
    assert _counts(db) == expected
    sink.close()

    with db.cursor() as cur:
        cur.execute(
            "SELECT g.category, g.gender, g.gender_prob, g.article_type, g.sub_category,"
            " g.colour_name, g.colour_r, g.style, g.person_index, g.probabilities -> 'gender',"
            " i.frame_number, s.kind, s.source_id"
            " FROM garments g JOIN images i ON i.id = g.image_id JOIN sources s ON s.id ="
            " g.source_pk WHERE i.event_id = %s ORDER BY g.garment_index",
            (frame.event_id,),
        )
        rows = cur.fetchall()
        assert [r[0] for r in rows] == ["top", "trousers", "footwear"]
        top = rows[0]
        assert top[1:5] == ("Women", pytest.approx(0.91), "Tshirts", None)
        assert top[5:9] == ("Navy Blue", 20, "Casual", 0)
        assert top[9] == {"Women": 0.91, "Men": 0.07, "Unisex": 0.02}
        assert top[10:] == (7, "camera", "cam-1")
        cur.execute("SELECT title, brand, price::text, currency, link FROM catalogue_items")
        assert cur.fetchone() == ("Linen shirt", "Acme", "19.9900", "EUR", "x")

    rows_written = registry.get_sample_value(
        "fashionstream_rows_written_total", {"table": "garments"}
    )
    assert rows_written == 10.0  # 5 garments written twice (upserts count as writes)
    e2e = registry.get_sample_value(
        "fashionstream_end_to_end_latency_seconds_count", {"source_kind": "camera"}
    )
    assert e2e == 2.0


def test_a_rewrite_with_fewer_detections_removes_the_extra_rows(
    local_stack: Settings, db: psycopg2.extensions.connection
) -> None:
    sink, _ = _sink(local_stack)
    first = tagged_image(index=3, garments=3, people=2)
    sink.add(first)
    sink.flush()
    sink.add(dataclasses.replace(first, garments=first.garments[:1], people=first.people[:1]))
    sink.flush()
    sink.close()
    assert (count_rows(db, "garments"), count_rows(db, "people")) == (1, 1)
    with db.cursor() as cur:
        cur.execute("SELECT garment_count, person_count FROM images")
        assert cur.fetchall() == [(1, 1)]


def test_another_model_version_is_another_image_row(
    local_stack: Settings, db: psycopg2.extensions.connection
) -> None:
    sink, _ = _sink(local_stack)
    sink.add(tagged_image(index=1, model_version="v1"))
    sink.add(tagged_image(index=1, model_version="v2"))
    assert sink.flush() == 2
    sink.close()
    assert count_rows(db, "images") == 2


@pytest.mark.parametrize(
    ("bad_change", "sqlstate"),
    [
        ({"width": 0}, "23514"),  # CHECK (width > 0)
        ({"source_id": "cam\x00nul"}, "ValueError"),  # psycopg2 refuses NUL before sending
        ({"event_id": "not-a-uuid"}, "22P02"),  # invalid text representation
        ({"frame_number": None}, "23514"),  # neither a frame number nor an item
        ({"timings": {"infer": float("nan")}}, "22P02"),  # NaN is not JSON
        ({"timings": {"infer": {1, 2}}}, "TypeError"),  # not JSON-serialisable at all
        ({"captured_at": 1e12}, "ValueError"),  # year 33658: beyond datetime
    ],
    ids=["check", "nul-byte", "bad-uuid", "no-frame-or-item", "nan-json", "not-json", "year"],
)
def test_one_rejected_record_is_isolated_and_the_rest_commit(
    local_stack: Settings,
    db: psycopg2.extensions.connection,
    bad_change: dict[str, object],
    sqlstate: str,
) -> None:
    sink, registry = _sink(local_stack)
    good = [tagged_image(index=i) for i in range(4)]
    bad = dataclasses.replace(tagged_image(index=99), **bad_change)  # type: ignore[arg-type]
    for record in [*good[:2], bad, *good[2:]]:
        sink.add(record)
    with pytest.raises(RecordsRejectedError) as raised:
        sink.flush()
    error = raised.value
    assert [r.tagged for r in error.rejected] == [bad]
    assert sqlstate in error.rejected[0].detail
    assert error.written == 4
    assert error.reason.value == "sink_rejected"
    assert error.__cause__ is not None
    assert count_rows(db, "images") == 4
    assert count_rows(db, "garments") == 8
    assert sink.pending == 0  # the batch is done: the caller dead-letters the rejected record
    assert sink.flush() == 0
    sink.close()
    rejected = registry.get_sample_value("fashionstream_sink_errors_total", {"error": "rejected"})
    assert rejected == 1.0


def test_sink_survives_postgres_stop_and_start(
    local_stack: Settings,
    db: psycopg2.extensions.connection,
    postgres_control: PostgresControl,
) -> None:
    sink, registry = _sink(local_stack)
    sink.add(tagged_image(index=1))
    assert sink.flush() == 1  # the sink now holds an open connection

    postgres_control.stop()
    assert not postgres_control.running
    sink.add(tagged_image(index=2))
    started = time.monotonic()
    with pytest.raises(PostgresUnavailableError):
        sink.flush()  # the held connection is dead
    with pytest.raises(PostgresUnavailableError):
        sink.flush()  # a new connection is refused
    assert time.monotonic() - started < 15, "an unavailable Postgres must fail fast"
    assert sink.pending == 1  # nothing lost: the batch waits for the retry

    postgres_control.start()
    assert sink.flush() == 1
    sink.close()
    with psycopg2.connect(local_stack.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT frame_number FROM images ORDER BY frame_number")
        assert cur.fetchall() == [(1,), (2,)]
    conn.close()
    unavailable = registry.get_sample_value(
        "fashionstream_sink_errors_total", {"error": "unavailable"}
    )
    assert unavailable == 2.0


def test_workers_writing_the_same_feed_do_not_wait_for_each_other(
    local_stack: Settings, db: psycopg2.extensions.connection
) -> None:
    """A feed's items spread over every partition: one worker's open transaction must not
    block another worker's flush on the shared `sources` row."""
    first, _ = _sink(local_stack)
    first.add(tagged_image(index=0, source_kind=SourceKind.FEED, source_id="big-feed"))
    first.flush()  # the source exists, as it does after the first batch of a feed
    with db.cursor() as cur:  # and was last refreshed long ago, so A refreshes it now
        cur.execute("UPDATE sources SET last_seen_at = now() - interval '1 hour'")
    holder = psycopg2.connect(local_stack.database_url)
    try:
        with holder.cursor() as cur:  # worker A: mid-transaction, not committed
            first._write(cur, [tagged_image(index=1, source_kind=SourceKind.FEED,
                                            source_id="big-feed")])  # fmt: skip
        # worker B gives up on any lock after 3 s: waiting would raise, not hang the test
        second = PostgresSink(
            lambda: psycopg2.connect(local_stack.database_url, options="-c lock_timeout=3000"),
            Metrics(CollectorRegistry(), process_metrics=False),
        )
        second.add(tagged_image(index=2, source_kind=SourceKind.FEED, source_id="big-feed"))
        started = time.monotonic()
        assert second.flush() == 1  # worker B commits while A's transaction is open
        assert time.monotonic() - started < 3
        second.close()
        holder.commit()
    finally:
        holder.close()
        first.close()
    assert count_rows(db, "images") == 3
    assert count_rows(db, "sources") == 1
