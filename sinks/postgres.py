"""The Postgres sink: tagged images in, rows of sources / catalogue_items / images / people /
garments out, written idempotently (see infra/migrations/0001_initial_schema.sql).

Contract (STYLE.md 5): `add(tagged)` buffers, `flush()` writes everything buffered in ONE
transaction of batched upserts (`execute_values` + `ON CONFLICT`), and returns only once it is
committed; the caller acknowledges Kafka offsets after that. psycopg2 blocks: call it from a
worker thread, one thread at a time.

Failures, told apart by `sinks.errors.is_outage` (the SQLSTATE class, not a list of cases):
- the connection cannot be made or breaks, or the server is unusable (classes 08, 53, 57, 58,
  ...): roll back, drop the connection, raise `PostgresUnavailableError`; the batch stays
  buffered and the next `flush()` retries it on a new connection. The schema is checked once
  per connection, so a database that is not migrated is an outage too, not bad data.
- anything else (Postgres refusing a record's data: classes 21, 22, 23, 42, 54, ...; a value
  the client cannot adapt; an exception nobody anticipated): the batch is rolled back and
  written again record by record, each under a SAVEPOINT in one transaction, so the good records
  commit and the bad ones are named in `RecordsRejectedError`.

Event ids are normalised in `add` (a UUID in any letter case is one image), so one batch never
carries the same row twice (`21000 ON CONFLICT DO UPDATE command cannot affect row a second
time`).

Idempotency: images are keyed by (event_id, model_version), people and garments by
(image, index); a rewrite replaces the values and deletes indexes beyond the new count, so the
rows always equal the last write. Re-running a feed or redelivering a record adds no rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import psycopg2
from psycopg2 import sql
from psycopg2.extras import Json, execute_values

from fashionstream.core.errors import DeadLetterReason
from fashionstream.core.metrics import Metrics, SinkErrorKind, Stage
from fashionstream.core.records import (
    SourceKind,
    TaggedImage,
    WireEmbedding,
    WireGarment,
    WirePerson,
    normal_event_id,
)
from fashionstream.core.settings import Settings
from sinks.errors import (
    PostgresUnavailableError,
    RecordsRejectedError,
    RejectedRecord,
    SchemaNotReadyError,
    is_outage,
)
from sinks.thumbnails import UPSERT_IMAGE_THUMBNAILS, thumbnail_row

log = logging.getLogger(__name__)


class Connection(Protocol):
    """What the sink uses of a psycopg2 connection (tests inject a fake)."""

    @property
    def closed(self) -> int: ...  # non-zero once closed or broken

    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


ConnectionFactory = Callable[[], Connection]


def connection_factory(settings: Settings, application_name: str) -> ConnectionFactory:
    """Connections to the settings' Postgres for one writer, named in pg_stat_activity."""
    return functools.partial(
        psycopg2.connect,
        settings.database_url,
        connect_timeout=5,
        application_name=application_name,
        # a hung server must not block a writer forever; keepalives notice a dead peer
        options="-c statement_timeout=60000",
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
    )


def column_list(columns: Sequence[str]) -> sql.Composed:
    """`a, b, c` with each name quoted as an identifier."""
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def upsert_sql(table: str, columns: Sequence[str], *, keys: int) -> sql.Composed:
    """`INSERT ... VALUES %s ON CONFLICT (<first `keys` columns>) DO UPDATE SET` every other
    column, for `execute_values`."""
    return sql.SQL(
        "INSERT INTO {table} ({columns}) VALUES %s ON CONFLICT ({keys}) DO UPDATE SET {updates}"
    ).format(
        table=sql.Identifier(table),
        columns=column_list(columns),
        keys=column_list(columns[:keys]),
        updates=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns[keys:]
        ),
    )


