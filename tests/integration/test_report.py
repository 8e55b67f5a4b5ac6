"""The popular-items report on the real Postgres, from rows the real sinks and the real tracker
wrote (tests/support/report_scene.py): the figures, the trends against the previous period, the
thumbnails, the closest-catalogue-items hook, and an empty period."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2.extensions
import pytest

from fashionstream.app.cli import main
from fashionstream.app.report import CatalogueMatch, StreetGarmentRef, build_report, render_html
from fashionstream.core.settings import Settings
from sinks.queries import tracker_caught_up
from sinks.report_queries import Dimension
from tests.support.report_scene import (
    DAY0,
    EXPECTED,
    FRAMES_PER_VISIT,
    PREVIOUS_VISITS,
    PRODUCTS,
    SINCE,
    UNTIL,
    VISITS,
    write_scene,
)
from tests.support.stack import count_rows


@pytest.fixture
def scene(local_stack: Settings, db: psycopg2.extensions.connection) -> Settings:
    write_scene(local_stack)
    return local_stack


def test_the_report_counts_people_not_frames_and_compares_with_the_previous_period(
    scene: Settings,
) -> None:
    report = build_report(scene.database_url, SINCE, UNTIL)
    assert report.totals.sightings == EXPECTED["sightings"]
    assert report.totals.cameras == 2
    assert report.totals.street_garments == 2 * EXPECTED["sightings"]
    assert report.totals.catalogue_images == EXPECTED["catalogue_images"]
    assert report.previous_totals.sightings == EXPECTED["previous_sightings"]
    categories = {t.label: t.count for t in report.street[Dimension.CATEGORY]}
    assert categories == EXPECTED["street_categories"]
    colours = {t.label: (t.count, t.previous) for t in report.street[Dimension.COLOUR]}
    assert {k: v[0] for k, v in colours.items()} == EXPECTED["street_colours"]
    assert colours["Red"] == (1, 1)  # the previous day's visitor wore red
    assert colours["Black"] == (7, 1)
    per_camera: dict[str, int] = {}
    for c in report.people_per_camera_day:
        per_camera[c.source_id] = per_camera.get(c.source_id, 0) + c.count
    assert per_camera == EXPECTED["sightings_per_camera"]
    assert report.days() == [DAY0.date() + dt.timedelta(days=n) for n in range(3)]
    kinds = [(t.category, t.article_type, t.colour, t.count) for t in report.top_street[:2]]
    assert kinds == [("trousers", "Jeans", "Blue", 6), ("top", "Jackets", "Black", 5)]
    top = report.top_street[0]
    assert all(e.jpeg is not None and e.jpeg.startswith(b"\xff\xd8") for e in top.examples)
    assert len(top.examples) == 4
    assert report.top_catalogue[0].examples[0].jpeg is not None


def test_a_new_model_tagging_everything_again_counts_nothing_twice(
    scene: Settings, db: psycopg2.extensions.connection
) -> None:
    write_scene(scene, model_version="test-v2")
    # both models' rows are stored (sighting ids and image rows are per model version)
    assert count_rows(db, "sightings") == 2 * (len(VISITS) + len(PREVIOUS_VISITS))
    frames = (len(VISITS) + len(PREVIOUS_VISITS)) * FRAMES_PER_VISIT
    assert count_rows(db, "images") == 2 * (frames + len(PRODUCTS))
    report = build_report(scene.database_url, SINCE, UNTIL)
    assert report.totals.sightings == EXPECTED["sightings"]
    assert report.totals.catalogue_images == EXPECTED["catalogue_images"]
    assert report.totals.catalogue_garments == EXPECTED["catalogue_images"]
    categories = {t.label: t.count for t in report.street[Dimension.CATEGORY]}
    assert categories == EXPECTED["street_categories"]
    assert report.previous_totals.sightings == EXPECTED["previous_sightings"]


def test_sources_narrow_the_report_and_unknown_ones_are_named(scene: Settings) -> None:
    report = build_report(scene.database_url, SINCE, UNTIL, ["cam-street", "cam-nowhere"])
    assert report.totals.sightings == 3
    assert report.totals.catalogue_images == 0
    assert report.unknown_sources == ("cam-nowhere",)


def test_the_closest_catalogue_items_come_from_the_search_it_is_given(scene: Settings) -> None:
    asked: list[StreetGarmentRef] = []

    def search(garment: StreetGarmentRef, k: int) -> list[CatalogueMatch]:
        asked.append(garment)
        return [CatalogueMatch(f"sku-{garment.colour}-{n}", 0.1 * n) for n in range(k + 2)]

    report = build_report(scene.database_url, SINCE, UNTIL, similar=search)
    assert len(asked) == len(report.top_street)
    assert report.matches is not None
    # the two top kinds may share a person (Blue jeans under a Black jacket): keyed by garment
    for garment in report.top_street[:2]:
        first = garment.examples[0]
        found = report.matches[(first.reference, first.garment_index)]
        assert [m.item_id for m in found] == [f"sku-{garment.colour}-{n}" for n in range(3)]
    page = render_html(report)
    assert "sku-Black-0" in page
    assert "sku-Blue-2" in page
    assert "Not available" not in page
    first = report.top_street[0].examples[0]
    as_json = json.loads(json.dumps(report.to_json()))  # tuple keys once broke this
    closest = as_json["closest_catalogue_items"][f"{first.reference}/{first.garment_index}"]
    assert [m["item_id"] for m in closest][:1] == [f"sku-{report.top_street[0].colour}-0"]
    without = build_report(scene.database_url, SINCE, UNTIL)
    assert without.matches is None
    assert "Not available" in render_html(without)
    assert without.to_json()["closest_catalogue_items"] is None


def test_the_html_is_self_contained_and_the_json_carries_the_same_figures(
    scene: Settings,
) -> None:
    report = build_report(scene.database_url, SINCE, UNTIL)
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    # nothing to fetch: no http(s) or protocol-relative URL in any src, href or CSS url()
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", page, re.IGNORECASE)
    assert "<script" not in page.lower()
    assert page.count("<svg") >= 8  # 4 + 4 bar charts, a line chart each side, small multiples
    assert page.count("data:image/jpeg;base64,") >= 8
    data = report.to_json()
    assert data["totals"]["sightings"] == EXPECTED["sightings"]
    colours = {row["label"]: row["count"] for row in data["street"]["colour"]}
    assert colours == EXPECTED["street_colours"]


def test_days_are_the_report_time_zones_days(
    scene: Settings, db: psycopg2.extensions.connection
) -> None:
    """Tokyo (UTC+9): the scene's afternoon (UTC) visits fall on the next day there."""
    tokyo = ZoneInfo("Asia/Tokyo")
    report = build_report(scene.database_url, SINCE, UNTIL, timezone="Asia/Tokyo")
    with db.cursor() as cur:
        cur.execute(
            "SELECT s.source_id, x.first_seen_at FROM current_sightings x"
            " JOIN sources s ON s.id = x.source_pk"
            " WHERE x.first_seen_at >= %s AND x.first_seen_at < %s",
            (SINCE, UNTIL),
        )
        seen = cur.fetchall()
    want = Counter((camera, at.astimezone(tokyo).date()) for camera, at in seen)
    got = Counter({(c.source_id, c.day): c.count for c in report.people_per_camera_day})
    assert got == want
    utc_days = Counter((camera, at.astimezone(dt.UTC).date()) for camera, at in seen)
    assert want != utc_days  # some visits did move to the next day
    first = SINCE.astimezone(tokyo).date()
    assert report.days() == [first + dt.timedelta(days=n) for n in range(4)]  # 09:00 to 09:00
    assert report.to_json()["timezone"] == "Asia/Tokyo"
    assert "(Asia/Tokyo)" in render_html(report)


