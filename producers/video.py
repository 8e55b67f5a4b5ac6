"""Video sources -> `fashion.frames.v1`: publishing sampled frames to Kafka, and live sessions.

The frames come from `producers.decoding` (PyAV decode, sampling by presentation time, resize,
JPEG); this module sends them. A file is a recording: it is read to its end, never drops a
frame, and its frames get the same frame numbers, capture times and event ids on every run. An
rtsp://, rtmp:// or a live http(s):// source is a session: it reconnects with exponential
backoff (the gap in its frames is a metric), and when the broker cannot keep up it applies
`fall_behind_policy`; a source that refuses it for good at the start (401, 403, 404) fails it
with `LiveSourceRefused`. Corrupt input is dead-lettered as VIDEO_DECODE_ERROR.

A folder is a sequence of recordings from one camera: its video files, by name. Every frame
carries its stream reference (the recording or the live session), and a recording's last frame
is marked `end_of_stream`, so that the tracker closes the people still in view when the
recording ends instead of waiting for frames that will never come. `pace=True` replays a
recording at its own speed, standing in for a live camera in benchmarks. Each source reports
its state (`source_state`: connecting, streaming, reconnecting, ended, stopped, failed).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fashionstream.core.errors import DeadLetterReason, PipelineError
from fashionstream.core.metrics import Metrics, SourceState, Stage
from fashionstream.core.records import LIVE_STREAM_PREFIX, DeadLetter, Topic
from fashionstream.core.settings import FallBehindPolicy, Settings
from producers.decoding import (
    MAX_CONSECUTIVE_DECODE_ERRORS,
    OPEN_TIMEOUT_S,
    READ_TIMEOUT_S,
    VIDEO_SUFFIXES,
    ContainerOpener,
    FrameReader,
    SampledFrame,
    VideoDecodeError,
    VideoOptions,
    folder_recordings,
    open_container,
    recording_ref,
    recording_start,
    redact,
    scrub_urls,
)
from producers.kafka import Deliveries, RecordProducer, build_producer

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "srt")
HTTP_SCHEMES = ("http", "https")
FLUSH_TIMEOUT_S = 60.0
BACKOFF_START_S = 0.5


class LiveSourceRefused(PipelineError):
    """A live source answered the session's connection with a refusal that retrying cannot
    change (wrong credentials, no such stream, a protocol this FFmpeg cannot read): someone
    has to fix the URL or the camera's accounts. `detail` names the URL without credentials."""

    def __init__(self, reason: DeadLetterReason, detail: str, report: VideoReport) -> None:
        super().__init__(reason, detail)
        self.report = report


def refusal_reason(exc: BaseException) -> DeadLetterReason | None:
    """The dead-letter reason when opening a live source failed for good, else None (refused
    connections, timeouts, resets: a camera that is booting or briefly away)."""
    import av.error

    # RTSP answers with HTTP's status codes, and FFmpeg maps them to the same errors
    if isinstance(
        exc,
        av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError | av.error.HTTPNotFoundError,
    ):
        return DeadLetterReason.HTTP_STATUS
    if isinstance(exc, av.error.ProtocolNotFoundError):  # e.g. srt:// in a build without libsrt
        return DeadLetterReason.INVALID_URL
    return None


def describe_open_error(exc: BaseException) -> str:
    """FFmpeg's words for why a source did not open, without the URL it repeats (credentials
    and all) or its errno (an FFmpeg tag such as 825242872, not a system error number)."""
    strerror = getattr(exc, "strerror", None)
    return scrub_urls(strerror if isinstance(strerror, str) and strerror else str(exc))


@dataclass
class VideoReport:
    camera: str
    source: str
    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_sent: int = 0  # acknowledged by the broker
    frames_dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    decode_errors: int = 0
    dead_letters: int = 0
    reconnects: int = 0
    delivery_failures: int = 0
    completed: bool = False  # a recording read to its end (always False for live sessions)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def drop(self, reason: str) -> None:
        with self._lock:  # the decode thread and the sending thread both drop frames
            self.frames_dropped[reason] += 1

    @property
    def ok(self) -> bool:
        return self.frames_sent > 0

    def summary(self) -> str:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.frames_dropped.items())) or "none"
        return (
            f"camera {self.camera}: {self.frames_sent} frames sent of {self.frames_sampled} "
            f"sampled ({self.frames_decoded} decoded); dropped: {dropped}; decode errors: "
            f"{self.decode_errors}; dead letters: {self.dead_letters}; reconnects: "
            f"{self.reconnects}; delivery failures: {self.delivery_failures}"
        )


