"""`fashionstream bench live`: live RTSP cameras through one worker, capture-to-row latency.

A real RTSP server (GStreamer's, `infra/rtsp/server.py`) serves a recording, looped, at its own
frame rate on one mount per camera; for each requested number of cameras the real live video
producer (`produce video rtsp://...`) reads every camera for `duration` seconds and sends
sampled frames through the embedded broker to one worker process and Postgres. Per run: frames
sent, tagged (rows) and skipped per camera, people and garments per tagged frame, and the
latency from a frame's capture to its row being committed (p50, p95, max, and the medians of the
first and last tenth of the run by capture time).

"Bounded" here means the latency did not grow over the run: the last tenth's median is at most
LAG_GROWTH_S above the first tenth's. A worker that cannot tag every frame of its cameras skips
the stale ones (`live_max_age_s`) and stays bounded; without skipping, the latency grows with
the length of the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg2
from prometheus_client import CollectorRegistry

from fashionstream.app.bench_video import (
    LAG_GROWTH_S,
    WARMUP_CAMERAS,
    BenchError,
    first_and_last_tenth,
    quantile,
    recording_seconds,
    rss_mb,
    send_warmup,
    wait_written,
)
from fashionstream.app.local_run import (
    WORKER_COMMAND,
    DeadLetterWatch,
    WorkerProcess,
    settings_env,
    start_group_at_end,
)
from fashionstream.core.metrics import Metrics
from fashionstream.core.settings import Settings
from infra.local_stack import LocalStack
from infra.rtsp.server import RtspServer, looped_recording, unavailable
from producers.video import VideoProducer, VideoReport

SETTLE_QUIET_S = 8.0  # after the cameras stop: no new row for this long means the worker is done
LOOP_MARGIN_S = 60.0  # the looped clip outlasts the run by this much (connects, warm-up)


def run_bench_live(
    settings: Settings,
    clip: Path,
    *,
    cameras: Sequence[int],
    duration_s: float,
    timeout_s: float,
    progress: bool,
    worker_command: Sequence[str] = WORKER_COMMAND,
) -> dict[str, Any]:
    """Every camera count in turn on one stack, one RTSP server and one worker; see the module
    docstring."""

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    reason = unavailable()
    if reason is not None:
        raise BenchError(f"no RTSP server to run live cameras against: {reason}")
    clip_s = recording_seconds(clip)
    if clip_s <= 0:
        raise BenchError(f"{clip}: no duration (not a recording?)")
    loops = math.ceil((duration_s + LOOP_MARGIN_S) / clip_s)
    work = settings.state_dir / "bench-live"
    looped = work / f"{clip.stem}-x{loops}.mp4"
    if not looped.is_file():
        say(f"looping {clip.name} {loops} times for a {duration_s:.0f} s run ...")
        looped_recording(clip, looped, loops)
    try:
        LocalStack.from_settings(settings).start()
    except Exception as exc:
        raise BenchError(f"the local stack did not start: {exc}") from exc
    run_id = uuid.uuid4().hex[:8]
    group = f"{settings.consumer_group}-benchlive-{run_id}"
    start_group_at_end(settings, group)
    env = settings_env(settings, consumer_group=group, worker_metrics_port=0)
    logs = settings.state_dir / "logs"
    mounts = {f"cam{i}": looped for i in range(max(cameras))}
    runs = []
    with RtspServer(mounts, log_path=logs / f"bench-live-{run_id}-rtsp.log") as server:
        worker = WorkerProcess(env, logs / f"bench-live-{run_id}-worker.log", worker_command)
        watch = DeadLetterWatch(settings)
        try:
            warm = [f"bench-{run_id}-warm{i}" for i in range(WARMUP_CAMERAS)]
            since = time.time()
            sent = send_warmup(settings, clip, warm, frames=2)
            wait_written(settings, warm, sent, since, watch, [worker], timeout_s)
            say(f"worker warm ({rss_mb(worker.pid)} MB)")
            for n in cameras:
                say(f"{n} live camera(s) for {duration_s:.0f} s ...")
                runs.append(
                    _one_run(
                        settings,
                        server,
                        run_id,
                        n,
                        duration_s=duration_s,
                        worker=worker,
                        timeout_s=timeout_s,
                        say=say,
                    )
                )
        finally:
            watch.close()
            worker.stop()
    return {
        "clip": str(clip),
        "clip_s": round(clip_s, 2),
        "duration_s": duration_s,
        "sampling_fps": settings.video_fps,
        "live_max_age_s": settings.live_max_age_s,
        "batch_size": settings.batch_size,
        "backend": settings.backend.value,
        "tagger": (
            "shipped models"
            if tuple(worker_command) == WORKER_COMMAND
            else " ".join(worker_command[1:])
        ),
        "runs": runs,
    }


def _one_run(
    settings: Settings,
    server: RtspServer,
    run_id: str,
    n_cameras: int,
    *,
    duration_s: float,
    worker: WorkerProcess,
    timeout_s: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    cams = [f"live-{run_id}-{n_cameras}x{i}" for i in range(n_cameras)]
    since = time.time()
    reports = _stream(settings, server, cams, duration_s, worker, since, say)
    _settle(settings, cams, since, worker, timeout_s)
    rows = _rows(settings, cams, since)
    if not rows:
        raise BenchError(f"no rows were written for {n_cameras} live camera(s)")
    latencies = [written - captured for _, captured, written, _, _ in rows]
    by_capture = [
        written - captured for _, captured, written, _, _ in sorted(rows, key=lambda r: r[1])
    ]
    first, last = first_and_last_tenth(by_capture)
    sent = {r.camera: r.frames_sent for r in reports}
    tagged = {c: 0 for c in cams}
    for camera, *_ in rows:
        tagged[camera] += 1
    people = sum(r[3] for r in rows)
    garments = sum(r[4] for r in rows)
    ordered = sorted(latencies)
    return {
        "cameras": n_cameras,
        "frames_sent": sum(sent.values()),
        "frames_tagged": len(rows),
        "tagged_fps": round(len(rows) / duration_s, 2),
        "needed_fps": round(n_cameras * settings.video_fps, 2),
        "tagged_per_camera": [tagged[c] for c in cams],  # a fair worker gives each its turn
        "skipped_per_camera": [sent.get(c, 0) - tagged[c] for c in cams],
        "people_per_frame": round(people / len(rows), 1),
        "garments_per_frame": round(garments / len(rows), 1),
        "latency_p50_s": round(quantile(ordered, 0.5), 2),
        "latency_p95_s": round(quantile(ordered, 0.95), 2),
        "latency_max_s": round(ordered[-1], 2),
        "latency_first_tenth_s": round(first, 2),
        "latency_last_tenth_s": round(last, 2),
        "bounded": last <= first + LAG_GROWTH_S,
        "reconnects": sum(r.reconnects for r in reports),
        "dropped_by_producers": sum(sum(r.frames_dropped.values()) for r in reports),
        "worker_rss_mb": rss_mb(worker.pid),
    }


def _stream(
    settings: Settings,
    server: RtspServer,
    cams: Sequence[str],
    duration_s: float,
    worker: WorkerProcess,
    since: float,
    say: Callable[[str], None],
) -> list[VideoReport]:
    """Each camera's live producer reads its mount for `duration_s`, all at once."""
    producers = [
        VideoProducer.from_settings(settings, Metrics(CollectorRegistry(), process_metrics=False))
        for _ in cams
    ]
    reports: list[VideoReport] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def read(producer: VideoProducer, camera: str, mount: str) -> None:
        try:
            report = producer.send_live(server.url(mount), camera)
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)
            return
        with lock:
            reports.append(report)

    threads = [
        threading.Thread(
            target=read, args=(p, camera, f"cam{i}"), name=f"bench-{camera}", daemon=True
        )
        for i, (p, camera) in enumerate(zip(producers, cams, strict=True))
    ]
    for t in threads:
        t.start()
    try:
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            time.sleep(min(10.0, max(0.0, end - time.monotonic())))
            if not worker.alive():
                raise BenchError(f"the worker exited:\n{worker.tail()}")
            rows = _rows(settings, cams, since)
            if rows:
                recent = sorted(w - c for _, c, w, _, _ in rows[-20:])
                say(f"  {len(rows)} frames tagged; latency of the last 20: median "
                    f"{statistics.median(recent):.1f} s")  # fmt: skip
    finally:
        for p in producers:
            p.stop.set()
        for t in threads:
            t.join(timeout=60)
        for p in producers:
            p.close()
    if errors:
        raise BenchError(f"a camera's producer failed: {errors[0]!r}") from errors[0]
    return reports


