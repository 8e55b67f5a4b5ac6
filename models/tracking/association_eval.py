"""How well a tracker links one person's detections across sampled frames, with no labels: the
reference is ByteTrack run on every frame of the recording, where a person moves a few pixels
between frames and box overlap is reliable; the tracker under test sees only the frames the
producer samples (2 a second), as the pipeline does. What `fashionstream eval association`
prints.

A *link* is a track seen in one sampled frame and next in a later one. It is right when the
reference gives both detections the same id. Where it does not, the link is a *swap* (both
detections belong to reference tracks that go on across the link: a person handed someone
else's track), a *reference break* (one of the two reference tracks begins or ends there: the
reference lost the person, so the link may well be right) or *unreferenced* (the reference does
not follow one of the two detections). Precision counts only right links, so it is a lower
bound. Recall: of the reference's links between consecutive sampled frames, the share the
tracker made too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import supervision as sv

from models.tracking.appearance import AppearanceRules, AppearanceTracker
from models.tracking.people_ids import follow, new_byte_track

Box = tuple[float, float, float, float]
Ids = list[list[int | None]]  # per frame, each detection's track id (None: not followed)


@dataclass(frozen=True)
class PeopleFrames:
    """Every frame's person detections: boxes (n, 4) xyxy and scores (n,), and capture times."""

    boxes: Sequence[np.ndarray]
    scores: Sequence[np.ndarray]
    times: Sequence[float]

    def __post_init__(self) -> None:
        if not len(self.boxes) == len(self.scores) == len(self.times):
            raise ValueError(
                f"PeopleFrames: {len(self.boxes)} boxes, {len(self.scores)} scores and "
                f"{len(self.times)} times"
            )
        for i, (b, s) in enumerate(zip(self.boxes, self.scores, strict=True)):
            if b.shape != (len(s), 4):
                raise ValueError(f"PeopleFrames: frame {i} has boxes {b.shape}, {len(s)} scores")


@dataclass(frozen=True)
class LinkScores:
    tracks: int
    links: int
    right: int
    swaps: int
    reference_breaks: int
    unreferenced: int
    reference_links: int
    reference_links_made: int

    @property
    def precision(self) -> float:
        return self.right / self.links if self.links else 0.0

    @property
    def recall(self) -> float:
        return self.reference_links_made / self.reference_links if self.reference_links else 0.0

    def to_json(self) -> dict[str, float | int]:
        return {
            "tracks": self.tracks,
            "links": self.links,
            "link_precision": round(self.precision, 3),
            "link_recall": round(self.recall, 3),
            "swaps": self.swaps,
            "reference_breaks": self.reference_breaks,
            "unreferenced": self.unreferenced,
        }


def reference_ids(people: PeopleFrames, native_fps: float, lost_s: float = 2.0) -> Ids:
    """ByteTrack over every frame, keeping a lost person `lost_s` seconds; overlap of 0.2 IoU
    suffices at the native rate (match 0.8)."""
    tracker = new_byte_track(activation=0.35, lost_frames=round(lost_s * native_fps), match=0.8)
    return [_followed(tracker, b, s) for b, s in zip(people.boxes, people.scores, strict=True)]


def bytetrack_ids(
    people: PeopleFrames, frames: Sequence[int], *, activation: float, lost: int, match: float
) -> Ids:
    """ByteTrack as the sightings tracker runs it, on the sampled frames only."""
    tracker = new_byte_track(activation=activation, lost_frames=lost, match=match)
    return [_followed(tracker, people.boxes[i], people.scores[i]) for i in frames]


def appearance_ids(
    people: PeopleFrames,
    frames: Sequence[int],
    images: Sequence[np.ndarray],
    rules: AppearanceRules | None = None,
) -> Ids:
    """The track gate's tracker on the sampled frames (`images`: those frames, RGB)."""
    tracker = AppearanceTracker(rules)
    out: Ids = []
    for i, image in zip(frames, images, strict=True):
        boxes = [_box(b) for b in people.boxes[i]]
        out.append(list(tracker.update(image, boxes, people.times[i])))
    return out


def score_links(ids: Ids, frames: Sequence[int], reference: Ids) -> LinkScores:
    """`ids[k]`: the tracker's ids in sampled frame `frames[k]`; `reference`: every frame's."""
    if len(ids) != len(frames):
        raise ValueError(f"{len(ids)} frames of ids for {len(frames)} sampled frames")
    first_seen: dict[int, int] = {}
    last_seen: dict[int, int] = {}
    for i, frame_ids in enumerate(reference):
        for r in frame_ids:
            if r is not None:
                first_seen.setdefault(r, i)
                last_seen[r] = i
    links = right = swaps = breaks = unreferenced = 0
    last: dict[int, tuple[int, int]] = {}  # track -> (frame, detection) it was last seen at
    for k, frame in enumerate(frames):
        for j, track in enumerate(ids[k]):
            if track is None:
                continue
            if track in last:
                links += 1
                was_frame, was_j = last[track]
                a, b = reference[was_frame][was_j], reference[frame][j]
                if a is None or b is None:
                    unreferenced += 1
                elif a == b:
                    right += 1
                elif first_seen[b] > was_frame or last_seen[a] < frame:
                    breaks += 1
                else:
                    swaps += 1
            last[track] = (frame, j)
    reference_links = made = 0
    for k in range(1, len(frames)):
        before = {r: j for j, r in enumerate(reference[frames[k - 1]]) if r is not None}
        for j, r in enumerate(reference[frames[k]]):
            if r is None or r not in before:
                continue
            reference_links += 1
            was = ids[k - 1][before[r]]
            made += was is not None and was == ids[k][j]
    tracks = len({t for frame_ids in ids for t in frame_ids if t is not None})
    return LinkScores(tracks, links, right, swaps, breaks, unreferenced, reference_links, made)


def _followed(tracker: sv.ByteTrack, boxes: np.ndarray, scores: np.ndarray) -> list[int | None]:
    ids = {j: t for t, j in follow(tracker, boxes.astype(np.float32), scores)}
    return [ids.get(j) for j in range(len(scores))]


def _box(values: np.ndarray) -> Box:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))