class VideoProducer:
    """Sends one video source's sampled frames to Kafka. Build with `from_settings`."""

    def __init__(
        self,
        producer: RecordProducer,
        metrics: Metrics,
        options: VideoOptions,
        *,
        opener: ContainerOpener = open_container,
        clock: Callable[[], float] = time.time,
        stop: threading.Event | None = None,
    ) -> None:
        self._producer = producer
        self._metrics = metrics
        self._options = options
        self._open = opener
        self._clock = clock
        self.stop = stop or threading.Event()
        self._deliveries = Deliveries()

    @classmethod
    def from_settings(
        cls, settings: Settings, metrics: Metrics, *, fps: float | None = None
    ) -> VideoProducer:
        producer = build_producer(settings, client_id="fashionstream-video")
        return cls(producer, metrics, VideoOptions.from_settings(settings, fps))

    def close(self) -> None:
        self._producer.close(timeout=FLUSH_TIMEOUT_S)

    # ------------------------------------------------------------------ public entry points

    def send(self, source: str, camera: str, *, progress: bool = False) -> VideoReport:
        """A file path, or an rtsp:// / rtmp:// / http(s):// URL. Returns once a recording is
        read to its end, or a live session is stopped (`self.stop.set()`)."""
        scheme = urlsplit(source).scheme.lower()
        if scheme in LIVE_SCHEMES:
            return self.send_live(source, camera)
        if scheme in HTTP_SCHEMES:
            return self._send_http(source, camera, progress=progress)
        if scheme not in ("", "file") and len(scheme) != 1:  # a drive letter is not a scheme
            raise ValueError(f"unsupported video source scheme {scheme!r} in {redact(source)}")
        path = Path(urlsplit(source).path if scheme == "file" else source)
        if path.is_dir():
            return self.send_folder(path, camera, progress=progress)
        return self.send_file(path, camera, progress=progress)

    def send_file(
        self,
        path: Path,
        camera: str,
        *,
        progress: bool = False,
        pace: bool = False,
        repeat: int = 0,
        recorded_at: float | None = None,
    ) -> VideoReport:
        """Every sampled frame of a recording; frame numbers and event ids repeat on re-runs.

        `recorded_at`: epoch seconds of the first frame, for a recording whose metadata has no
        `creation_time` (otherwise it starts at the Unix epoch); the ids do not depend on it.

        `pace`: send each frame when its presentation time comes (a recording standing in for
        a live camera). `repeat` > 0: the k-th replay of the same file in one run (benchmarks):
        another stream (its reference gets `#k`) whose capture times follow the previous
        replay's. Raises FileNotFoundError for a missing file; a file that is not a decodable
        video is dead-lettered (VIDEO_DECODE_ERROR) and reported, not raised."""
        if not path.is_file():
            raise FileNotFoundError(f"no such video file: {path}")
        stream_ref = recording_ref(path) + (f"#{repeat}" if repeat else "")
        return self._send_recording(
            str(path),
            camera,
            stream_ref,
            progress,
            pace=pace,
            repeat=repeat,
            recorded_at=recorded_at,
        )

    def send_folder(self, folder: Path, camera: str, *, progress: bool = False) -> VideoReport:
        """Every recording in `folder` (by name), one after another, as one camera's streams.
        Returns one report adding up the files'; `completed` when every file was."""
        files = folder_recordings(folder)
        if not files:
            raise FileNotFoundError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) in {folder}")
        total = VideoReport(camera=camera, source=str(folder), completed=True)
        for path in files:
            if self.stop.is_set():
                total.completed = False
                break
            one = self.send_file(path, camera, progress=progress)
            total.frames_decoded += one.frames_decoded
            total.frames_sampled += one.frames_sampled
            total.frames_sent += one.frames_sent
            total.frames_dropped.update(one.frames_dropped)
            total.decode_errors += one.decode_errors
            total.dead_letters += one.dead_letters
            total.delivery_failures += one.delivery_failures
            total.completed = total.completed and one.completed
        return total

    def send_live(self, url: str, camera: str, *, max_frames: int | None = None) -> VideoReport:
        """Read a live source until `self.stop` is set (or `max_frames` are sampled),
        reconnecting with exponential backoff up to `reconnect_backoff_max_s`.

        Raises LiveSourceRefused when the source refuses the session for good before its first
        frame (401, 403, 404, an unknown protocol); the refusal is dead-lettered first."""
        report = VideoReport(camera=camera, source=redact(url))
        session = _LiveSession(self, url, camera, report, max_frames)
        try:
            session.run()
        finally:
            self._finish(report)
        return report

    # ------------------------------------------------------------------ recordings

    def _send_http(self, url: str, camera: str, *, progress: bool) -> VideoReport:
        # An http(s) URL is a recording when it has a duration (a file served over HTTP), else a
        # live stream (MJPEG, MPEG-TS over HTTP, an HLS live playlist).
        try:
            container = self._open(url, live=True)
        except Exception as exc:  # PyAV raises FFmpegError/OSError subclasses; all mean "cannot"
            report = VideoReport(camera=camera, source=redact(url))
            self._dead_letter(report, camera, redact(url), f"cannot open {redact(url)}: {exc}")
            self._finish(report)
            return report
        duration = container.duration
        container.close()
        if duration is None:
            return self.send_live(url, camera)
        return self._send_recording(url, camera, f"{redact(url)}:{duration}", progress)

    def _send_recording(
        self,
        location: str,
        camera: str,
        stream_ref: str,
        progress: bool,
        *,
        pace: bool = False,
        repeat: int = 0,
        recorded_at: float | None = None,
    ) -> VideoReport:
        report = VideoReport(camera=camera, source=redact(location))
        reference = redact(location)
        self._metrics.set_source_state(camera, SourceState.CONNECTING)
        try:
            container = self._open(location, live=False)
        except Exception as exc:
            self._dead_letter(report, camera, reference, f"cannot open {reference}: {exc}")
            self._metrics.set_source_state(camera, SourceState.FAILED)
            self._finish(report)
            return report
        bar = None
        try:
            if not container.streams.video:
                self._dead_letter(report, camera, reference, f"{reference} has no video stream")
                self._metrics.set_source_state(camera, SourceState.FAILED)
                return report
            self._metrics.set_source_state(camera, SourceState.STREAMING)
            start = recording_start(dict(container.metadata))
            if recorded_at is not None:
                start = recorded_at
            if repeat:  # the k-th replay follows the previous one in capture time
                start += repeat * (container.duration / 1e6 if container.duration else 0.0)
            paced = (time.monotonic(), self._clock()) if pace else None
            if progress:
                from tqdm import tqdm

                duration = container.duration / 1e6 if container.duration else None
                bar = tqdm(total=duration, unit="s", desc=f"{camera}", leave=True)
            reader = FrameReader(container, self._options, start, self._metrics, camera)
            last_pts = 0.0
            # One frame is held back until the next decodes, so that the recording's last
            # frame can be sent marked as its end.
            held: SampledFrame | None = None
            for item in reader:
                if self.stop.is_set():
                    break
                if isinstance(item, VideoDecodeError):
                    self._dead_letter(report, camera, f"{reference}#{reader.position}", item.detail)
                    if reader.consecutive_errors >= MAX_CONSECUTIVE_DECODE_ERRORS:
                        break
                    continue
                report.frames_sampled += 1
                if held is not None:
                    self._send_held(held, camera, stream_ref, report, reference, paced)
                held = item
                if bar is not None:
                    bar.update(max(0.0, item.pts_s - last_pts))
                    bar.set_postfix(frames=report.frames_sampled, refresh=False)
                    last_pts = max(last_pts, item.pts_s)
            report.frames_decoded = reader.decoded
            report.completed = reader.finished and not self.stop.is_set()
            listed = int(container.streams.video[0].frames or 0)  # 0: the format does not say
            if report.completed and listed and reader.decoded < listed:
                # A cut-off file demuxes to a clean end; only its index knows frames are missing.
                report.completed = False
                self._dead_letter(
                    report,
                    camera,
                    f"{reference}#{reader.frame_number}",
                    f"recording ends early: {reader.decoded} of the {listed} frames its index"
                    " lists decoded (a truncated file?)",
                )
            if held is not None:  # nothing more will come of this recording
                self._send_held(
                    held, camera, stream_ref, report, reference, paced, end_of_stream=True
                )
            stopped = self.stop.is_set() and not report.completed
            self._metrics.set_source_state(
                camera, SourceState.STOPPED if stopped else SourceState.ENDED
            )
        finally:
            container.close()
            if bar is not None:
                bar.close()
            self._finish(report)
        return report

    def _send_held(
        self,
        sampled: SampledFrame,
        camera: str,
        stream_ref: str,
        report: VideoReport,
        reference: str,
        paced: tuple[float, float] | None,
        *,
        end_of_stream: bool = False,
    ) -> None:
        """Publish a recording's frame; when `paced` (monotonic and wall clock at the start),
        not before its presentation time has come."""
        happened_at = None
        if paced is not None:
            monotonic_start, wall_start = paced
            delay = monotonic_start + sampled.pts_s - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            happened_at = wall_start + sampled.pts_s
        self._publish(
            sampled,
            camera,
            stream_ref,
            report,
            reference,
            end_of_stream=end_of_stream,
            happened_at=happened_at,
        )

    # ------------------------------------------------------------------ shared

    def _publish(
        self,
        sampled: SampledFrame,
        camera: str,
        stream_ref: str,
        report: VideoReport,
        reference: str,
        *,
        end_of_stream: bool = False,
        happened_at: float | None = None,
    ) -> None:
        """Send one frame. `happened_at`: the wall-clock time the frame shows (a live capture,
        or a paced replay's schedule); the camera's lag is measured from it. A recording sent
        as fast as it decodes has no such time, and no lag."""
        if len(sampled.jpeg) > self._options.max_message_bytes:
            report.drop(DeadLetterReason.OVERSIZE_MESSAGE.value)
            self._metrics.frames_dropped.labels(camera, DeadLetterReason.OVERSIZE_MESSAGE).inc()
            self._dead_letter(
                report,
                camera,
                f"{reference}#{sampled.frame_number}",
                f"frame {sampled.frame_number} is {len(sampled.jpeg)} bytes as JPEG, over "
                f"max_message_bytes={self._options.max_message_bytes}",
                reason=DeadLetterReason.OVERSIZE_MESSAGE,
            )
            return
        frame = sampled.to_frame(
            camera, stream_ref, submitted_at=self._clock(), end_of_stream=end_of_stream
        )
        size = len(sampled.jpeg)
        metrics = self._metrics

        def delivered() -> None:
            report.frames_sent += 1
            metrics.frames_sent.labels(camera).inc()
            metrics.messages_out.labels(Topic.FRAMES).inc()
            metrics.message_bytes_out.labels(Topic.FRAMES).inc(size)
            if happened_at is not None:
                metrics.source_lag.labels(camera).set(max(0.0, self._clock() - happened_at))

        def failed(_exc: BaseException) -> None:
            report.delivery_failures += 1
            metrics.frames_dropped.labels(camera, "delivery_failed").inc()

        key, value, headers = frame.to_kafka()
        future = self._producer.send(Topic.FRAMES.value, value=value, key=key, headers=headers)
        self._deliveries.track(future, delivered, failed)

    def _dead_letter(
        self,
        report: VideoReport,
        camera: str,
        reference: str,
        detail: str,
        reason: DeadLetterReason = DeadLetterReason.VIDEO_DECODE_ERROR,
    ) -> None:
        detail = scrub_urls(detail)  # FFmpeg's messages repeat the URL, credentials and all
        log.error("camera %s: %s: %s", camera, reason.value, detail)
        if reason is DeadLetterReason.VIDEO_DECODE_ERROR:
            report.decode_errors += 1
            self._metrics.video_decode_errors.labels(camera).inc()
        self._metrics.dead_letters.labels(reason, Stage.PRODUCE).inc()
        letter = DeadLetter(
            reason=reason,
            detail=detail,
            stage=Stage.PRODUCE.value,
            failed_at=self._clock(),
            source_id=camera,
            reference=reference,
            key=camera,
        )
        key, value = letter.to_kafka()
        future = self._producer.send(Topic.DEADLETTER.value, value=value, key=key)

        def delivered() -> None:
            report.dead_letters += 1
            self._metrics.messages_out.labels(Topic.DEADLETTER).inc()

        self._deliveries.track(future, delivered)

    def _finish(self, report: VideoReport) -> None:
        """Wait until the broker acknowledged or refused every record sent so far."""
        self._deliveries.wait(self._producer, FLUSH_TIMEOUT_S)
        log.info("%s", report.summary())


