"""The popular-items report as data: `build_report` runs the queries (sinks/report_queries.py)
for a period and the period of the same length before it, and returns a `Report`: data, also as
JSON (`to_json`). page.py draws it as one self-contained HTML page (`render_html`)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from sinks.postgres import Connection
from sinks.report_queries import (
    DayCount,
    Dimension,
    LabelCount,
    Side,
    SourceLabelCount,
    TopGarment,
    Totals,
    Window,
    known_sources,
    label_counts,
    per_source_day,
    per_source_labels,
    top_garments,
    totals,
)


@dataclass(frozen=True)
class StreetGarmentRef:
    """A garment a sighted person wore, as the catalogue search is asked about it."""

    sighting_id: str
    garment_index: int
    category: str
    article_type: str | None
    colour: str


@dataclass(frozen=True)
class CatalogueMatch:
    """A catalogue item close to a street garment (what the similarity search answers)."""

    item_id: str
    distance: float
    title: str | None = None
    link: str | None = None
    source_id: str | None = None
    category: str | None = None
    colour: str | None = None
    jpeg: bytes | None = None  # its thumbnail, when the caller has it


# The catalogue search the report asks for the closest items to a street garment (k items). The
# report takes it as a parameter so that it does not depend on how vectors are stored; None (no
# search wired) renders "not available", never made-up items.
SimilarItems = Callable[[StreetGarmentRef, int], Sequence[CatalogueMatch]]


@dataclass(frozen=True)
class Trend:
    """A label's count in the period and in the previous period of the same length."""

    label: str
    count: int
    previous: int
    rgb: tuple[int, int, int]

    @property
    def change_pct(self) -> float | None:
        """Percent change against the previous period; None when it had none."""
        if self.previous == 0:
            return None
        return 100.0 * (self.count - self.previous) / self.previous


