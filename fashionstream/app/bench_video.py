"""`fashionstream bench video`: cameras through the whole pipeline with tracking.

A recording stands in for each camera: it is replayed at its own speed (`pace`, as a live camera
sends) through the embedded broker to N worker processes (tagging + tracking) and Postgres, for
each requested number of cameras and workers. Per configuration: how fast the source decodes,
frames tagged per second against the rate the cameras need, sightings, end-to-end lag (entering
Kafka -> row committed) overall and at the start and end of the run, and the workers' memory
after warm-up and at the end.

"Real time" here means the workers kept up: frames were tagged at 95% or more of the rate the
cameras send (`needed_fps`), and the lag did not grow, the median lag of the last tenth of the
frames being at most 3 s above that of the first tenth. A pipeline that falls behind shows a lag
that grows with the run's length; one that keeps up shows a flat one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
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

from fashionstream.app.local_run import (
    WORKER_COMMAND,
    DeadLetterWatch,
    RunError,
    WorkerProcess,
    settings_env,
    start_group_at_end,
    wait_for_sources,
)
from fashionstream.core.metrics import Metrics
from fashionstream.core.settings import Settings
from infra.local_stack import LocalStack
from producers.decoding import SampledFrame, VideoOptions, read_recording
from producers.video import VideoProducer, VideoReport

WARMUP_CAMERAS = 4  # frames from this many cameras reach (very likely) every worker's partitions
SIGHTINGS_SETTLE_S = 60.0  # after the last frame's row: time for the tracking agent to commit
LAG_GROWTH_S = 3.0  # lag growth over a run that still counts as keeping up (batching jitter)


class BenchError(Exception):
    """The benchmark could not run (the stack, a worker, or results that never came)."""


def decode_fps(source: Path, settings: Settings, seconds: float = 10.0) -> dict[str, float]:
    """How fast one camera's frames are produced without Kafka: every frame of `source` decoded,
    the sampled ones resized and JPEG-encoded (`producer.video`'s own reader), for up to
    `seconds` of wall time."""
    options = VideoOptions.from_settings(settings)
    started = time.perf_counter()
    sampled = 0
    last_pts = 0.0
    for item in read_recording(source, options):
        if not isinstance(item, SampledFrame):
            continue
        sampled += 1
        last_pts = item.pts_s
        if time.perf_counter() - started > seconds:
            break
    elapsed = time.perf_counter() - started
    return {
        "video_seconds_per_second": round(last_pts / elapsed, 1) if elapsed > 0 else 0.0,
        "sampled_frames_per_second": round(sampled / elapsed, 1) if elapsed > 0 else 0.0,
    }


def rss_mb(pid: int) -> float | None:
    """Resident memory of a worker in MB (Linux /proc): the process and its children (the
    tagger process), summed; None when it cannot be read."""
    total_kb = 0
    for process in [pid, *_descendants(pid)]:
        try:
            lines = Path(f"/proc/{process}/status").read_text().splitlines()
        except OSError:
            if process == pid:
                return None
            continue  # a child that just ended
        total_kb += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return round(total_kb / 1024, 1)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for tasks in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = [int(c) for c in tasks.read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def run_bench_video(
    settings: Settings,
    source: Path,
    *,
    cameras: Sequence[int],
    workers: Sequence[int],
    duration_s: float | None,
    pace: bool,
    timeout_s: float,
    progress: bool,
    worker_command: Sequence[str] = WORKER_COMMAND,
) -> dict[str, Any]:
    """Every (cameras, workers) configuration in turn on one stack; see the module docstring.
    `worker_command` starts each worker (another launcher of the same worker, e.g. one with a
    fake tagger, measures the plumbing alone)."""

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    recording_s = recording_seconds(source)
    if recording_s <= 0:
        raise BenchError(f"{source}: no duration (not a recording?)")
    repeats = 1 if duration_s is None else max(1, round(duration_s / recording_s))
    say(f"decoding {source} once to measure the source ...")
    decode = decode_fps(source, settings)
    try:
        LocalStack.from_settings(settings).start()
    except Exception as exc:
        raise BenchError(f"the local stack did not start: {exc}") from exc
    runs = []
    for n_workers in workers:
        for n_cameras in cameras:
            say(f"{n_cameras} camera(s), {n_workers} worker(s): starting ...")
            runs.append(
                _one_configuration(
                    settings,
                    source,
                    n_cameras=n_cameras,
                    n_workers=n_workers,
                    repeats=repeats,
                    pace=pace,
                    worker_command=worker_command,
                    timeout_s=timeout_s,
                    say=say,
                )
            )
    return {
        "source": str(source),
        "recording_s": round(recording_s, 2),
        "replays_per_camera": repeats,
        "paced": pace,
        "sampling_fps": settings.video_fps,
        "batch_size": settings.batch_size,
        "backend": settings.backend.value,
        # the shipped models, or what the launcher the caller brought runs
        "tagger": (
            "shipped models"
            if tuple(worker_command) == WORKER_COMMAND
            else " ".join(worker_command[1:])
        ),
        "source_decode": decode,
        "runs": runs,
    }


def _one_configuration(
    settings: Settings,
    source: Path,
    *,
    n_cameras: int,
    n_workers: int,
    repeats: int,
    pace: bool,
    worker_command: Sequence[str],
    timeout_s: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    group = f"{settings.consumer_group}-benchvideo-{run_id}"
    start_group_at_end(settings, group)
    env = settings_env(settings, consumer_group=group, worker_metrics_port=0)
    logs = settings.state_dir / "logs"
    procs = [
        WorkerProcess(env, logs / f"bench-video-{run_id}-{i}.log", worker_command)
        for i in range(n_workers)
    ]
    watch = DeadLetterWatch(settings)
    try:
        warm = [f"bench-{run_id}-warm{i}" for i in range(WARMUP_CAMERAS)]
        since = time.time()
        sent = send_warmup(settings, source, warm, frames=2)
        wait_written(settings, warm, sent, since, watch, procs, timeout_s)
        memory_start = [rss_mb(p.pid) for p in procs]
        say(f"  workers warm ({memory_start} MB); sending ...")

        cams = [f"bench-{run_id}-cam{i}" for i in range(n_cameras)]
        since = time.time()
        started = time.monotonic()
        with _PeakMemory(procs) as peak:
            reports = _send_reports(settings, source, cams, pace=pace, repeats=repeats)
            send_s = time.monotonic() - started
            total = sum(r.frames_sent for r in reports)
            wait_written(settings, cams, total, since, watch, procs, timeout_s)
        memory_end = [rss_mb(p.pid) for p in procs]
        timeline = _lag_timeline(settings, cams, since)
        sightings = _sightings_when_settled(settings, cams, procs)
    finally:
        watch.close()
        for p in procs:
            p.stop()
    if not timeline:
        raise BenchError("no frame rows were written")
    lags = sorted(lag for _, lag in timeline)
    written = sorted(t + lag for t, lag in timeline)
    # rows per second between the first and the last row committed: the workers' throughput,
    # not biased by the lag of the first and last frames (a paced run that keeps up: the rate
    # the cameras send)
    tagged_fps = (len(written) - 1) / max(1e-9, written[-1] - written[0])
    lag_start, lag_end = first_and_last_tenth([lag for _, lag in sorted(timeline)])
    decoded = sum(r.frames_decoded for r in reports)
    needed = n_cameras * settings.video_fps
    return {
        "cameras": n_cameras,
        "workers": n_workers,
        "frames": total,
        "decode_fps": round(decoded / send_s, 1) if send_s > 0 else None,
        "needed_fps": round(needed, 2),
        "tagged_fps": round(tagged_fps, 2),
        "sightings": sightings,
        "lag_p50_s": round(quantile(lags, 0.5), 2),
        "lag_p95_s": round(quantile(lags, 0.95), 2),
        "lag_max_s": round(lags[-1], 2),
        "lag_first_tenth_s": round(lag_start, 2),
        "lag_last_tenth_s": round(lag_end, 2),
        "real_time": tagged_fps >= 0.95 * needed and lag_end <= lag_start + LAG_GROWTH_S,
        "worker_rss_mb_start": memory_start,
        "worker_rss_mb_peak": peak.peaks,
        "worker_rss_mb_end": memory_end,
        "dropped": sum(sum(r.frames_dropped.values()) for r in reports),
        "decode_errors": sum(r.decode_errors for r in reports),
    }


class _PeakMemory:
    """Samples the workers' resident memory every second while the run goes on."""

    def __init__(self, procs: Sequence[WorkerProcess]) -> None:
        self._procs = procs
        self.peaks: list[float | None] = [rss_mb(p.pid) for p in procs]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            for i, p in enumerate(self._procs):
                now = rss_mb(p.pid)
                if now is not None and now > (self.peaks[i] or 0.0):
                    self.peaks[i] = now

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def send_warmup(settings: Settings, source: Path, cams: Sequence[str], *, frames: int) -> int:
    """The first `frames` sampled frames of `source` from each of `cams`, as fast as possible
    (loads the model in every worker before the timed run); returns the frames sent."""
    from fashionstream.core.records import Frame, SourceKind, Topic, event_id_for_frame
    from producers.decoding import recording_ref
    from producers.kafka import Deliveries, build_producer

    options = VideoOptions.from_settings(settings)
    picked: list[SampledFrame] = []
    for item in read_recording(source, options):
        if isinstance(item, SampledFrame):
            picked.append(item)
        if len(picked) >= frames:
            break
    producer = build_producer(settings, client_id="fashionstream-bench-warmup")
    deliveries = Deliveries()
    try:
        for camera in cams:
            ref = f"warmup:{recording_ref(source)}"
            for sampled in picked:
                now = time.time()
                frame = Frame(
                    event_id=event_id_for_frame(camera, ref, sampled.frame_number),
                    source_kind=SourceKind.CAMERA,
                    source_id=camera,
                    captured_at=now,
                    submitted_at=now,
                    jpeg=sampled.jpeg,
                    frame_number=sampled.frame_number,
                    stream_ref=ref,
                )
                key, value, headers = frame.to_kafka()
                deliveries.track(
                    producer.send(Topic.FRAMES.value, key=key, value=value, headers=headers)
                )
        deliveries.wait(producer, 60)
    finally:
        producer.close()
    return len(picked) * len(cams)


def _send_reports(
    settings: Settings, source: Path, cams: Sequence[str], *, pace: bool, repeats: int
) -> list[VideoReport]:
    """Each camera replays `source` `repeats` times (paced or not), all cameras at once, one
    producer thread per camera."""
    reports: list[VideoReport] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def camera_thread(camera: str) -> None:
        metrics = Metrics(CollectorRegistry(), process_metrics=False)
        producer = VideoProducer.from_settings(settings, metrics)
        try:
            for k in range(repeats):
                report = producer.send_file(source, camera, pace=pace, repeat=k)
                with lock:
                    reports.append(report)
        except BaseException as exc:  # reported to the caller below
            with lock:
                errors.append(exc)
        finally:
            producer.close()

    threads = [
        threading.Thread(target=camera_thread, args=(c,), name=f"bench-{c}", daemon=True)
        for c in cams
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError(f"a camera's producer failed: {errors[0]!r}") from errors[0]
    return reports


def wait_written(
    settings: Settings,
    cams: Sequence[str],
    expected: int,
    since: float,
    watch: DeadLetterWatch,
    procs: Sequence[WorkerProcess],
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for p in procs:
            if not p.alive():
                raise BenchError(f"a worker exited ({p.process.returncode}):\n{p.tail()}")
        try:
            done = wait_for_sources(
                settings,
                sources=cams,
                expected=expected,
                since=since,
                watch=watch,
                timeout_s=min(5.0, max(0.1, deadline - time.monotonic())),
            )
        except RunError:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"frames of {', '.join(cams)} not all written after {timeout_s:.0f} s"
                ) from None
            continue
        if done.dead_letters:
            raise BenchError(f"{done.dead_letters} benchmark frames were dead-lettered")
        return


def _lag_timeline(
    settings: Settings, cams: Sequence[str], since: float
) -> list[tuple[float, float]]:
    """(entered Kafka, seconds until its row was committed) per frame of the run."""
    query = (
        "SELECT extract(epoch FROM i.submitted_at)::float8,"
        " extract(epoch FROM i.written_at - i.submitted_at)::float8"
        " FROM images i JOIN sources s ON s.id = i.source_pk"
        " WHERE s.kind = 'camera' AND s.source_id = ANY(%s) AND i.written_at >= %s"
        " ORDER BY 1"
    )
    with (
        contextlib.closing(psycopg2.connect(settings.database_url)) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(query, (list(cams), dt.datetime.fromtimestamp(since, dt.UTC)))
        return [(float(a), float(b)) for a, b in cur.fetchall()]


def _sightings_when_settled(
    settings: Settings, cams: Sequence[str], procs: Sequence[WorkerProcess]
) -> int:
    """The run's sightings once every camera's tracker has closed its tracks (the recordings'
    end marks close them), or what is there after SIGHTINGS_SETTLE_S."""
    query = (
        "SELECT (SELECT count(*) FROM sightings g JOIN sources s ON s.id = g.source_pk"
        "        WHERE s.kind = 'camera' AND s.source_id = ANY(%(c)s)),"
        " (SELECT count(*) FROM tracker_states t JOIN sources s ON s.id = t.camera_pk"
        "        WHERE s.kind = 'camera' AND s.source_id = ANY(%(c)s) AND t.open_tracks = 0)"
    )
    deadline = time.monotonic() + SIGHTINGS_SETTLE_S
    with contextlib.closing(psycopg2.connect(settings.database_url)) as conn:
        conn.autocommit = True
        while True:
            with conn.cursor() as cur:
                cur.execute(query, {"c": list(cams)})
                sightings, settled = cur.fetchone()
            if settled >= len(cams) or time.monotonic() > deadline:
                return int(sightings)
            if not all(p.alive() for p in procs):
                return int(sightings)
            time.sleep(0.5)


def recording_seconds(source: Path) -> float:
    """The recording's duration from its container (0 when it does not say)."""
    import av

    with av.open(str(source)) as container:
        return container.duration / 1e6 if container.duration else 0.0


def first_and_last_tenth(in_order: Sequence[float]) -> tuple[float, float]:
    """The medians of the first and the last tenth of `in_order` (at least one value each): a
    lag or latency that grows over a run shows as a last tenth above the first."""
    tenth = max(1, len(in_order) // 10)
    return statistics.median(in_order[:tenth]), statistics.median(in_order[-tenth:])


def quantile(values: Sequence[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]
