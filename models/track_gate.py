"""Garments once per tracked person, not once per person per frame: the tracker's ids gate the
garment network, as NVIDIA DeepStream's do its secondary models. Each camera's people are
followed with ByteTrack (models.tracking.people_ids); a track's garments are inferred when it is
first seen, then again only from a crop clearly better than its best so far (larger, less
covered by other people, less cut by the frame's edge, or sharper) and at most once every
`min_interval_s` of capture time. In its other frames the track carries the garments of its
best crop: their labels, colour, style and embedding as they were, their boxes and masks moved
and scaled with the person's box.

People are followed by `models.tracking.appearance` (where they should be and how they look),
not by the sightings tracker's ByteTrack: at 2 frames/s box overlap loses walkers, and each lost
walker is a new track whose garments are inferred again (tram stop, 31 frames: 58 tracks with
this, 101 with ByteTrack; `fashionstream eval association`, models/tracking/README.md).

The plan is made before inference, frame by frame in capture order, so a whole batch of one
camera's frames is planned at once (tracking moves ahead of the garment stage); `resolve` then
walks the same frames in the same order once the inferred garments are known.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from models.tags import FrameSource, GarmentTags, RleMask
from models.tracking.appearance import AppearanceRules, AppearanceTracker

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class GateRules:
    min_interval_s: float = 2.0  # a track's garments are inferred at most this often
    better_by: float = 1.25  # a crop is clearly better: quality at least this times the best
    sharper_by: float = 2.0  # or this much sharper (Laplacian variance) at 0.9 of the quality
    # how people are followed between frames
    association: AppearanceRules = dataclasses.field(default_factory=AppearanceRules)
    idle_camera_s: float = 600.0  # a camera with no frame for this long is forgotten

    def __post_init__(self) -> None:
        if self.min_interval_s < 0 or self.better_by < 1 or self.sharper_by < 1:
            raise ValueError(f"GateRules: bad rule values {self}")


@dataclass(frozen=True)
class Plan:
    """One person of one frame: `track` (None: the person takes the whole-image path, inferred
    in every frame and not kept), and whether their garments are inferred in this frame or
    carried."""

    track: int | None
    infer: bool


@dataclass
class _Track:
    best_quality: float = 0.0
    best_sharpness: float = 0.0
    last_inferred_at: float = -np.inf
    # the garments of its best crop, their masks' shapes and the person box they were found in
    garments: tuple[GarmentTags, ...] | None = None
    shapes: tuple[np.ndarray, ...] = ()
    box: Box = (0.0, 0.0, 1.0, 1.0)


@dataclass
class GateStats:
    """Counts since the gate was built: people seen, of them inferred and carried, tracks."""

    people: int = 0
    inferred: int = 0
    carried: int = 0
    tracks: int = 0


class CameraGate:
    """One camera's tracks and their garments. One caller at a time."""

    def __init__(self, rules: GateRules, stats: GateStats | None = None) -> None:
        self.rules = rules
        self._people = AppearanceTracker(rules.association)
        self._tracks: dict[int, _Track] = {}
        self.last_captured_at = -np.inf
        self.last_used = time.monotonic()
        self.stats = GateStats() if stats is None else stats

    def plan(self, image: np.ndarray, boxes: Sequence[Box], captured_at: float) -> list[Plan]:
        """Each person's plan in this frame (see the module docstring)."""
        self.last_used = time.monotonic()
        if captured_at < self.last_captured_at:  # the stream restarted: old tracks mean nothing
            self._people = AppearanceTracker(self.rules.association)
            self._tracks.clear()
        self.last_captured_at = captured_at
        ids = self._people.update(image, boxes, captured_at)
        # the tracker forgets a track unseen for `lost_s`; so does the gate
        for gone in set(self._tracks) - self._people.track_ids:
            del self._tracks[gone]
        plans = []
        for j, (box, track_id) in enumerate(zip(boxes, ids, strict=True)):
            self.stats.people += 1
            if track_id not in self._tracks:
                self._tracks[track_id] = _Track()
                self.stats.tracks += 1
            track = self._tracks[track_id]
            quality = crop_quality(box, [b for k, b in enumerate(boxes) if k != j], image.shape)
            sharpness = crop_sharpness(image, box)
            first = track.last_inferred_at == -np.inf
            better = quality >= self.rules.better_by * track.best_quality or (
                sharpness >= self.rules.sharper_by * track.best_sharpness
                and quality >= 0.9 * track.best_quality
            )
            due = captured_at - track.last_inferred_at >= self.rules.min_interval_s
            infer = first or (better and due)
            if infer:
                track.best_quality, track.best_sharpness = quality, sharpness
                track.last_inferred_at = captured_at
                self.stats.inferred += 1
            else:
                self.stats.carried += 1
            plans.append(Plan(track_id, infer))
        return plans

    def resolve(
        self,
        plans: Sequence[Plan],
        boxes: Sequence[Box],
        garments: Sequence[GarmentTags],
        frame_shape: tuple[int, int],
    ) -> list[GarmentTags]:
        """One frame's garments: those inferred in it (`garments`, by `person_index`), kept as
        their tracks' best, and those its other people carry, moved onto their boxes."""
        out = list(garments)
        for j, plan in enumerate(plans):
            if plan.track is None or plan.track not in self._tracks:
                continue
            track = self._tracks[plan.track]
            if plan.infer:
                track.garments = tuple(g for g in garments if g.person_index == j)
                track.shapes = tuple(shape_of(g) for g in track.garments)
                track.box = boxes[j]
            elif track.garments is not None:
                out.extend(
                    carry_shape(g, shape, track.box, boxes[j], j, frame_shape)
                    for g, shape in zip(track.garments, track.shapes, strict=True)
                )
        return out


