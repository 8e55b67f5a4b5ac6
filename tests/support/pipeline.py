"""Harness for the pipeline's integration tests (test_pipeline.py, test_hostile.py,
test_kill.py, ...): a worker subprocess, an image server on 127.0.0.2, helpers to start a
consumer group at the end of the topics, read dead letters and count rows, and the tagger choice.

The workers are the real `fashionstream worker` against the session's real broker and Postgres
(`local_stack` from tests/integration/conftest.py); the fake-tagger worker
(tests/support/fake_worker.py) only where a test says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av
import psycopg2.extensions
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from fashionstream.app.local_run import WORKER_COMMAND, WorkerProcess, settings_env
from fashionstream.app.video_tracking import track_recording
from fashionstream.core.records import DeadLetter, Topic, event_id_for_frame
from fashionstream.core.settings import REPO_ROOT, Settings
from models.tags import Tagger
from models.tracking import Sighting, TrackingConfig
from producers.decoding import PtsSampler, VideoOptions
from producers.image_feed import produce_feed
from producers.video import produce_video
from tests.support import fake_worker
from tests.support.fake_tagger import FakeTagger

SAMPLES = REPO_ROOT / "fashionstream" / "app" / "samples"
IMAGE_HOST = "127.0.0.2"  # loopback on Linux; the only address the workers may fetch from
WORKER_STATE_DIR = Path(tempfile.gettempdir()) / f"fashionstream-test-workers-{os.getuid()}"
# on PYTHONPATH: a sitecustomize that keeps the training stack out, as in the runtime install
RUNTIME_INSTALL = REPO_ROOT / "tests" / "support" / "runtime_install"

# --- the tagger the workers run ------------------------------------------------------------
# The workers run the real trained tagger (models.tagger.FashionTagger + weights/); a missing
# model fails the suite instead of falling back to the fake tagger.
REQUIRE_REAL_TAGGER = True


def real_tagger_available() -> bool:
    """models.tagger is there and the manifest lists both networks it loads, with their files
    (the entries land one by one as training finishes)."""
    if importlib.util.find_spec("models.tagger") is None:
        return False
    from models.weights import ATTRIBUTES_ENTRY, DETECTOR_ENTRY, WeightsError, load_manifest

    weights_dir = REPO_ROOT / "weights"
    try:
        manifest = load_manifest(weights_dir)
    except (WeightsError, OSError):
        return False
    needed = (DETECTOR_ENTRY, ATTRIBUTES_ENTRY)
    return all(n in manifest and (weights_dir / manifest[n].file).is_file() for n in needed)


def worker_command(*, slow_fake: bool = False) -> tuple[str, ...]:
    """The worker the tests start: `fashionstream worker` with the real tagger. `slow_fake`: when
    the fake has to stand in, one that takes 0.25 s per image (so a test can act in the middle
    of a run)."""
    if real_tagger_available():
        return WORKER_COMMAND
    if REQUIRE_REAL_TAGGER:
        pytest.fail("the real tagger (models/tagger.py + weights/manifest.json) is missing")
    return fake_worker.command(seconds_per_image=0.25 if slow_fake else 0.0)


def offline_tagger(settings: Settings) -> Tagger:
    """The tagger `worker_command()`'s workers run, built in this process (to compute what
    the pipeline must write, with `fashionstream track`'s code path). The slow fake answers as
    the fake does (only its speed differs), so it stands in for both."""
    if real_tagger_available():
        from models.tagger import FashionTagger

        return FashionTagger.from_settings(settings)
    if REQUIRE_REAL_TAGGER:
        pytest.fail("the real tagger (models/tagger.py + weights/manifest.json) is missing")
    return FakeTagger()


def offline_sightings(settings: Settings, path: Path, camera: str, fps: float) -> list[Sighting]:
    """The sightings `fashionstream track` finds in `path` for `camera` with the workers' tagger:
    what the pipeline's tracking agent must commit for the same recording."""
    sampled = dataclasses.replace(settings, video_fps=fps)
    run = track_recording(
        path,
        offline_tagger(sampled),
        camera=camera,
        config=TrackingConfig.from_settings(sampled),
        options=VideoOptions.from_settings(sampled),
        batch_size=settings.batch_size,
    )
    return run.sightings


