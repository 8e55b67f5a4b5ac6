"""One recording tracked without Kafka: what `fashionstream track` and `fashionstream annotate
VIDEO` run.

The frames are the producer's (`producers.decoding.read_recording`: same sampling, frame numbers,
capture times, JPEG bytes and event ids as `produce video` sends), decoded like the tagging agent
decodes them, tagged in batches, turned into the tagging agent's `fashion.items.v1` record and
the tracker's input by the pipeline's own adapters (`stream_processors.adapters.tagged_image`,
`models.tracking.frame_detections`), and fed in order to the same `models.tracking.CameraTracker`
the stream processor's tracking agent runs. With the same camera id and model, the sightings
and their ids are the ones the pipeline writes to Postgres.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.tags import FrameSource, ImageTags, Tagger
from models.tracking import (
    CameraTracker,
    EndReason,
    FrameDetections,
    Sighting,
    TrackingConfig,
    TrackingResult,
    frame_detections,
)
from producers.decoding import (
    SampledFrame,
    VideoDecodeError,
    VideoOptions,
    read_recording,
    recording_ref,
)
from stream_processors.adapters import tagged_image
from stream_processors.images import decode_jpeg
from stream_processors.thumbnails import thumbnails

MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class TrackedFrame:
    """One sampled frame after tagging and tracking (what the annotator draws)."""

    sampled: SampledFrame
    event_id: str
    image: np.ndarray  # RGB, as the tagger saw it (the JPEG on the wire, decoded)
    tags: ImageTags
    detections: FrameDetections
    result: TrackingResult
    # event ids of the best views of the tracks still open after this frame (an annotator keeps
    # those frames until the tracks close and name their best frame)
    open_best: frozenset[str] = frozenset()


@dataclass
class TrackingRun:
    """What tracking one recording produced."""

    camera: str
    stream_ref: str
    model_version: str = ""
    frames: int = 0
    decode_errors: int = 0
    sightings: list[Sighting] = field(default_factory=list)
    discarded_tracks: int = 0
    people_detections: int = 0  # person detections over all frames
    seconds: dict[str, float] = field(default_factory=dict)  # decode, tag, track

    def to_json(self) -> dict[str, object]:
        return {
            "camera": self.camera,
            "stream_ref": self.stream_ref,
            "model_version": self.model_version,
            "frames": self.frames,
            "decode_errors": self.decode_errors,
            "person_detections": self.people_detections,
            "discarded_tracks": self.discarded_tracks,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "sightings": [s.to_json() for s in self.sightings],
        }


def track_recording(
    path: Path,
    tagger: Tagger,
    *,
    camera: str,
    config: TrackingConfig,
    options: VideoOptions,
    batch_size: int = 8,
    on_frame: Callable[[TrackedFrame], None] | None = None,
    keep: Callable[[SampledFrame], bool] | None = None,
) -> TrackingRun:
    """Tag and track every sampled frame of the recording at `path`; the last frame closes
    the open tracks (END_OF_STREAM), as the producer's end-of-stream mark does in the
    pipeline. Raises FileNotFoundError / producers.decoding.VideoDecodeError for a file that
    cannot be read at all; frames that fail to decode are counted and skipped. `keep`: only
    the frames it keeps are tagged and tracked (the last one always), as a worker that is behind
    a live camera skips stale frames."""
    stream_ref = recording_ref(path)
    tracker = CameraTracker(camera, config)
    run = TrackingRun(camera=camera, stream_ref=stream_ref)
    clock = {"decode": 0.0, "tag": 0.0, "track": 0.0}
    batch: list[tuple[SampledFrame, bool]] = []

    def flush() -> None:
        began = time.perf_counter()
        images = [decode_jpeg(sampled.jpeg, MAX_PIXELS) for sampled, _ in batch]
        clock["decode"] += time.perf_counter() - began
        began = time.perf_counter()
        # the tagging agent's sources: this camera's frames in capture order
        sources = [FrameSource(camera, sampled.captured_at) for sampled, _ in batch]
        tagged = tagger.tag(images, sources=sources)
        clock["tag"] += time.perf_counter() - began
        began = time.perf_counter()
        for (sampled, last), image, tags in zip(batch, images, tagged, strict=True):
            # the pipeline's path: the frame the producer would send, the tagging agent's
            # adapter to the wire record, the tracking agent's adapter to the tracker's input
            frame = sampled.to_frame(
                camera, stream_ref, submitted_at=sampled.captured_at, end_of_stream=last
            )
            event_id = frame.event_id
            # the people's crops too (about 1 ms a frame), so a sighting carries its picture
            cut = thumbnails(image, tags, whole_image=False)
            detections = frame_detections(tagged_image(frame, tags, {}, cut))
            result = tracker.update(detections)
            run.frames += 1
            run.model_version = tags.model_version
            run.people_detections += len(detections)
            run.sightings.extend(result.sightings)
            run.discarded_tracks += result.discarded
            if on_frame is not None:
                on_frame(
                    TrackedFrame(
                        sampled,
                        event_id,
                        image,
                        tags,
                        detections,
                        result,
                        frozenset(tracker.best_event_ids()),
                    )
                )
        clock["track"] += time.perf_counter() - began
        batch.clear()

    for item, last in _with_last(read_recording(path, options)):
        if isinstance(item, VideoDecodeError):
            run.decode_errors += 1
            continue
        if keep is not None and not last and not keep(item):
            continue
        batch.append((item, last))
        if len(batch) >= batch_size or last:
            flush()
    if batch:
        flush()
    if tracker.open_tracks:  # the last sampled frame failed to decode: still the end
        closed = tracker.close_all(EndReason.END_OF_STREAM)
        run.sightings.extend(closed.sightings)
        run.discarded_tracks += closed.discarded
    run.seconds = clock
    return run


def _with_last(
    items: Iterator[SampledFrame | VideoDecodeError],
) -> Iterator[tuple[SampledFrame | VideoDecodeError, bool]]:
    """Each item with whether it is the last sampled frame (decode errors are never last)."""
    held: SampledFrame | None = None
    for item in items:
        if isinstance(item, VideoDecodeError):
            yield item, False
            continue
        if held is not None:
            yield held, False
        held = item
    if held is not None:
        yield held, True
