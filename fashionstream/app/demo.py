"""`fashionstream demo`: the main job on the embedded default. Starts the local stack, serves the
bundled sample catalogue over a local HTTP server, streams it and the bundled camera clip through
a real worker, waits until every item is in Postgres or in the dead-letter topic, and reports."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from tqdm import tqdm

from fashionstream.app.local_run import (
    DeadLetterWatch,
    Progress,
    WorkerProcess,
    serve_directory,
    settings_env,
    wait_for_sources,
)
from fashionstream.core.settings import Settings
from infra.local_stack import LocalStack
from infra.processes import wait_until
from producers.image_feed import produce_feed
from producers.video import produce_video
from sinks import queries

SAMPLES = Path(__file__).resolve().parent / "samples"
CATALOGUE = SAMPLES / "catalogue.csv"
CAMERA_CLIP = SAMPLES / "store_camera.mp4"
FEED = "demo-catalogue"
CAMERA = "demo-store-camera"
SAMPLE_HOST = "127.0.0.1"
# A fixed port keeps the sample URLs, and so the catalogue items' event ids, the same from run to
# run: a re-run then rewrites its rows instead of adding new ones.
SAMPLE_PORT = 18765
SIGHTINGS_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DemoResult:
    images: int  # catalogue images tagged
    frames: int  # video frames tagged
    garments: int
    people: int
    dead_letters: int
    elapsed_s: float
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    items_sent: int = 0
    items_skipped: int = 0
    frames_sent: int = 0
    garments_per_category: dict[str, int] = field(default_factory=dict)
    top_attributes: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    mean_timings_s: dict[str, float] = field(default_factory=dict)
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    kafka_bootstrap: str = ""
    database_url: str = ""
    metrics_url: str | None = None
    worker_log: str = ""
    report: str = ""  # the popular-items report this run wrote (HTML)
    api_url: str | None = None  # the HTTP API left serving the demo's data
    api_error: str | None = None  # why it could not be started

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def catalogue_rows() -> list[dict[str, str]]:
    with CATALOGUE.open(newline="") as f:
        return list(csv.DictReader(f))


def run_demo(settings: Settings, *, timeout_s: float, progress: bool) -> DemoResult:
    started = time.time()
    status = LocalStack.from_settings(settings).start()
    log_file = settings.state_dir / "logs" / "demo-worker.log"
    with (
        serve_directory(SAMPLES, SAMPLE_HOST, SAMPLE_PORT) as base_url,
        _worker(settings, log_file) as worker,
    ):
        watch = DeadLetterWatch(settings)
        try:
            since = time.time()
            feed = produce_feed(settings, catalogue_rows(), feed=FEED, base_url=base_url)
            # the clip has no recording time: play it as recorded now, so this week's report
            # shows it beside the catalogue
            video = produce_video(
                settings, CAMERA_CLIP, CAMERA, fps=settings.video_fps, recorded_at=since
            )
            expected = feed.sent + video.frames_sent
            with _progress_bar(expected, enabled=progress) as show:
                wait_for_sources(
                    settings,
                    sources=(FEED, CAMERA),
                    expected=expected,
                    since=since,
                    watch=watch,
                    worker=worker,
                    timeout_s=timeout_s,
                    on_progress=show,
                )
            letters = [d for d in watch.letters if d.source_id in (FEED, CAMERA)]
            _wait_for_sightings(settings, dt.datetime.fromtimestamp(since, dt.UTC), worker)
        finally:
            watch.close()
    scope = queries.Scope(
        sources=(FEED, CAMERA), written_since=dt.datetime.fromtimestamp(since, dt.UTC)
    )
    report_path = _write_report(settings)
    with contextlib.closing(psycopg2.connect(settings.database_url)) as conn:
        counts = queries.image_counts(conn, scope)
        per_category = queries.garments_per_category(conn, scope)
        top = queries.top_attribute_values(conn, scope, limit=3)
        timings = queries.mean_timings(conn, scope)
        latencies = queries.latencies(conn, scope)
    api_url, api_error = _start_api(settings)
    return DemoResult(
        images=counts["images"],
        frames=counts["frames"],
        garments=counts["garments"],
        people=counts["people"],
        dead_letters=len(letters),
        elapsed_s=round(time.time() - started, 2),
        dead_letter_reasons=dict(Counter(d.reason.value for d in letters)),
        items_sent=feed.sent,
        items_skipped=sum(feed.skipped.values()),
        frames_sent=video.frames_sent,
        garments_per_category={c.label: c.count for c in per_category},
        top_attributes={h: [(c.label, c.count) for c in labels] for h, labels in top.items()},
        mean_timings_s={stage: round(s, 4) for stage, s in timings.items()},
        latency_p50_s=_quantile(latencies, 0.5),
        latency_p95_s=_quantile(latencies, 0.95),
        kafka_bootstrap=status.kafka.address,
        database_url=settings.database_url,
        metrics_url=(
            f"http://{settings.metrics_host}:{settings.worker_metrics_port}/metrics"
            if settings.worker_metrics_port
            else None
        ),
        worker_log=str(log_file),
        report=str(report_path),
        api_url=api_url,
        api_error=api_error,
    )


def _wait_for_sightings(settings: Settings, since: dt.datetime, worker: WorkerProcess) -> None:
    """The track agent writes a person's sighting after the frames' rows: wait (bounded) until
    it has closed the clip's tracks, so the report shows them."""

    def caught_up() -> bool:
        if not worker.alive():
            return True  # wait_for_sources already reported a dead worker
        with contextlib.closing(psycopg2.connect(settings.database_url)) as conn:
            return queries.tracker_caught_up(conn, CAMERA, since)

    if not wait_until(caught_up, SIGHTINGS_TIMEOUT_S, 0.5):
        print(
            f"fashionstream demo: the tracker had not closed every sighting after"
            f" {SIGHTINGS_TIMEOUT_S:.0f} s; the report may miss some",
            file=sys.stderr,
        )


