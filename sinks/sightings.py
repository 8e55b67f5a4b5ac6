"""The sightings sink: each camera's tracker state, the sightings its tracks closed and the frames
of its open and closed tracks, written to Postgres in ONE transaction per batch (schema:
infra/migrations/0002_sightings.sql).

Contract (as sinks/postgres.py, STYLE.md 5): `add(write)` buffers one camera's `CameraWrite`,
`flush()` commits everything buffered or nothing, and the caller releases Kafka offsets only
after it returned. psycopg2 blocks: call it from one worker thread.

Why one transaction: the state says which frames are already accounted for. Were the state and
the sightings committed separately, a worker killed between the two would either lose the
sightings of tracks its saved state no longer holds, or replay frames into a state that already
counted them. Committed together, a restart resumes from a state that matches the rows exactly.

Failures:
- `PostgresUnavailableError` (sinks/errors.py): nothing committed; the buffer is kept and the
  next `flush()` retries it on a new connection.
- `StaleTrackerStateError`: a camera's stored state is not the version this worker loaded
  (another worker took over its partition and wrote since). Nothing committed, the buffer is
  dropped; the caller reloads those cameras and processes the frames again.
- `SightingsRejectedError`: Postgres refused the data itself (a bug: the tracker's output is
  validated before it gets here). Nothing committed, the buffer is dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import Json, execute_values

from fashionstream.core.errors import DeadLetterReason, SinkError
from fashionstream.core.metrics import Metrics, SinkErrorKind, Stage
from fashionstream.core.records import SourceKind
from fashionstream.core.settings import Settings
from fashionstream.core.sightings import Sighting, SightingFrame
from sinks.errors import PostgresUnavailableError, is_outage
from sinks.postgres import (
    INSERT_SOURCES,
    ConnectionFactory,
    ReconnectingConnection,
    connection_factory,
    upsert_sql,
)
from sinks.thumbnails import UPSERT_SIGHTING_THUMBNAILS, thumbnail_row

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
# the tables this sink writes, parents first
TABLES = ("tracker_states", "sightings", "sighting_garments", "sighting_frames")


@dataclass(frozen=True)
class StoredState:
    """A camera's tracker state as last committed."""

    state: bytes
    state_format: str
    version: int


@dataclass(frozen=True)
class CameraWrite:
    """One camera's share of a batch: its new tracker state and what its tracks produced.

    `expected_version` is the version the state was loaded at (0: none was stored); the write
    stores `expected_version + 1`.
    """

    camera: str
    partition: int | None  # the fashion.items.v1 partition its frames arrive on
    state: bytes
    state_format: str
    stream_ref: str | None
    last_frame: int | None
    open_tracks: int
    expected_version: int
    sightings: tuple[Sighting, ...] = ()
    frames: tuple[SightingFrame, ...] = ()

    def __post_init__(self) -> None:
        if not self.camera:
            raise ValueError("CameraWrite needs a camera")
        if self.expected_version < 0 or self.open_tracks < 0:
            raise ValueError("CameraWrite: negative version or track count")


class StaleTrackerStateError(Exception):
    """Another worker wrote these cameras' tracker state since this one loaded it."""

    def __init__(self, cameras: Sequence[str]) -> None:
        super().__init__(f"tracker state of {', '.join(cameras)} changed since it was loaded")
        self.cameras = tuple(cameras)


class SightingsRejectedError(SinkError):
    """Postgres refused a batch's sightings data; nothing of it was committed."""

    def __init__(self, detail: str) -> None:
        super().__init__(DeadLetterReason.SINK_REJECTED, detail)


