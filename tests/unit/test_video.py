"""The video producer on a real short clip: sampling by pts, resize, capture times, event ids,
dead letters for corrupt input, and live-source reconnects / fall-behind behaviour."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

import producers.decoding as decoding
import producers.video as video
from fashionstream.core.errors import DeadLetterReason
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import DeadLetter, Frame, SourceKind, Topic, event_id_for_frame
from fashionstream.core.settings import FallBehindPolicy
from producers.decoding import (
    PtsSampler,
    VideoOptions,
    recording_start,
    redact,
    resized_dims,
    scrub_urls,
)
from producers.video import VideoProducer
from tests.support.producer import FakeFuture, FakeProducer

CLIP = Path(__file__).resolve().parents[1] / "fixtures" / "video" / "person_4s.mp4"
CLIP_START = dt.datetime(2017, 9, 26, 16, 58, 19, tzinfo=dt.UTC).timestamp()  # creation_time


def options(**changes: Any) -> VideoOptions:
    values: dict[str, Any] = {
        "max_side": 640,
        "jpeg_quality": 85,
        "fps": 2.0,
        "fall_behind": FallBehindPolicy.DROP_OLDEST,
        "reconnect_backoff_max_s": 0.05,
        "max_message_bytes": 8 * 1024 * 1024,
    }
    values.update(changes)
    return VideoOptions(**values)


def producer_for(
    fake: Any, registry: CollectorRegistry | None = None, **changes: Any
) -> VideoProducer:
    metrics = Metrics(registry or CollectorRegistry(), process_metrics=False)
    return VideoProducer(fake, metrics, options(**changes), clock=lambda: 1_800_000_000.0)


def frames_sent(fake: FakeProducer) -> list[Frame]:
    return [
        Frame.from_kafka(value, headers)
        for topic, _key, value, headers in fake.sent
        if topic == Topic.FRAMES.value
    ]


def dead_letters(fake: FakeProducer) -> list[DeadLetter]:
    return [
        DeadLetter.from_json(value)
        for topic, _key, value, _headers in fake.sent
        if topic == Topic.DEADLETTER.value
    ]


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((768, 432), 640, (640, 360)),
        ((432, 768), 640, (360, 640)),
        ((640, 480), 640, (640, 480)),
        ((320, 240), 640, (320, 240)),  # never enlarged
        ((1920, 1080), 333, (332, 186)),  # even sizes for swscale, never over max_side
    ],
)
def test_resized_dims(size: tuple[int, int], max_side: int, expected: tuple[int, int]) -> None:
    assert resized_dims(*size, max_side) == expected


@pytest.mark.parametrize(
    ("times", "fps", "kept"),
    [
        ([i / 10 for i in range(12)], 2.0, [0.0, 0.5, 1.0]),
        ([i / 10 for i in range(12)], 3.0, [0.0, 0.4, 0.7, 1.0]),
        ([i / 10 for i in range(5)], 30.0, [0.0, 0.1, 0.2, 0.3, 0.4]),  # above source rate
        ([0.0, 0.04, 1.7, 1.72, 2.6], 1.0, [0.0, 1.7, 2.6]),  # gaps and jitter
        ([5.0, 5.1, 5.5, 6.0], 2.0, [5.0, 5.5, 6.0]),  # slots start at the first frame
        ([2048 / 10240 * i for i in range(6)], 5.0, [2048 / 10240 * i for i in range(6)]),
    ],
)
def test_pts_sampler(times: list[float], fps: float, kept: list[float]) -> None:
    sampler = PtsSampler(fps)
    assert [t for t in times if sampler.keep(t)] == pytest.approx(kept)


def test_recording_start_rule() -> None:
    assert recording_start({"creation_time": "2017-09-26T16:58:19.000000Z"}) == CLIP_START
    assert recording_start({}) == 0.0  # no metadata: the Unix epoch
    assert recording_start({"creation_time": "yesterday"}) == 0.0


def test_redact_removes_credentials_and_query() -> None:
    assert redact("rtsp://admin:pw@10.0.0.5:554/stream1?token=x") == "rtsp://10.0.0.5:554/stream1"
    assert redact("/videos/a.mp4") == "/videos/a.mp4"
    error = "[Errno 5] Input/output error: 'rtsp://admin:pw@cam.local/s?token=x'"
    assert scrub_urls(error) == "[Errno 5] Input/output error: 'rtsp://cam.local/s'"


def test_file_frames_are_sampled_by_pts_resized_and_stamped() -> None:
    fake = FakeProducer()
    registry = CollectorRegistry()
    report = producer_for(fake, registry).send_file(CLIP, "cam-1")

    assert report.completed
    assert report.ok
    assert (report.frames_decoded, report.frames_sampled, report.frames_sent) == (40, 8, 8)
    frames = frames_sent(fake)
    assert [f.frame_number for f in frames] == [0, 5, 10, 15, 20, 25, 30, 35]
    assert [f.captured_at for f in frames] == pytest.approx(
        [CLIP_START + 0.5 * k for k in range(8)]
    )
    ref = f"person_4s.mp4:{CLIP.stat().st_size}"
    assert [f.event_id for f in frames] == [
        event_id_for_frame("cam-1", ref, f.frame_number or 0) for f in frames
    ]
    assert {f.source_kind for f in frames} == {SourceKind.CAMERA}
    assert {key for _t, key, _v, _h in fake.sent} == {b"cam-1"}
    first = Image.open(io.BytesIO(frames[0].jpeg))
    assert (first.format, first.size) == ("JPEG", (640, 360))
    # the person stands in the middle of the frame: the picture is not blank
    assert np.asarray(first).std() > 20
    sample = registry.get_sample_value
    assert sample("fashionstream_video_frames_decoded_total", {"camera": "cam-1"}) == 40
    assert sample("fashionstream_video_frames_sent_total", {"camera": "cam-1"}) == 8


def test_rerunning_a_file_repeats_frame_numbers_and_event_ids(tmp_path: Path) -> None:
    first, second = FakeProducer(), FakeProducer()
    producer_for(first, fps=3.0).send_file(CLIP, "cam-1")
    copy = tmp_path / "person_4s.mp4"
    shutil.copy(CLIP, copy)  # same name and size elsewhere: the same recording
    producer_for(second, fps=3.0).send_file(copy, "cam-1")
    ids = [(f.frame_number, f.event_id) for f in frames_sent(first)]
    assert ids == [(f.frame_number, f.event_id) for f in frames_sent(second)]
    assert [n for n, _ in ids] == [0, 4, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37]
    other_camera = FakeProducer()
    producer_for(other_camera, fps=3.0).send_file(CLIP, "cam-2")
    assert not {e for _, e in ids} & {f.event_id for f in frames_sent(other_camera)}


def make_clip(path: Path, frames: int = 12, rate: int = 4) -> None:
    """A small MPEG-4 clip without creation_time metadata."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(frames):
            image = np.full((120, 160, 3), (i * 20) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def test_a_file_without_creation_time_is_stamped_from_the_epoch(tmp_path: Path) -> None:
    clip = tmp_path / "plain.mp4"
    make_clip(clip)
    fake = FakeProducer()
    report = producer_for(fake, fps=1.0).send_file(clip, "cam-x")
    frames = frames_sent(fake)
    assert report.frames_sent == 3
    assert [f.captured_at for f in frames] == pytest.approx([0.0, 1.0, 2.0])
    assert [f.frame_number for f in frames] == [0, 4, 8]


def test_a_file_played_as_recorded_at_a_time_keeps_its_ids(tmp_path: Path) -> None:
    # the demo plays its clip as recorded now: capture times move, event ids do not
    clip = tmp_path / "plain.mp4"
    make_clip(clip)
    plain, shifted = FakeProducer(), FakeProducer()
    producer_for(plain, fps=1.0).send_file(clip, "cam-x")
    producer_for(shifted, fps=1.0).send_file(clip, "cam-x", recorded_at=1_750_000_000.0)
    frames = frames_sent(shifted)
    assert [f.captured_at for f in frames] == pytest.approx([1.75e9, 1.75e9 + 1, 1.75e9 + 2])
    assert [f.event_id for f in frames] == [f.event_id for f in frames_sent(plain)]


def test_not_a_video_is_dead_lettered_not_raised(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500)
    fake = FakeProducer()
    registry = CollectorRegistry()
    report = producer_for(fake, registry).send_file(bad, "cam-bad")
    assert not report.ok
    assert report.dead_letters == 1
    (letter,) = dead_letters(fake)
    assert letter.reason is DeadLetterReason.VIDEO_DECODE_ERROR
    assert (letter.stage, letter.source_id, letter.key) == ("produce", "cam-bad", "cam-bad")
    assert letter.reference is not None
    assert "bad.mp4" in letter.reference
    sample = registry.get_sample_value
    assert sample("fashionstream_video_decode_errors_total", {"camera": "cam-bad"}) == 1
    assert (
        sample(
            "fashionstream_dead_letters_total", {"reason": "video_decode_error", "stage": "produce"}
        )
        == 1
    )


def test_truncated_video_is_dead_lettered_after_sending_what_decodes(tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    data = CLIP.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    fake = FakeProducer()
    report = producer_for(fake).send_file(cut, "cam-cut")
    letters = dead_letters(fake)
    assert [d.reason for d in letters] == [DeadLetterReason.VIDEO_DECODE_ERROR]
    assert "ends early" in letters[0].detail
    assert report.decode_errors == 1
    assert not report.completed
    assert 0 < report.frames_sent < 8  # the frames before the cut still go out


def test_a_file_without_its_index_is_dead_lettered(tmp_path: Path) -> None:
    data = CLIP.read_bytes()
    start = data.index(b"moov") - 4
    size = int.from_bytes(data[start : start + 4], "big")
    broken = tmp_path / "no-index.mp4"
    broken.write_bytes(data[:start] + b"\x00" * size + data[start + size :])
    fake = FakeProducer()
    report = producer_for(fake).send_file(broken, "cam-noindex")
    assert report.frames_sent == 0
    assert [d.reason for d in dead_letters(fake)] == [DeadLetterReason.VIDEO_DECODE_ERROR]


def test_corrupt_packets_are_dead_lettered_and_the_rest_still_sent(tmp_path: Path) -> None:
    data = bytearray(CLIP.read_bytes())
    start = data.index(b"mdat") + 4000  # inside the compressed frames, past the first keyframe
    data[start : start + 6000] = bytes((i * 37) % 251 for i in range(6000))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    fake = FakeProducer()
    report = producer_for(fake).send_file(broken, "cam-broken")
    # FFmpeg conceals most damage in H.264; whatever it cannot decode is dead-lettered, and
    # decoding carries on: frames after the damage are still sent.
    assert report.frames_sent >= 6
    assert report.dead_letters == report.decode_errors
    assert all(d.reason is DeadLetterReason.VIDEO_DECODE_ERROR for d in dead_letters(fake))


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        producer_for(FakeProducer()).send_file(tmp_path / "nope.mp4", "cam")


def test_unsupported_scheme_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="ftp"):
        producer_for(FakeProducer()).send("ftp://cams.example/1.mp4", "cam")


# ---------------------------------------------------------------------------------------------
# live sources (an opener that serves the clip as if it were a camera)


class FlakyCamera:
    """Fails `failures` connects, then serves the clip; after the clip ends the connection is
    'lost' and the next connects serve it again."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.connects = 0

    def __call__(self, location: str, *, live: bool) -> Any:
        self.connects += 1
        assert live
        if self.connects <= self.failures:
            raise OSError("connection refused")
        return av.open(str(CLIP))


def test_live_source_reconnects_and_numbers_frames_across_sessions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(video, "BACKOFF_START_S", 0.01)
    fake = FakeProducer()
    camera = FlakyCamera(failures=2)
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_metrics=False)
    producer = VideoProducer(fake, metrics, options(), opener=camera)

    def deliver_continuously() -> None:
        while not producer.stop.is_set():
            fake.flush()
            time.sleep(0.01)

    acker = threading.Thread(target=deliver_continuously)
    acker.start()
    try:
        report = producer.send_live("rtsp://user:pw@cam.local/stream", "cam-live", max_frames=12)
    finally:
        producer.stop.set()
        acker.join(timeout=10)
    frames = frames_sent(fake)
    assert report.frames_sampled == 12
    assert len(frames) == 12
    # 2 refused connects + 1 clip end: 3 reconnects before the 12th frame was sampled
    assert report.reconnects == 3 == camera.connects - 1
    assert (
        registry.get_sample_value("fashionstream_source_reconnects_total", {"camera": "cam-live"})
        == 3
    )
    numbers = [f.frame_number for f in frames]
    assert numbers[:8] == [0, 5, 10, 15, 20, 25, 30, 35]
    assert numbers[8:] == [40, 45, 50, 55]  # the second session continues the count
    assert len({f.event_id for f in frames}) == 12
    assert report.source == "rtsp://cam.local/stream"  # no credentials in reports


class ScriptedCamera:
    """Answers the n-th connect with the n-th answer: an exception raised, or None for the clip
    (served as a camera would, until it ends); past the script, the clip. `on_connect` runs
    before each answer (a test's clock moves there)."""

    def __init__(
        self, *answers: BaseException | None, on_connect: Callable[[int], None] | None = None
    ) -> None:
        self.answers = list(answers)
        self.on_connect = on_connect
        self.connects = 0

    def __call__(self, location: str, *, live: bool) -> Any:
        self.connects += 1
        assert live
        if self.on_connect is not None:
            self.on_connect(self.connects)
        answer = self.answers[self.connects - 1] if self.connects <= len(self.answers) else None
        if answer is not None:
            raise answer
        return av.open(str(CLIP))


LIVE_URL = "rtsp://viewer:s3cret-pw@cam.local:8554/stream1"


def ffmpeg_error(kind: type[av.FFmpegError], errno: int, message: str) -> av.FFmpegError:
    """The error PyAV raises for `av.open(LIVE_URL)`: FFmpeg's message and the URL as given."""
    return kind(errno, message, LIVE_URL)


def refused_401() -> av.FFmpegError:
    return ffmpeg_error(
        av.error.HTTPUnauthorizedError,
        825242872,
        "Server returned 401 Unauthorized (authorization failed)",
    )


def send_live_acknowledged(producer: VideoProducer, fake: FakeProducer, **kwargs: Any) -> Any:
    """`producer.send_live(LIVE_URL, "cam-live", ...)` while a thread acknowledges what it sends."""
    done = threading.Event()

    def deliver_continuously() -> None:
        while not done.is_set():
            fake.flush()
            time.sleep(0.01)

    acker = threading.Thread(target=deliver_continuously)
    acker.start()
    try:
        return producer.send_live(LIVE_URL, "cam-live", **kwargs)
    finally:
        done.set()
        acker.join(timeout=10)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (refused_401(), DeadLetterReason.HTTP_STATUS),
        (
            ffmpeg_error(av.error.HTTPForbiddenError, 858797304, "Server returned 403 Forbidden"),
            DeadLetterReason.HTTP_STATUS,
        ),
        (
            ffmpeg_error(av.error.HTTPNotFoundError, 875574520, "Server returned 404 Not Found"),
            DeadLetterReason.HTTP_STATUS,
        ),
        (
            ffmpeg_error(av.error.ProtocolNotFoundError, 1330794744, "Protocol not found"),
            DeadLetterReason.INVALID_URL,
        ),
    ],
    ids=["401", "403", "404", "no-protocol"],
)
def test_a_live_source_that_refuses_the_session_at_start_fails_it_at_once(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: av.FFmpegError,
    reason: DeadLetterReason,
) -> None:
    monkeypatch.setattr(video, "BACKOFF_START_S", 0.01)
    fake = FakeProducer()
    registry = CollectorRegistry()
    camera = ScriptedCamera(error)
    producer = VideoProducer(
        fake, Metrics(registry, process_metrics=False), options(), opener=camera
    )
    with caplog.at_level("INFO"), pytest.raises(video.LiveSourceRefused) as refused:
        send_live_acknowledged(producer, fake, max_frames=4)
    assert camera.connects == 1  # no retry loop
    assert refused.value.reason is reason
    # FFmpeg's words, the URL without its credentials, no FFmpeg errno tag
    assert refused.value.detail == f"rtsp://cam.local:8554/stream1 refused: {error.strerror}"
    assert refused.value.report.frames_sent == 0
    (letter,) = dead_letters(fake)
    assert (letter.reason, letter.detail) == (reason, refused.value.detail)
    assert (letter.source_id, letter.reference) == ("cam-live", "rtsp://cam.local:8554/stream1")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert refused.value.detail in errors[0].getMessage()
    assert "s3cret-pw" not in caplog.text
    assert (
        registry.get_sample_value(
            "fashionstream_source_state", {"camera": "cam-live", "state": "failed"}
        )
        == 1.0
    )
    assert (
        registry.get_sample_value(
            "fashionstream_dead_letters_total", {"reason": reason.value, "stage": "produce"}
        )
        == 1.0
    )