def test_an_empty_period_says_so_instead_of_failing(scene: Settings) -> None:
    since = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    report = build_report(scene.database_url, since, since + dt.timedelta(days=7))
    assert report.empty
    page = render_html(report)
    assert "No data in this period" in page
    assert report.to_json()["top_street_garments"] == []


@pytest.mark.parametrize(
    ("since", "until"),
    [(UNTIL, SINCE), (SINCE, SINCE), (SINCE.replace(tzinfo=None), UNTIL)],
)
def test_a_bad_period_is_refused(scene: Settings, since: dt.datetime, until: dt.datetime) -> None:
    with pytest.raises(ValueError, match="Window"):
        build_report(scene.database_url, since, until)


def test_the_command_writes_the_page_and_prints_json(
    scene: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FASHIONSTREAM_DATABASE_URL", scene.database_url)
    page = tmp_path / "week.html"
    period = ["--since", SINCE.isoformat(), "--until", UNTIL.isoformat()]
    assert main(["report", *period, "-o", str(page)]) == 0
    assert "9 people on 2 cameras, 5 catalogue images from 1 feed" in capsys.readouterr().out
    assert "Popular items" in page.read_text()
    assert main(["report", *period, "--sources", "cam-street", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["sightings"] == 3
    assert main(["report", "--since", "soon"]) == 2
    assert "neither a duration" in capsys.readouterr().err


def test_the_demo_waits_until_the_tracker_has_closed_a_cameras_sightings(
    scene: Settings, db: psycopg2.extensions.connection
) -> None:
    just_now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    assert tracker_caught_up(db, "cam-entrance", just_now)
    assert not tracker_caught_up(db, "cam-never-seen", just_now)
    with db.cursor() as cur:  # an open track: not yet
        cur.execute(
            "UPDATE tracker_states SET open_tracks = 1 WHERE camera_pk ="
            " (SELECT id FROM sources WHERE source_id = 'cam-entrance')"
        )
    assert not tracker_caught_up(db, "cam-entrance", just_now)