def _settle(
    settings: Settings,
    cams: Sequence[str],
    since: float,
    worker: WorkerProcess,
    timeout_s: float,
) -> None:
    """Wait until the worker has written what it will (no new row for SETTLE_QUIET_S)."""
    deadline = time.monotonic() + timeout_s
    count, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < SETTLE_QUIET_S:
        if not worker.alive():
            raise BenchError(f"the worker exited:\n{worker.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"the worker was still writing after {timeout_s:.0f} s")
        now = len(_rows(settings, cams, since))
        if now != count:
            count, quiet_since = now, time.monotonic()
        time.sleep(1.0)


def _rows(
    settings: Settings, cams: Sequence[str], since: float
) -> list[tuple[str, float, float, int, int]]:
    """(camera, captured, committed, people, garments) of each frame row of `cams`, by commit."""
    query = (
        "SELECT s.source_id, extract(epoch FROM i.captured_at)::float8,"
        " extract(epoch FROM i.written_at)::float8,"
        " i.person_count, i.garment_count"
        " FROM images i JOIN sources s ON s.id = i.source_pk"
        " WHERE s.kind = 'camera' AND s.source_id = ANY(%s) AND i.written_at >= %s"
        " ORDER BY 3"
    )
    with (
        contextlib.closing(psycopg2.connect(settings.database_url)) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(query, (list(cams), dt.datetime.fromtimestamp(since, dt.UTC)))
        return [(str(c), float(a), float(b), int(p), int(g)) for c, a, b, p, g in cur.fetchall()]
