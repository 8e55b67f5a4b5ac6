"""Video decoding and sampling, without Kafka: what the producer sends and the offline paths read.

PyAV opens a recording or a live source; `FrameReader` decodes its video stream, keeps the
first frame of each 1/fps slot of presentation time (`PtsSampler`), resizes and JPEG-encodes
it (`SampledFrame`), and yields a `VideoDecodeError` for each packet that does not decode.
`read_recording` gives a recording's frames exactly as `producers.video` sends them (same frame
numbers, capture times and JPEG bytes): `fashionstream track` and `annotate` and the
benchmarks read it. Publishing to Kafka and live sessions are `producers.video`'s.

Capture time of a recording = its start time + the frame's presentation time (relative to the
stream's first timestamp). The start time is the container's `creation_time` metadata when
present; otherwise it is the Unix epoch (1970-01-01T00:00:00Z), a fixed rule that keeps re-runs
identical and cannot be mistaken for a wall-clock time.

A live frame's capture time is never after the moment it was read: the session's start is the
wall clock at its first frame, moved earlier whenever a frame arrives before start + its
presentation time says it could have been captured. RTSP servers send a burst of buffered frames
when a client connects (measured with GStreamer's server: 50 frames, 2 s of video, in 1.1 s), so
without the correction the burst's last frames were stamped up to 0.8 s in the future. With it, a
burst's frames are stamped when they arrived and the frames after it by their presentation times
from the burst's last frame; a source that delivers late keeps its anchor (a frame's delay past
it is how late the network brought it, and shows in the lag metric).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from PIL import Image

from fashionstream.core.errors import DeadLetterReason, DecodeError
from fashionstream.core.metrics import Metrics, Stage
from fashionstream.core.records import Frame, SourceKind, event_id_for_frame
from fashionstream.core.settings import FallBehindPolicy, Settings

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10.0  # connecting to a live source
READ_TIMEOUT_S = 10.0  # a live source silent this long is reconnected
MAX_CONSECUTIVE_DECODE_ERRORS = 25  # then the recording is abandoned / the session reconnected
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m4v", ".mpg", ".mpeg", ".flv")


def recording_ref(path: Path) -> str:
    """The stream reference of a recording file: its name and size (a copy elsewhere is the
    same recording; an edited file is another)."""
    return f"{path.name}:{path.stat().st_size}"


def folder_recordings(folder: Path) -> list[Path]:
    """The video files directly in `folder`, by name (the order they are sent in)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def resized_dims(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so the long side is at most `max_side`; even numbers for swscale."""
    scale = min(1.0, max_side / max(width, height))
    if scale >= 1.0:
        return width, height
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class PtsSampler:
    """Keeps the first frame of each 1/fps slot of presentation time (slot 0 starts at the
    first frame). Decoding order, frame rate changes and dropped frames cannot shift the slots,
    so the same recording always yields the same frames."""

    def __init__(self, fps: float) -> None:
        if not 0.0 < fps <= 120.0:
            raise ValueError(f"fps must be in (0, 120], got {fps}")
        self.fps = fps
        self._origin: float | None = None
        self._last_slot = -1

    def keep(self, pts_s: float) -> bool:
        if self._origin is None:
            self._origin = pts_s
        # A small epsilon keeps a frame exactly on a slot boundary (0.2 s at 5 fps, stored as
        # 2048/10240) in its own slot despite float rounding.
        slot = math.floor((pts_s - self._origin) * self.fps + 1e-6)
        if slot > self._last_slot:
            self._last_slot = slot
            return True
        return False


def recording_start(metadata: dict[str, str]) -> float:
    """Epoch seconds of a recording's first frame: `creation_time`, else the Unix epoch."""
    raw = metadata.get("creation_time")
    if raw:
        try:
            parsed = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            log.warning("ignoring unparseable creation_time %r", raw)
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
    return 0.0


def redact(location: str) -> str:
    """A source location fit for logs and dead letters: URL credentials and query removed."""
    parts = urlsplit(location)
    if not parts.scheme or parts.scheme == "file" or len(parts.scheme) == 1:
        return location
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")


def scrub_urls(text: str) -> str:
    """`text` (e.g. an FFmpeg error naming its input) with every URL redacted."""
    return _URL.sub(lambda m: redact(m.group(0)), text)


class VideoDecodeError(DecodeError):
    def __init__(self, detail: str) -> None:
        super().__init__(DeadLetterReason.VIDEO_DECODE_ERROR, detail)


@dataclass(frozen=True)
class SampledFrame:
    """One frame picked by the sampler, already resized and JPEG-encoded."""

    frame_number: int  # index of the frame among all frames decoded from the stream (0-based)
    pts_s: float  # presentation time relative to the stream's first frame
    captured_at: float
    jpeg: bytes

    def to_frame(
        self, camera: str, stream_ref: str, *, submitted_at: float, end_of_stream: bool = False
    ) -> Frame:
        """The `fashion.frames.v1` record of this frame of `camera`'s stream `stream_ref`: what
        `produce video` sends, and what `fashionstream track` tags and tracks offline."""
        return Frame(
            event_id=event_id_for_frame(camera, stream_ref, self.frame_number),
            source_kind=SourceKind.CAMERA,
            source_id=camera,
            captured_at=self.captured_at,
            submitted_at=submitted_at,
            jpeg=self.jpeg,
            frame_number=self.frame_number,
            stream_ref=stream_ref,
            end_of_stream=end_of_stream,
        )


@dataclass(frozen=True)
class VideoOptions:
    max_side: int
    jpeg_quality: int
    fps: float
    fall_behind: FallBehindPolicy
    reconnect_backoff_max_s: float
    max_message_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings, fps: float | None = None) -> VideoOptions:
        return cls(
            max_side=settings.video_max_side,
            jpeg_quality=settings.jpeg_quality,
            fps=settings.video_fps if fps is None else fps,
            fall_behind=settings.fall_behind_policy,
            reconnect_backoff_max_s=settings.reconnect_backoff_max_s,
            max_message_bytes=settings.max_message_bytes,
        )


