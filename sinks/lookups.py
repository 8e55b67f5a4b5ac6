"""Read side for the HTTP API: one tagged image by event id, and pages of garments and sightings
newest first with keyset pagination (the last row's (time, id) is where the next page starts, so
a page costs the same however deep it is and rows written meanwhile never shift a page).

`QueryPool` hands out read-only autocommit connections from a small thread-safe pool. psycopg2
blocks: call everything here from a worker thread, never from an event loop. Parameterised SQL
only.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import psycopg2
import psycopg2.pool
from psycopg2 import sql

from fashionstream.core.records import normal_event_id
from sinks.errors import PostgresUnavailableError, is_outage
from sinks.postgres import Connection

T = TypeVar("T")

MAX_PAGE = 500  # the largest page a caller may ask for
WAIT_FOR_CONNECTION_S = 10.0  # longest wait for a free pooled connection
STATEMENT_TIMEOUT_S = 15.0  # longest a lookup may run


# ---------------------------------------------------------------------------------------------
# connections


class QueryPool:
    """Up to `size` read-only connections to `database_url`, made on first use (so a service
    starts while Postgres is still down) and dropped when they break."""

    def __init__(
        self,
        database_url: str,
        *,
        size: int = 4,
        application_name: str,
        wait_s: float = WAIT_FOR_CONNECTION_S,
        statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    ) -> None:
        self._database_url = database_url
        self._size = size
        self._application_name = application_name
        self._wait_s = wait_s
        self._statement_timeout_ms = max(1, int(statement_timeout_s * 1000))
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._lock = threading.Lock()
        # psycopg2's pool refuses rather than waits when every connection is out: callers queue
        # here for a free one instead
        self._slots = threading.BoundedSemaphore(size)

    def run(self, query: Callable[[Connection], T]) -> T:
        """`query(conn)` on a pooled connection. Raises PostgresUnavailableError when Postgres
        cannot be reached or the connection broke; other database errors propagate."""
        with self._connection() as conn:
            return query(conn)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if not self._slots.acquire(timeout=self._wait_s):
            raise PostgresUnavailableError(
                f"all {self._size} database connections stayed busy for {self._wait_s} s"
            )
        try:
            with self._pooled() as conn:
                yield conn
        finally:
            self._slots.release()

    @contextmanager
    def _pooled(self) -> Iterator[Connection]:
        pool = self._get_pool()
        try:
            conn = pool.getconn()
        except psycopg2.pool.PoolError as exc:  # every connection is in use
            raise PostgresUnavailableError(f"no free database connection: {exc}") from exc
        except psycopg2.Error as exc:
            raise PostgresUnavailableError(f"Postgres cannot be reached: {exc}") from exc
        broken = False
        try:
            if conn.closed:
                broken = True
                raise PostgresUnavailableError("the database connection was closed")
            if not conn.autocommit:  # a new connection: no query ever holds a transaction open
                conn.set_session(readonly=True, autocommit=True)
            yield conn
        except psycopg2.Error as exc:
            broken = bool(conn.closed) or is_outage(exc)
            if broken:
                raise PostgresUnavailableError(f"Postgres is unavailable: {exc}") from exc
            raise
        finally:
            pool.putconn(conn, close=broken)

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = psycopg2.pool.ThreadedConnectionPool(
                    0,
                    self._size,
                    self._database_url,
                    connect_timeout=5,
                    application_name=self._application_name,
                    # a query that runs away is cancelled rather than holding a connection
                    options=f"-c statement_timeout={self._statement_timeout_ms}",
                )
            return self._pool


def ping(conn: Connection) -> None:
    """Raises unless the database answers and holds the sink's tables (migrated)."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM images LIMIT 0")


# ---------------------------------------------------------------------------------------------
# one image


@dataclass(frozen=True)
class StoredImage:
    """A tagged image or frame as stored, newest model version's write."""

    event_id: str
    source_kind: str  # feed | camera
    source_id: str
    item_id: str | None
    image_url: str | None
    frame_number: int | None
    captured_at: dt.datetime
    submitted_at: dt.datetime
    written_at: dt.datetime
    width: int
    height: int
    model_version: str
    person_count: int
    catalogue: Mapping[str, Any]  # title, brand, price, currency, link (feeds only)
    garments: list[dict[str, Any]] = field(default_factory=list)