class TrackGates:
    """Every camera's gate, made on its first frame, forgotten when idle."""

    def __init__(self, rules: GateRules) -> None:
        self.rules = rules
        self._cameras: dict[str, CameraGate] = {}
        self.stats = GateStats()

    def of(self, source: FrameSource) -> CameraGate:
        camera = source.camera
        now = time.monotonic()
        for name, gate in list(self._cameras.items()):
            if now - gate.last_used > self.rules.idle_camera_s:
                del self._cameras[name]
        if camera not in self._cameras:  # one tally for the whole tagger
            self._cameras[camera] = CameraGate(self.rules, self.stats)
        return self._cameras[camera]


def crop_quality(box: Box, others: Sequence[Box], frame_shape: tuple[int, ...]) -> float:
    """How much of the person a crop shows: the square root of the box's area, times the share
    of it no other person's box covers, halved when the frame's edge cuts it."""
    x0, y0, x1, y1 = box
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    if area <= 0:
        return 0.0
    covered = max((_intersection(box, other) / area for other in others), default=0.0)
    height, width = frame_shape[:2]
    cut = x0 <= 2 or y0 <= 2 or x1 >= width - 2 or y1 >= height - 2
    return float(np.sqrt(area) * (1.0 - covered) * (0.5 if cut else 1.0))


def crop_sharpness(image: np.ndarray, box: Box) -> float:
    """Variance of the Laplacian of the person's grey crop: higher is sharper."""
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(image.shape[1], int(np.ceil(box[2]))), min(image.shape[0], int(np.ceil(box[3])))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return 0.0
    grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def carry(
    garment: GarmentTags, was: Box, now: Box, person: int, frame_shape: tuple[int, int]
) -> GarmentTags:
    """`garment`, found on a person whose box was `was`, moved and scaled with the person to
    `now`: its box keeps its place in the person's box, its mask its shape inside its box."""
    return carry_shape(garment, shape_of(garment), was, now, person, frame_shape)


def shape_of(garment: GarmentTags) -> np.ndarray:
    """The garment's mask inside its box, uint8 (at least 1 x 1): what `carry_shape` moves.
    A track keeps its garments' shapes, so its carried frames do not decode the masks again."""
    old = garment.mask.decode()
    gx0, gy0, gx1, gy1 = garment.box
    ox0, oy0 = max(0, int(gx0)), max(0, int(gy0))
    ox1, oy1 = (
        min(old.shape[1], max(ox0 + 1, int(np.ceil(gx1)))),
        min(old.shape[0], max(oy0 + 1, int(np.ceil(gy1)))),
    )
    shape = old[oy0:oy1, ox0:ox1].astype(np.uint8)
    return shape if shape.size else np.ones((1, 1), np.uint8)


def carry_shape(
    garment: GarmentTags,
    shape: np.ndarray,
    was: Box,
    now: Box,
    person: int,
    frame_shape: tuple[int, int],
) -> GarmentTags:
    """`carry` with the garment's `shape_of` already known."""
    sx = (now[2] - now[0]) / max(was[2] - was[0], 1e-6)
    sy = (now[3] - now[1]) / max(was[3] - was[1], 1e-6)
    gx0, gy0, gx1, gy1 = garment.box
    box = (
        now[0] + (gx0 - was[0]) * sx,
        now[1] + (gy0 - was[1]) * sy,
        now[0] + (gx1 - was[0]) * sx,
        now[1] + (gy1 - was[1]) * sy,
    )
    height, width = frame_shape
    nx0, ny0 = round(box[0]), round(box[1])
    nw, nh = max(1, round(box[2] - box[0])), max(1, round(box[3] - box[1]))
    moved = cv2.resize(shape, (nw, nh), interpolation=cv2.INTER_NEAREST)
    # column-major, as the RLE encoder reads it: no copy on the way in
    mask = np.zeros((height, width), np.uint8, order="F")
    cx0, cy0 = max(0, nx0), max(0, ny0)
    cx1, cy1 = min(width, nx0 + nw), min(height, ny0 + nh)
    if cx1 > cx0 and cy1 > cy0:
        mask[cy0:cy1, cx0:cx1] = moved[cy0 - ny0 : cy1 - ny0, cx0 - nx0 : cx1 - nx0]
    clipped = (
        min(max(box[0], 0.0), width),
        min(max(box[1], 0.0), height),
        min(max(box[2], 0.0), width),
        min(max(box[3], 0.0), height),
    )
    return dataclasses.replace(garment, box=clipped, mask=RleMask.encode(mask), person_index=person)


def _intersection(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)
