"""Grafana dashboards and Prometheus config against a real Prometheus (Debian package
`prometheus`): every panel query of every dashboard runs without error and returns series from
what a real run exposed -- a worker process on the session's broker and Postgres, and the real
feed and video producers, each serving its own /metrics -- so a panel for a metric the pipeline
never emits fails; the shipped prometheus.yml and alert rules pass promtool; docker-compose.yml
only sets settings that exist."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest
from prometheus_client import CollectorRegistry

from fashionstream.app.local_run import start_group_at_end
from fashionstream.core.metrics import Metrics, serve_metrics
from fashionstream.core.records import (
    LIVE_STREAM_PREFIX,
    Frame,
    SourceKind,
    Topic,
    event_id_for_frame,
)
from fashionstream.core.settings import REPO_ROOT, Settings, env_name
from infra.processes import free_port, terminate, wait_until
from producers.image_feed import produce_feed
from producers.video import VideoProducer
from tests.support import fake_worker
from tests.support.pipeline import (
    ImageServer,
    catalogue_rows,
    produce_raw,
    running_worker,
    unique,
    wait_for_images,
)
from tests.support.records import tagged_image

INFRA = Path(__file__).resolve().parents[2] / "infra"
DASHBOARDS = sorted((INFRA / "grafana" / "dashboards").glob("*.json"))
DATASOURCE_UID = "fashionstream-prometheus"
POSTGRES_UID = "fashionstream-postgres"  # business panels: test_dashboards_sql.py
SCRAPE_MS = 500
CLIP = REPO_ROOT / "tests" / "fixtures" / "video" / "person_4s.mp4"  # 8 frames at 2 fps
CLIP_FRAME = REPO_ROOT / "tests" / "fixtures" / "frames" / "intel_person_0120.jpg"
TIMEOUT_S = 120.0
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
                if target["datasource"]["uid"] != DATASOURCE_UID:
                    continue  # SQL panels are run against Postgres in test_dashboards_sql.py
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
            uid = panel["datasource"]["uid"]
            assert uid in (DATASOURCE_UID, POSTGRES_UID), panel["title"]
            assert panel["targets"], f"{panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid
                if uid == DATASOURCE_UID:
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


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


@contextlib.contextmanager
def prometheus_scraping(targets: dict[str, int]) -> Iterator[str]:
    """A real Prometheus scraping each job's 127.0.0.1 port every 0.5 s; yields its URL."""
    workdir = Path(tempfile.mkdtemp(prefix="fashionstream-prom-"))
    config = workdir / "prometheus.yml"
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        for job, port in targets.items()
    )
    config.write_text(
        f"global:\n  scrape_interval: {SCRAPE_MS}ms\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n{jobs}"
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
        yield url
    finally:
        terminate(process.pid, 10)
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _value(url: str, query: str) -> float | None:
    result = _get(f"{url}/api/v1/query?query={urllib.parse.quote(query)}")["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _without_index(clip: Path, out: Path) -> Path:
    """`clip` with its moov box (the index) zeroed: a recording the video producer cannot
    decode, which it dead-letters as a decode error."""
    data = clip.read_bytes()
    start = data.index(b"moov") - 4
    size = int.from_bytes(data[start : start + 4], "big")
    out.write_bytes(data[:start] + b"\x00" * size + data[start + size :])
    return out


def _live_camera_that_refuses(settings: Settings, metrics: Metrics, camera: str) -> None:
    """A live camera whose address refuses connections: the video producer reconnects with
    backoff; stopped after its first reconnect."""
    producer = VideoProducer.from_settings(settings, metrics)
    refused = f"rtsp://127.0.0.1:{free_port()}/stream"
    thread = threading.Thread(target=producer.send, args=(refused, camera), daemon=True)
    thread.start()
    try:

        def reconnected() -> bool:
            value = metrics.registry.get_sample_value(
                "fashionstream_source_reconnects_total", {"camera": camera}
            )
            return (value or 0.0) >= 1.0

        assert wait_until(reconnected, 30, 0.1), "the live camera never reconnected"
    finally:
        producer.stop.set()
        thread.join(timeout=30)
        producer.close()


def _live_frames_a_worker_is_behind_on(settings: Settings, camera: str) -> None:
    """Two frames of a live session: one a minute old (the worker skips it as stale) and one
    just captured (tagged; the camera's newest capture time)."""
    jpeg = CLIP_FRAME.read_bytes()
    ref = f"{LIVE_STREAM_PREFIX}rtsp://127.0.0.1/{camera}@1"
    now = time.time()
    for number, captured in ((0, now - 60.0), (1, now)):
        frame = Frame(
            event_id=event_id_for_frame(camera, ref, number),
            source_kind=SourceKind.CAMERA,
            source_id=camera,
            captured_at=captured,
            submitted_at=now,
            jpeg=jpeg,
            frame_number=number,
            stream_ref=ref,
        )
        key, value, headers = frame.to_kafka()
        produce_raw(settings, Topic.FRAMES, key, value, headers)


@contextlib.contextmanager
def real_run(
    settings: Settings,
    db: psycopg2.extensions.connection,
    producer_metrics: Metrics,
    images: ImageServer,
    worker_port: int,
    tmp_path: Path,
) -> Iterator[None]:
    """What a deployment sees in its first minute, through the real producers and a real worker
    (the fake tagger: the metrics are the pipeline's, not the model's): a catalogue feed with a
    row that has no image (skipped) and a broken link (a 404, dead-lettered by the fetch agent),
    a camera replayed at its own speed, a recording that does not decode, a camera whose frames
    are over the message limit, a live camera that cannot be reached (reconnects), and a tagged
    record Postgres refuses (a sink error)."""
    group = unique("it-dashboards")
    feed, camera = unique("dash-feed"), unique("dash-cam")
    start_group_at_end(settings, group)
    with running_worker(
        settings,
        group,
        tmp_path / "worker.log",
        fake_worker.command(),
        worker_metrics_port=worker_port,
    ) as worker:
        rows = catalogue_rows(images.base_url, prefix="")[:4]
        rows.append({"id": "broken-link", "image_link": images.base_url + "missing.jpg"})
        rows.append({"id": "no-image", "title": "a row without an image link"})
        report = produce_feed(settings, rows, feed=feed, metrics=producer_metrics)
        assert (report.sent, sum(report.skipped.values())) == (5, 1), report.summary()

        cameras = VideoProducer.from_settings(settings, producer_metrics)
        try:
            replay = cameras.send_file(CLIP, camera, pace=True)
            assert replay.frames_sent == 8, replay.summary()
            broken = cameras.send_file(_without_index(CLIP, tmp_path / "broken.mp4"), camera)
            assert broken.decode_errors >= 1, broken.summary()
        finally:
            cameras.close()
        tiny = dataclasses.replace(settings, max_message_bytes=1024)
        too_big = VideoProducer.from_settings(tiny, producer_metrics)
        try:
            dropped = too_big.send_file(CLIP, unique("dash-big-cam"))
            assert sum(dropped.frames_dropped.values()) == 8, dropped.summary()
        finally:
            too_big.close()
        _live_camera_that_refuses(settings, producer_metrics, unique("dash-live-cam"))
        refused = dataclasses.replace(tagged_image(source_id=unique("dash-bad-cam")), width=0)
        produce_raw(settings, Topic.ITEMS, refused.key.encode(), refused.to_json())

        wait_for_images(db, feed, 4, TIMEOUT_S, worker)
        wait_for_images(db, camera, 8, TIMEOUT_S, worker)
        # after the rest is written, so that the fresh frame is still fresh when it is reached
        live = unique("dash-live-behind")
        _live_frames_a_worker_is_behind_on(settings, live)
        wait_for_images(db, live, 1, TIMEOUT_S, worker)
        yield
        assert worker.stop() == 0, worker.tail()


@needs_prometheus
def test_every_panel_query_returns_series_from_a_real_run(
    local_stack: Settings, db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    queries = _queries()
    assert queries
    registry = CollectorRegistry()
    producer_metrics = Metrics(registry)  # this process is the feed and video producer
    producer_server = serve_metrics(registry, "127.0.0.1", free_port())
    assert producer_server is not None
    worker_port = free_port()
    targets = {"fashionstream-worker": worker_port, "fashionstream-producer": producer_server.port}
    try:
        with (
            prometheus_scraping(targets) as url,
            ImageServer() as images,
            real_run(local_stack, db, producer_metrics, images, worker_port, tmp_path),
        ):
            failures = _evaluate(url, queries)
    finally:
        producer_server.close()
    assert not failures, "\n".join(failures)


def _evaluate(url: str, queries: Sequence[tuple[str, str]]) -> list[str]:
    """Every query at Prometheus's now, once the run's last values were scraped twice (rate()
    needs two samples in its window); what failed or returned no series."""

    def settled() -> bool:
        # the sink's rejection is the run's last event; the worker samples the lag every 5 s
        rejected = _value(url, 'fashionstream_sink_errors_total{error="rejected"}')
        lag = _value(url, "count(fashionstream_consumer_lag_messages)")
        return rejected is not None and lag is not None

    assert wait_until(settled, TIMEOUT_S, 0.5), "Prometheus never saw the run's last metrics"
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
    return failures