def image_by_event(conn: Connection, event_id: str) -> StoredImage | None:
    """The image or frame with this event id (its latest write when several model versions
    tagged it), with its garments; None when there is none or the id is not a UUID."""
    event_id = normal_event_id(event_id)
    if not _is_uuid(event_id):
        return None
    with conn.cursor() as cur:
        cur.execute(
            "SELECT i.id, i.event_id::text, s.kind, s.source_id, c.item_id, i.image_url,"
            " i.frame_number, i.captured_at, i.submitted_at, i.written_at, i.width, i.height,"
            " i.model_version, i.person_count, c.title, c.brand, c.price, c.currency, c.link"
            " FROM images i JOIN sources s ON s.id = i.source_pk"
            " LEFT JOIN catalogue_items c ON c.id = i.item_pk"
            " WHERE i.event_id = %s::uuid ORDER BY i.written_at DESC, i.id DESC LIMIT 1",
            (event_id,),
        )
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute(
            sql.SQL(
                "SELECT {columns} FROM garments g WHERE g.image_id = %s ORDER BY g.garment_index"
            ).format(columns=_GARMENT_COLUMNS),
            (row[0],),
        )
        garments = [_garment(r) for r in cur.fetchall()]
    catalogue = {
        "title": row[14],
        "brand": row[15],
        "price": None if row[16] is None else str(Decimal(row[16]).normalize()),
        "currency": row[17],
        "link": row[18],
    }
    return StoredImage(
        event_id=row[1],
        source_kind=row[2],
        source_id=row[3],
        item_id=row[4],
        image_url=row[5],
        frame_number=row[6],
        captured_at=row[7],
        submitted_at=row[8],
        written_at=row[9],
        width=row[10],
        height=row[11],
        model_version=row[12],
        person_count=row[13],
        catalogue={k: v for k, v in catalogue.items() if v is not None},
        garments=garments,
    )


# ---------------------------------------------------------------------------------------------
# pages


@dataclass(frozen=True)
class PageKey:
    """Where a page starts: strictly after (older than) this row."""

    at: dt.datetime
    id: int


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_key: PageKey | None  # None: this was the last page


@dataclass(frozen=True)
class GarmentQuery:
    category: str | None = None  # the detector's category, e.g. "top"
    colour: str | None = None  # the measured colour or the colour head's label
    source: str | None = None  # a feed name or camera id
    since: dt.datetime | None = None  # captured at or after
    limit: int = 50
    after: PageKey | None = None


def garments_page(conn: Connection, q: GarmentQuery) -> Page:
    """Garments newest capture first (ties by id), filtered, one page."""
    limit = _limit(q.limit)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT {columns}, g.id, g.captured_at, i.event_id::text, s.kind,"
                " s.source_id, c.item_id, i.image_url, i.frame_number, i.model_version"
                " FROM garments g JOIN images i ON i.id = g.image_id"
                " JOIN sources s ON s.id = g.source_pk"
                " LEFT JOIN catalogue_items c ON c.id = i.item_pk"
                " WHERE (%(category)s::text IS NULL OR g.category = %(category)s)"
                " AND (%(colour)s::text IS NULL OR lower(g.colour_name) = lower(%(colour)s)"
                "      OR lower(g.base_colour) = lower(%(colour)s))"
                " AND (%(source)s::text IS NULL OR s.source_id = %(source)s)"
                " AND (%(since)s::timestamptz IS NULL OR g.captured_at >= %(since)s)"
                " AND (%(after_at)s::timestamptz IS NULL"
                "      OR (g.captured_at, g.id) < (%(after_at)s, %(after_id)s))"
                " ORDER BY g.captured_at DESC, g.id DESC LIMIT %(limit)s"
            ).format(columns=_GARMENT_COLUMNS),
            {
                "category": q.category,
                "colour": q.colour,
                "source": q.source,
                "since": q.since,
                "after_at": None if q.after is None else q.after.at,
                "after_id": None if q.after is None else q.after.id,
                "limit": limit + 1,
            },
        )
        fetched = cur.fetchall()
    n = len(_GARMENT_FIELDS)
    rows: list[dict[str, Any]] = []
    keys: list[PageKey] = []
    for r in fetched[:limit]:
        garment = _garment(r[:n])
        pk, captured_at, event_id, kind, source_id, item_id, url, frame, version = r[n:]
        garment.update(
            id=pk,
            captured_at=captured_at,
            event_id=event_id,
            source={"kind": kind, "id": source_id},
            item_id=item_id,
            image_url=url,
            frame_number=frame,
            model_version=version,
        )
        rows.append(garment)
        keys.append(PageKey(captured_at, pk))
    return Page(rows, keys[-1] if len(fetched) > limit else None)


