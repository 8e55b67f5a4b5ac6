"""Per-camera tracking: ByteTrack (supervision) associates people across frames; this module turns
its tracks into sightings (one per person and track), attaches their garments over time, and
decides what a frame means for the camera's stream (new recording, duplicate, late, its end).

`CameraTracker.update(frame)` is the whole per-frame step and is all the stream processor and
`fashionstream track` call; `to_bytes`/`from_bytes` carry a camera's state across a worker
restart. Times are capture times (epoch seconds), never the wall clock, so the same recording
always gives the same sightings, however fast or slow it is processed.

Stream rules (a camera shows one recording or live session at a time):
- a frame of the current stream with a frame number at or below the last one processed is a
  duplicate (a redelivery) and is skipped -- except frame 0, which means the recording is being
  processed again from its start: the open tracks are dropped and rebuilt, identically;
- a frame of another stream closes every open track (STREAM_CHANGED) and starts that stream,
  unless that stream already ended here (then it is a late frame, skipped, unless it is frame 0);
- a frame marked `end_of_stream` closes every open track after it was tracked (END_OF_STREAM).

Track rules: a person unseen for `end_after_s` of capture time ends their sighting (LOST); a
track longer than `max_duration_s` is closed (MAX_DURATION) and goes on as a new sighting; a
track seen in fewer than `min_frames` frames is noise and never becomes a sighting.
"""

from __future__ import annotations

import collections
import enum
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import supervision as sv

from fashionstream.core.sightings import (
    BestView,
    EndReason,
    Label,
    Sighting,
    SightingFrame,
    SightingGarment,
    sighting_id,
)
from models.attributes.calibration import UNKNOWN, shipped_thresholds, stated
from models.attributes.labels import GENDER_HEAD, labels_agreeing
from models.tracking.frames import Box, FrameDetections
from models.tracking.people_ids import follow, new_byte_track
from models.tracking.votes import GarmentSlot, GarmentSlots, SlotRules

# Bump when the pickled layout changes; a state of another format is not loaded. Adding a field
# with a default (BestView.thumbnail) does not change it: a dataclass default is also a class
# attribute, so a BestView unpickled from an older state reads it as None (tested).
STATE_FORMAT = f"fashionstream.tracking/2 supervision/{sv.__version__}"


class TrackerStateError(ValueError):
    """Saved tracker state that cannot be loaded (another format, or not a state at all)."""


class SkipReason(enum.StrEnum):
    DUPLICATE = "duplicate"  # this stream's frame number was processed already
    LATE = "late"  # a frame of a stream that already ended on this camera


class TrackingSettings(Protocol):
    """What `TrackingConfig.from_settings` reads (fashionstream.core.settings.Settings has it)."""

    @property
    def video_fps(self) -> float: ...
    @property
    def track_end_after_s(self) -> float: ...
    @property
    def track_max_duration_s(self) -> float: ...
    @property
    def track_min_frames(self) -> int: ...
    @property
    def track_person_min_score(self) -> float: ...
    @property
    def weights_dir(self) -> Path: ...


@dataclass(frozen=True)
class TrackingConfig:
    """Tracking parameters. ByteTrack counts frames; these are in seconds of capture time and
    converted with `fps`, the rate the sources sample at.

    ByteTrack's defaults assume 30 fps, where a person moves a few pixels between frames. At 2
    fps a walking person's box moves by a large part of its width, so a match needs less
    overlap (`match_threshold` is ByteTrack's largest accepted 1 - IoU x score); values chosen
    by measurement on the clips (see models/tracking/README.md).
    """

    fps: float = 2.0
    end_after_s: float = 3.0
    max_duration_s: float = 300.0
    min_frames: int = 2
    # A person detection below this score keeps its ByteTrack track alive (ByteTrack's second,
    # low-score association) but is not a sighting of the person: it neither starts a sighting
    # nor extends one. The detector trained here scored a bare table 0.5-0.67 as a person, so
    # this was 0.7; the imported YOLOX-Nano scores nothing in the empty store above 0.05 and
    # people in crowds 0.3-0.9, so it is the person threshold (models/tracking/README.md).
    person_min_score: float = 0.35
    # ByteTrack starts tracks from detections above this (+ 0.1): at 0.5 the tram stop's
    # people scoring 0.35-0.6 never started one (14 sightings of about 20; 0.35: 18)
    activation_threshold: float = 0.35
    match_threshold: float = 0.9
    slots: SlotRules = field(default_factory=SlotRules)
    ended_streams_kept: int = 16
    # head -> calibrated threshold (the attribute classifier's, weights/attributes.md): a voted
    # attribute whose mean probability is under it is stated as unknown, as a frame's is
    attribute_thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if not self.end_after_s > 0:
            raise ValueError(f"end_after_s must be > 0, got {self.end_after_s}")
        if not self.max_duration_s > self.end_after_s:
            raise ValueError("max_duration_s must be longer than end_after_s")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be >= 1, got {self.min_frames}")
        if not 0.0 <= self.person_min_score <= 1.0:
            raise ValueError(f"person_min_score must be in [0, 1], got {self.person_min_score}")

    @classmethod
    def from_settings(cls, settings: TrackingSettings) -> TrackingConfig:
        return cls(
            fps=settings.video_fps,
            end_after_s=settings.track_end_after_s,
            max_duration_s=settings.track_max_duration_s,
            min_frames=settings.track_min_frames,
            person_min_score=settings.track_person_min_score,
            attribute_thresholds=shipped_thresholds(settings.weights_dir),
        )

    @property
    def lost_track_frames(self) -> int:
        """Frames ByteTrack keeps a lost track for re-association: a little over
        `end_after_s`, so that the capture-time rule here, not ByteTrack, ends sightings."""
        return math.ceil(self.end_after_s * self.fps * 1.5) + 2