class ReconnectingConnection:
    """One writer's Postgres connection: opened on first use, and again after `drop()` (a
    failed write drops it, so the next try starts on a fresh connection)."""

    def __init__(self, connect: ConnectionFactory) -> None:
        self._connect = connect
        self._conn: Connection | None = None
        self._fresh = False  # the connection was made since the last check_once

    def get(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
            self._fresh = True
        return self._conn

    def check_once(self, cur: Any, statement: sql.Composable) -> None:
        """Run `statement` on `cur` on the first use of each new connection: a schema probe, so
        that a database that is not migrated fails here as an outage (SchemaNotReadyError),
        not later as the 'bad data' of every record."""
        if not self._fresh:
            return
        try:
            cur.execute(statement)
        except psycopg2.Error as exc:
            raise SchemaNotReadyError(f"the schema is not usable: {_describe(exc)}") from exc
        self._fresh = False

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except psycopg2.Error:
                log.debug("closing a broken connection failed", exc_info=True)


# attribute heads with typed columns: head name (model side) -> column prefix
HEAD_COLUMNS: Mapping[str, str] = {
    "gender": "gender",
    "masterCategory": "master_category",
    "subCategory": "sub_category",
    "articleType": "article_type",
    "season": "season",
    "baseColour": "base_colour",
}

# Sources are shared by every worker (a feed's items spread over all partitions), so a batch
# must never wait on another worker's open transaction for them: read the ids first (reads do
# not block), insert only sources never seen (DO NOTHING, then read again: the new statement
# sees rows other workers committed meanwhile), and refresh last_seen_at at most once a minute,
# skipping a row another worker is refreshing right now. An INSERT of an existing source would
# wait whenever another transaction had refreshed that row.
INSERT_SOURCES = """
INSERT INTO sources (kind, source_id) VALUES %s ON CONFLICT (kind, source_id) DO NOTHING
"""
SELECT_SOURCES = """
SELECT id, kind, source_id FROM sources WHERE (kind, source_id) IN (VALUES %s)
"""
TOUCH_SOURCES = """
UPDATE sources SET last_seen_at = now() WHERE id IN (
    SELECT id FROM sources WHERE id = ANY(%s) AND last_seen_at < now() - interval '60 seconds'
    FOR NO KEY UPDATE SKIP LOCKED  -- FOR UPDATE would block other batches' foreign keys
)
"""

UPSERT_ITEMS = """
INSERT INTO catalogue_items (source_pk, item_id, title, brand, price, currency, link, attributes)
VALUES %s
ON CONFLICT (source_pk, item_id) DO UPDATE SET
    title = EXCLUDED.title, brand = EXCLUDED.brand, price = EXCLUDED.price,
    currency = EXCLUDED.currency, link = EXCLUDED.link, attributes = EXCLUDED.attributes,
    updated_at = now()
RETURNING id, source_pk, item_id
"""
ITEM_TEMPLATE = "(%s, %s, %s, %s, %s, %s, %s, %s::jsonb)"

UPSERT_IMAGES = """
INSERT INTO images (event_id, model_version, source_pk, item_pk, image_url, frame_number,
                    captured_at, submitted_at, width, height, timings, garment_count, person_count)
VALUES %s
ON CONFLICT (event_id, model_version) DO UPDATE SET
    source_pk = EXCLUDED.source_pk, item_pk = EXCLUDED.item_pk, image_url = EXCLUDED.image_url,
    frame_number = EXCLUDED.frame_number, captured_at = EXCLUDED.captured_at,
    submitted_at = EXCLUDED.submitted_at, width = EXCLUDED.width, height = EXCLUDED.height,
    timings = EXCLUDED.timings, garment_count = EXCLUDED.garment_count,
    person_count = EXCLUDED.person_count, written_at = now()
RETURNING id, event_id::text, model_version
"""
IMAGE_TEMPLATE = "(%s::uuid, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)"

UPSERT_PEOPLE = """
INSERT INTO people (image_id, person_index, score, x1, y1, x2, y2,
                    mask_height, mask_width, mask_rle, source_pk, captured_at)
VALUES %s
ON CONFLICT (image_id, person_index) DO UPDATE SET
    score = EXCLUDED.score, x1 = EXCLUDED.x1, y1 = EXCLUDED.y1, x2 = EXCLUDED.x2,
    y2 = EXCLUDED.y2, mask_height = EXCLUDED.mask_height, mask_width = EXCLUDED.mask_width,
    mask_rle = EXCLUDED.mask_rle, source_pk = EXCLUDED.source_pk,
    captured_at = EXCLUDED.captured_at
"""

_HEAD_COLS = [c for prefix in HEAD_COLUMNS.values() for c in (prefix, f"{prefix}_prob")]
_GARMENT_COLS = [
    "image_id", "garment_index", "person_index", "category", "score", "x1", "y1", "x2", "y2",
    "mask_height", "mask_width", "mask_rle", *_HEAD_COLS, "attributes", "probabilities",
    "colour_name", "colour_r", "colour_g", "colour_b", "colour_share", "style", "style_prob",
    "source_pk", "captured_at",
]  # fmt: skip
# the garment ids come back for the embeddings written beside them
UPSERT_GARMENTS = upsert_sql("garments", _GARMENT_COLS, keys=2) + sql.SQL(
    " RETURNING id, image_id, garment_index"
)
_EMBEDDING_COLS = ["garment_id", "model_version", "catalogue", "category", "gender", "embedding"]
UPSERT_EMBEDDINGS = upsert_sql("garment_embeddings", _EMBEDDING_COLS, keys=1) + sql.SQL(
    ", written_at = now()"
)
EMBEDDING_TEMPLATE = "(%s, %s, %s, %s, %s, %s::vector)"
# a garment rewritten without an embedding (a model without the head) loses its old one
DELETE_EMBEDDINGS = "DELETE FROM garment_embeddings WHERE garment_id = ANY(%s)"
# a catalogue image's product vector (migration 0005), written with its image
_PRODUCT_COLS = ["image_id", "model_version", "category", "gender", "embedding"]
UPSERT_PRODUCTS = upsert_sql("image_embeddings", _PRODUCT_COLS, keys=1) + sql.SQL(
    ", written_at = now()"
)
PRODUCT_TEMPLATE = "(%s, %s, %s, %s, %s::vector)"
# an image rewritten without one (a camera frame, a model without the head) loses its old one
DELETE_PRODUCTS = "DELETE FROM image_embeddings WHERE image_id = ANY(%s)"
GARMENT_TEMPLATE = (
    "("
    + ", ".join(
        "%s::jsonb" if c in ("attributes", "probabilities") else "%s" for c in _GARMENT_COLS
    )
    + ")"
)

DELETE_STALE_GARMENTS = """
DELETE FROM garments g USING (VALUES %s) AS v (image_id, n)
WHERE g.image_id = v.image_id AND g.garment_index >= v.n
"""
DELETE_STALE_PEOPLE = """
DELETE FROM people p USING (VALUES %s) AS v (image_id, n)
WHERE p.image_id = v.image_id AND p.person_index >= v.n
"""
STALE_TEMPLATE = "(%s::bigint, %s::integer)"
# Every table and column the sink writes, read without rows: fails (42P01, 42703) on a database
# that is not migrated, which is then an outage, so that class 42 during a write is the data's.
SCHEMA_PROBE = sql.SQL(";").join(
    (
        sql.SQL("SELECT s.id, s.kind, s.source_id, s.last_seen_at FROM sources s WHERE false"),
        sql.SQL("SELECT c.id, c.item_id, c.attributes FROM catalogue_items c WHERE false"),
        sql.SQL(
            "SELECT i.id, i.event_id, i.model_version, i.item_pk, i.timings FROM images i"
            " WHERE false"
        ),
        sql.SQL("SELECT p.image_id, p.person_index, p.mask_rle FROM people p WHERE false"),
        sql.SQL("SELECT {} FROM garments WHERE false").format(column_list(_GARMENT_COLS)),
        sql.SQL("SELECT {} FROM garment_embeddings WHERE false").format(
            column_list(_EMBEDDING_COLS)
        ),
        sql.SQL("SELECT {} FROM image_embeddings WHERE false").format(column_list(_PRODUCT_COLS)),
    )
)
PAGE_SIZE = 1000
# tables the sink writes, parents first (fixtures and tools truncate these)
TABLES = ("sources", "catalogue_items", "images", "people", "garments")


class PostgresSink:
    """Buffers `TaggedImage`s and writes them to Postgres on `flush()`."""

    def __init__(self, connect: ConnectionFactory, metrics: Metrics) -> None:
        self._db = ReconnectingConnection(connect)
        self._metrics = metrics
        # keyed by the idempotency key: a redelivered record in the same batch replaces the
        # earlier copy (one upsert statement may not touch a row twice)
        self._pending: dict[tuple[str, str], TaggedImage] = {}

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> PostgresSink:
        return cls(connection_factory(settings, "fashionstream-sink"), metrics)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, tagged: TaggedImage) -> None:
        event_id = normal_event_id(tagged.event_id)
        if event_id != tagged.event_id:
            tagged = dataclasses.replace(tagged, event_id=event_id)
        self._pending[(event_id, tagged.model_version)] = tagged

    def flush(self) -> int:
        """Write what was added since the last successful flush; returns the images written.

        Raises PostgresUnavailableError (batch kept, retry later) or RecordsRejectedError (the
        others are committed; the batch is cleared).
        """
        if not self._pending:
            return 0
        batch = list(self._pending.values())
        started = time.perf_counter()
        rejected: list[RejectedRecord] = []
        cause: Exception | None = None
        try:
            conn = self._db.get()
            try:
                with conn.cursor() as cur:
                    self._db.check_once(cur, SCHEMA_PROBE)
                    rows = self._write(cur, batch)
                conn.commit()
            except Exception as exc:
                if is_outage(exc):
                    raise
                conn.rollback()
                log.warning(
                    "batch of %d refused (%s); writing one by one", len(batch), _describe(exc)
                )
                rows, rejected, cause = self._write_isolating(conn, batch)
        except Exception as exc:
            # only outages get here: a record's own errors are caught per record while isolating
            self._db.drop()
            self._metrics.sink_errors.labels(error=SinkErrorKind.UNAVAILABLE.value).inc()
            raise PostgresUnavailableError(
                f"Postgres write of {len(batch)} images failed: {_describe(exc)}"
            ) from exc

        self._pending.clear()
        committed_at = time.time()
        self._metrics.stage_duration.labels(stage=Stage.SINK.value).observe(
            time.perf_counter() - started
        )
        self._metrics.batch_size.labels(stage=Stage.SINK.value).observe(len(batch))
        for table, count in rows.items():
            self._metrics.rows_written.labels(table=table).inc(count)
        bad = {id(r.tagged) for r in rejected}
        written = [t for t in batch if id(t) not in bad]
        for tagged in written:
            # from entering Kafka, not from capture: a replayed recording's capture times are
            # the recording's (years ago); a live camera submits each frame as it is captured
            self._metrics.end_to_end_latency.labels(source_kind=tagged.source_kind.value).observe(
                max(0.0, committed_at - tagged.submitted_at)
            )
        if rejected:
            self._metrics.sink_errors.labels(error=SinkErrorKind.REJECTED.value).inc(len(rejected))
            raise RecordsRejectedError(rejected, written=len(written)) from cause
        return len(written)

    def discard(self) -> None:
        """Forget what was added since the last successful flush."""
        self._pending.clear()

    def close(self) -> None:
        self._db.drop()

    # --- writing

    def _write_isolating(
        self, conn: Connection, batch: Sequence[TaggedImage]
    ) -> tuple[Counter[str], list[RejectedRecord], Exception | None]:
        """One transaction, one SAVEPOINT per record: good records commit, bad ones are named."""
        rows: Counter[str] = Counter()
        rejected: list[RejectedRecord] = []
        first: Exception | None = None
        with conn.cursor() as cur:
            for tagged in batch:
                cur.execute("SAVEPOINT fashionstream_record")
                try:
                    rows += self._write(cur, [tagged])
                except Exception as exc:
                    if is_outage(exc):
                        raise
                    cur.execute("ROLLBACK TO SAVEPOINT fashionstream_record")
                    if isinstance(exc, psycopg2.Error | ValueError | TypeError | OverflowError):
                        # Postgres refused the data, or psycopg2 could not adapt a value (NUL
                        # in a string, a year past 9999)
                        reason = DeadLetterReason.SINK_REJECTED
                    else:  # an exception nobody foresaw
                        reason = DeadLetterReason.INTERNAL_ERROR
                        log.error("writing event %s raised", tagged.event_id, exc_info=exc)
                    rejected.append(RejectedRecord(tagged, _describe(exc), reason))
                    first = first or exc
                    log.warning(
                        "Postgres rejected event %s of %s: %s",
                        tagged.event_id,
                        tagged.source_id,
                        _describe(exc),
                    )
                else:
                    cur.execute("RELEASE SAVEPOINT fashionstream_record")
        conn.commit()
        return rows, rejected, first

    def _write(self, cur: Any, batch: Sequence[TaggedImage]) -> Counter[str]:
        """Upsert `batch` inside the caller's transaction; returns rows written per table."""
        rows: Counter[str] = Counter()
        # sorted keys: concurrent sinks lock shared rows (sources, items) in the same order
        source_keys = sorted({(t.source_kind.value, t.source_id) for t in batch})
        source_pk = _select_sources(cur, source_keys)
        missing = [key for key in source_keys if key not in source_pk]
        if missing:
            execute_values(cur, INSERT_SOURCES, missing, page_size=PAGE_SIZE)
            source_pk.update(_select_sources(cur, missing))
            rows["sources"] += len(missing)
        cur.execute(TOUCH_SOURCES, (sorted(source_pk.values()),))

        items: dict[tuple[int, str], tuple[Any, ...]] = {}
        for t in batch:
            if t.item_id is not None:
                pk = source_pk[(t.source_kind.value, t.source_id)]
                items[(pk, t.item_id)] = item_row(pk, t)
        item_pk: dict[tuple[int, str], int] = {}
        if items:
            returned = execute_values(
                cur,
                UPSERT_ITEMS,
                [items[k] for k in sorted(items)],
                template=ITEM_TEMPLATE,
                page_size=PAGE_SIZE,
                fetch=True,
            )
            item_pk = {(source, item): pk for pk, source, item in returned}
            rows["catalogue_items"] += len(items)

        ordered = sorted(batch, key=lambda t: (_uuid_text(t.event_id), t.model_version))
        image_rows = []
        for t in ordered:
            spk = source_pk[(t.source_kind.value, t.source_id)]
            ipk = None if t.item_id is None else item_pk[(spk, t.item_id)]
            image_rows.append(image_row(spk, ipk, t))
        returned = execute_values(
            cur, UPSERT_IMAGES, image_rows, template=IMAGE_TEMPLATE, page_size=PAGE_SIZE, fetch=True
        )
        image_id = {(event_id, version): pk for pk, event_id, version in returned}
        rows["images"] += len(image_rows)

        people: list[tuple[Any, ...]] = []
        garments: list[tuple[Any, ...]] = []
        counts: list[tuple[int, int, int]] = []
        wire: dict[tuple[int, int], tuple[TaggedImage, WireGarment]] = {}
        for t in ordered:
            iid = image_id[(_uuid_text(t.event_id), t.model_version)]
            spk = source_pk[(t.source_kind.value, t.source_id)]
            people.extend(person_row(iid, spk, t, p) for p in t.people)
            garments.extend(garment_row(iid, spk, t, g) for g in t.garments)
            wire.update(((iid, g.index), (t, g)) for g in t.garments)
            counts.append((iid, len(t.garments), len(t.people)))
        if people:
            execute_values(cur, UPSERT_PEOPLE, people, page_size=PAGE_SIZE)
            rows["people"] += len(people)
        if garments:
            returned = execute_values(
                cur,
                UPSERT_GARMENTS,
                garments,
                template=GARMENT_TEMPLATE,
                page_size=PAGE_SIZE,
                fetch=True,
            )
            rows["garments"] += len(garments)
            rows["garment_embeddings"] += self._write_embeddings(cur, returned, wire)
        rows["image_embeddings"] += self._write_products(cur, ordered, image_id)
        thumbnails = [
            row
            for t in ordered
            if t.thumbnail is not None
            and (row := thumbnail_row(image_id[(_uuid_text(t.event_id), t.model_version)],
                                      t.thumbnail)) is not None
        ]  # fmt: skip
        if thumbnails:
            execute_values(cur, UPSERT_IMAGE_THUMBNAILS, thumbnails, page_size=PAGE_SIZE)
            rows["image_thumbnails"] += len(thumbnails)
        # a rewrite with fewer detections than before removes the extra rows
        execute_values(
            cur,
            DELETE_STALE_GARMENTS,
            [(iid, n) for iid, n, _ in counts],
            template=STALE_TEMPLATE,
            page_size=PAGE_SIZE,
        )
        execute_values(
            cur,
            DELETE_STALE_PEOPLE,
            [(iid, n) for iid, _, n in counts],
            template=STALE_TEMPLATE,
            page_size=PAGE_SIZE,
        )
        return rows

    @staticmethod
    def _write_embeddings(
        cur: Any,
        garment_ids: Sequence[tuple[int, int, int]],
        wire: Mapping[tuple[int, int], tuple[TaggedImage, WireGarment]],
    ) -> int:
        """Each written garment's embedding (upserted; removed when it has none now)."""
        with_vectors: list[tuple[Any, ...]] = []
        without: list[int] = []
        for garment_id, iid, index in garment_ids:
            t, g = wire[(iid, index)]
            if g.embedding is None:
                without.append(garment_id)
            else:
                with_vectors.append(embedding_row(garment_id, t, g, g.embedding))
        if without:
            cur.execute(DELETE_EMBEDDINGS, (sorted(without),))
        if with_vectors:
            with_vectors.sort(key=lambda r: r[0])  # lock order, as for every other table
            execute_values(
                cur,
                UPSERT_EMBEDDINGS,
                with_vectors,
                template=EMBEDDING_TEMPLATE,
                page_size=PAGE_SIZE,
            )
        return len(with_vectors)

    @staticmethod
    def _write_products(
        cur: Any, ordered: Sequence[TaggedImage], image_id: Mapping[tuple[str, str], int]
    ) -> int:
        """Each catalogue image's product vector (upserted; removed when it has none now)."""
        with_vectors: list[tuple[Any, ...]] = []
        without: list[int] = []
        for t in ordered:
            iid = image_id[(_uuid_text(t.event_id), t.model_version)]
            row = product_row(iid, t)
            if row is None:
                without.append(iid)
            else:
                with_vectors.append(row)
        if without:
            cur.execute(DELETE_PRODUCTS, (sorted(without),))
        if with_vectors:
            with_vectors.sort(key=lambda r: r[0])  # lock order, as for every other table
            execute_values(
                cur, UPSERT_PRODUCTS, with_vectors, template=PRODUCT_TEMPLATE, page_size=PAGE_SIZE
            )
        return len(with_vectors)


