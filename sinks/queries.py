"""Read-side helpers over the sink's tables for the demo, the benchmarks and reports: counts,
garments per category, the most frequent attribute values, mean stage timings, latencies and the
garments of one event. Parameterised SQL only; each function takes an open psycopg2 connection
and, where it reports over many images, a `Scope` (which sources, which time window)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sinks.postgres import TABLES, Connection


@dataclass(frozen=True)
class Scope:
    """Which images a report covers: all by default.

    `sources`: feed names or camera ids. `captured_since`: captures from then on (what a user
    asks: "since yesterday"). `written_since`: rows the sink (re)wrote from then on (what one run
    of the demo or a benchmark produced).
    """

    sources: Collection[str] | None = None
    captured_since: dt.datetime | None = None
    written_since: dt.datetime | None = None

    def images_cte(self) -> tuple[str, dict[str, Any]]:
        """`WITH scoped AS (...)`: the ids and columns of the images in scope."""
        sql = (
            "WITH scoped AS ("
            " SELECT i.* FROM images i JOIN sources s ON s.id = i.source_pk"
            " WHERE (%(sources)s::text[] IS NULL OR s.source_id = ANY(%(sources)s::text[]))"
            " AND (%(captured)s::timestamptz IS NULL OR i.captured_at >= %(captured)s)"
            " AND (%(written)s::timestamptz IS NULL OR i.written_at >= %(written)s)"
            ") "
        )
        params = {
            "sources": None if self.sources is None else sorted(self.sources),
            "captured": self.captured_since,
            "written": self.written_since,
        }
        return sql, params


ALL = Scope()


@dataclass(frozen=True)
class LabelCount:
    label: str
    count: int


@dataclass(frozen=True)
class GarmentRow:
    garment_index: int
    category: str
    score: float
    box: tuple[float, float, float, float]
    attributes: Mapping[str, Any]  # head -> {"label", "prob"}
    colour: str
    style: str
    person_index: int | None
    model_version: str


def _rows(
    conn: Connection, query: str, params: tuple[Any, ...] | Mapping[str, Any] = ()
) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        rows: list[tuple[Any, ...]] = cur.fetchall()
    return rows


def _scoped(scope: Scope, query: str, **params: Any) -> tuple[str, dict[str, Any]]:
    cte, scope_params = scope.images_cte()
    return cte + query, {**scope_params, **params}


def count_rows(conn: Connection) -> dict[str, int]:
    """Rows per table the sink writes."""
    (row,) = _rows(
        conn,
        "SELECT (SELECT count(*) FROM sources), (SELECT count(*) FROM catalogue_items),"
        " (SELECT count(*) FROM images), (SELECT count(*) FROM people),"
        " (SELECT count(*) FROM garments)",
    )
    return dict(zip(TABLES, (int(v) for v in row), strict=True))


def image_counts(conn: Connection, scope: Scope = ALL) -> dict[str, int]:
    """In scope: `images` (catalogue photos), `frames` (video frames), `garments`, `people`."""
    query, params = _scoped(
        scope,
        "SELECT count(*) FILTER (WHERE frame_number IS NULL),"
        " count(*) FILTER (WHERE frame_number IS NOT NULL),"
        " coalesce(sum(garment_count), 0), coalesce(sum(person_count), 0) FROM scoped",
    )
    ((images, frames, garments, people),) = _rows(conn, query, params)
    return {
        "images": int(images),
        "frames": int(frames),
        "garments": int(garments),
        "people": int(people),
    }


def garments_per_category(conn: Connection, scope: Scope = ALL) -> list[LabelCount]:
    """Garments per detector category, most frequent first."""
    query, params = _scoped(
        scope,
        "SELECT g.category, count(*) FROM garments g JOIN scoped i ON i.id = g.image_id"
        " GROUP BY g.category ORDER BY count(*) DESC, g.category",
    )
    return [LabelCount(label, int(n)) for label, n in _rows(conn, query, params)]


def top_attribute_values(
    conn: Connection, scope: Scope = ALL, *, limit: int = 3
) -> dict[str, list[LabelCount]]:
    """The `limit` most frequent labels of every attribute head, plus the measured colour
    (`colour`) and the style (`style`)."""
    query, params = _scoped(
        scope,
        ", in_scope AS (SELECT g.* FROM garments g JOIN scoped i ON i.id = g.image_id)"
        ", labels AS ("
        "  SELECT a.key AS head, a.value ->> 'label' AS label"
        "  FROM in_scope g CROSS JOIN LATERAL jsonb_each(g.attributes) AS a"
        "  UNION ALL SELECT 'colour', colour_name FROM in_scope"
        "  UNION ALL SELECT 'style', style FROM in_scope"
        "), counted AS ("
        "  SELECT head, label, count(*) AS n,"
        "         row_number() OVER (PARTITION BY head ORDER BY count(*) DESC, label) AS rank"
        "  FROM labels WHERE label IS NOT NULL GROUP BY head, label"
        ") SELECT head, label, n FROM counted WHERE rank <= %(limit)s ORDER BY head, rank",
        limit=limit,
    )
    result: dict[str, list[LabelCount]] = {}
    for head, label, n in _rows(conn, query, params):
        result.setdefault(head, []).append(LabelCount(label, int(n)))
    return result


def mean_timings(conn: Connection, scope: Scope = ALL) -> dict[str, float]:
    """Mean seconds per stage (from each image's `timings`)."""
    query, params = _scoped(
        scope,
        "SELECT t.key, avg(t.value::float8) FROM scoped i"
        " CROSS JOIN LATERAL jsonb_each_text(i.timings) AS t GROUP BY t.key ORDER BY t.key",
    )
    return {stage: float(mean) for stage, mean in _rows(conn, query, params)}


def latencies(conn: Connection, scope: Scope = ALL) -> list[float]:
    """Seconds from entering Kafka (`submitted_at`) to the row's last write, per image, sorted."""
    query, params = _scoped(
        scope,
        "SELECT extract(epoch FROM written_at - submitted_at)::float8 FROM scoped ORDER BY 1",
    )
    return [float(v) for (v,) in _rows(conn, query, params)]


def last_written(conn: Connection, scope: Scope = ALL) -> dt.datetime | None:
    """When the sink last (re)wrote an image in scope; None when there is none."""
    query, params = _scoped(scope, "SELECT max(written_at) FROM scoped")
    ((last,),) = _rows(conn, query, params)
    return last if isinstance(last, dt.datetime) else None


def popular_looks(
    conn: Connection, scope: Scope = ALL, *, limit: int = 10
) -> list[tuple[str, str, str, int]]:
    """(category, colour, style, garments) most seen first: the "popular fashion items" report."""
    query, params = _scoped(
        scope,
        "SELECT g.category, g.colour_name, g.style, count(*) FROM garments g"
        " JOIN scoped i ON i.id = g.image_id"
        " GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT %(limit)s",
        limit=limit,
    )
    return [(c, colour, style, int(n)) for c, colour, style, n in _rows(conn, query, params)]


def garments_for_event(
    conn: Connection, event_id: str, model_version: str | None = None
) -> list[GarmentRow]:
    """The garments stored for one image or frame (`TaggedImage.event_id`), by index."""
    rows = _rows(
        conn,
        "SELECT g.garment_index, g.category, g.score, g.x1, g.y1, g.x2, g.y2, g.attributes,"
        " g.colour_name, g.style, g.person_index, i.model_version"
        " FROM garments g JOIN images i ON i.id = g.image_id"
        " WHERE i.event_id = %s::uuid AND (%s::text IS NULL OR i.model_version = %s)"
        " ORDER BY i.model_version, g.garment_index",
        (event_id, model_version, model_version),
    )
    return [
        GarmentRow(
            garment_index=r[0],
            category=r[1],
            score=float(r[2]),
            box=(float(r[3]), float(r[4]), float(r[5]), float(r[6])),
            attributes=r[7],
            colour=r[8],
            style=r[9],
            person_index=r[10],
            model_version=r[11],
        )
        for r in rows
    ]


def tracker_caught_up(conn: Connection, camera: str, since: dt.datetime) -> bool:
    """Whether the camera's tracker has processed its last frame written since `since` and has
    no open track left (a recording's end closes them): its sightings are all written."""
    rows = _rows(
        conn,
        "SELECT t.last_frame >= max(i.frame_number) AND t.open_tracks = 0"
        " FROM images i JOIN sources s ON s.id = i.source_pk"
        " JOIN tracker_states t ON t.camera_pk = s.id"
        " WHERE s.kind = 'camera' AND s.source_id = %s AND i.written_at >= %s"
        " GROUP BY t.last_frame, t.open_tracks",
        (camera, since),
    )
    return bool(rows) and rows[0][0] is True