@dataclass
class TrackingResult:
    """What one `update` (or `close_all`) produced."""

    sightings: list[Sighting] = field(default_factory=list)  # closed: write them
    frames: list[SightingFrame] = field(default_factory=list)  # links of qualified tracks
    discarded: int = 0  # tracks closed before they had `min_frames` frames
    skipped: SkipReason | None = None
    # person index in this frame -> (ByteTrack id, sighting id) of every person tracked in it
    assigned: dict[int, tuple[int, str]] = field(default_factory=dict)

    def extend(self, other: TrackingResult) -> None:
        self.sightings.extend(other.sightings)
        self.frames.extend(other.frames)
        self.discarded += other.discarded


@dataclass
class _Track:
    """One sighting in progress: a ByteTrack track from its first frame (or its last split)."""

    sighting_id: str
    tracker_id: int
    first_frame: int
    first_seen: float
    last_frame: int
    last_seen: float
    garments: GarmentSlots
    frames: int = 0
    score_sum: float = 0.0
    score_max: float = 0.0
    box_sum: np.ndarray = field(default_factory=lambda: np.zeros(4))
    best: BestView | None = None
    best_key: float = -1.0
    pending: list[SightingFrame] = field(default_factory=list)
    qualified: bool = False

    def observe(
        self, frame: FrameDetections, person_index: int, min_frames: int
    ) -> list[SightingFrame]:
        """Add the frame; returns the links to write now (none before the track qualifies,
        then the held ones at once)."""
        box_array = frame.person_boxes[person_index].astype(np.float64)
        box: Box = (
            float(box_array[0]),
            float(box_array[1]),
            float(box_array[2]),
            float(box_array[3]),
        )
        score = float(frame.person_scores[person_index])
        worn = frame.garments_of(person_index)
        self.frames += 1
        self.score_sum += score
        self.score_max = max(self.score_max, score)
        self.box_sum += box_array
        self.last_frame = frame.frame_number
        self.last_seen = frame.captured_at
        key = _view_quality(box, score, frame.width, frame.height)
        if key > self.best_key:
            self.best_key = key
            self.best = BestView(
                frame.event_id,
                frame.frame_number,
                person_index,
                score,
                box,
                frame.thumbnail_of(person_index),
            )
        self.garments.observe(worn, box, frame.event_id, frame.frame_number)
        link = SightingFrame(
            sighting_id=self.sighting_id,
            event_id=frame.event_id,
            model_version=frame.model_version,
            frame_number=frame.frame_number,
            captured_at=frame.captured_at,
            person_index=person_index,
            score=score,
            box=box,
            garment_indexes=tuple(g.index for g in worn),
        )
        if self.qualified:
            return [link]
        self.pending.append(link)
        if self.frames >= min_frames:
            self.qualified = True
            ready, self.pending = self.pending, []
            return ready
        return []

    def sighting(
        self,
        camera: str,
        stream_ref: str,
        model_version: str,
        stream_started_at: float,
        reason: EndReason,
        thresholds: Mapping[str, float],
    ) -> Sighting | None:
        if not self.qualified or self.best is None:
            return None
        mean = self.box_sum / self.frames
        return Sighting(
            sighting_id=self.sighting_id,
            camera=camera,
            stream_ref=stream_ref,
            model_version=model_version,
            stream_started_at=stream_started_at,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            first_frame=self.first_frame,
            last_frame=self.last_frame,
            frames=self.frames,
            score_mean=self.score_sum / self.frames,
            score_max=self.score_max,
            mean_box=(float(mean[0]), float(mean[1]), float(mean[2]), float(mean[3])),
            best=self.best,
            garments=tuple(_garments(self.garments, self.frames, thresholds)),
            end_reason=reason,
            tracker_id=self.tracker_id,
        )