def stored_sightings(
    db: psycopg2.extensions.connection, camera: str
) -> list[tuple[str, int, int, int, str]]:
    """(sighting id, first frame, last frame, frames seen, end reason) of a camera's sightings."""
    with db.cursor() as cur:
        cur.execute(
            "SELECT s.sighting_id::text, s.first_frame, s.last_frame, s.frames_seen, s.end_reason"
            " FROM sightings s JOIN sources src ON src.id = s.source_pk"
            " WHERE src.kind = 'camera' AND src.source_id = %s ORDER BY s.sighting_id",
            (camera,),
        )
        return [tuple(r) for r in cur.fetchall()]


def sighting_keys(sightings: list[Sighting]) -> list[tuple[str, int, int, int, str]]:
    return sorted(
        (s.sighting_id, s.first_frame, s.last_frame, s.frames, s.end_reason.value)
        for s in sightings
    )


def wait_for_sightings(
    db: psycopg2.extensions.connection,
    camera: str,
    n: int,
    timeout_s: float,
    worker: WorkerProcess,
) -> list[tuple[str, int, int, int, str]]:
    """Poll until the camera has at least `n` sightings; fails with the worker's log."""
    deadline = time.monotonic() + timeout_s
    rows = stored_sightings(db, camera)
    while len(rows) < n and time.monotonic() < deadline:
        assert worker.alive(), worker.tail()
        time.sleep(0.3)
        rows = stored_sightings(db, camera)
    assert len(rows) >= n, f"{len(rows)} of {n} sightings after {timeout_s:.0f} s\n{worker.tail()}"
    return rows


# --- worker subprocess ---------------------------------------------------------------------


@contextlib.contextmanager
def running_worker(
    settings: Settings, group: str, log_file: Path, command: Sequence[str], **overrides: Any
) -> Iterator[WorkerProcess]:
    """A worker (started by `command`, e.g. `worker_command()`) for consumer group `group`;
    always stopped (SIGTERM, then SIGKILL) on exit."""
    env = settings_env(
        settings,
        consumer_group=group,
        fetch_allow_networks=(f"{IMAGE_HOST}/32",),
        state_dir=WORKER_STATE_DIR,
        **overrides,
    )
    # every real worker of the suite runs as in the runtime install: no training stack
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(RUNTIME_INSTALL), env.get("PYTHONPATH")]))
    worker = WorkerProcess(env, log_file, command)
    try:
        yield worker
    finally:
        worker.stop()


# --- Kafka helpers -----------------------------------------------------------------------------


def produce_raw(
    settings: Settings, topic: Topic, key: bytes, value: bytes, headers: Any = None
) -> None:
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=False,
        max_request_size=settings.max_message_bytes + 65536,
    )
    try:
        producer.send(topic.value, key=key, value=value, headers=headers).get(timeout=60)
    finally:
        producer.close(timeout=30)


class DeadLetterReader:
    """Reads fashion.deadletter.v1 from the beginning (no group) as letters come in."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
        )
        partitions = [
            TopicPartition(Topic.DEADLETTER.value, p)
            for p in sorted(self._consumer.partitions_for_topic(Topic.DEADLETTER.value) or [])
        ]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        self.letters: list[DeadLetter] = []

    def wait_for(
        self, predicate: Callable[[list[DeadLetter]], bool], timeout_s: float
    ) -> list[DeadLetter]:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.letters) and time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=300).values():
                self.letters.extend(DeadLetter.from_json(r.value) for r in records)
        return self.letters

    def close(self) -> None:
        self._consumer.close()


# --- producing ---------------------------------------------------------------------------------


def send_feed(settings: Settings, rows: list[dict[str, Any]], feed: str) -> int:
    report = produce_feed(settings, rows, feed=feed)
    assert report.sent == report.read, report.summary()
    return report.sent


def send_video(settings: Settings, path: Path, camera: str, fps: float) -> list[str]:
    """Sends the file's sampled frames; returns their event ids."""
    report = produce_video(settings, path, camera, fps=fps)
    assert report.completed, report.summary()
    assert report.frames_sent == report.frames_sampled, report.summary()
    return expected_frame_ids(path, camera, fps)


def expected_frame_ids(path: Path, camera: str, fps: float) -> list[str]:
    """Event ids of the frames the producer samples from `path`, recomputed independently."""
    sampler = PtsSampler(fps)
    ref = f"{path.name}:{path.stat().st_size}"
    ids: list[str] = []
    with av.open(str(path)) as container:
        first: float | None = None
        for number, frame in enumerate(container.decode(video=0)):
            t = float(frame.time or 0.0)
            first = t if first is None else first
            if sampler.keep(t - first):
                ids.append(event_id_for_frame(camera, ref, number))
    return ids


