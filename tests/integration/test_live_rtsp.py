"""Issue 21, live cameras: the video producer against a real RTSP server (GStreamer's, with basic
auth: infra/rtsp) and the session's real broker. Frames stream and are read back from
fashion.frames.v1; a camera killed mid-stream and started again is reconnected with frame
numbers going on and the gap measured; wrong credentials and a missing stream fail the session
at once with one line; a clip that ends and starts over stays one camera's one session; SIGTERM
stops `fashionstream produce video` cleanly. Skipped, with what to install, without GStreamer.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition
from PIL import Image
from prometheus_client import CollectorRegistry

from fashionstream.app.local_run import settings_env
from fashionstream.core.errors import DeadLetterReason
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import DeadLetter, Frame, Topic
from fashionstream.core.settings import REPO_ROOT, FallBehindPolicy, Settings
from infra.processes import wait_until
from infra.rtsp.server import RtspServer, unavailable
from producers.decoding import VideoOptions, open_container
from producers.video import LiveSourceRefused, VideoProducer, VideoReport
from tests.support.pipeline import unique
from tests.support.producer import FakeProducer

VIDEOS = REPO_ROOT.parent / "shared" / "data" / "videos"
TRAM = VIDEOS / "tram_stop_cctv_640x480.mp4"  # 15 s at 25 fps
SHOPS = VIDEOS / "shopping_street_aerial.mp4"  # 4.1 s at 10 fps: 41 frames
PASSWORD = "cctv-pass-7Qx"
FPS = 5.0
TIMEOUT_S = 30.0
SHUTDOWN_BOUND_S = Settings.shutdown_timeout_s  # the documented stop bound: 15 s
# Frames of one connection come at least every sampling interval (0.2 s) or so, bursts aside;
# a reconnect takes over a second (backoff 0.5 s, then RTSP's ~0.9 s setup)
PAUSE_S = 0.9


@pytest.fixture(scope="module")
def gstreamer() -> None:
    """Skips, saying what to install, where GStreamer's RTSP server cannot run (or the clips
    are missing); asked for before the broker, so that nothing is started for a skip."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    for clip in (TRAM, SHOPS):
        if not clip.is_file():
            pytest.skip(f"no {clip}: the shared data is not beside this checkout")


@pytest.fixture(scope="module")
def rtsp(gstreamer: None) -> Iterator[RtspServer]:
    """One server for the tests that do not stop it: /tram and /shops."""
    with RtspServer({"tram": TRAM, "shops": SHOPS}, password=PASSWORD) as server:
        yield server


@pytest.fixture
def live_settings(local_stack: Settings) -> Settings:
    # 5 fps: a handful of frames per second of video, so a test waits seconds, not minutes.
    # `block`: these tests are about sessions, not falling behind (unit-tested): on 2 loaded
    # cores drop_oldest would drop frames now and then, and the numbers could not be checked.
    return dataclasses.replace(
        local_stack,
        video_fps=FPS,
        reconnect_backoff_max_s=2.0,
        fall_behind_policy=FallBehindPolicy.BLOCK,
    )


class FrameTail:
    """fashion.frames.v1 from its end at construction: the frames sent afterwards, per camera."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
        )
        topic = Topic.FRAMES.value
        partitions = [
            TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic))
        ]
        self._consumer.assign(partitions)
        self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolve the end now, before anything is sent
            self._consumer.position(partition)
        self.frames: list[Frame] = []

    def of(self, camera: str, n: int, timeout_s: float = TIMEOUT_S) -> list[Frame]:
        """At least `n` frames of `camera` (all of them that came within the wait)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for records in self._consumer.poll(timeout_ms=300).values():
                self.frames.extend(Frame.from_kafka(r.value, r.headers) for r in records)
            mine = [f for f in self.frames if f.source_id == camera]
            if len(mine) >= n or time.monotonic() >= deadline:
                return mine

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture
def frames(local_stack: Settings) -> Iterator[FrameTail]:
    tail = FrameTail(local_stack)
    try:
        yield tail
    finally:
        tail.close()


class LiveCamera:
    """`VideoProducer.send_live(url, camera)` in a thread, on the real broker, with its own
    metrics registry."""

    def __init__(
        self, settings: Settings, url: str, camera: str, max_frames: int | None = None
    ) -> None:
        self.camera = camera
        self.registry = CollectorRegistry()
        self.producer = VideoProducer.from_settings(
            settings, Metrics(self.registry, process_metrics=False)
        )
        self.report: VideoReport | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(url, max_frames), name=f"live-{camera}", daemon=True
        )
        self._thread.start()

    def _run(self, url: str, max_frames: int | None) -> None:
        try:
            self.report = self.producer.send_live(url, self.camera, max_frames=max_frames)
        except BaseException as exc:  # handed to the test, which fails with it
            self.error = exc

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, {"camera": self.camera, **labels})
        return value or 0.0

    def sent(self) -> float:
        return self.sample("fashionstream_video_frames_sent_total")

    def finish(self, *, stop: bool = False, timeout_s: float = TIMEOUT_S) -> VideoReport:
        if stop:
            self.producer.stop.set()
        self._thread.join(timeout=timeout_s)
        try:
            assert not self._thread.is_alive(), f"{self.camera}: send_live did not return"
            if self.error is not None:
                raise self.error
            assert self.report is not None
            return self.report
        finally:
            self.producer.stop.set()
            self.producer.close()


