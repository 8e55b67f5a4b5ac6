"""Read-side helpers over the sink's tables for the demo, the benchmarks and reports: counts,
garments per category, the most frequent attribute values, mean stage timings, and the garments
of one event. Parameterised SQL only; each function takes an open psycopg2 connection."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sinks.postgres import TABLES, Connection


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


def _rows(conn: Connection, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        rows: list[tuple[Any, ...]] = cur.fetchall()
    return rows


def count_rows(conn: Connection) -> dict[str, int]:
    """Rows per table the sink writes."""
    (row,) = _rows(
        conn,
        "SELECT (SELECT count(*) FROM sources), (SELECT count(*) FROM catalogue_items),"
        " (SELECT count(*) FROM images), (SELECT count(*) FROM people),"
        " (SELECT count(*) FROM garments)",
    )
    return dict(zip(TABLES, (int(v) for v in row), strict=True))


def garments_per_category(
    conn: Connection, *, source_id: str | None = None, since: dt.datetime | None = None
) -> list[LabelCount]:
    """Garments per detector category, most frequent first; optionally one source (a feed or
    camera id) and captures from `since` on."""
    rows = _rows(
        conn,
        "SELECT g.category, count(*) FROM garments g JOIN sources s ON s.id = g.source_pk"
        " WHERE (%s::text IS NULL OR s.source_id = %s)"
        " AND (%s::timestamptz IS NULL OR g.captured_at >= %s)"
        " GROUP BY g.category ORDER BY count(*) DESC, g.category",
        (source_id, source_id, since, since),
    )
    return [LabelCount(label, int(n)) for label, n in rows]


def top_attribute_values(conn: Connection, *, limit: int = 3) -> dict[str, list[LabelCount]]:
    """The `limit` most frequent labels of every attribute head, plus the measured colour
    (`colour`) and the style (`style`), over all garments."""
    rows = _rows(
        conn,
        "WITH labels AS ("
        "  SELECT a.key AS head, a.value ->> 'label' AS label"
        "  FROM garments g CROSS JOIN LATERAL jsonb_each(g.attributes) AS a"
        "  UNION ALL SELECT 'colour', colour_name FROM garments"
        "  UNION ALL SELECT 'style', style FROM garments"
        "), counted AS ("
        "  SELECT head, label, count(*) AS n,"
        "         row_number() OVER (PARTITION BY head ORDER BY count(*) DESC, label) AS rank"
        "  FROM labels WHERE label IS NOT NULL GROUP BY head, label"
        ") SELECT head, label, n FROM counted WHERE rank <= %s ORDER BY head, rank",
        (limit,),
    )
    result: dict[str, list[LabelCount]] = {}
    for head, label, n in rows:
        result.setdefault(head, []).append(LabelCount(label, int(n)))
    return result


def mean_timings(conn: Connection) -> dict[str, float]:
    """Mean seconds per stage over all images (from each image's `timings`)."""
    rows = _rows(
        conn,
        "SELECT t.key, avg(t.value::float8) FROM images i"
        " CROSS JOIN LATERAL jsonb_each_text(i.timings) AS t GROUP BY t.key ORDER BY t.key",
    )
    return {stage: float(mean) for stage, mean in rows}


def popular_looks(conn: Connection, *, limit: int = 10) -> list[tuple[str, str, str, int]]:
    """(category, colour, style, garments) most seen first: the "popular fashion items" report."""
    rows = _rows(
        conn,
        "SELECT category, colour_name, style, count(*) FROM garments"
        " GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT %s",
        (limit,),
    )
    return [(c, colour, style, int(n)) for c, colour, style, n in rows]


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
