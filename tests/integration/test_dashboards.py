"""Grafana dashboards and Prometheus config against a real Prometheus (Debian package
`prometheus`): every panel query of every dashboard runs without error and returns series while
a /metrics endpoint serves sample traffic for every metric; the shipped prometheus.yml and alert
rules pass promtool; docker-compose.yml only sets settings that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fashionstream.records import DeadLetterReason, Topic
from fashionstream.settings import Settings, env_name
from infra.processes import free_port, terminate, wait_until
from sinks.metrics import Metrics, MetricsServer, Stage, serve_metrics

INFRA = Path(__file__).resolve().parents[2] / "infra"
DASHBOARDS = sorted((INFRA / "grafana" / "dashboards").glob("*.json"))
DATASOURCE_UID = "fashionstream-prometheus"
SCRAPE_MS = 500
# Grafana's macros, as Grafana would expand them for a short range at this scrape interval
MACROS = {"$__rate_interval": "10s", "$__interval": "1s", "$__range": "1m"}

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="Prometheus is not installed: apt-get install prometheus (Debian package)",
)


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # rows


def _queries() -> list[tuple[str, str]]:
    queries = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                queries.append((f"{path.stem}/{panel['title']}/{target['refId']}", target["expr"]))
    return queries


def _expand(expr: str) -> str:
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return expr


def test_dashboards_are_well_formed() -> None:
    assert DASHBOARDS, "no dashboards shipped"
    datasource = (INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert f"uid: {DATASOURCE_UID}" in datasource
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        panels = list(_panels(dashboard))
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert panel["targets"], f"{panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == DATASOURCE_UID
                assert "$" not in _expand(target["expr"]), f"unexpanded variable: {target}"


def test_dashboards_cover_the_issue_list() -> None:
    exprs = " ".join(expr for _, expr in _queries())
    for metric in (
        "fashionstream_messages_in_total",
        "fashionstream_messages_out_total",
        "fashionstream_dead_letters_total",
        "fashionstream_stage_duration_seconds_bucket",
        "fashionstream_end_to_end_latency_seconds_bucket",
        "fashionstream_consumer_lag_messages",
        "fashionstream_rows_written_total",
        "fashionstream_batch_size_records_bucket",
    ):
        assert metric in exprs, f"no panel shows {metric}"


def test_compose_sets_only_settings_that_exist() -> None:
    compose = (INFRA / "docker-compose.yml").read_text()
    known = {env_name(name) for name in Settings.__dataclass_fields__}
    used = set(re.findall(r"\bFASHIONSTREAM_[A-Z0-9_]+", compose))
    assert used, "docker-compose.yml sets no fashionstream settings"
    assert used <= known, f"unknown settings: {sorted(used - known)}"
    for mounted in re.findall(r"- \./([\w./-]+):", compose):
        assert (INFRA / mounted).exists(), f"docker-compose.yml mounts missing {mounted}"


@needs_prometheus
def test_shipped_prometheus_config_and_alerts_pass_promtool() -> None:
    for args in (
        ["check", "config", str(INFRA / "prometheus" / "prometheus.yml")],
        ["check", "rules", str(INFRA / "prometheus" / "alerts.yml")],
    ):
        result = subprocess.run(
            ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


class Traffic:
    """Keeps every metric moving (with bounded, realistic labels) until stopped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        m = self.metrics
        step = 0
        while not self._stop.wait(0.05):
            step += 1
            for topic in Topic:
                m.messages_in.labels(topic=topic.value).inc()
                m.messages_out.labels(topic=topic.value).inc()
                m.message_bytes_out.labels(topic=topic.value).inc(50_000)
                m.consumer_lag.labels(topic=topic.value, partition="0").set(step % 7)
            m.dead_letters.labels(reason=DeadLetterReason.HTTP_STATUS.value, stage="fetch").inc()
            for stage, seconds in ((Stage.FETCH, 0.08), (Stage.DECODE, 0.004),
                                   (Stage.INFER, 0.7), (Stage.SINK, 0.03)):  # fmt: skip
                m.stage_duration.labels(stage=stage.value).observe(seconds * (1 + step % 3))
            for stage in (Stage.INFER, Stage.SINK):
                m.batch_size.labels(stage=stage.value).observe(1 + step % 8)
            m.end_to_end_latency.labels(source_kind="camera").observe(1.5 + step % 4)
            m.end_to_end_latency.labels(source_kind="feed").observe(3.0)
            for table in ("images", "garments", "people"):
                m.rows_written.labels(table=table).inc(3)
            m.sink_errors.labels(error="unavailable").inc()
            m.items_sent.labels(source="demo").inc()
            m.items_skipped.labels(source="demo", reason="missing_url").inc()
            m.bytes_fetched.labels(source="demo").inc(120_000)
            m.frames_decoded.labels(camera="cam-1").inc(5)
            m.frames_sent.labels(camera="cam-1").inc()
            m.frames_dropped.labels(camera="cam-1", reason="fall_behind").inc()
            m.video_decode_errors.labels(camera="cam-1").inc()
            m.source_lag.labels(camera="cam-1").set(0.4)
            m.reconnects.labels(camera="cam-1").inc()


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


@pytest.fixture
def prometheus_scraping() -> Iterator[tuple[str, Metrics]]:
    """A real Prometheus scraping a served registry every 0.5 s; yields (its URL, Metrics)."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    server: MetricsServer | None = serve_metrics(registry, "127.0.0.1", free_port())
    assert server is not None
    workdir = Path(tempfile.mkdtemp(prefix="fashionstream-prom-"))
    config = workdir / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {SCRAPE_MS}ms\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: fashionstream-test\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.port}']\n"
    )
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return process.poll() is not None

        assert wait_until(ready, 60, 0.2), "Prometheus did not become ready"
        assert process.poll() is None, (workdir / "prometheus.log").read_text()
        yield url, metrics
    finally:
        terminate(process.pid, 10)
        process.wait(timeout=10)
        log.close()
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)


@needs_prometheus
def test_every_panel_query_returns_series_from_a_real_prometheus(
    prometheus_scraping: tuple[str, Metrics],
) -> None:
    url, metrics = prometheus_scraping
    queries = _queries()
    assert queries
    with Traffic(metrics):
        # rate() needs two scrapes inside the window after traffic started
        def scraped_twice() -> bool:
            q = urllib.parse.quote("count_over_time(fashionstream_messages_in_total[10s])")
            result = _get(f"{url}/api/v1/query?query={q}")["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) >= 4

        assert wait_until(scraped_twice, 60, 0.5), "Prometheus did not scrape /metrics"
        time.sleep(2 * SCRAPE_MS / 1000)
        failures = []
        for name, expr in queries:
            query = urllib.parse.quote(_expand(expr))
            try:
                answer = _get(f"{url}/api/v1/query?query={query}")
            except urllib.error.HTTPError as exc:  # a PromQL error is HTTP 400 with a reason
                failures.append(f"{name}: {exc.read().decode()}")
                continue
            if answer["status"] != "success":
                failures.append(f"{name}: {answer}")
            elif not answer["data"]["result"]:
                failures.append(f"{name}: no series for {_expand(expr)}")
    assert not failures, "\n".join(failures)