@pytest.mark.parametrize(
    "error",
    [
        ffmpeg_error(av.error.ConnectionRefusedError, 111, "Connection refused"),
        ffmpeg_error(av.error.TimeoutError, 110, "Connection timed out"),
        ffmpeg_error(av.error.HTTPServerError, 1347703800, "Server returned 5XX Server Error"),
    ],
    ids=["refused", "timeout", "5xx"],
)
def test_a_camera_that_is_not_up_yet_is_retried_and_each_try_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, error: av.FFmpegError
) -> None:
    monkeypatch.setattr(video, "BACKOFF_START_S", 0.01)
    fake = FakeProducer()
    camera = ScriptedCamera(error, error, error)
    producer = producer_for(fake)
    producer._open = camera
    with caplog.at_level("WARNING", logger=video.log.name):
        report = send_live_acknowledged(producer, fake, max_frames=3)
    assert camera.connects == 4
    assert report.frames_sent == 3
    assert report.reconnects == 3
    tries = [r.getMessage() for r in caplog.records if "cannot open" in r.getMessage()]
    assert tries == [
        f"camera cam-live: cannot open rtsp://cam.local:8554/stream1 (attempt {k}): "
        f"{error.strerror}"
        for k in (1, 2, 3)
    ]
    assert "s3cret-pw" not in caplog.text
    assert not dead_letters(fake)