def assert_one_unbroken_session(frames: list[Frame], camera: str) -> None:
    """One camera's one live session: its stream reference throughout (no credentials in it),
    frame numbers that only go up, every event id once, no end-of-stream mark."""
    assert frames
    assert {f.source_id for f in frames} == {camera}
    (ref,) = {f.stream_ref for f in frames}
    assert ref is not None
    assert ref.startswith("live:rtsp://127.0.0.1:")
    assert PASSWORD not in ref
    numbers = [f.frame_number or 0 for f in frames]
    assert numbers == sorted(set(numbers)), numbers
    assert len({f.event_id for f in frames}) == len(frames)
    assert not any(f.end_of_stream for f in frames)


def connections(frames: list[Frame]) -> list[list[Frame]]:
    """`frames` split where capture times pause for over PAUSE_S: one run per connection."""
    runs: list[list[Frame]] = [frames[:1]]
    for a, b in itertools.pairwise(frames):
        if b.captured_at - a.captured_at > PAUSE_S:
            runs.append([])
        runs[-1].append(b)
    return runs


def assert_sampled_throughout(run: list[Frame], frames_per_sample: int) -> None:
    """Each sampling interval of a connection has its frame: numbers step by about
    `frames_per_sample` (a frame the server dropped shifts a step by one), never by seconds of
    video, as when the sampler waits for presentation times a restarted clip reaches late."""
    numbers = [f.frame_number or 0 for f in run]
    steps = [b - a for a, b in itertools.pairwise(numbers)]
    assert max(steps, default=0) < 2 * frames_per_sample, numbers


def test_a_real_rtsp_camera_streams_frames_to_the_broker(
    rtsp: RtspServer, live_settings: Settings, frames: FrameTail
) -> None:
    camera = unique("rtsp-tram")
    started = time.time()
    live = LiveCamera(live_settings, rtsp.url("tram"), camera, max_frames=8)
    report = live.finish()
    assert report.frames_sent == 8, report.summary()
    assert (report.reconnects, report.dead_letters) == (0, 0), report.summary()
    assert PASSWORD not in report.source
    sent = frames.of(camera, 8)
    assert len(sent) == 8
    assert_one_unbroken_session(sent, camera)
    # 25 fps sampled at 5: every 5th frame, from the first
    assert [f.frame_number for f in sent] == list(range(0, 40, 5))
    for frame in sent:
        picture = Image.open(io.BytesIO(frame.jpeg))
        picture.load()
        assert (picture.format, picture.size) == ("JPEG", (640, 480))
        # a live frame is stamped when it was read: never after it was sent, never before the
        # session began
        assert started <= frame.captured_at <= frame.submitted_at, frame
    # the server sends a burst of buffered frames at connect: those are stamped as they
    # arrived, closer together than their presentation times, never further apart
    captured = [f.captured_at for f in sent]
    assert captured == sorted(set(captured))
    assert captured[-1] - captured[0] <= 7 / FPS + 1e-3


def test_a_camera_killed_mid_stream_is_reconnected_and_its_frame_numbers_go_on(
    gstreamer: None, live_settings: Settings, frames: FrameTail
) -> None:
    camera = unique("rtsp-killed")
    with RtspServer({"tram": TRAM}, password=PASSWORD) as server:
        live = LiveCamera(live_settings, server.url("tram"), camera)
        try:
            assert wait_until(lambda: live.sent() >= 5, TIMEOUT_S), "no frames before the kill"
            server.kill()  # the camera loses power: no goodbye on the wire
            time.sleep(1.0)
            server.start()
            sent_by_restart = live.sent()

            def back() -> bool:
                gaps = live.sample("fashionstream_source_gap_seconds_count")
                return gaps >= 1 and live.sent() >= sent_by_restart + 5

            assert wait_until(back, TIMEOUT_S), "frames did not come again after the restart"
        finally:
            report = live.finish(stop=True)
    assert report.reconnects >= 1, report.summary()
    assert live.sample("fashionstream_source_reconnects_total") == report.reconnects
    assert live.sample("fashionstream_source_gap_seconds_count") == 1
    # the camera was away >= 1 s; the gap counts from the last frame read, to the first after
    gap = live.sample("fashionstream_source_gap_seconds_sum")
    assert 1.0 <= gap < 15.0, gap
    # a lost connection is not a bad record: nothing dead-lettered
    assert (report.dead_letters, report.decode_errors) == (0, 0), report.summary()
    sent = frames.of(camera, report.frames_sent)
    assert len(sent) == report.frames_sent, report.summary()
    assert_one_unbroken_session(sent, camera)
    # the frames show the camera's absence where the numbers went on: one pause in capture
    # times, as long as the gap measured, between two connections that were sampled throughout
    # (every 5th frame of 25 fps; the restarted clip's presentation times start again at 0)
    before, after = connections(sent)
    assert min(len(before), len(after)) >= 5, (len(before), len(after))
    assert after[0].captured_at - before[-1].captured_at == pytest.approx(gap, abs=2 / FPS)
    for run in (before, after):
        assert_sampled_throughout(run, 5)


