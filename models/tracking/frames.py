"""What the tracker takes: one camera frame's people and garments, validated on construction.

`FrameDetections` is the one container between a tagger's output and the tracker, and
`frame_detections` the one adapter that builds it, from a tagged camera frame (`TaggedImage`, the
`fashion.items.v1` record). The tracking agent reads that record from Kafka; `fashionstream track`
makes it from the tagger's answer with the tagging agent's own adapter; so both run exactly the
same tracking code on the same input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fashionstream.core.records import TaggedImage
from fashionstream.core.sightings import Box

UNKNOWN_STREAM = "unknown-stream"  # frames from producers that do not name their stream


@dataclass(frozen=True)
class GarmentSeen:
    """One garment in one frame, as the tracker votes on it.

    `probabilities`: head -> label -> probability (every label the classifier scores; a head the
    tagger only gave a top label for holds that one label). `index` is the garment's position
    in the frame (the `garments.garment_index` of the per-frame row).
    """

    index: int
    category: str
    score: float
    box: Box
    person_index: int | None
    probabilities: Mapping[str, Mapping[str, float]]
    colour: str
    colour_rgb: tuple[int, int, int]
    colour_share: float
    style: str
    style_prob: float

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"GarmentSeen.index must be >= 0, got {self.index}")
        if not self.category:
            raise ValueError("GarmentSeen.category must not be empty")
        _probability("GarmentSeen.score", self.score)
        _probability("GarmentSeen.colour_share", self.colour_share)
        _probability("GarmentSeen.style_prob", self.style_prob)
        _box("GarmentSeen.box", self.box)
        for head, labels in self.probabilities.items():
            for label, prob in labels.items():
                _probability(f"GarmentSeen.probabilities[{head}][{label}]", prob)


@dataclass(frozen=True)
class FrameDetections:
    """One camera frame: where it sits in its stream, and the people and garments in it.

    `person_boxes` (n, 4) float32 xyxy pixels; `person_scores` (n,) float32 in [0, 1];
    `garments[i].person_index` indexes those people (or is None). `stream_ref` names the
    recording or live session the frame belongs to; `frame_number` counts frames decoded from it
    (0 = its first frame); `captured_at` is epoch seconds; `end_of_stream` marks the last frame
    a recording will ever send. `person_thumbnails` (empty, or one per person) are the
    people's small JPEG crops cut at tagging time; a track keeps the one of its best view.
    """

    event_id: str
    stream_ref: str
    frame_number: int
    captured_at: float
    width: int
    height: int
    model_version: str
    person_boxes: np.ndarray
    person_scores: np.ndarray
    garments: tuple[GarmentSeen, ...] = ()
    end_of_stream: bool = False
    person_thumbnails: tuple[bytes | None, ...] = ()

    def __post_init__(self) -> None:
        if self.person_thumbnails and len(self.person_thumbnails) != len(self.person_scores):
            raise ValueError(
                f"FrameDetections.person_thumbnails: expected 0 or {len(self.person_scores)}, "
                f"got {len(self.person_thumbnails)}"
            )
        n = len(self.person_scores)
        if self.person_boxes.shape != (n, 4):
            raise ValueError(
                f"FrameDetections.person_boxes: expected shape ({n}, 4), "
                f"got {self.person_boxes.shape}"
            )
        if self.person_scores.shape != (n,):
            raise ValueError(
                f"FrameDetections.person_scores: expected shape ({n},), "
                f"got {self.person_scores.shape}"
            )
        if not np.all(np.isfinite(self.person_boxes)) or not np.all(
            np.isfinite(self.person_scores)
        ):
            raise ValueError("FrameDetections: person boxes and scores must be finite")
        if n and (self.person_scores.min() < 0.0 or self.person_scores.max() > 1.0 + 1e-6):
            raise ValueError("FrameDetections.person_scores must be in [0, 1]")
        if n and np.any(self.person_boxes[:, 2:] < self.person_boxes[:, :2]):
            raise ValueError("FrameDetections.person_boxes: x2 < x1 or y2 < y1")
        if not self.event_id or not self.stream_ref or not self.model_version:
            raise ValueError("FrameDetections needs an event id, a stream ref and a model version")
        if self.frame_number < 0:
            raise ValueError(f"FrameDetections.frame_number must be >= 0, got {self.frame_number}")
        if not math.isfinite(self.captured_at):
            raise ValueError("FrameDetections.captured_at must be finite")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"FrameDetections: image size {self.width}x{self.height}")
        for g in self.garments:
            if g.person_index is not None and not 0 <= g.person_index < n:
                raise ValueError(f"garment {g.index} is worn by person {g.person_index} of {n}")

    def __len__(self) -> int:
        return len(self.person_scores)

    def thumbnail_of(self, person_index: int) -> bytes | None:
        return self.person_thumbnails[person_index] if self.person_thumbnails else None

    def garments_of(self, person_index: int) -> list[GarmentSeen]:
        return [g for g in self.garments if g.person_index == person_index]


def person_arrays(boxes: list[Box], scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) float32 boxes and (n,) float32 scores from lists (empty-safe)."""
    return (
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32).reshape(-1),
    )


def frame_detections(record: TaggedImage) -> FrameDetections:
    """The one adapter from a tagged camera frame (the `fashion.items.v1` record) to the
    tracker's input; the tracking agent and `fashionstream track` both call it.

    People: `record.people[j]` box (x1, y1, x2, y2 pixels) and score -> row j of
    `person_boxes` / `person_scores`; garments keep their wire index (garments.garment_index),
    category, score, box, wearer (`person_index`), every head's label probabilities (a head with
    only a top label contributes that label), the measured colour and the style. A record that
    names no stream is tracked as `UNKNOWN_STREAM`. Raises ValueError when the record cannot be
    a tracker input (a camera frame without a number, an inverted box, a probability outside
    [0, 1])."""
    if record.frame_number is None:
        raise ValueError("a camera frame without a frame number")
    boxes, scores = person_arrays([p.box for p in record.people], [p.score for p in record.people])
    garments = []
    for g in record.garments:
        probabilities: dict[str, Mapping[str, float]] = {
            head: dict(labels) for head, labels in g.probabilities.items()
        }
        for head, top in g.attributes.items():
            probabilities.setdefault(head, {top.label: top.prob})
        garments.append(
            GarmentSeen(
                index=g.index,
                category=g.category,
                score=g.score,
                box=g.box,
                person_index=g.person_index,
                probabilities=probabilities,
                colour=g.colour.name,
                colour_rgb=g.colour.rgb,
                colour_share=g.colour.share,
                style=g.style.label,
                style_prob=g.style.prob,
            )
        )
    return FrameDetections(
        event_id=record.event_id,
        stream_ref=record.stream_ref or UNKNOWN_STREAM,
        frame_number=record.frame_number,
        captured_at=record.captured_at,
        width=record.width,
        height=record.height,
        model_version=record.model_version,
        person_boxes=boxes,
        person_scores=scores,
        garments=tuple(garments),
        end_of_stream=record.end_of_stream,
        person_thumbnails=tuple(p.thumbnail for p in record.people)
        if any(p.thumbnail is not None for p in record.people)
        else (),
    )


def _probability(name: str, value: float) -> None:
    if not (math.isfinite(value) and -1e-6 <= value <= 1.0 + 1e-6):
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _box(name: str, box: Box) -> None:
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ValueError(f"{name} must be 4 finite numbers, got {box}")
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"{name} is inverted: {box}")