def test_a_refusal_after_frames_came_is_retried_and_the_gap_is_measured(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The clip plays (8 frames), the camera restarts: a 401 while its accounts load, then the
    # clip again. Only the reconnects move the clock: the gap is exactly what they added.
    monkeypatch.setattr(video, "BACKOFF_START_S", 0.01)
    now = [1_800_000_000.0]

    def restarting(connect: int) -> None:
        now[0] += {2: 3.0, 3: 4.5}.get(connect, 0.0)

    camera = ScriptedCamera(None, refused_401(), None, on_connect=restarting)
    fake = FakeProducer()
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_metrics=False)
    producer = VideoProducer(fake, metrics, options(), opener=camera, clock=lambda: now[0])
    with caplog.at_level("INFO", logger=video.log.name):
        report = send_live_acknowledged(producer, fake, max_frames=12)
    assert camera.connects == 3
    assert report.reconnects == 2
    frames = frames_sent(fake)
    assert [f.frame_number for f in frames] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]
    assert len({f.event_id for f in frames}) == 12
    assert len({f.stream_ref for f in frames}) == 1
    sample = registry.get_sample_value
    labels = {"camera": "cam-live"}
    assert sample("fashionstream_source_gap_seconds_count", labels) == 1
    assert sample("fashionstream_source_gap_seconds_sum", labels) == pytest.approx(7.5)
    assert sample("fashionstream_source_gap_seconds_bucket", {**labels, "le": "5.0"}) == 0
    assert sample("fashionstream_source_gap_seconds_bucket", {**labels, "le": "10.0"}) == 1
    back = [r.getMessage() for r in caplog.records if "frames again" in r.getMessage()]
    assert back == ["camera cam-live: frames again after 7.5 s (reconnect 2)"]
    assert not dead_letters(fake)