def catalogue_rows(base_url: str, prefix: str) -> list[dict[str, Any]]:
    """The demo catalogue's rows whose image exists (it also carries deliberately broken rows),
    each image linked on `base_url` (an ImageServer) and ids prefixed with `prefix`."""
    import csv

    with (SAMPLES / "catalogue.csv").open(newline="") as f:
        rows = [
            row
            for row in csv.DictReader(f)
            if row["image_link"].endswith(".jpg") and (SAMPLES / row["image_link"]).is_file()
        ]
    return [
        {**row, "id": f"{prefix}{row['id']}", "image_link": base_url + Path(row["image_link"]).name}
        for row in rows
    ]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- Postgres ----------------------------------------------------------------------------------


def event_ids(db: psycopg2.extensions.connection, source_id: str) -> list[str]:
    with db.cursor() as cur:
        cur.execute(
            "SELECT i.event_id::text FROM images i JOIN sources s ON s.id = i.source_pk"
            " WHERE s.source_id = %s",
            (source_id,),
        )
        return [row[0] for row in cur.fetchall()]


def wait_for_images(
    db: psycopg2.extensions.connection,
    source_id: str,
    n: int,
    timeout_s: float,
    worker: WorkerProcess | None = None,
) -> int:
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        seen = len(event_ids(db, source_id))
        if seen >= n:
            return seen
        if worker is not None and not worker.alive():
            pytest.fail(f"worker exited ({worker.process.returncode}):\n{worker.tail()}")
        time.sleep(0.2)
    detail = f"\n{worker.tail()}" if worker is not None else ""
    pytest.fail(f"{source_id}: {seen} images after {timeout_s:.0f} s, expected {n}{detail}")


# --- the image server --------------------------------------------------------------------------


def decompression_bomb_png(side: int = 20_000) -> bytes:
    """A real PNG bomb: side x side black greyscale pixels (400 MB decoded at 20k) that
    compresses to a few hundred KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return len(data).to_bytes(4, "big") + kind + data + crc.to_bytes(4, "big")

    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def noise_jpeg(side: int) -> bytes:
    """A side x side JPEG of random noise (a fixed seed): about as large as a JPEG gets."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(9).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95)
    return out.getvalue()


class ImageServer:
    """An HTTP server on 127.0.0.2 with good images and every kind of hostile answer."""

    HUGE_BYTES = 50 * 1024 * 1024

    def __init__(self) -> None:
        self.images = {p.name: p.read_bytes() for p in (SAMPLES / "catalogue").glob("*.jpg")}
        self.bomb = decompression_bomb_png()
        self.noise = noise_jpeg(1024)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                # the fetcher may hang up mid-body (e.g. at the byte limit): expected
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server.route(self)

        self.httpd = ThreadingHTTPServer((IMAGE_HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://{IMAGE_HOST}:{self.port}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)

    def route(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        name = url.path.lstrip("/")
        if name in self.images:
            self._send(request, 200, self.images[name], "image/jpeg")
        elif name == "not-an-image.jpg":
            self._send(request, 200, b"<html><body>Sale!</body></html>", "image/jpeg")
        elif name == "truncated.jpg":
            whole = self.images["dress-1.jpg"]
            self._send(request, 200, whole[: len(whole) // 2], "image/jpeg")
        elif name == "noise.jpg":  # ~1 MB: a JPEG that barely compresses
            self._send(request, 200, self.noise, "image/jpeg")
        elif name.startswith("slow/") and name[5:] in self.images:  # ?s=seconds, then the image
            time.sleep(float(parse_qs(url.query).get("s", ["5"])[0]))
            self._send(request, 200, self.images[name[5:]], "image/jpeg")
        elif name == "bomb.png":
            self._send(request, 200, self.bomb, "image/png")
        elif name == "huge.jpg":
            request.send_response(200)
            request.send_header("Content-Type", "image/jpeg")
            request.end_headers()  # no Content-Length: the limit must hold while streaming
            chunk = b"\xff\xd8\xff" + b"\x00" * (64 * 1024 - 3)
            for _ in range(self.HUGE_BYTES // len(chunk)):
                request.wfile.write(chunk)
        elif name == "redirect":
            target = parse_qs(url.query)["to"][0]
            request.send_response(302)
            request.send_header("Location", target)
            request.send_header("Content-Length", "0")
            request.end_headers()
        else:
            self._send(request, 404, b"not found", "text/plain")

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def scrape(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
        return text


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """One sample from Prometheus text exposition (None when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None