SELECT_SOURCES = """
SELECT id, source_id FROM sources WHERE kind = %s AND source_id = ANY(%s)
"""
LOAD_STATE = """
SELECT t.state, t.state_format, t.version FROM tracker_states t
JOIN sources s ON s.id = t.camera_pk WHERE s.kind = %s AND s.source_id = %s
"""
OPEN_CAMERAS = """
SELECT s.source_id FROM tracker_states t JOIN sources s ON s.id = t.camera_pk
WHERE t.open_tracks > 0 AND t.kafka_partition = ANY(%s) ORDER BY s.source_id
"""
INSERT_STATE = """
INSERT INTO tracker_states (camera_pk, kafka_partition, stream_ref, last_frame, open_tracks,
                            state_format, state, version)
VALUES (%s, %s, %s, %s, %s, %s, %s, 1)
ON CONFLICT (camera_pk) DO NOTHING
RETURNING version
"""
UPDATE_STATE = """
UPDATE tracker_states SET kafka_partition = %s, stream_ref = %s, last_frame = %s,
    open_tracks = %s, state_format = %s, state = %s, version = version + 1, updated_at = now()
WHERE camera_pk = %s AND version = %s
RETURNING version
"""
_SIGHTING_COLS = [
    "sighting_id", "source_pk", "stream_ref", "model_version", "stream_started_at",
    "first_seen_at", "last_seen_at", "first_frame", "last_frame", "frames_seen", "score_mean",
    "score_max", "x1", "y1", "x2", "y2", "best_event_id", "best_frame", "best_person_index",
    "best_score", "best_x1", "best_y1", "best_x2", "best_y2", "end_reason",
]  # fmt: skip
UPSERT_SIGHTINGS = upsert_sql("sightings", _SIGHTING_COLS, keys=1) + sql.SQL(
    ", written_at = now() RETURNING id, sighting_id::text"
)
SIGHTING_TEMPLATE = (
    "(%s::uuid, " + ", ".join(["%s"] * 15) + ", %s::uuid, " + ", ".join(["%s"] * 8) + ")"
)
_GARMENT_COLS = [
    "sighting_pk", "garment_index", "category", "category_share", "frames_seen", "score_mean",
    "attributes", "colour_name", "colour_share", "colour_r", "colour_g", "colour_b", "style",
    "style_prob", "best_event_id", "best_garment_index", "source_pk", "first_seen_at",
]  # fmt: skip
UPSERT_GARMENTS = upsert_sql("sighting_garments", _GARMENT_COLS, keys=2)
GARMENT_TEMPLATE = (
    "(%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s::uuid, %s, %s, %s)"
)
DELETE_STALE_GARMENTS = """
DELETE FROM sighting_garments g USING (VALUES %s) AS v (sighting_pk, n)
WHERE g.sighting_pk = v.sighting_pk AND g.garment_index >= v.n
"""
STALE_TEMPLATE = "(%s::bigint, %s::integer)"
_FRAME_COLS = [
    "sighting_id", "event_id", "model_version", "source_pk", "frame_number", "captured_at",
    "person_index", "score", "x1", "y1", "x2", "y2", "garment_indexes",
]  # fmt: skip
UPSERT_FRAMES = upsert_sql("sighting_frames", _FRAME_COLS, keys=2)
FRAME_TEMPLATE = "(%s::uuid, %s::uuid, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::integer[])"