def test_produce_video_says_a_refusal_in_one_line_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fashionstream.app.cli import main

    def from_settings(_settings: Any, metrics: Metrics, *, fps: float | None = None) -> Any:
        # the command's producer, but with a camera that refuses and no broker
        return VideoProducer(
            FakeProducer(), metrics, options(), opener=ScriptedCamera(refused_401())
        )

    monkeypatch.setenv("FASHIONSTREAM_PRODUCER_METRICS_PORT", "0")
    monkeypatch.setattr(VideoProducer, "from_settings", staticmethod(from_settings))
    code = main(["produce", "video", LIVE_URL, "--camera", "cam-live"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.splitlines()[-1] == (
        "fashionstream produce video: rtsp://cam.local:8554/stream1 refused: "
        "Server returned 401 Unauthorized (authorization failed)"
    )
    assert "Traceback" not in captured.err
    assert "s3cret-pw" not in captured.err + captured.out


def test_produce_video_reads_a_source_from_the_environment_so_credentials_stay_out_of_ps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fashionstream.app.cli import main

    opened: list[str] = []

    def from_settings(_settings: Any, metrics: Metrics, *, fps: float | None = None) -> Any:
        camera = ScriptedCamera(refused_401())

        def opener(location: str, *, live: bool) -> Any:
            opened.append(location)
            return camera(location, live=live)

        return VideoProducer(FakeProducer(), metrics, options(), opener=opener)

    monkeypatch.setenv("FASHIONSTREAM_PRODUCER_METRICS_PORT", "0")
    monkeypatch.setenv("DOOR_CAMERA_URL", LIVE_URL)
    monkeypatch.setattr(VideoProducer, "from_settings", staticmethod(from_settings))
    assert main(["produce", "video", "env:DOOR_CAMERA_URL", "--camera", "cam-live"]) == 1
    assert opened == [LIVE_URL]  # the URL itself, credentials and all, reached the opener
    assert main(["produce", "video", "env:NO_SUCH_VARIABLE", "--camera", "cam-live"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "fashionstream produce video: $NO_SUCH_VARIABLE is not set"
    )


class SilentBroker(FakeProducer):
    """Never acknowledges anything: the pipeline has fallen behind."""

    def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None
    ) -> FakeFuture:
        self.sent.append((topic, key, value, headers))
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        pass


def test_live_source_drops_oldest_frames_when_the_broker_falls_behind() -> None:
    fake = SilentBroker()
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_metrics=False)
    producer = VideoProducer(fake, metrics, options(fps=10.0), opener=FlakyCamera(0))
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(
            producer.send_live("rtsp://cam.local/s", "cam-slow", max_frames=40)
        )
    )
    thread.start()
    deadline = time.monotonic() + 20
    dropped = 0.0
    while time.monotonic() < deadline:
        dropped = (
            registry.get_sample_value(
                "fashionstream_video_frames_dropped_total",
                {"camera": "cam-slow", "reason": "fall_behind"},
            )
            or 0.0
        )
        # all 40 frames read: 20 in flight, the sender holding 1, 10 buffered, 9 dropped (10
        # when the sender had not yet taken its next frame)
        if dropped >= 9:
            break
        time.sleep(0.05)
    producer.stop.set()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert dropped >= 9
    published = frames_sent(fake)
    # max_in_flight (2 s = 20 frames at 10 fps) records were handed to the silent broker; the
    # 1 s buffer kept the newest frames, dropping the oldest as newer ones came
    assert [f.frame_number for f in published] == list(range(20))
    (report,) = result
    assert report.frames_dropped["fall_behind"] + report.frames_dropped["stopped"] == 20


