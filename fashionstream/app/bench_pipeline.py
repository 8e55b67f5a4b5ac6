"""`fashionstream bench pipeline`: what the streaming pipeline costs over the bare model.

In one run, on the same real frames: (1) the bare `FashionTagger` in this process, batch by
batch; (2) the same frames as JPEG records through the embedded broker, a real worker process and
Postgres, from the first send to the last row committed. `ratio` = pipeline fps / tagger fps.
Both sides report the median of `repeats` runs; the worker is warmed up before it is timed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import psycopg2

from fashionstream.app.local_run import (
    DeadLetterWatch,
    RunError,
    WorkerProcess,
    settings_env,
    start_group_at_end,
    wait_for_sources,
)
from fashionstream.core.records import Frame, SourceKind, Topic, event_id_for_frame
from fashionstream.core.settings import Settings
from infra.local_stack import LocalStack
from producers.kafka import build_producer
from sinks import queries


@dataclass(frozen=True)
class PipelineBench:
    tagger_fps: float  # median over repeats, bare FashionTagger.tag in batches of batch_size
    # the workload, from the bare tagger's last run: a speed on frames where the models find
    # nobody says nothing about a street camera
    people_per_frame: float
    garments_per_frame: float
    pipeline_fps: float  # median over repeats, first send -> last row committed
    ratio: float
    latency_p50_s: float  # per frame: entering Kafka -> row committed, over all timed runs
    latency_p95_s: float
    frames: int
    repeats: int
    batch_size: int
    backend: str
    device: str
    frame_size: tuple[int, int]
    frames_source: str
    model_version: str
    tagger_fps_runs: tuple[float, ...]
    pipeline_fps_runs: tuple[float, ...]

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_bench(
    settings: Settings,
    frames: Sequence[np.ndarray],
    *,
    frames_source: str,
    repeats: int,
    timeout_s: float,
) -> PipelineBench:
    from models.tagger import FashionTagger  # torch is heavy: only when a bench runs

    jpegs = [_jpeg(f, settings.jpeg_quality) for f in frames]
    # The tagger sees what the worker sees: the frames after the JPEG round trip.
    decoded = [_rgb(j) for j in jpegs]

    tagger = FashionTagger.from_settings(settings)
    model_version = tagger.model_version
    timed = [
        _time_tagger(tagger, decoded, settings.batch_size, settings.video_fps)
        for _ in range(repeats + 1)
    ]
    tagger_runs = [fps for fps, _ in timed[1:]]  # the first run is the warm-up
    people, garments = timed[-1][1]
    del tagger
    gc.collect()

    LocalStack.from_settings(settings).start()
    run_id = uuid.uuid4().hex[:8]
    # a group of its own per run: a worker of an earlier run that was killed (or has not yet
    # been expired by the broker) keeps a shared group busy, and positioning it would fail
    group = f"{settings.consumer_group}-bench-{run_id}"
    start_group_at_end(settings, group)
    log_file = settings.state_dir / "logs" / "bench-worker.log"
    worker = WorkerProcess(settings_env(settings, consumer_group=group), log_file)
    watch = DeadLetterWatch(settings)
    producer = build_producer(settings, client_id="fashionstream-bench")
    try:
        warm = min(len(jpegs), 2 * settings.batch_size)
        _send_and_wait(settings, producer, jpegs[:warm], f"bench-{run_id}-warmup", worker, watch,
                       timeout_s)  # fmt: skip
        pipeline_runs, latencies = [], []
        for r in range(repeats):
            camera = f"bench-{run_id}-{r}"
            started = time.time()
            _send_and_wait(settings, producer, jpegs, camera, worker, watch, timeout_s)
            finished, run_latencies = _written(settings, camera, started)
            pipeline_runs.append(len(jpegs) / (finished - started))
            latencies += run_latencies
    finally:
        producer.close()
        watch.close()
        worker.stop()
    tagger_fps = statistics.median(tagger_runs)
    pipeline_fps = statistics.median(pipeline_runs)
    latencies.sort()
    height, width = decoded[0].shape[:2]
    return PipelineBench(
        tagger_fps=round(tagger_fps, 3),
        people_per_frame=round(people / len(decoded), 2),
        garments_per_frame=round(garments / len(decoded), 2),
        pipeline_fps=round(pipeline_fps, 3),
        ratio=round(pipeline_fps / tagger_fps, 3),
        latency_p50_s=round(_quantile(latencies, 0.5), 3),
        latency_p95_s=round(_quantile(latencies, 0.95), 3),
        frames=len(jpegs),
        repeats=repeats,
        batch_size=settings.batch_size,
        backend=settings.backend.value,
        device=settings.device.value,
        frame_size=(int(width), int(height)),
        frames_source=frames_source,
        model_version=model_version,
        tagger_fps_runs=tuple(round(v, 3) for v in tagger_runs),
        pipeline_fps_runs=tuple(round(v, 3) for v in pipeline_runs),
    )


def _time_tagger(
    tagger: Any, frames: Sequence[np.ndarray], batch_size: int, fps: float
) -> tuple[float, tuple[int, int]]:
    """frames/s, and the people and garments found in all frames: one camera's frames at the
    sampling rate (each run starts its clock again, so the track gate starts afresh)."""
    from models.tags import FrameSource

    sources = [FrameSource("bench", i / fps) for i in range(len(frames))]
    people = garments = 0
    started = time.perf_counter()
    for i in range(0, len(frames), batch_size):
        batch = slice(i, i + batch_size)
        for tags in tagger.tag(frames[batch], sources=sources[batch]):
            people += len(tags.people)
            garments += len(tags.garments)
    return len(frames) / (time.perf_counter() - started), (people, garments)


def _send_and_wait(
    settings: Settings,
    producer: Any,
    jpegs: Sequence[np.ndarray],
    camera: str,
    worker: WorkerProcess,
    watch: DeadLetterWatch,
    timeout_s: float,
) -> None:
    since = time.time()
    for number, jpeg in enumerate(jpegs):
        now = time.time()
        frame = Frame(
            event_id=event_id_for_frame(camera, f"bench:{camera}", number),
            source_kind=SourceKind.CAMERA,
            source_id=camera,
            # a camera's frames at the sampling rate, recorded before the burst is sent: the
            # tagger's track gate sees the same capture times as in the tagger-alone timing
            # (latency is counted from submitted_at)
            captured_at=since - (len(jpegs) - number) / settings.video_fps,
            submitted_at=now,
            jpeg=jpeg.tobytes(),
            frame_number=number,
        )
        key, value, headers = frame.to_kafka()
        producer.send(Topic.FRAMES.value, key=key, value=value, headers=headers)
    producer.flush(timeout=60)
    progress = wait_for_sources(
        settings,
        sources=(camera,),
        expected=len(jpegs),
        since=since,
        watch=watch,
        worker=worker,
        timeout_s=timeout_s,
    )
    if progress.dead_letters:
        raise RunError(f"{progress.dead_letters} benchmark frames were dead-lettered")


def _written(settings: Settings, camera: str, since: float) -> tuple[float, list[float]]:
    """(when the last frame's row was committed, per-frame latencies) for one timed run."""
    scope = queries.Scope(sources=(camera,), written_since=dt.datetime.fromtimestamp(since, dt.UTC))
    with contextlib.closing(psycopg2.connect(settings.database_url)) as conn:
        latencies = queries.latencies(conn, scope)
        last = queries.last_written(conn, scope)
    if last is None:
        raise RunError(f"no rows for {camera}")
    return last.timestamp(), latencies


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RunError("could not JPEG-encode a benchmark frame")
    return np.asarray(encoded)


def _rgb(jpeg: np.ndarray) -> np.ndarray:
    bgr = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    if bgr is None:
        raise RunError("could not decode a benchmark frame")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _quantile(values: Sequence[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]
