"""`fashionstream annotate VIDEO`: a recording tracked like `fashionstream track` does, every
sampled frame drawn (masks, boxes, track ids, labels) into a video at the sampling rate, and each
sighting's best frame written as a PNG key frame."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from fashionstream.app.video_tracking import TrackedFrame, TrackingRun, track_recording
from fashionstream.core.settings import Settings
from models.tags import Tagger
from models.tracking import Sighting, TrackingConfig
from producers.decoding import VideoOptions

TRACK_COLOUR = (255, 220, 0)  # the best-view box of a key frame's sighting


def person_labels(frame: TrackedFrame) -> list[str]:
    """The text beside each person: the track id when the person is part of a sighting in the
    making, else the detector's score (a detection too weak or too brief to be tracked)."""
    labels = []
    for index, person in enumerate(frame.tags.people):
        assigned = frame.result.assigned.get(index)
        if assigned is None:
            labels.append(f"untracked {person.score:.2f}")
        else:
            labels.append(f"track {assigned[0]} {person.score:.2f}")
    return labels


class _VideoWriter:
    """H.264 at the sampling rate; opened on the first frame (its size fixes the video's)."""

    def __init__(self, out: Path, fps: float) -> None:
        self._out = out
        self._rate = Fraction(fps).limit_denominator(1000)
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] = (0, 0)
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        import av

        if self._container is None:
            height, width = image.shape[:2]
            self._size = (width - width % 2, height - height % 2)  # yuv420p needs even sides
            self._out.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self._out), "w")
            self._stream = self._container.add_stream("libx264", rate=self._rate)
            self._stream.width, self._stream.height = self._size
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "23"}
        width, height = self._size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), "rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None


def _key_frame(drawn: np.ndarray, sighting: Sighting) -> np.ndarray:
    import cv2

    x1, y1, x2, y2 = (round(v) for v in sighting.best.box)
    image = drawn.copy()
    cv2.rectangle(image, (x1, y1), (x2, y2), TRACK_COLOUR, 3)
    return image


def annotate_recording(
    settings: Settings,
    video: Path,
    out: Path,
    *,
    camera: str,
    tagger: Tagger,
    key_frames: Path | None = None,
) -> dict[str, Any]:
    """Track `video` with `tagger`, write the annotated video to `out` and, with `key_frames`,
    one PNG per sighting (its best frame, the person boxed). Returns the `track --json` report
    plus where the pictures went. Raises what `track_recording` raises."""
    import cv2

    from models.drawing import draw_tags, legend

    writer = _VideoWriter(out, settings.video_fps)
    kept: dict[str, np.ndarray] = {}  # event id -> drawn frame, while it may be a best view
    written: list[str] = []
    if key_frames is not None:
        key_frames.mkdir(parents=True, exist_ok=True)

    def on_frame(frame: TrackedFrame) -> None:
        drawn = draw_tags(frame.image, frame.tags, person_labels=person_labels(frame))
        drawn = np.concatenate([drawn, legend(drawn.shape[1])], axis=0)
        writer.write(drawn)
        if key_frames is None:
            return
        kept[frame.event_id] = drawn
        for sighting in frame.result.sightings:
            save_key_frame(sighting)
        for event_id in list(kept):
            if event_id not in frame.open_best:
                del kept[event_id]

    def save_key_frame(sighting: Sighting) -> None:
        if key_frames is None or sighting.best.event_id not in kept:
            return
        start = sighting.first_seen - sighting.stream_started_at
        path = key_frames / f"{camera}-{start:07.1f}s-track{sighting.tracker_id}.png"
        image = _key_frame(kept[sighting.best.event_id], sighting)
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
        written.append(str(path))

    try:
        run: TrackingRun = track_recording(
            video,
            tagger,
            camera=camera,
            config=TrackingConfig.from_settings(settings),
            options=VideoOptions.from_settings(settings),
            batch_size=settings.batch_size,
            on_frame=on_frame,
        )
    finally:
        writer.close()
    report = run.to_json()
    report.update(
        {
            "out": str(out),
            "video_frames": writer.frames,
            "key_frames": written,
            "key_frames_dir": str(key_frames) if key_frames is not None else None,
        }
    )
    return report