def _select_sources(cur: Any, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    rows = execute_values(cur, SELECT_SOURCES, keys, page_size=PAGE_SIZE, fetch=True)
    return {(kind, source_id): pk for pk, kind, source_id in rows}


# ---------------------------------------------------------------------------------------------
# record -> row adapters (pure functions: the unit tests check them directly)


def item_row(source_pk: int, t: TaggedImage) -> tuple[Any, ...]:
    """The catalogue columns are the record's typed fields, read from the feed row once by
    the producer (producers/feed.py: catalogue_fields); a record written before they existed
    (version 1) has none, and its row keeps the raw columns in `attributes` only."""
    fields = t.catalogue
    return (
        source_pk,
        t.item_id,
        fields.title,
        fields.brand,
        fields.price,
        fields.currency,
        fields.link,
        Json(dict(t.attributes)),
    )


def image_row(source_pk: int, item_pk: int | None, t: TaggedImage) -> tuple[Any, ...]:
    return (
        t.event_id,
        t.model_version,
        source_pk,
        item_pk,
        t.image_url,
        t.frame_number,
        _timestamp(t.captured_at),
        _timestamp(t.submitted_at),
        t.width,
        t.height,
        Json(dict(t.timings)),
        len(t.garments),
        len(t.people),
    )


def person_row(image_id: int, source_pk: int, t: TaggedImage, p: WirePerson) -> tuple[Any, ...]:
    x1, y1, x2, y2 = p.box
    h, w = p.mask.size
    return (
        image_id, p.index, p.score, x1, y1, x2, y2, h, w, p.mask.counts, source_pk,
        _timestamp(t.captured_at),
    )  # fmt: skip


def garment_row(image_id: int, source_pk: int, t: TaggedImage, g: WireGarment) -> tuple[Any, ...]:
    x1, y1, x2, y2 = g.box
    h, w = g.mask.size
    heads: list[Any] = []
    for head in HEAD_COLUMNS:
        label = g.attributes.get(head)
        heads.extend((None, None) if label is None else (label.label, label.prob))
    r, gr, b = g.colour.rgb
    return (
        image_id, g.index, g.person_index, g.category, g.score, x1, y1, x2, y2, h, w,
        g.mask.counts, *heads,
        Json({k: {"label": v.label, "prob": v.prob} for k, v in g.attributes.items()}),
        Json({k: dict(v) for k, v in g.probabilities.items()}),
        g.colour.name, r, gr, b, g.colour.share, g.style.label, g.style.prob,
        source_pk, _timestamp(t.captured_at),
    )  # fmt: skip


def embedding_row(
    garment_id: int, t: TaggedImage, g: WireGarment, e: WireEmbedding
) -> tuple[Any, ...]:
    gender = g.attributes.get("gender")
    return (
        garment_id,
        e.version,
        t.item_id is not None and t.source_kind is SourceKind.FEED,
        g.category,
        None if gender is None else gender.label,
        embedding_literal(e),
    )


def product_row(image_id: int, t: TaggedImage) -> tuple[Any, ...] | None:
    """The image's `image_embeddings` row: catalogue images (feed rows with an item) only."""
    p = t.product
    if p is None or t.item_id is None or t.source_kind is not SourceKind.FEED:
        return None
    e = p.embedding
    return (image_id, e.version, p.category, p.gender, embedding_literal(e))


def vector_literal(values: Sequence[float]) -> str:
    """pgvector's text form, `[v1,v2,...]`."""
    return "[" + ",".join(repr(float(v)) for v in values) + "]"


def embedding_literal(embedding: WireEmbedding) -> str:
    """`vector_literal` of a wire embedding's float16 values, each printed exactly, looked up
    by its bit pattern: formatting the 7,000 floats of a busy camera frame's garments one by
    one took 3.3 ms of the worker's CPU, the lookup a tenth of that."""
    texts = _float16_texts()
    bits = np.frombuffer(embedding.raw, dtype="<u2").tolist()
    return "[" + ",".join(map(texts.__getitem__, bits)) + "]"


@functools.cache
def _float16_texts() -> tuple[str, ...]:
    """repr of every float16 bit pattern's value (65,536 strings, about 4 MB, made once)."""
    values = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float64)
    return tuple(map(repr, values.tolist()))


def _timestamp(epoch_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC)


def _uuid_text(event_id: str) -> str:
    """How Postgres prints the uuid (lower case, hyphenated), to match RETURNING rows."""
    try:
        return str(uuid.UUID(event_id))
    except ValueError:
        return event_id  # Postgres refuses it; the record is isolated and rejected


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "pgcode", None)
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{code} {message}" if code else f"{type(exc).__name__}: {message}"
