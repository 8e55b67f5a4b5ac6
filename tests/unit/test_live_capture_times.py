"""A live frame's capture time is never after the moment it was read (producers/decoding.py):
a real clip read through `FrameReader` as a live source, with clocks that stand for a server that
bursts buffered frames at connect and for one that delivers late."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import pytest
from prometheus_client import CollectorRegistry

from fashionstream.core.metrics import Metrics
from fashionstream.core.settings import FallBehindPolicy
from producers.decoding import FrameReader, SampledFrame, VideoOptions

CLIP = Path(__file__).resolve().parents[1] / "fixtures" / "video" / "person_4s.mp4"
OPTIONS = VideoOptions(
    max_side=320,
    jpeg_quality=80,
    fps=5.0,
    fall_behind=FallBehindPolicy.DROP_OLDEST,
    reconnect_backoff_max_s=1.0,
    max_message_bytes=8 * 1024 * 1024,
)


class Clock:
    """Advances by `steps[i]` seconds on its i-th reading (each decoded frame reads it once),
    then by the last step."""

    def __init__(self, start: float, steps: list[float]) -> None:
        self.now = start
        self.steps = steps
        self.reads: list[float] = []

    def __call__(self) -> float:
        self.now += self.steps[min(len(self.reads), len(self.steps) - 1)]
        self.reads.append(self.now)
        return self.now


def read_live(clock: Callable[[], float]) -> Iterator[tuple[SampledFrame, float]]:
    """(frame, the clock's reading when it was decoded) for the clip read as a live source."""
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    with av.open(str(CLIP)) as container:
        reader = FrameReader(container, OPTIONS, None, metrics, "cam", clock=clock)
        for item in reader:
            assert isinstance(item, SampledFrame)
            yield item, clock.reads[-1]  # type: ignore[attr-defined]


def frame_interval() -> float:
    with av.open(str(CLIP)) as container:
        rate = container.streams.video[0].average_rate
        assert rate is not None
        return float(1 / rate)


def test_a_burst_at_connect_is_never_stamped_in_the_future() -> None:
    # the first 15 frames (1.5 s of video) arrive within 15 ms, as a server's buffer does;
    # then one per frame interval, as the camera films them
    interval = frame_interval()
    clock = Clock(1_800_000_000.0, [0.001] * 15 + [interval])
    frames = list(read_live(clock))
    assert len(frames) >= 10
    for sampled, arrived in frames:
        assert sampled.captured_at <= arrived + 1e-9
    times = [s.captured_at for s, _ in frames]
    assert times == sorted(times)  # capture times never run backwards
    # after the burst, frames are stamped by their presentation times
    after = [(s, a) for s, a in frames if s.frame_number >= 15]
    assert len(after) >= 3
    for (a, _), (b, _) in itertools.pairwise(after):
        assert b.captured_at - a.captured_at == pytest.approx(b.pts_s - a.pts_s, abs=1e-6)


def test_a_source_that_delivers_late_keeps_its_first_frame_anchor() -> None:
    # every decoded frame reads the clock once; 0.1 s per read is slower than the clip's rate
    clock = Clock(1_800_000_000.0, [0.1])
    frames = list(read_live(clock))
    first, first_arrival = frames[0]
    assert first.captured_at == pytest.approx(first_arrival)
    for sampled, arrived in frames:
        assert sampled.captured_at <= arrived + 1e-9
        # stamped by presentation time from the first frame, however late it came
        assert sampled.captured_at == pytest.approx(first_arrival + sampled.pts_s)