def test_a_recording_served_over_http_is_read_to_its_end() -> None:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(CLIP.parent))
    server = ThreadingHTTPServer(("127.0.0.2", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        fake = FakeProducer()
        url = f"http://127.0.0.2:{server.server_address[1]}/{CLIP.name}?token=secret"
        report = producer_for(fake).send(url, "cam-http")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert report.completed
    assert report.frames_sent == 8
    assert "secret" not in report.source
    assert all("secret" not in d.detail for d in dead_letters(fake))
    assert [f.frame_number for f in frames_sent(fake)] == [0, 5, 10, 15, 20, 25, 30, 35]


# --- what tracking needs of the producer: stream refs, the end mark, folders, source state


def test_every_frame_names_its_recording_and_only_the_last_is_marked_as_its_end() -> None:
    fake = FakeProducer()
    registry = CollectorRegistry()
    producer_for(fake, registry).send_file(CLIP, "cam-1")
    frames = frames_sent(fake)
    ref = f"person_4s.mp4:{CLIP.stat().st_size}"
    assert {f.stream_ref for f in frames} == {ref}
    assert [f.end_of_stream for f in frames] == [False] * 7 + [True]
    state = {
        s: registry.get_sample_value("fashionstream_source_state", {"camera": "cam-1", "state": s})
        for s in ("connecting", "streaming", "ended", "failed")
    }
    assert state == {"connecting": 0.0, "streaming": 0.0, "ended": 1.0, "failed": 0.0}


def test_read_recording_gives_exactly_the_frames_the_producer_sends() -> None:
    fake = FakeProducer()
    producer_for(fake).send_file(CLIP, "cam-1")
    offline = [
        f for f in decoding.read_recording(CLIP, options()) if isinstance(f, decoding.SampledFrame)
    ]
    sent = frames_sent(fake)
    assert [(s.frame_number, s.captured_at, s.jpeg) for s in offline] == [
        (f.frame_number, f.captured_at, f.jpeg) for f in sent
    ]


def test_a_folder_is_one_cameras_recordings_in_name_order(tmp_path: Path) -> None:
    make_clip(tmp_path / "b.mp4", frames=8)
    make_clip(tmp_path / "a.mp4", frames=4)
    (tmp_path / "notes.txt").write_text("not a video")
    fake = FakeProducer()
    report = producer_for(fake, fps=1.0).send(str(tmp_path), "cam-f")
    assert report.completed
    frames = frames_sent(fake)
    refs = [f.stream_ref or "" for f in frames]
    assert [r.split(":")[0] for r in refs] == ["a.mp4"] + ["b.mp4"] * 2
    assert [f.end_of_stream for f in frames] == [True, False, True]
    assert report.frames_sent == 3


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no video files"):
        producer_for(FakeProducer()).send(str(tmp_path), "cam-f")


def test_a_paced_replay_sends_each_frame_at_its_presentation_time() -> None:
    fake = FakeProducer()
    sent_at: list[float] = []
    original = fake.send

    def timed_send(*args: Any, **kwargs: Any) -> Any:
        if args and args[0] == Topic.FRAMES.value:
            sent_at.append(time.monotonic())
        return original(*args, **kwargs)

    fake.send = timed_send  # type: ignore[method-assign]
    started = time.monotonic()
    producer_for(fake).send_file(CLIP, "cam-1", pace=True)
    offsets = [t - started for t in sent_at]
    # frames at 0, 0.5, ... 3.5 s of the recording; a frame is held until the next decodes,
    # so each is sent at or after its time, never long after
    assert len(offsets) == 8
    for k, offset in enumerate(offsets):
        assert 0.5 * k - 0.05 <= offset <= 0.5 * k + 0.6


def test_a_replay_is_another_stream_that_follows_the_previous_one_in_time() -> None:
    first, second = FakeProducer(), FakeProducer()
    producer_for(first).send_file(CLIP, "cam-1")
    producer_for(second).send_file(CLIP, "cam-1", repeat=1)
    a, b = frames_sent(first), frames_sent(second)
    assert b[0].stream_ref == f"{a[0].stream_ref}#1"
    assert b[0].captured_at == pytest.approx(a[0].captured_at + 4.0)
    assert not {f.event_id for f in a} & {f.event_id for f in b}