class ContainerOpener(Protocol):
    def __call__(self, location: str, *, live: bool) -> Any: ...


def open_container(location: str, *, live: bool) -> Any:
    """PyAV `av.open` with network options for live sources."""
    import av

    options: dict[str, str] = {}
    if urlsplit(location).scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = "tcp"  # UDP loses packets across NAT and busy links
    if live:
        options["reconnect"] = "0"  # we reconnect ourselves, with backoff and a metric
    return av.open(location, mode="r", options=options, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))


class FrameReader:
    """Iterates a container's video stream: decoded, sampled, resized, JPEG-encoded frames, and
    a VideoDecodeError for each packet that fails to decode (then carries on)."""

    def __init__(
        self,
        container: Any,
        options: VideoOptions,
        start_epoch_s: float | None,
        metrics: Metrics,
        camera: str,
        *,
        first_frame_number: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._container = container
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame + slice threads: decode is the hot loop
        # One reformatter for the stream: frame.reformat() builds a new swscale context per
        # frame (measured here: 3.4 ms vs 0.7 ms per 768x432 -> 640x360 frame).
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()
        self._options = options
        self._sampler = PtsSampler(options.fps)
        self._start = start_epoch_s  # None: live, anchored on the wall clock as frames arrive
        self._live = start_epoch_s is None
        self._metrics = metrics
        self._camera = camera
        self._clock = clock
        self._first_pts: float | None = None
        self.decoded = 0
        self.frame_number = first_frame_number
        self.consecutive_errors = 0
        self.finished = False
        self.position = "start"  # where the last decode error happened, for dead letters

    def __iter__(self) -> Iterator[SampledFrame | VideoDecodeError]:
        import av

        stream = self._stream
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        frames_decoded = self._metrics.frames_decoded.labels(self._camera)
        # resize + JPEG per sampled frame (decoding itself is counted, not timed: it overlaps
        # with demuxing inside FFmpeg's threads)
        encode_s = self._metrics.stage_duration.labels(Stage.PRODUCE)
        try:
            packets = self._container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.EOFError:
                    break
                except av.FFmpegError as exc:
                    # the demuxer itself failed: nothing after this point is readable
                    self.consecutive_errors = MAX_CONSECUTIVE_DECODE_ERRORS
                    self.position = f"frame {self.frame_number}"
                    yield VideoDecodeError(f"demux failed after frame {self.frame_number}: {exc}")
                    return
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:
                    self.consecutive_errors += 1
                    pts = packet.pts * packet.time_base if packet.pts is not None else None
                    self.position = f"pts {float(pts):.3f}s" if pts is not None else "packet"
                    yield VideoDecodeError(f"packet at {self.position} does not decode: {exc}")
                    continue
                for frame in frames:
                    self.consecutive_errors = 0
                    number = self.frame_number
                    self.frame_number += 1
                    self.decoded += 1
                    frames_decoded.inc()
                    # no timestamp (the first frame of an RTSP session): count this
                    # connection's frames, not the session's (which go on across reconnects)
                    pts_s = (
                        frame.time if frame.time is not None else (self.decoded - 1) / (rate or 1.0)
                    )
                    if self._first_pts is None:
                        self._first_pts = pts_s
                    relative = pts_s - self._first_pts
                    start = self._start
                    if start is None or self._live:
                        # live: never captured after it arrived (see the module docstring)
                        arrived = self._clock()
                        if start is None or start + relative > arrived:
                            start = self._start = arrived - relative
                    if not self._sampler.keep(relative):
                        continue
                    began = time.perf_counter()
                    jpeg = self._encode(frame)
                    encode_s.observe(time.perf_counter() - began)
                    yield SampledFrame(number, relative, start + relative, jpeg)
            self.finished = True
        except av.FFmpegError as exc:  # a failure outside one packet (e.g. the decoder flush)
            self.position = f"frame {self.frame_number}"
            yield VideoDecodeError(f"decoding stopped after frame {self.frame_number}: {exc}")

    def _encode(self, frame: Any) -> bytes:
        width, height = resized_dims(frame.width, frame.height, self._options.max_side)
        # swscale resizes and converts to RGB in one pass; AREA is the right filter for
        # shrinking and is faster here than the default bicubic.
        rgb = self._reformatter.reformat(
            frame, width=width, height=height, format="rgb24", interpolation="AREA"
        )
        out = io.BytesIO()
        # to_ndarray + fromarray, not to_image(), which converts a second time
        Image.fromarray(rgb.to_ndarray()).save(out, "JPEG", quality=self._options.jpeg_quality)
        return out.getvalue()


def read_recording(path: Path, options: VideoOptions) -> Iterator[SampledFrame | VideoDecodeError]:
    """A recording's sampled frames exactly as `VideoProducer.send_file` sends them (same frame
    numbers, capture times and JPEG bytes), without Kafka: what `fashionstream track` and
    `annotate` read. Decode errors are yielded, not raised; a file that cannot be opened raises
    VideoDecodeError."""
    import av
    from prometheus_client import CollectorRegistry

    if not path.is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    try:
        container = av.open(str(path), mode="r")
    except Exception as exc:
        raise VideoDecodeError(f"cannot open {path}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"{path} has no video stream")
        start = recording_start(dict(container.metadata))
        metrics = Metrics(CollectorRegistry(), process_metrics=False)
        yield from FrameReader(container, options, start, metrics, "offline")
