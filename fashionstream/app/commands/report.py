"""`fashionstream report`: the popular-items report over a period, as one HTML file or JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from fashionstream.app.commands import Commands
from fashionstream.core.settings import Settings, time_zone


def register(commands: Commands) -> None:
    """Adds `report`."""
    report = commands.add_parser(
        "report",
        help="write the popular-items report (one self-contained HTML file, or --json)",
        description="What people on camera wore (counted once per person, from sightings) and"
        " what the catalogue feeds hold, for a period, with trends against the period of the"
        " same length before it, the top garments with their best-view pictures, and charts."
        " The HTML file needs no network to open.",
    )
    report.add_argument(
        "--since",
        default="7d",
        help="start: a duration before --until (7d, 24h, 2w) or an ISO date/time (default 7d)",
    )
    report.add_argument("--until", default="now", help="end: an ISO date/time, or now (default)")
    report.add_argument(
        "--sources", default="", help="comma-separated camera ids and feed names (default: all)"
    )
    report.add_argument(
        "--timezone",
        default=None,
        help="IANA time zone of the days and times, e.g. Europe/Berlin (default: the setting"
        " FASHIONSTREAM_REPORT_TIMEZONE, UTC unless set)",
    )
    report.add_argument(
        "-o", "--output", type=Path, default=None, help="HTML file to write (default report.html)"
    )
    report.add_argument(
        "--json", action="store_true", help="print the report as JSON (and write -o if given)"
    )
    report.set_defaults(func=_report)


def _report(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg2

    from fashionstream.app.report import build_report, parse_period, render_html
    from fashionstream.app.similar import SimilarSearch

    timezone = args.timezone or settings.report_timezone
    try:
        zone = time_zone(timezone)
        since, until = parse_period(args.since, args.until, dt.datetime.now(dt.UTC), zone)
    except ValueError as exc:
        print(f"fashionstream report: {exc}", file=sys.stderr)
        return 2
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    # the closest catalogue items of the top street garments (their stored vectors; no tagger)
    search = SimilarSearch.from_settings(settings)
    try:
        report = build_report(
            settings.database_url,
            since,
            until,
            sources or None,
            similar=search.report_matches,
            timezone=timezone,
        )
    except psycopg2.Error as exc:
        print(f"fashionstream report: Postgres: {str(exc).strip()}", file=sys.stderr)
        return 1
    finally:
        search.close()
    output = args.output or (None if args.json else Path("report.html"))
    if output is not None:
        output.write_text(render_html(report), encoding="utf-8")
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        t = report.totals
        print(
            f"{output}: {_n(t.sightings, 'person', 'people')} on {_n(t.cameras, 'camera')},"
            f" {_n(t.catalogue_images, 'catalogue image')} from {_n(t.feeds, 'feed')},"
            f" {since.astimezone(zone):%Y-%m-%d %H:%M} to {until.astimezone(zone):%Y-%m-%d %H:%M}"
            f" {timezone}"
        )
    for name in report.unknown_sources:
        print(f"fashionstream report: no source named {name!r}", file=sys.stderr)
    return 0


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"