class CameraTracker:
    """Tracking state of one camera; see the module docstring. Not thread-safe: one caller."""

    def __init__(self, camera: str, config: TrackingConfig) -> None:
        if not camera:
            raise ValueError("camera must not be empty")
        self.camera = camera
        self.config = config
        self.stream_ref: str | None = None
        self.model_version: str | None = None
        self.stream_started_at = 0.0
        self.last_frame = -1
        self.last_captured_at: float | None = None
        self.ended: collections.deque[str] = collections.deque(maxlen=config.ended_streams_kept)
        self._byte_track = self._new_byte_track()
        self._tracks: dict[int, _Track] = {}

    # ------------------------------------------------------------------ state

    @property
    def open_tracks(self) -> int:
        return len(self._tracks)

    def tracker_ids(self) -> dict[str, int]:
        """sighting id -> ByteTrack id of the open tracks (for drawing)."""
        return {t.sighting_id: tid for tid, t in self._tracks.items()}

    def best_event_ids(self) -> set[str]:
        """Event ids of the frames with the best view of each open track (so far): the frames
        an annotator must keep until the tracks close."""
        return {t.best.event_id for t in self._tracks.values() if t.best is not None}

    def to_bytes(self) -> bytes:
        """The whole state (ByteTrack's Kalman filters and ids included), pickled."""
        return pickle.dumps((STATE_FORMAT, self), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes, config: TrackingConfig) -> CameraTracker:
        """A state written by `to_bytes`, now under `config` (the time rules may have changed
        since; ByteTrack keeps the parameters it was built with). Only load bytes this project
        wrote: pickle runs code. Raises TrackerStateError for anything else."""
        try:
            loaded = pickle.loads(data)  # noqa: S301 - our own table's bytes, see above
        except Exception as exc:  # pickle raises many types for garbage
            raise TrackerStateError(f"not a tracker state: {exc!r}") from None
        if not (isinstance(loaded, tuple) and len(loaded) == 2 and loaded[0] == STATE_FORMAT):
            found = loaded[0] if isinstance(loaded, tuple) and loaded else type(loaded).__name__
            raise TrackerStateError(f"tracker state format {found!r}, expected {STATE_FORMAT!r}")
        tracker = loaded[1]
        if not isinstance(tracker, cls):
            raise TrackerStateError(f"tracker state holds a {type(tracker).__name__}")
        tracker.config = config
        return tracker

    # ------------------------------------------------------------------ frames

    def update(self, frame: FrameDetections) -> TrackingResult:
        """Track one frame; returns the sightings it closed and the links to write."""
        result = TrackingResult()
        skip = self._admit(frame, result)
        if skip is not None:
            result.skipped = skip
            return result
        self.last_frame = frame.frame_number
        self.last_captured_at = frame.captured_at
        now = frame.captured_at
        seen: set[int] = set()
        for tracker_id, person_index in self._associate(frame):
            if frame.person_scores[person_index] < self.config.person_min_score:
                continue  # keeps ByteTrack's track alive; not a sighting of anyone
            track = self._tracks.get(tracker_id)
            if track is not None:
                if now - track.last_seen > self.config.end_after_s:
                    self._close(tracker_id, EndReason.LOST, result)
                    track = None
                elif now - track.first_seen >= self.config.max_duration_s:
                    self._close(tracker_id, EndReason.MAX_DURATION, result)
                    track = None
            if track is None:
                track = self._open(tracker_id, frame, person_index)
            result.frames.extend(track.observe(frame, person_index, self.config.min_frames))
            result.assigned[person_index] = (tracker_id, track.sighting_id)
            seen.add(tracker_id)
        for tracker_id in sorted(self._tracks):
            if tracker_id in seen:
                continue
            if now - self._tracks[tracker_id].last_seen > self.config.end_after_s:
                self._close(tracker_id, EndReason.LOST, result)
        if frame.end_of_stream:
            result.extend(self.close_all(EndReason.END_OF_STREAM))
            self._end_stream()
        return result

    def close_all(self, reason: EndReason) -> TrackingResult:
        """Close every open track now (end of stream, stream change, idle camera)."""
        result = TrackingResult()
        for tracker_id in sorted(self._tracks):
            self._close(tracker_id, reason, result)
        return result

    # ------------------------------------------------------------------ internals

    def _admit(self, frame: FrameDetections, result: TrackingResult) -> SkipReason | None:
        """Apply the stream rules (module docstring); None when the frame is to be tracked."""
        if frame.stream_ref == self.stream_ref:
            if frame.frame_number <= self.last_frame:
                if frame.frame_number != 0:
                    return SkipReason.DUPLICATE
                # processed again from its start: drop what is open, it is rebuilt identically
                self._restart(frame)
                return None
            if frame.model_version != self.model_version:
                result.extend(self.close_all(EndReason.STREAM_CHANGED))
                self._byte_track = self._new_byte_track()
                self.model_version = frame.model_version
            return None
        if frame.stream_ref in self.ended and frame.frame_number != 0:
            return SkipReason.LATE
        if self.stream_ref is not None:
            result.extend(self.close_all(EndReason.STREAM_CHANGED))
            if self.stream_ref not in self.ended:
                self.ended.append(self.stream_ref)
        self._restart(frame)
        return None

    def _restart(self, frame: FrameDetections) -> None:
        self._tracks.clear()
        self._byte_track = self._new_byte_track()
        if frame.stream_ref in self.ended:
            self.ended.remove(frame.stream_ref)
        self.stream_ref = frame.stream_ref
        self.model_version = frame.model_version
        self.stream_started_at = frame.captured_at
        self.last_frame = -1

    def _end_stream(self) -> None:
        if self.stream_ref is not None and self.stream_ref not in self.ended:
            self.ended.append(self.stream_ref)
        self._byte_track = self._new_byte_track()

    def _new_byte_track(self) -> sv.ByteTrack:
        return new_byte_track(
            activation=self.config.activation_threshold,
            lost_frames=self.config.lost_track_frames,
            match=self.config.match_threshold,
        )

    def _associate(self, frame: FrameDetections) -> list[tuple[int, int]]:
        """(ByteTrack id, person index) for every person ByteTrack follows in this frame
        (models.tracking.people_ids.follow)."""
        return follow(self._byte_track, frame.person_boxes, frame.person_scores)

    def _open(self, tracker_id: int, frame: FrameDetections, person_index: int) -> _Track:
        stream_ref = self.stream_ref or frame.stream_ref
        track = _Track(
            sighting_id=sighting_id(
                self.camera, stream_ref, frame.model_version, frame.frame_number, person_index
            ),
            tracker_id=tracker_id,
            first_frame=frame.frame_number,
            first_seen=frame.captured_at,
            last_frame=frame.frame_number,
            last_seen=frame.captured_at,
            garments=GarmentSlots(self.config.slots),
        )
        self._tracks[tracker_id] = track
        return track

    def _close(self, tracker_id: int, reason: EndReason, result: TrackingResult) -> None:
        track = self._tracks.pop(tracker_id)
        done = track.sighting(
            self.camera,
            self.stream_ref or "",
            self.model_version or "",
            self.stream_started_at,
            reason,
            self.config.attribute_thresholds,
        )
        if done is None:
            result.discarded += 1
        else:
            result.sightings.append(done)


