"""The report's pure parts: the command's period words and time zone, trend marks, and the SVG
charts (escaped text, empty data)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from fashionstream.app.report import parse_period
from fashionstream.app.report.svg import Bar, bar_chart, change, line_chart
from fashionstream.core.settings import Settings
from sinks.report_queries import Window

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("7d", "now", (NOW - dt.timedelta(days=7), NOW)),
        ("24h", "now", (NOW - dt.timedelta(hours=24), NOW)),
        ("2w", "2026-03-01", (dt.datetime(2026, 2, 15, tzinfo=dt.UTC),
                              dt.datetime(2026, 3, 1, tzinfo=dt.UTC))),
        ("2026-03-01", "2026-03-02T06:00:00+01:00",
         (dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
          dt.datetime(2026, 3, 2, 6, tzinfo=dt.timezone(dt.timedelta(hours=1))))),
    ],
)  # fmt: skip
def test_the_period_words(since: str, until: str, expected: tuple[dt.datetime, ...]) -> None:
    assert parse_period(since, until, NOW) == expected


@pytest.mark.parametrize(
    ("since", "until", "match"),
    [
        ("7x", "now", "neither a duration"),
        ("yesterday", "now", "neither a duration"),
        ("2026-03-11", "now", "not before"),
        ("7d", "soon", "neither a duration"),
    ],
)
def test_bad_period_words_are_refused(since: str, until: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_period(since, until, NOW)


def test_a_date_without_a_zone_is_the_report_zones_midnight() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    since, until = parse_period("2026-03-01", "now", NOW, berlin)
    assert since == dt.datetime(2026, 2, 28, 23, 0, tzinfo=dt.UTC)  # CET is UTC+1 in March
    assert until == NOW
    since, _ = parse_period("2026-03-01T00:00:00+00:00", "now", NOW, berlin)  # a zone given wins
    assert since == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def test_the_report_time_zone_is_checked_where_it_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASHIONSTREAM_REPORT_TIMEZONE", "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="not an IANA time zone"):
        Settings.from_env()
    monkeypatch.setenv("FASHIONSTREAM_REPORT_TIMEZONE", "Asia/Tokyo")
    assert Settings.from_env().report_timezone == "Asia/Tokyo"
    with pytest.raises(ValueError, match="not an IANA time zone"):
        Window(NOW, NOW + dt.timedelta(days=1), timezone="CEST+1")


@pytest.mark.parametrize(
    ("value", "previous", "expected"),
    [
        (10, 5, ("▲ 100%", "#15803d")),
        (5, 10, ("▼ 50%", "#b91c1c")),
        (5, 5, ("= 0%", "#6b7280")),
        (3, 0, ("new", "#15803d")),
        (0, 0, ("=", "#6b7280")),
        (3, None, None),
    ],
)
def test_trend_marks(value: int, previous: int | None, expected: object) -> None:
    assert change(value, previous) == expected


def test_chart_text_is_escaped_and_colours_become_swatches() -> None:
    svg = bar_chart([Bar("<script>x</script>", 3, 1, (255, 0, 16)), Bar("Blue & Co", 1)])
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "Blue &amp; Co" in svg
    assert "#ff0010" in svg
    assert "▲ 200%" in svg


def test_charts_without_data_say_so() -> None:
    assert "No data in this period" in bar_chart([])
    assert "No data in this period" in bar_chart([Bar("top", 0)])
    assert "No data in this period" in line_chart([], {})
    day = dt.date(2026, 3, 1)
    assert "No data in this period" in line_chart([day], {"cam": [0]})
    one_day = line_chart([day], {"cam": [4]})
    assert "<polyline" in one_day
    assert "cam (4)" in one_day