class SightingSink:
    """Buffers `CameraWrite`s and commits them on `flush()`; loads states. See the module."""

    def __init__(self, connect: ConnectionFactory, metrics: Metrics) -> None:
        self._metrics = metrics
        self._db = ReconnectingConnection(connect)
        self._pending: dict[str, CameraWrite] = {}

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> SightingSink:
        return cls(connection_factory(settings, "fashionstream-sightings"), metrics)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ reads

    def load(self, camera: str) -> StoredState | None:
        """The camera's committed tracker state, or None when it has none."""
        rows = self._read(LOAD_STATE, (SourceKind.CAMERA.value, camera))
        if not rows:
            return None
        state, state_format, version = rows[0]
        return StoredState(bytes(state), str(state_format), int(version))

    def cameras_with_open_tracks(self, partitions: Collection[int]) -> list[str]:
        """Cameras whose committed state holds open tracks and whose frames arrive on one of
        `partitions` (those this worker was assigned)."""
        if not partitions:
            return []
        return [str(r[0]) for r in self._read(OPEN_CAMERAS, (sorted(partitions),))]

    def _read(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            conn = self._db.get()
            try:
                with conn.cursor() as cur:
                    cur.execute(query, params)
                    rows: list[tuple[Any, ...]] = cur.fetchall()
            finally:
                conn.rollback()  # end the read's transaction: no snapshot held between batches
        except psycopg2.Error as exc:
            self._db.drop()
            raise PostgresUnavailableError(f"reading tracker state failed: {exc}") from exc
        return rows

    # ------------------------------------------------------------------ writes

    def add(self, write: CameraWrite) -> None:
        """Buffer one camera's write; a second write for the same camera must follow from the
        first (its expected version one more), and replaces it in the buffer with the frames
        and sightings of both."""
        earlier = self._pending.get(write.camera)
        if earlier is not None:
            if write.expected_version != earlier.expected_version + 1:
                raise ValueError(f"camera {write.camera}: writes out of order")
            write = CameraWrite(
                camera=write.camera,
                partition=write.partition,
                state=write.state,
                state_format=write.state_format,
                stream_ref=write.stream_ref,
                last_frame=write.last_frame,
                open_tracks=write.open_tracks,
                expected_version=earlier.expected_version,
                sightings=earlier.sightings + write.sightings,
                frames=earlier.frames + write.frames,
            )
        self._pending[write.camera] = write

    def discard(self) -> None:
        """Forget everything buffered (after a StaleTrackerStateError or a rejection)."""
        self._pending.clear()

    def flush(self) -> int:
        """Commit the buffered writes in one transaction; returns the sightings written.

        Raises PostgresUnavailableError (kept: retry), StaleTrackerStateError or
        SightingsRejectedError (dropped)."""
        if not self._pending:
            return 0
        batch = [self._pending[c] for c in sorted(self._pending)]
        started = time.perf_counter()
        try:
            conn = self._db.get()
            try:
                with conn.cursor() as cur:
                    rows = self._write(cur, batch)
                conn.commit()
            except StaleTrackerStateError:
                conn.rollback()
                self._pending.clear()
                raise
            except Exception as exc:
                if is_outage(exc):
                    raise
                conn.rollback()
                self._pending.clear()
                self._metrics.sink_errors.labels(error=SinkErrorKind.REJECTED.value).inc()
                raise SightingsRejectedError(f"Postgres refused a sightings batch: {exc}") from exc
        except Exception as exc:
            if not is_outage(exc):
                raise
            self._db.drop()
            self._metrics.sink_errors.labels(error=SinkErrorKind.UNAVAILABLE.value).inc()
            raise PostgresUnavailableError(
                f"sightings write for {len(batch)} cameras failed: {exc}".strip()
            ) from exc
        self._pending.clear()
        self._metrics.stage_duration.labels(stage=Stage.TRACK.value).observe(
            time.perf_counter() - started
        )
        for table, count in rows.items():
            self._metrics.rows_written.labels(table=table).inc(count)
        return rows["sightings"]

    def close(self) -> None:
        self._db.drop()

    def _write(self, cur: Any, batch: Sequence[CameraWrite]) -> Counter[str]:
        rows: Counter[str] = Counter()
        cameras = sorted({w.camera for w in batch})
        source_pk = _camera_pks(cur, cameras)
        missing = [c for c in cameras if c not in source_pk]
        if missing:
            execute_values(
                cur,
                INSERT_SOURCES,
                [(SourceKind.CAMERA.value, c) for c in missing],
                page_size=PAGE_SIZE,
            )
            source_pk.update(_camera_pks(cur, missing))
            rows["sources"] += len(missing)

        stale = []
        for w in batch:  # sorted by camera: concurrent workers lock states in the same order
            pk = source_pk[w.camera]
            if w.expected_version == 0:
                cur.execute(
                    INSERT_STATE,
                    (pk, w.partition, w.stream_ref, w.last_frame, w.open_tracks, w.state_format,
                     psycopg2.Binary(w.state)),
                )  # fmt: skip
            else:
                cur.execute(
                    UPDATE_STATE,
                    (w.partition, w.stream_ref, w.last_frame, w.open_tracks, w.state_format,
                     psycopg2.Binary(w.state), pk, w.expected_version),
                )  # fmt: skip
            if cur.fetchone() is None:
                stale.append(w.camera)
        if stale:
            raise StaleTrackerStateError(stale)
        rows["tracker_states"] += len(batch)

        # one statement may not touch a row twice: a recording processed again from its start
        # within one batch closes the same sightings twice (identically); keep the last
        unique_sightings = {s.sighting_id: s for w in batch for s in w.sightings}
        sightings = [unique_sightings[k] for k in sorted(unique_sightings)]
        if sightings:
            returned = execute_values(
                cur,
                UPSERT_SIGHTINGS,
                [sighting_row(source_pk[s.camera], s) for s in sightings],
                template=SIGHTING_TEMPLATE,
                page_size=PAGE_SIZE,
                fetch=True,
            )
            pk_of = {sid: pk for pk, sid in returned}
            garments = [
                garment_row(pk_of[s.sighting_id], source_pk[s.camera], s, i)
                for s in sightings
                for i in range(len(s.garments))
            ]
            if garments:
                execute_values(
                    cur, UPSERT_GARMENTS, garments, template=GARMENT_TEMPLATE, page_size=PAGE_SIZE
                )
            execute_values(
                cur,
                DELETE_STALE_GARMENTS,
                [(pk_of[s.sighting_id], len(s.garments)) for s in sightings],
                template=STALE_TEMPLATE,
                page_size=PAGE_SIZE,
            )
            rows["sightings"] += len(sightings)
            thumbnails = [
                row
                for s in sightings
                if s.best.thumbnail is not None
                and (row := thumbnail_row(pk_of[s.sighting_id], s.best.thumbnail)) is not None
            ]
            if thumbnails:  # the best view of a sighting commits with it
                execute_values(cur, UPSERT_SIGHTING_THUMBNAILS, thumbnails, page_size=PAGE_SIZE)
                rows["sighting_thumbnails"] += len(thumbnails)
            rows["sighting_garments"] += len(garments)

        unique_frames = {
            (f.sighting_id, f.event_id): frame_row(source_pk[w.camera], f)
            for w in batch
            for f in w.frames
        }
        frames = [unique_frames[k] for k in sorted(unique_frames)]
        if frames:
            execute_values(cur, UPSERT_FRAMES, frames, template=FRAME_TEMPLATE, page_size=PAGE_SIZE)
            rows["sighting_frames"] += len(frames)
        return rows


def _camera_pks(cur: Any, cameras: Sequence[str]) -> dict[str, int]:
    cur.execute(SELECT_SOURCES, (SourceKind.CAMERA.value, list(cameras)))
    return {str(source_id): int(pk) for pk, source_id in cur.fetchall()}


# ---------------------------------------------------------------------------------------------
# sighting -> row adapters (pure functions: the unit tests check them directly)


def sighting_row(source_pk: int, s: Sighting) -> tuple[Any, ...]:
    x1, y1, x2, y2 = s.mean_box
    b = s.best
    return (
        s.sighting_id, source_pk, s.stream_ref, s.model_version, _ts(s.stream_started_at),
        _ts(s.first_seen), _ts(s.last_seen), s.first_frame, s.last_frame, s.frames,
        _unit(s.score_mean), _unit(s.score_max), x1, y1, x2, y2,
        b.event_id, b.frame_number, b.person_index, _unit(b.score), *b.box,
        s.end_reason.value,
    )  # fmt: skip


def garment_row(sighting_pk: int, source_pk: int, s: Sighting, index: int) -> tuple[Any, ...]:
    g = s.garments[index]
    r, gr, b = g.colour_rgb
    return (
        sighting_pk, index, g.category, _unit(g.category_share), g.frames, _unit(g.score_mean),
        Json({head: {"label": a.label, "prob": a.prob} for head, a in g.attributes.items()}),
        g.colour.label, _unit(g.colour.prob), r, gr, b, g.style.label, _unit(g.style.prob),
        g.best_event_id, g.best_garment_index, source_pk, _ts(s.first_seen),
    )  # fmt: skip


def frame_row(source_pk: int, f: SightingFrame) -> tuple[Any, ...]:
    x1, y1, x2, y2 = f.box
    return (
        f.sighting_id, f.event_id, f.model_version, source_pk, f.frame_number,
        _ts(f.captured_at), f.person_index, _unit(f.score), x1, y1, x2, y2,
        list(f.garment_indexes),
    )  # fmt: skip


def _ts(epoch_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC)


def _unit(value: float) -> float:
    """Real columns round floats; keep them inside their CHECK (x BETWEEN 0 AND 1)."""
    return min(1.0, max(0.0, float(value)))
