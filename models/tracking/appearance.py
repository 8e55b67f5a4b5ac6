"""People followed between sparse frames by where they should be and how they look: the track
gate's association. At the pipeline's 2 frames/s a walker's box moves by most of its width
between frames, so box overlap (ByteTrack's IoU) loses them and a crowd starts about one new
track per three people a frame (tram stop). Here a person is matched to the track whose
constant-velocity position they are closest to, measured in person heights, among those whose
clothes' colours (an HSV histogram of the upper and of the lower body) are alike; the Hungarian
method picks the cheapest pairing. Time is capture time in seconds, so the rules hold at any
sampling rate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from models.tracking.assignment import assign

Box = tuple[float, float, float, float]

_HIST_BINS = [8, 4, 4]  # hue, saturation, value: coarse, a CCTV person is ~40 x 90 px
_HIST_RANGES = [0, 180, 0, 256, 0, 256]
_UNMATCHABLE = 1e6


@dataclass(frozen=True)
class AppearanceRules:
    # a person may be this many of their heights from where their track should be, plus
    # `shift_per_s` heights for each second since it was last seen (missed detections)
    max_shift: float = 0.3
    shift_per_s: float = 0.25
    max_height_ratio: float = 1.5  # boxes of one person: at most this ratio of heights apart
    max_look: float = 0.5  # Bhattacharyya distance of the colour histograms (0 alike, 1 not)
    look_weight: float = 3.0  # cost = shift (heights) + look_weight x look distance
    lost_s: float = 4.0  # a track unseen for this long is forgotten
    smoothing: float = 0.5  # weight of the newest sighting in velocity and look

    def __post_init__(self) -> None:
        if self.max_shift <= 0 or self.shift_per_s < 0 or self.max_height_ratio < 1:
            raise ValueError(f"AppearanceRules: bad motion rules {self}")
        if not 0 < self.max_look <= 1 or self.lost_s <= 0 or not 0 < self.smoothing <= 1:
            raise ValueError(f"AppearanceRules: bad rules {self}")


@dataclass
class _Track:
    id: int
    box: Box
    seen_at: float
    look: np.ndarray
    velocity: tuple[float, float] = (0.0, 0.0)  # of the box centre, pixels per second


class AppearanceTracker:
    """One camera's people, frame by frame in capture order. One caller at a time."""

    def __init__(self, rules: AppearanceRules | None = None) -> None:
        self.rules = rules or AppearanceRules()
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def track_ids(self) -> set[int]:
        """The tracks still remembered (seen within `lost_s`)."""
        return {t.id for t in self._tracks}

    def update(self, image: np.ndarray, boxes: Sequence[Box], captured_at: float) -> list[int]:
        """The track id of each person box of this frame, in order: a remembered track's, or a
        new one's."""
        rules = self.rules
        self._tracks = [t for t in self._tracks if captured_at - t.seen_at <= rules.lost_s]
        looks = [look_of(image, box) for box in boxes]
        cost = np.full((len(self._tracks), len(boxes)), _UNMATCHABLE)
        for r, track in enumerate(self._tracks):
            elapsed = max(0.0, captured_at - track.seen_at)
            cx, cy = _centre(track.box)
            expected = (cx + track.velocity[0] * elapsed, cy + track.velocity[1] * elapsed)
            allowed = rules.max_shift + rules.shift_per_s * elapsed
            for c, box in enumerate(boxes):
                height, track_height = box[3] - box[1], track.box[3] - track.box[1]
                if min(height, track_height) <= 0:
                    continue
                ratio = max(height, track_height) / min(height, track_height)
                bx, by = _centre(box)
                shift = float(np.hypot(bx - expected[0], by - expected[1])) / (
                    (height + track_height) / 2
                )
                if ratio > rules.max_height_ratio or shift > allowed:
                    continue
                look = look_distance(track.look, looks[c])
                if look <= rules.max_look:
                    cost[r, c] = shift + rules.look_weight * look
        ids: list[int | None] = [None] * len(boxes)
        for r, c in assign(cost, _UNMATCHABLE / 2):
            track = self._tracks[r]
            self._follow(track, boxes[c], looks[c], captured_at)
            ids[c] = track.id
        out = []
        for c, box in enumerate(boxes):
            track_id = ids[c]
            if track_id is None:
                track_id = self._next_id
                self._next_id += 1
                self._tracks.append(_Track(track_id, _as_box(box), captured_at, looks[c]))
            out.append(track_id)
        return out

    def _follow(self, track: _Track, box: Box, look: np.ndarray, captured_at: float) -> None:
        k = self.rules.smoothing
        elapsed = captured_at - track.seen_at
        if elapsed > 0:
            (ox, oy), (nx, ny) = _centre(track.box), _centre(box)
            step = ((nx - ox) / elapsed, (ny - oy) / elapsed)
            track.velocity = (
                (1 - k) * track.velocity[0] + k * step[0],
                (1 - k) * track.velocity[1] + k * step[1],
            )
        track.look = (1 - k) * track.look + k * look
        track.box = _as_box(box)
        track.seen_at = captured_at


def look_of(image: np.ndarray, box: Box) -> np.ndarray:
    """(2, bins) colour histograms, each summing to 1, of the upper and lower half of the
    person's box, trimmed at the sides (background) and the top (head and hair)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    left, right = int(max(0, x0 + 0.2 * w)), int(min(image.shape[1], x1 - 0.2 * w))
    top, bottom = int(max(0, y0 + 0.15 * h)), int(min(image.shape[0], y1 - 0.05 * h))
    middle = (top + bottom) // 2
    halves: list[np.ndarray] = []
    for a, b in ((top, middle), (middle, bottom)):
        part = image[a:b, left:right]
        if part.size == 0:
            halves.append(np.full(int(np.prod(_HIST_BINS)), 1.0 / np.prod(_HIST_BINS)))
            continue
        hsv = cv2.cvtColor(np.ascontiguousarray(part), cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, _HIST_BINS, _HIST_RANGES).ravel()
        halves.append(hist / max(float(hist.sum()), 1.0))
    return np.stack(halves).astype(np.float32)


def look_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Bhattacharyya distance of the two halves' histograms: 0 alike, 1 nothing shared."""
    coefficients = np.sqrt(a * b).sum(axis=1).clip(0.0, 1.0)
    return float(np.sqrt(1.0 - coefficients).mean())


def _as_box(box: Sequence[float]) -> Box:
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