@dataclass(frozen=True)
class Report:
    window: Window
    generated_at: dt.datetime
    totals: Totals
    previous_totals: Totals
    street: Mapping[Dimension, Sequence[Trend]]  # most seen first
    catalogue: Mapping[Dimension, Sequence[Trend]]
    people_per_camera_day: Sequence[DayCount]
    garments_per_feed_day: Sequence[DayCount]
    camera_categories: Sequence[SourceLabelCount]
    top_street: Sequence[TopGarment]
    top_catalogue: Sequence[TopGarment]
    # (sighting id, garment index) of a top street garment's first example -> its closest
    # catalogue items; None when no catalogue search was wired
    matches: Mapping[tuple[str, int], Sequence[CatalogueMatch]] | None
    unknown_sources: Sequence[str] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        t = self.totals
        return t.sightings == 0 and t.catalogue_images == 0

    def days(self) -> list[dt.date]:
        """Every day (in the window's time zone) the window touches (charts show the days
        without data as 0)."""
        zone = self.window.zone
        first = self.window.since.astimezone(zone).date()
        last = (self.window.until - dt.timedelta(microseconds=1)).astimezone(zone).date()
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (thumbnails as base64 JPEG)."""
        w = self.window
        return {
            "since": w.since.isoformat(),
            "until": w.until.isoformat(),
            "previous_since": w.previous().since.isoformat(),
            "timezone": w.timezone,
            "sources": None if w.sources is None else list(w.sources),
            "unknown_sources": list(self.unknown_sources),
            "generated_at": self.generated_at.isoformat(),
            "totals": dataclasses.asdict(self.totals),
            "previous_totals": dataclasses.asdict(self.previous_totals),
            "street": {d.value: [_trend(t) for t in rows] for d, rows in self.street.items()},
            "catalogue": {d.value: [_trend(t) for t in rows] for d, rows in self.catalogue.items()},
            "people_per_camera_day": [
                {"camera": c.source_id, "day": c.day.isoformat(), "people": c.count}
                for c in self.people_per_camera_day
            ],
            "garments_per_feed_day": [
                {"feed": c.source_id, "day": c.day.isoformat(), "garments": c.count}
                for c in self.garments_per_feed_day
            ],
            "camera_categories": [
                {"camera": c.source_id, "category": c.label, "garments": c.count}
                for c in self.camera_categories
            ],
            "top_street_garments": [_top(t) for t in self.top_street],
            "top_catalogue_garments": [_top(t) for t in self.top_catalogue],
            # keyed by "<sighting id>/<garment index>" (JSON keys are strings)
            "closest_catalogue_items": None
            if self.matches is None
            else {
                f"{sid}/{index}": [_match(m) for m in found]
                for (sid, index), found in sorted(self.matches.items())
            },
        }


def build_report(
    conn_or_dsn: Connection | str,
    since: dt.datetime,
    until: dt.datetime,
    sources: Sequence[str] | None = None,
    *,
    similar: SimilarItems | None = None,
    top: int = 8,
    matches_per_garment: int = 3,
    timezone: str = "UTC",
) -> Report:
    """The report over [since, until) (timezone-aware) for `sources` (camera ids or feed names;
    None or empty: all), compared with the period of the same length before; its days and times
    are `timezone`'s (an IANA name). `conn_or_dsn`: an
    open psycopg2 connection (left open) or a libpq DSN (connected and closed here).
    `similar`: the catalogue search for the top street garments' closest items (None: the
    section says it is not available). Raises ValueError for an empty or inverted period and
    psycopg2.Error when the database fails."""
    window = Window(since, until, tuple(sorted(set(sources))) if sources else None, timezone)
    if isinstance(conn_or_dsn, str):
        conn = psycopg2.connect(conn_or_dsn, connect_timeout=5, application_name="fs-report")
        try:
            conn.set_session(readonly=True)
            return _build(conn, window, similar, top, matches_per_garment)
        finally:
            conn.close()
    return _build(conn_or_dsn, window, similar, top, matches_per_garment)


def _build(
    conn: Connection,
    window: Window,
    similar: SimilarItems | None,
    top: int,
    per_garment: int,
) -> Report:
    previous = window.previous()

    def trends(side: Side, dimension: Dimension) -> list[Trend]:
        now = label_counts(conn, window, side, dimension)
        before = {c.label: c.count for c in _all_labels(conn, previous, side, dimension)}
        return [Trend(c.label, c.count, before.get(c.label, 0), c.rgb) for c in now]

    street = {d: trends(Side.STREET, d) for d in Dimension}
    catalogue = {d: trends(Side.CATALOGUE, d) for d in Dimension}
    top_street = top_garments(conn, window, Side.STREET, limit=top)
    matches: dict[tuple[str, int], Sequence[CatalogueMatch]] | None = None
    if similar is not None:
        matches = {}
        for garment in top_street:
            if garment.examples:
                first = garment.examples[0]
                ref = StreetGarmentRef(
                    first.reference,
                    first.garment_index,
                    garment.category,
                    garment.article_type,
                    garment.colour,
                )
                found = list(similar(ref, per_garment))[:per_garment]
                matches[(first.reference, first.garment_index)] = found
    unknown: list[str] = []
    if window.sources:
        unknown = sorted(set(window.sources) - known_sources(conn, window.sources))
    return Report(
        window=window,
        generated_at=dt.datetime.now(dt.UTC),
        totals=totals(conn, window),
        previous_totals=totals(conn, previous),
        street=street,
        catalogue=catalogue,
        people_per_camera_day=per_source_day(conn, window, Side.STREET),
        garments_per_feed_day=per_source_day(conn, window, Side.CATALOGUE),
        camera_categories=per_source_labels(conn, window, Side.STREET, Dimension.CATEGORY),
        top_street=top_street,
        top_catalogue=top_garments(conn, window, Side.CATALOGUE, limit=top),
        matches=matches,
        unknown_sources=tuple(unknown),
    )


def _all_labels(
    conn: Connection, window: Window, side: Side, dimension: Dimension
) -> list[LabelCount]:
    # the previous period's count of every label shown now, not only its own top few
    return label_counts(conn, window, side, dimension, limit=10_000)


def _b64(jpeg: bytes | None) -> str | None:
    return None if jpeg is None else base64.b64encode(jpeg).decode("ascii")


def _trend(t: Trend) -> dict[str, Any]:
    pct = t.change_pct
    return {
        "label": t.label,
        "count": t.count,
        "previous": t.previous,
        "change_pct": None if pct is None else round(pct, 1),
        "rgb": list(t.rgb),
    }


def _top(t: TopGarment) -> dict[str, Any]:
    return {
        "category": t.category,
        "article_type": t.article_type,
        "colour": t.colour,
        "rgb": list(t.rgb),
        "count": t.count,
        "examples": [
            {
                "reference": e.reference,
                "garment_index": e.garment_index,
                "source": e.source_id,
                "title": e.title,
                "link": e.link,
                "thumbnail_jpeg_base64": _b64(e.jpeg),
            }
            for e in t.examples
        ],
    }


def _match(m: CatalogueMatch) -> dict[str, Any]:
    return {
        "item_id": m.item_id,
        "distance": round(m.distance, 4),
        "title": m.title,
        "link": m.link,
        "source": m.source_id,
        "category": m.category,
        "colour": m.colour,
        "thumbnail_jpeg_base64": _b64(m.jpeg),
    }