class _LiveSession:
    """One live source: reconnect loop + a bounded hand-off between decoding and sending.

    A reader thread decodes and encodes into a buffer; this thread sends. With `drop_oldest`
    the buffer is a ring that discards its oldest frame when full (the pipeline wants "now"),
    and sending pauses while too many records await the broker's acknowledgement; with `block`
    the reader waits, and the source's own buffer drops frames.

    Frame numbers go on across reconnects and the stream reference stays the session's, so
    event ids never repeat. When frames come again after a loss, the wall-clock gap since the
    last frame before it is observed in `source_gap`.
    """

    def __init__(
        self,
        owner: VideoProducer,
        url: str,
        camera: str,
        report: VideoReport,
        max_frames: int | None,
    ) -> None:
        self.owner = owner
        self.url = url
        self.camera = camera
        self.report = report
        self.max_frames = max_frames
        self.session_ref = f"{LIVE_STREAM_PREFIX}{redact(url)}@{owner._clock():.6f}"
        fps = owner._options.fps
        self.buffer: collections.deque[SampledFrame] = collections.deque()
        self.depth = max(4, math.ceil(fps))  # ~1 s of frames waiting to be sent
        self.max_in_flight = max(4, math.ceil(2 * fps))  # ~2 s of frames awaiting the broker
        self.cond = threading.Condition()
        self.reader_done = False
        self.published = 0  # frames handed to the Kafka producer by this session
        # wall clock of the last frame read from the source (None: none yet); written by the
        # decode thread of the current connection only
        self.last_frame_at: float | None = None

    def run(self) -> None:
        owner = self.owner
        backoff = BACKOFF_START_S
        frame_number = 0
        first = True
        state = owner._metrics.set_source_state
        attempts = 0
        while not owner.stop.is_set() and not self._enough():
            if not first:
                self.report.reconnects += 1
                owner._metrics.reconnects.labels(self.camera).inc()
                state(self.camera, SourceState.RECONNECTING)
                log.info("camera %s: reconnecting in %.1fs", self.camera, backoff)
                if owner.stop.wait(backoff):
                    break
            else:
                state(self.camera, SourceState.CONNECTING)
            first = False
            attempts += 1
            try:
                container = owner._open(self.url, live=True)
            except Exception as exc:
                self._refused(exc)
                log.warning(
                    "camera %s: cannot open %s (attempt %d): %s",
                    self.camera,
                    redact(self.url),
                    attempts,
                    describe_open_error(exc),
                )
                backoff = min(backoff * 2, owner._options.reconnect_backoff_max_s)
                continue
            state(self.camera, SourceState.STREAMING)
            try:
                produced, frame_number = self._read(container, frame_number)
            finally:
                container.close()
            backoff = (
                BACKOFF_START_S
                if produced
                else min(backoff * 2, owner._options.reconnect_backoff_max_s)
            )
        state(self.camera, SourceState.STOPPED)

    def _refused(self, exc: BaseException) -> None:
        """Fail the session when the source refuses it for good before its first frame:
        dead letter, state FAILED, LiveSourceRefused. Refused connections and timeouts are not
        refusals (a camera that is booting), and neither is a 401 or 404 once frames have come:
        the same URL and credentials just worked, so the likelier cause is a camera or media
        server restarting (it answers 404 until its streams are registered again, 401 until
        its accounts are loaded); the session keeps retrying with backoff and logs each try.
        Before the first frame a refusal counts even after refused connections: the camera has
        booted and answered, and it will answer the same."""
        reason = None if self.last_frame_at is not None else refusal_reason(exc)
        if reason is None:
            return
        owner = self.owner
        detail = f"{redact(self.url)} refused: {describe_open_error(exc)}"
        owner._metrics.set_source_state(self.camera, SourceState.FAILED)
        owner._dead_letter(self.report, self.camera, redact(self.url), detail, reason=reason)
        raise LiveSourceRefused(reason, detail, self.report) from exc

    def _enough(self) -> bool:
        return self.max_frames is not None and self.report.frames_sampled >= self.max_frames

    def _read(self, container: Any, frame_number: int) -> tuple[bool, int]:
        owner = self.owner
        reader = FrameReader(
            container,
            owner._options,
            None,
            owner._metrics,
            self.camera,
            first_frame_number=frame_number,
            clock=owner._clock,
        )
        self.reader_done = False
        produced = False
        thread = threading.Thread(
            target=self._decode_into_buffer, args=(reader,), name=f"decode-{self.camera}"
        )
        thread.start()
        try:
            while True:
                with self.cond:
                    while not self.buffer and not self.reader_done:
                        self.cond.wait(0.5)
                    if not self.buffer and self.reader_done:
                        break
                    sampled = self.buffer.popleft()
                    self.cond.notify_all()
                if not self._wait_for_room():
                    self._drop_buffered(sampled)
                    break
                owner._publish(
                    sampled,
                    self.camera,
                    self.session_ref,
                    self.report,
                    redact(self.url),
                    happened_at=sampled.captured_at,  # live: capture time is the wall clock
                )
                self.published += 1
                produced = True
        finally:
            with self.cond:
                self.reader_done = True
                self.cond.notify_all()
            thread.join(timeout=READ_TIMEOUT_S + OPEN_TIMEOUT_S)
            self.report.frames_decoded += reader.decoded
        return produced, reader.frame_number

    def _decode_into_buffer(self, reader: FrameReader) -> None:
        owner = self.owner
        policy = owner._options.fall_behind
        first = True
        try:
            for item in reader:
                if owner.stop.is_set() or self._enough():
                    break
                with self.cond:
                    if self.reader_done:  # the sender gave up on this connection
                        break
                if isinstance(item, VideoDecodeError):
                    owner._dead_letter(
                        self.report, self.camera, f"{redact(self.url)}#{reader.position}",
                        item.detail,
                    )  # fmt: skip
                    if reader.consecutive_errors >= MAX_CONSECUTIVE_DECODE_ERRORS:
                        break
                    continue
                self._frame_read(first_of_connection=first)
                first = False
                self.report.frames_sampled += 1
                with self.cond:
                    if policy is FallBehindPolicy.BLOCK:
                        while len(self.buffer) >= self.depth and not owner.stop.is_set():
                            self.cond.wait(0.5)
                    elif len(self.buffer) >= self.depth:
                        self.buffer.popleft()
                        self.report.drop("fall_behind")
                        owner._metrics.frames_dropped.labels(self.camera, "fall_behind").inc()
                    self.buffer.append(item)
                    self.cond.notify_all()
        except Exception:
            log.exception("camera %s: reader failed", self.camera)
        finally:
            with self.cond:
                self.reader_done = True
                self.cond.notify_all()

    def _frame_read(self, first_of_connection: bool) -> None:
        """Note the wall clock of a frame read; the first of a connection after frames were
        lost is the source's return: its gap is observed and logged. The reader yields sampled
        frames only, so the gap can overstate the source's silence by one sampling interval."""
        now = self.owner._clock()
        if first_of_connection and self.last_frame_at is not None:
            gap = max(0.0, now - self.last_frame_at)
            self.owner._metrics.source_gap.labels(self.camera).observe(gap)
            log.info(
                "camera %s: frames again after %.1f s (reconnect %d)",
                self.camera,
                gap,
                self.report.reconnects,
            )
        self.last_frame_at = now

    def _wait_for_room(self) -> bool:
        """Hold the next send while too many records await acknowledgement (the broker is
        behind); meanwhile the reader keeps the buffer fresh according to the policy. False
        when the session is stopped while waiting."""
        report = self.report
        while not self.owner.stop.is_set():
            in_flight = self.published - report.frames_sent - report.delivery_failures
            if in_flight < self.max_in_flight:
                return True
            time.sleep(0.01)
        return False

    def _drop_buffered(self, current: SampledFrame) -> None:
        """Stopping: frames not yet handed to Kafka are dropped (and counted), not sent late."""
        with self.cond:
            left = 1 + len(self.buffer)
            self.buffer.clear()
            self.cond.notify_all()
        for _ in range(left):
            self.report.drop("stopped")
        self.owner._metrics.frames_dropped.labels(self.camera, "stopped").inc(left)


def produce_video(
    settings: Settings,
    source: str | Path,
    camera: str,
    *,
    fps: float | None = None,
    metrics: Metrics | None = None,
    recorded_at: float | None = None,
) -> VideoReport:
    """Send a video file's (or stream's) sampled frames and wait for the broker.

    For the demo and benchmarks: builds a producer, sends, flushes, closes. `report.frames_sent`
    counts frames the broker acknowledged. `recorded_at`: see `VideoProducer.send_file`. A live
    source runs until `fashionstream` is stopped, so pass files here.
    """
    from prometheus_client import CollectorRegistry

    producer = VideoProducer.from_settings(
        settings, metrics or Metrics(CollectorRegistry(), process_metrics=False), fps=fps
    )
    try:
        if recorded_at is not None:  # a file played as if recorded then (the demo: now)
            return producer.send_file(Path(source), camera, recorded_at=recorded_at)
        return producer.send(str(source), camera)
    finally:
        producer.close()
