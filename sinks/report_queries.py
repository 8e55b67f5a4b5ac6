"""The popular-items report's queries: what people on camera wore (from sightings: one count per
person, not per frame) and what the catalogue feeds hold (from tagged images), over a time window
and optionally some sources. Parameterised SQL only; the few fragments that vary (which column a
dimension is) are fixed `sql.SQL` constants chosen by an enum, never text from a caller. Days are
those of the window's time zone. A stream or an image processed again by another model version
counts once, by the model that processed it last (the views of migration 0006)."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from psycopg2 import sql

from fashionstream.core.settings import time_zone
from sinks.postgres import Connection


class Side(enum.StrEnum):
    """Where garments were seen: on camera (people) or in a catalogue feed (product photos)."""

    STREET = "street"
    CATALOGUE = "catalogue"


class Dimension(enum.StrEnum):
    CATEGORY = "category"
    COLOUR = "colour"
    STYLE = "style"
    ARTICLE_TYPE = "article_type"


@dataclass(frozen=True)
class Window:
    """[since, until) of capture time (first sight of a person; fetch time of a catalogue image),
    over `sources` (camera ids or feed names; None: all); days are `timezone`'s (IANA name)."""

    since: dt.datetime
    until: dt.datetime
    sources: tuple[str, ...] | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("Window: since and until must be timezone-aware")
        if self.until <= self.since:
            raise ValueError(f"Window: until {self.until} is not after since {self.since}")
        time_zone(self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        return time_zone(self.timezone)

    def previous(self) -> Window:
        """The period of the same length just before: what trends compare with."""
        start = self.since - (self.until - self.since)
        return Window(start, self.since, self.sources, self.timezone)

    def params(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "sources": None if self.sources is None else sorted(self.sources),
            "tz": self.timezone,
        }


@dataclass(frozen=True)
class LabelCount:
    label: str
    count: int
    rgb: tuple[int, int, int]  # mean measured colour of those garments (a swatch for colours)


@dataclass(frozen=True)
class DayCount:
    source_id: str
    day: dt.date
    count: int


@dataclass(frozen=True)
class SourceLabelCount:
    source_id: str
    label: str
    count: int


@dataclass(frozen=True)
class Totals:
    cameras: int
    sightings: int  # people seen
    street_garments: int  # garments those people wore (one per person and garment)
    feeds: int
    catalogue_images: int
    catalogue_garments: int


@dataclass(frozen=True)
class Example:
    """One garment of a group, with its picture when one was stored."""

    reference: str  # sighting id (street) or catalogue item id (catalogue)
    garment_index: int
    source_id: str
    title: str | None  # the catalogue item's title
    link: str | None  # the catalogue item's page
    jpeg: bytes | None
    # catalogue: where the garment is in the (whole-image) picture, and the image's size, so a
    # page can zoom onto it; None on the street side (the picture is the person)
    box: tuple[float, float, float, float] | None = None
    image_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class TopGarment:
    """A kind of garment (category, article type, colour) and how often it was seen."""

    category: str
    article_type: str | None
    colour: str
    rgb: tuple[int, int, int]
    count: int
    examples: tuple[Example, ...]


# --------------------------------------------------------------------------------------------
# the scoped rows of each side

_SOURCES = sql.SQL("(%(sources)s::text[] IS NULL OR s.source_id = ANY(%(sources)s::text[]))")
# A video or a catalogue tagged again by a new model must not count twice: the views of migration
# 0006 keep only a sighting (x) of the model that last processed its camera's stream, and only the
# latest tagging of an image (i)
_SIGHTINGS_IN_SCOPE = sql.SQL(
    "current_sightings x JOIN sources s ON s.id = x.source_pk WHERE s.kind = 'camera'"
    " AND x.first_seen_at >= %(since)s AND x.first_seen_at < %(until)s AND {sources}"
).format(sources=_SOURCES)
_IMAGES_IN_SCOPE = sql.SQL(
    "current_images i JOIN sources s ON s.id = i.source_pk WHERE s.kind = 'feed'"
    " AND i.captured_at >= %(since)s AND i.captured_at < %(until)s AND {sources}"
).format(sources=_SOURCES)
_STREET = sql.SQL(
    "SELECT sg.*, s.source_id, sg.attributes->'articleType'->>'label' AS article_type_label"
    " FROM sighting_garments sg JOIN current_sightings x ON x.id = sg.sighting_pk"
    " JOIN sources s ON s.id = sg.source_pk"
    " WHERE s.kind = 'camera' AND sg.first_seen_at >= %(since)s AND sg.first_seen_at < %(until)s"
    " AND {sources}"
).format(sources=_SOURCES)
_CATALOGUE = sql.SQL(
    "SELECT g.*, s.source_id, g.article_type AS article_type_label, i.item_pk,"
    " i.width AS image_width, i.height AS image_height"
    " FROM garments g JOIN current_images i ON i.id = g.image_id"
    " JOIN sources s ON s.id = g.source_pk"
    " WHERE s.kind = 'feed' AND g.captured_at >= %(since)s AND g.captured_at < %(until)s"
    " AND {sources}"
).format(sources=_SOURCES)
_SCOPED = {Side.STREET: _STREET, Side.CATALOGUE: _CATALOGUE}
_COLUMN = {
    Dimension.CATEGORY: sql.SQL("category"),
    Dimension.COLOUR: sql.SQL("colour_name"),
    Dimension.STYLE: sql.SQL("style"),
    Dimension.ARTICLE_TYPE: sql.SQL("article_type_label"),
}


def _rows(conn: Connection, query: sql.Composable, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        rows: list[tuple[Any, ...]] = cur.fetchall()
    return rows


def _rgb(r: Any, g: Any, b: Any) -> tuple[int, int, int]:
    return (round(float(r)), round(float(g)), round(float(b)))


def label_counts(
    conn: Connection, window: Window, side: Side, dimension: Dimension, limit: int = 12
) -> list[LabelCount]:
    """The most seen labels of `dimension`, most first (ties by label); garments without the
    label (a model with no article-type head) are left out."""
    query = sql.SQL(
        "WITH scoped AS ({scoped}) SELECT {column}, count(*), avg(colour_r), avg(colour_g),"
        " avg(colour_b) FROM scoped WHERE {column} IS NOT NULL GROUP BY 1"
        " ORDER BY 2 DESC, 1 LIMIT %(limit)s"
    ).format(scoped=_SCOPED[side], column=_COLUMN[dimension])
    return [
        LabelCount(str(label), int(n), _rgb(r, g, b))
        for label, n, r, g, b in _rows(conn, query, {**window.params(), "limit": limit})
    ]


def per_source_day(conn: Connection, window: Window, side: Side) -> list[DayCount]:
    """People seen per camera per day (street), or garments tagged per feed per day."""
    if side is Side.STREET:
        query = sql.SQL(
            "SELECT s.source_id, (x.first_seen_at AT TIME ZONE %(tz)s)::date, count(*)"
            " FROM {sightings} GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(sightings=_SIGHTINGS_IN_SCOPE)
    else:
        query = sql.SQL(
            "WITH scoped AS ({scoped}) SELECT source_id, (captured_at AT TIME ZONE %(tz)s)::date,"
            " count(*) FROM scoped GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(scoped=_CATALOGUE)
    return [DayCount(str(src), day, int(n)) for src, day, n in _rows(conn, query, window.params())]


def per_source_labels(
    conn: Connection, window: Window, side: Side, dimension: Dimension
) -> list[SourceLabelCount]:
    """Each source's garments by `dimension`: the small multiples per camera or feed."""
    query = sql.SQL(
        "WITH scoped AS ({scoped}) SELECT source_id, {column}, count(*) FROM scoped"
        " WHERE {column} IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2"
    ).format(scoped=_SCOPED[side], column=_COLUMN[dimension])
    return [
        SourceLabelCount(str(src), str(label), int(n))
        for src, label, n in _rows(conn, query, window.params())
    ]


def totals(conn: Connection, window: Window) -> Totals:
    query = sql.SQL(
        "SELECT"
        " (SELECT count(DISTINCT x.source_pk) FROM {sightings}),"
        " (SELECT count(*) FROM {sightings}),"
        " (SELECT count(*) FROM ({street}) st),"
        " (SELECT count(DISTINCT i.source_pk) FROM {images}),"
        " (SELECT count(*) FROM {images}),"
        " (SELECT count(*) FROM ({catalogue}) ct)"
    ).format(
        sightings=_SIGHTINGS_IN_SCOPE,
        images=_IMAGES_IN_SCOPE,
        street=_STREET,
        catalogue=_CATALOGUE,
    )
    (row,) = _rows(conn, query, window.params())
    return Totals(*(int(v) for v in row))


_TOP_STREET = sql.SQL(
    "WITH scoped AS ({street}),"
    " top AS (SELECT category, article_type_label, colour_name, count(*) AS n,"
    "  avg(colour_r) AS r, avg(colour_g) AS g, avg(colour_b) AS b FROM scoped"
    "  GROUP BY 1, 2, 3 ORDER BY n DESC, 1, 2, 3 LIMIT %(limit)s),"
    " examples AS (SELECT sc.category, sc.article_type_label, sc.colour_name,"
    "  x.sighting_id::text AS reference, sc.garment_index, sc.source_id, t.jpeg,"
    "  row_number() OVER (PARTITION BY sc.category, sc.article_type_label, sc.colour_name"
    "   ORDER BY t.jpeg IS NULL, x.best_score DESC, x.sighting_id) AS rank"
    "  FROM scoped sc JOIN sightings x ON x.id = sc.sighting_pk"
    "  LEFT JOIN sighting_thumbnails t ON t.sighting_pk = sc.sighting_pk)"
    " SELECT top.category, top.article_type_label, top.colour_name, top.n, top.r, top.g, top.b,"
    "  e.reference, e.garment_index, e.source_id, NULL, NULL, e.jpeg,"
    "  NULL, NULL, NULL, NULL, NULL, NULL"
    " FROM top LEFT JOIN examples e ON e.category = top.category"
    "  AND e.article_type_label IS NOT DISTINCT FROM top.article_type_label"
    "  AND e.colour_name = top.colour_name AND e.rank <= %(examples)s"
    " ORDER BY top.n DESC, 1, 2, 3, e.rank"
).format(street=_STREET)
_TOP_CATALOGUE = sql.SQL(
    "WITH scoped AS ({catalogue}),"
    " top AS (SELECT category, article_type_label, colour_name, count(*) AS n,"
    "  avg(colour_r) AS r, avg(colour_g) AS g, avg(colour_b) AS b FROM scoped"
    "  GROUP BY 1, 2, 3 ORDER BY n DESC, 1, 2, 3 LIMIT %(limit)s),"
    " examples AS (SELECT sc.category, sc.article_type_label, sc.colour_name,"
    "  c.item_id AS reference, sc.garment_index, sc.source_id, c.title, c.link, t.jpeg,"
    "  sc.x1, sc.y1, sc.x2, sc.y2, sc.image_width, sc.image_height,"
    "  row_number() OVER (PARTITION BY sc.category, sc.article_type_label, sc.colour_name"
    "   ORDER BY t.jpeg IS NULL, sc.score DESC, c.item_id, sc.garment_index) AS rank"
    "  FROM scoped sc JOIN catalogue_items c ON c.id = sc.item_pk"
    "  LEFT JOIN image_thumbnails t ON t.image_id = sc.image_id)"
    " SELECT top.category, top.article_type_label, top.colour_name, top.n, top.r, top.g, top.b,"
    "  e.reference, e.garment_index, e.source_id, e.title, e.link, e.jpeg,"
    "  e.x1, e.y1, e.x2, e.y2, e.image_width, e.image_height"
    " FROM top LEFT JOIN examples e ON e.category = top.category"
    "  AND e.article_type_label IS NOT DISTINCT FROM top.article_type_label"
    "  AND e.colour_name = top.colour_name AND e.rank <= %(examples)s"
    " ORDER BY top.n DESC, 1, 2, 3, e.rank"
).format(catalogue=_CATALOGUE)


def top_garments(
    conn: Connection, window: Window, side: Side, limit: int = 8, examples: int = 4
) -> list[TopGarment]:
    """The most seen kinds of garment (category, article type, colour), each with up to
    `examples` garments, pictured ones first (street: the sightings the detector was surest of;
    catalogue: the items)."""
    query = _TOP_STREET if side is Side.STREET else _TOP_CATALOGUE
    groups: dict[tuple[str, str | None, str], TopGarment] = {}
    shown: dict[tuple[str, str | None, str], list[Example]] = {}
    for row in _rows(conn, query, {**window.params(), "limit": limit, "examples": examples}):
        category, article, colour, n, r, g, b, ref, index, src, title, link, jpeg = row[:13]
        x1, y1, x2, y2, width, height = row[13:]
        key = (str(category), None if article is None else str(article), str(colour))
        if key not in groups:
            groups[key] = TopGarment(*key, _rgb(r, g, b), int(n), ())
            shown[key] = []
        if ref is not None:
            shown[key].append(
                Example(
                    str(ref),
                    int(index),
                    str(src),
                    title,
                    link,
                    None if jpeg is None else bytes(jpeg),
                    None if x1 is None else (float(x1), float(y1), float(x2), float(y2)),
                    None if width is None else (int(width), int(height)),
                )
            )
    return [
        TopGarment(t.category, t.article_type, t.colour, t.rgb, t.count, tuple(shown[key]))
        for key, t in groups.items()
    ]


def known_sources(conn: Connection, names: Collection[str]) -> set[str]:
    """Which of `names` are sources the sink has seen (to say which asked-for ones are not)."""
    query = sql.SQL("SELECT source_id FROM sources WHERE source_id = ANY(%(names)s::text[])")
    return {str(name) for (name,) in _rows(conn, query, {"names": sorted(names)})}