def _write_report(settings: Settings) -> Path:
    """This week's popular-items report of the demo's feed and camera, in the state dir."""
    from fashionstream.app.report import build_report, render_html
    from fashionstream.app.similar import SimilarSearch

    until = dt.datetime.now(dt.UTC)
    path = settings.state_dir / "demo-report.html"
    since = until - dt.timedelta(days=7)
    search = SimilarSearch.from_settings(settings)  # stored vectors only: no tagger is loaded
    try:
        report = build_report(
            settings.database_url,
            since,
            until,
            [FEED, CAMERA],
            similar=search.report_matches,
            timezone=settings.report_timezone,
        )
    finally:
        search.close()
    path.write_text(render_html(report), encoding="utf-8")
    return path


def _start_api(settings: Settings) -> tuple[str | None, str | None]:
    """The API over the demo's data, left running like the stack: (its URL, None), or
    (None, why not) -- the demo's results stand without it."""
    from fashionstream.app.api.background import ensure_api
    from fashionstream.app.local_run import RunError

    try:
        return ensure_api(settings).url, None
    except RunError as exc:
        return None, str(exc).splitlines()[0]


def format_summary(result: DemoResult) -> str:
    lines = [
        f"fashionstream demo: done in {result.elapsed_s:.1f} s",
        f"  catalogue: {result.items_sent} items sent, {result.images} images tagged",
        f"  camera:    {result.frames_sent} frames sent, {result.frames} frames tagged",
        f"  found:     {result.garments} garments on {result.people} people",
        f"  dead letters: {result.dead_letters}"
        + "".join(f"  [{r}: {n}]" for r, n in sorted(result.dead_letter_reasons.items())),
        "",
        "garments per category:",
    ]
    lines += [f"  {label:<12} {n:>5}" for label, n in result.garments_per_category.items()]
    lines.append("")
    lines.append("most frequent attribute values:")
    for head, labels in sorted(result.top_attributes.items()):
        values = ", ".join(f"{label} ({n})" for label, n in labels)
        lines.append(f"  {head:<14} {values}")
    lines.append("")
    lines.append("mean seconds per image, by stage:")
    lines += [f"  {stage:<20} {s:8.3f}" for stage, s in result.mean_timings_s.items()]
    if result.latency_p50_s is not None and result.latency_p95_s is not None:
        lines.append(
            f"  {'end to end':<20} {result.latency_p50_s:8.3f} median,"
            f" {result.latency_p95_s:.3f} p95 (entering Kafka -> row committed)"
        )
    lines += [
        "",
        f"Kafka:    {result.kafka_bootstrap}",
        f"Postgres: {result.database_url}"
        "   (tables: sources, catalogue_items, images, people, garments, sightings)",
        f"metrics:  {result.metrics_url or 'off'} (served by `fashionstream worker` while it runs)",
        f"worker log: {result.worker_log}",
        f"report:   {result.report}   (`fashionstream report --since 7d -o FILE` for another)",
        (
            f"API:      {result.api_url}   (docs: {result.api_url}/docs; e.g."
            f" {result.api_url}/v1/garments?source={FEED}; submissions are tagged while"
            " `fashionstream worker` runs)"
            if result.api_url
            else f"API:      not started: {result.api_error}"
        ),
        "The local stack and the API keep running: `fashionstream down` stops them.",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def _worker(settings: Settings, log_file: Path) -> Iterator[WorkerProcess]:
    # the sample server is on loopback, which the fetch guard refuses unless allowed: the demo
    # allows exactly that host and nothing else
    env = settings_env(settings, fetch_allow_networks=(f"{SAMPLE_HOST}/32",))
    worker = WorkerProcess(env, log_file)
    try:
        yield worker
    finally:
        worker.stop()


@contextlib.contextmanager
def _progress_bar(expected: int, *, enabled: bool) -> Iterator[Any]:
    bar = tqdm(
        total=expected,
        desc="tagged",
        unit="img",
        disable=not enabled,
        file=sys.stderr,
        mininterval=1,
    )

    def show(p: Progress) -> None:
        bar.n = min(expected, p.written + p.dead_letters)
        bar.set_postfix(dead_letters=p.dead_letters, refresh=False)
        bar.refresh()

    try:
        yield show
    finally:
        bar.close()


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 4)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1], 4)