@pytest.mark.parametrize(
    ("mount", "password", "said"),
    [
        ("tram", "not-the-password", "Server returned 401 Unauthorized"),
        ("no-such-camera", PASSWORD, "Server returned 404 Not Found"),
    ],
    ids=["wrong-password", "missing-mount"],
)
def test_a_camera_that_refuses_the_session_fails_it_at_once(
    rtsp: RtspServer, caplog: pytest.LogCaptureFixture, mount: str, password: str, said: str
) -> None:
    # no broker needed: the refusal is the producer's; its dead letter is checked as sent
    fake = FakeProducer()
    registry = CollectorRegistry()
    options = VideoOptions.from_settings(Settings(video_fps=FPS))
    producer = VideoProducer(
        fake, Metrics(registry, process_metrics=False), options, opener=open_container
    )
    url = rtsp.url(mount, password=password)
    started = time.monotonic()
    with caplog.at_level(logging.INFO), pytest.raises(LiveSourceRefused) as refused:
        producer.send_live(url, "rtsp-refused")
    assert time.monotonic() - started < 5.0
    assert refused.value.detail.startswith(f"rtsp://127.0.0.1:{rtsp.port}/{mount} refused: {said}")
    assert refused.value.reason is DeadLetterReason.HTTP_STATUS
    assert refused.value.report.reconnects == 0
    (letter,) = [
        DeadLetter.from_json(v) for t, _k, v, _h in fake.sent if t == Topic.DEADLETTER.value
    ]
    assert letter.detail == refused.value.detail
    assert password not in caplog.text + str(refused.value) + letter.to_json().decode()
    assert (
        registry.get_sample_value(
            "fashionstream_source_state", {"camera": "rtsp-refused", "state": "failed"}
        )
        == 1.0
    )


def test_produce_video_says_wrong_credentials_in_one_line(
    rtsp: RtspServer, live_settings: Settings
) -> None:
    url = rtsp.url("tram", password="not-the-password")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fashionstream", "produce", "video", url, "--camera", "rtsp-cli"],
        env=settings_env(live_settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert took < 15.0, f"{took:.1f} s: a retry loop?"
    assert done.stderr.splitlines()[-1] == (
        f"fashionstream produce video: rtsp://127.0.0.1:{rtsp.port}/tram refused: "
        "Server returned 401 Unauthorized (authorization failed)"
    )
    assert "Traceback" not in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout


def test_a_clip_that_ends_and_starts_over_stays_one_cameras_session(
    rtsp: RtspServer, live_settings: Settings, frames: FrameTail
) -> None:
    # The server ends the RTSP session when its clip ends; connecting again plays it from the
    # start. To the pipeline that is one camera whose picture jumped: the same camera id and
    # session reference, frame numbers going on, no event id twice, no end-of-stream mark.
    camera = unique("rtsp-shops")
    live = LiveCamera(live_settings, rtsp.url("shops"), camera, max_frames=30)
    # two plays of 4.1 s and a reconnect; then stopped, so that a shortfall shows in the numbers
    wait_until(lambda: live.sent() >= 30, 20.0)
    report = live.finish(stop=True)
    sent = frames.of(camera, report.frames_sent)
    assert len(sent) == report.frames_sent
    assert_one_unbroken_session(sent, camera)
    assert report.frames_sent == 30, report.summary()
    # 41 frames at 10 fps sampled at 5: 0, 2, ... 40 (21 frames); the second play numbers on
    # from 41 and is sampled from its first frame
    first, second = connections(sent)
    assert first[0].frame_number == 0
    assert len(first) >= 19, [f.frame_number for f in first]  # the server may drop a frame
    assert (second[0].frame_number or 0) >= 39
    for run in (first, second):
        assert_sampled_throughout(run, 2)
    assert report.reconnects == 1, report.summary()
    assert live.sample("fashionstream_source_gap_seconds_count") == 1


def test_sigterm_stops_produce_video_within_the_bound_with_a_summary(
    rtsp: RtspServer, live_settings: Settings, frames: FrameTail
) -> None:
    camera = unique("rtsp-term")
    command = [sys.executable, "-m", "fashionstream", "produce", "video", rtsp.url("tram")]
    process = subprocess.Popen(
        [*command, "--camera", camera],
        env=settings_env(live_settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert len(frames.of(camera, 3)) >= 3, "produce video sent no frames"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=SHUTDOWN_BOUND_S + 30)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert took < SHUTDOWN_BOUND_S, f"stopped in {took:.1f} s"
    (summary,) = [line for line in out.splitlines() if line.startswith(f"camera {camera}:")]
    assert " frames sent of " in summary
    sent = int(summary.split(": ", 1)[1].split()[0])
    assert sent >= 3
    assert len(frames.of(camera, sent, timeout_s=5.0)) == sent
    assert "Traceback" not in err
    assert PASSWORD not in out + err