@dataclass(frozen=True)
class SightingQuery:
    camera: str | None = None
    since: dt.datetime | None = None  # first seen at or after
    limit: int = 50
    after: PageKey | None = None


def sightings_page(conn: Connection, q: SightingQuery) -> Page:
    """Sightings newest first (by first seen; ties by id) with the garments voted over each."""
    limit = _limit(q.limit)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT t.id, t.sighting_id::text, s.source_id, t.first_seen_at, t.last_seen_at,"
            " t.frames_seen, t.score_mean, t.best_event_id::text, t.best_frame,"
            " t.best_person_index, t.x1, t.y1, t.x2, t.y2, t.end_reason, t.model_version"
            " FROM sightings t JOIN sources s ON s.id = t.source_pk"
            " WHERE (%(camera)s::text IS NULL OR (s.kind = 'camera' AND s.source_id = %(camera)s))"
            " AND (%(since)s::timestamptz IS NULL OR t.first_seen_at >= %(since)s)"
            " AND (%(after_at)s::timestamptz IS NULL"
            "      OR (t.first_seen_at, t.id) < (%(after_at)s, %(after_id)s))"
            " ORDER BY t.first_seen_at DESC, t.id DESC LIMIT %(limit)s",
            {
                "camera": q.camera,
                "since": q.since,
                "after_at": None if q.after is None else q.after.at,
                "after_id": None if q.after is None else q.after.id,
                "limit": limit + 1,
            },
        )
        fetched = cur.fetchall()[: limit + 1]
        page = fetched[:limit]
        garments: dict[int, list[dict[str, Any]]] = {}
        if page:
            cur.execute(
                "SELECT sighting_pk, garment_index, category, category_share, frames_seen,"
                " score_mean, attributes, colour_name, colour_r, colour_g, colour_b, style,"
                " style_prob FROM sighting_garments WHERE sighting_pk = ANY(%s)"
                " ORDER BY sighting_pk, garment_index",
                ([r[0] for r in page],),
            )
            for g in cur.fetchall():
                garments.setdefault(g[0], []).append(
                    {
                        "garment_index": g[1],
                        "category": g[2],
                        "category_share": float(g[3]),
                        "frames_seen": g[4],
                        "score_mean": float(g[5]),
                        "attributes": g[6],
                        "colour": {"name": g[7], "rgb": [g[8], g[9], g[10]]},
                        "style": {"label": g[11], "prob": float(g[12])},
                    }
                )
    rows = [
        {
            "id": r[0],
            "sighting_id": r[1],
            "camera": r[2],
            "first_seen_at": r[3],
            "last_seen_at": r[4],
            "frames_seen": r[5],
            "score_mean": float(r[6]),
            "best_view": {
                "event_id": r[7],
                "frame_number": r[8],
                "person_index": r[9],
            },
            "box": [float(v) for v in r[10:14]],
            "end_reason": r[14],
            "model_version": r[15],
            "garments": garments.get(r[0], []),
        }
        for r in page
    ]
    next_key = PageKey(page[-1][3], page[-1][0]) if len(fetched) > limit else None
    return Page(rows, next_key)


# ---------------------------------------------------------------------------------------------
# helpers

# the garments columns `_garment` reads, in its order (of the table aliased g)
_GARMENT_FIELDS = (
    "garment_index", "person_index", "category", "score", "x1", "y1", "x2", "y2",
    "attributes", "colour_name", "colour_r", "colour_g", "colour_b", "colour_share",
    "style", "style_prob",
)  # fmt: skip
_GARMENT_COLUMNS = sql.SQL(", ").join(sql.Identifier("g", c) for c in _GARMENT_FIELDS)


def _garment(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "garment_index": r[0],
        "person_index": r[1],
        "category": r[2],
        "score": float(r[3]),
        "box": [float(v) for v in r[4:8]],
        "attributes": r[8],  # head -> {label, prob}
        "colour": {"name": r[9], "rgb": [r[10], r[11], r[12]], "share": float(r[13])},
        "style": {"label": r[14], "prob": float(r[15])},
    }


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be in 1..{MAX_PAGE}, got {limit}")
    return limit


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
