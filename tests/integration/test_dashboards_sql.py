"""The Grafana business panels (Postgres datasource) against the real Postgres: every SQL panel
query runs with Grafana's macros expanded the way Grafana's Postgres datasource expands them, on
rows the real sinks and tracker wrote (tests/support/report_scene.py, tagged twice, by two model
versions), and returns the shape its panel format needs and the numbers the scene implies."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest

from fashionstream.core.settings import Settings
from tests.support.report_scene import EXPECTED, SINCE, UNTIL, VISITS, write_scene

INFRA = Path(__file__).resolve().parents[2] / "infra"
DASHBOARD = INFRA / "grafana" / "dashboards" / "fashionstream.json"
DATASOURCES = INFRA / "grafana" / "provisioning" / "datasources"
POSTGRES_UID = "fashionstream-postgres"
_INTERVALS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def sql_targets() -> list[tuple[str, str, dict[str, Any]]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["uid"] == POSTGRES_UID:
                found.append((panel["title"], target["format"], target))
    return found


def expand(query: str, since: dt.datetime, until: dt.datetime) -> str:
    """Grafana's Postgres macros (pkg/tsdb/grafana-postgresql-datasource/macros.go)."""

    def time_filter(m: re.Match[str]) -> str:
        return f"{m.group(1)} BETWEEN '{since.isoformat()}' AND '{until.isoformat()}'"

    def time_group(m: re.Match[str]) -> str:
        seconds = int(m.group(2)) * _INTERVALS[m.group(3)]
        return f'floor(extract(epoch from {m.group(1)})/{seconds})*{seconds} AS "time"'

    query = re.sub(r"\$__timeFilter\(([^)]+)\)", time_filter, query)
    query = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*(\d+)([smhd])\)", time_group, query)
    if "$" in query:
        raise AssertionError(f"a macro this test does not expand: {query}")
    return query


def test_the_postgres_datasource_is_provisioned_for_the_sql_panels() -> None:
    text = (DATASOURCES / "postgres.yml").read_text()
    assert f"uid: {POSTGRES_UID}" in text
    assert "grafana-postgresql-datasource" in text
    titles = [title for title, _, _ in sql_targets()]
    assert "Garments worn per category per hour" in titles
    assert "Garments worn per colour per hour" in titles
    assert "People seen per camera per hour" in titles
    for _, fmt, target in sql_targets():
        assert fmt in ("time_series", "table")
        assert target["rawQuery"] is True


@pytest.fixture(scope="module")
def panel_rows(local_stack: Settings) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    from tests.support.stack import connect, truncate_tables

    conn = connect(local_stack)
    try:
        truncate_tables(conn)
        write_scene(local_stack)
        # the same clips and catalogue tagged again by a new model: every panel counts them once
        write_scene(local_stack, model_version="test-v2")
        out = {}
        for title, _, target in sql_targets():
            with conn.cursor() as cur:
                cur.execute(expand(target["rawSql"], SINCE, UNTIL))
                names = [c.name for c in cur.description]
                out[title] = (names, cur.fetchall())
        truncate_tables(conn)
        return out
    finally:
        conn.close()


def _series(rows: list[tuple[Any, ...]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for _, metric, value in rows:
        total[str(metric)] += int(value)
    return total


@pytest.mark.parametrize(("title", "fmt", "target"), sql_targets(), ids=lambda v: str(v)[:40])
def test_every_sql_panel_returns_rows_of_its_format(
    panel_rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]],
    title: str,
    fmt: str,
    target: dict[str, Any],
) -> None:
    names, rows = panel_rows[title]
    assert rows, f"{title}: no rows"
    if fmt == "time_series":
        # Grafana's long time-series frame: time, metric (the series name), value
        assert names == ["time", "metric", "value"], names
        for time_s, metric, value in rows:
            assert SINCE.timestamp() <= float(time_s) < UNTIL.timestamp()
            assert float(time_s) % 3600 == 0  # hour buckets
            assert isinstance(metric, str)
            assert int(value) > 0
        times = [float(r[0]) for r in rows]
        assert times == sorted(times), "Grafana needs time series ordered by time"


def test_the_sql_panels_count_what_the_scene_holds(
    panel_rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]],
) -> None:
    categories = _series(panel_rows["Garments worn per category per hour"][1])
    assert categories == EXPECTED["street_categories"]
    colours = _series(panel_rows["Garments worn per colour per hour"][1])
    assert colours == EXPECTED["street_colours"]
    per_camera = _series(panel_rows["People seen per camera per hour"][1])
    assert per_camera == EXPECTED["sightings_per_camera"]
    # each visit is its own hour bucket in the scene, so the hourly rows are the visits
    assert len(panel_rows["People seen per camera per hour"][1]) == len(VISITS)
    names, rows = panel_rows["People seen per camera"]
    assert names == ["camera", "people"]
    assert dict(rows) == EXPECTED["sightings_per_camera"]
    assert rows[0][0] == "cam-entrance"  # most first
    names, rows = panel_rows["Top colours worn"]
    assert rows[0] == ("Black", 7) or rows[0] == ("Blue", 7)
    assert dict(rows) == EXPECTED["street_colours"]
    catalogue = _series(panel_rows["Catalogue garments per category per hour"][1])
    assert sum(catalogue.values()) == EXPECTED["catalogue_images"]


def test_the_time_filter_leaves_out_what_is_outside_the_range(local_stack: Settings) -> None:
    from tests.support.stack import connect

    conn: psycopg2.extensions.connection = connect(local_stack)
    try:
        target = next(t for title, _, t in sql_targets() if title == "People seen per camera")
        since = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        with conn.cursor() as cur:
            cur.execute(expand(target["rawSql"], since, since + dt.timedelta(days=1)))
            assert cur.fetchall() == []
    finally:
        conn.close()