def _view_quality(box: Box, score: float, width: int, height: int) -> float:
    """How good a crop of this person is: confident, large, and not cut by the frame edge."""
    x1, y1, x2, y2 = box
    area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    margin = 2.0
    cut = x1 <= margin or y1 <= margin or x2 >= width - margin or y2 >= height - margin
    return score * math.sqrt(area) * (0.5 if cut else 1.0)


def _stated_gender(slot: GarmentSlot, thresholds: Mapping[str, float]) -> str | None:
    """The garment's voted gender (its wearer's: the tagger gives each of a person's garments
    the person's gender), None when there is no vote or it is under its threshold."""
    vote = slot.attributes.get(GENDER_HEAD)
    won = None if vote is None else vote.winner()
    if won is None:
        return None
    label = stated(won[0], won[1], thresholds.get(GENDER_HEAD, 0.0))
    return None if label == UNKNOWN else label


def _garments(
    slots: GarmentSlots, person_frames: int, thresholds: Mapping[str, float]
) -> list[SightingGarment]:
    out = []
    for category, slot in slots.kept(person_frames):
        colour = slot.colour.winner()
        style = slot.style.winner()
        if colour is None or style is None:
            continue
        weight = max(slot.category.weight, 1e-9)
        rgb = slot.colour_rgb_sum / weight
        gender = _stated_gender(slot, thresholds)
        out.append(
            SightingGarment(
                category=category,
                category_share=slot.category.share(category),
                frames=slot.frames,
                score_mean=slot.score_sum / slot.detections,
                # as the tagger states a frame's garment: among the labels that agree with
                # the category it was voted and with its wearer's voted gender
                attributes={
                    head: Label(stated(won[0], won[1], thresholds.get(head, 0.0)), won[1])
                    for head, vote in sorted(slot.attributes.items())
                    if (won := vote.winner(labels_agreeing(category, head, gender))) is not None
                },
                colour=Label(*colour),
                colour_rgb=(
                    round(min(255.0, float(rgb[0]))),
                    round(min(255.0, float(rgb[1]))),
                    round(min(255.0, float(rgb[2]))),
                ),
                style=Label(*style),
                best_event_id=slot.best_event_id,
                best_garment_index=slot.best_garment_index,
            )
        )
    return out
