"""Sightings, the tracker's output records: one `Sighting` per tracked person (with the garments
voted over the track), and one `SightingFrame` per frame the person was seen in (the link to the
per-frame people and garments). The tracker (models/tracking) produces them and the sightings
sink (sinks/sightings.py) writes them, so they live in the foundation both may import. They never
travel on Kafka, so they are plain frozen data, not a versioned wire record. Identities are
derived from the data, never from a tracker's counters, so processing the same video again gives
the same ids.
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

# x1, y1, x2, y2 in pixels of the frame
Box = tuple[float, float, float, float]

_NAMESPACE = uuid.UUID("0b3c51e6-7f0e-4d4f-8a55-6a1c9d5e2f10")


class EndReason(enum.StrEnum):
    """Why a sighting was closed."""

    LOST = "lost"  # the person was not seen for `track_end_after_s` of capture time
    MAX_DURATION = "max_duration"  # reached `track_max_duration_s`; goes on as a new sighting
    END_OF_STREAM = "end_of_stream"  # the recording's last frame
    STREAM_CHANGED = "stream_changed"  # the camera started another recording or session
    IDLE = "idle"  # no frame of the camera arrived for `track_idle_flush_s` of wall-clock time


def sighting_id(
    camera: str, stream_ref: str, model_version: str, first_frame: int, person_index: int
) -> str:
    """The sighting's stable id: the camera, its stream, the model, and the person's place in
    the frame the track starts with (a detection is in exactly one track)."""
    key = f"sighting\0{camera}\0{stream_ref}\0{model_version}\0{first_frame}\0{person_index}"
    return str(uuid.uuid5(_NAMESPACE, key))


@dataclass(frozen=True)
class Label:
    label: str
    prob: float  # the winner's confidence-weighted mean probability over the frames

    def __post_init__(self) -> None:
        if not self.label or not (math.isfinite(self.prob) and 0.0 <= self.prob <= 1.0):
            raise ValueError(f"Label needs a label and a prob in [0, 1], got {self!r}")


@dataclass(frozen=True)
class SightingGarment:
    """One garment a sighted person wore: the votes of every frame it was seen in."""

    category: str
    category_share: float  # share of the detector's confidence that voted for `category`
    frames: int  # frames the garment was seen in
    score_mean: float  # mean detector score over those frames
    attributes: Mapping[str, Label]  # head -> voted label, e.g. "articleType" -> Jackets 0.71
    colour: Label  # the measured colour name, voted
    colour_rgb: tuple[int, int, int]  # confidence-weighted mean of the measured colours
    style: Label
    best_event_id: str  # the frame where the detector was surest of it
    best_garment_index: int  # its index in that frame (garments.garment_index)

    def __post_init__(self) -> None:
        if self.frames <= 0 or not self.category:
            raise ValueError(f"SightingGarment needs a category and frames > 0: {self!r}")


@dataclass(frozen=True)
class BestView:
    """The frame with the best view of the person: the reference to their best crop."""

    event_id: str
    frame_number: int
    person_index: int
    score: float
    box: Box
    # a small JPEG crop of the person in that frame (None when the tagger cut none)
    thumbnail: bytes | None = None


@dataclass(frozen=True)
class Sighting:
    """One person seen by one camera from `first_seen` to `last_seen` (epoch capture seconds)."""

    sighting_id: str
    camera: str
    stream_ref: str
    model_version: str
    stream_started_at: float  # capture time of the stream's first frame (offsets in reports)
    first_seen: float
    last_seen: float
    first_frame: int
    last_frame: int
    frames: int  # frames the person was seen in
    score_mean: float
    score_max: float
    mean_box: Box
    best: BestView
    garments: tuple[SightingGarment, ...]
    end_reason: EndReason
    tracker_id: int  # ByteTrack's id for the track in this process (for drawing, not identity)

    def __post_init__(self) -> None:
        if self.last_seen < self.first_seen or self.last_frame < self.first_frame:
            raise ValueError(f"Sighting {self.sighting_id}: ends before it starts")
        if self.frames <= 0:
            raise ValueError(f"Sighting {self.sighting_id}: frames must be > 0")

    @property
    def duration_s(self) -> float:
        return self.last_seen - self.first_seen

    def to_json(self) -> dict[str, object]:
        """The `fashionstream track --json` form: times in seconds from the stream's start."""
        return {
            "sighting_id": self.sighting_id,
            "camera": self.camera,
            "tracker_id": self.tracker_id,
            "first_seen_s": round(self.first_seen - self.stream_started_at, 3),
            "last_seen_s": round(self.last_seen - self.stream_started_at, 3),
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "frames": self.frames,
            "score_mean": round(self.score_mean, 3),
            "best": {
                "event_id": self.best.event_id,
                "frame_number": self.best.frame_number,
                "person_index": self.best.person_index,
                "score": round(self.best.score, 3),
                "box": [round(v, 1) for v in self.best.box],
            },
            "end_reason": self.end_reason.value,
            "garments": [
                {
                    "category": g.category,
                    "category_share": round(g.category_share, 3),
                    "frames": g.frames,
                    "score_mean": round(g.score_mean, 3),
                    "attributes": {
                        head: {"label": a.label, "prob": round(a.prob, 3)}
                        for head, a in sorted(g.attributes.items())
                    },
                    "colour": {"name": g.colour.label, "share": round(g.colour.prob, 3)},
                    "colour_rgb": list(g.colour_rgb),
                    "style": {"label": g.style.label, "prob": round(g.style.prob, 3)},
                }
                for g in self.garments
            ],
        }


@dataclass(frozen=True)
class SightingFrame:
    """One frame a tracked person was seen in: links the sighting to the per-frame person
    (`people` row: event id + person index) and the garments they wore in it."""

    sighting_id: str
    event_id: str
    model_version: str
    frame_number: int
    captured_at: float
    person_index: int
    score: float
    box: Box
    garment_indexes: tuple[int, ...]
