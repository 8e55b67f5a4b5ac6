"""Confidence-weighted votes over a track, and the garments attached to a tracked person.

A person seen in 40 frames is tagged 40 times; the frames disagree (a coat is "outerwear" in
most, "top" in a few; the light changes its colour). `LabelVote` adds up every frame's
probabilities weighted by how sure the detector was of the garment, and the label with the most
weight wins. `GarmentSlots` keeps the garments of one person apart over time: a garment is
matched to a slot by where it sits *relative to the person's box* (so it follows the person
around the frame), preferring a slot of the same category; each slot votes on its own category,
attributes, colour and style.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from models.tracking.assignment import assign
from models.tracking.frames import Box, GarmentSeen


class LabelVote:
    """Sums `weight * probability` per label; `winner()` is the label with the largest sum."""

    __slots__ = ("_sums", "_weight")

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._weight = 0.0

    def add(self, probabilities: Mapping[str, float], weight: float) -> None:
        if weight <= 0.0:
            return
        for label, prob in probabilities.items():
            self._sums[label] = self._sums.get(label, 0.0) + weight * float(prob)
        self._weight += weight

    def merge(self, other: LabelVote) -> None:
        for label, total in other._sums.items():
            self._sums[label] = self._sums.get(label, 0.0) + total
        self._weight += other._weight

    @property
    def weight(self) -> float:
        return self._weight

    def share(self, label: str) -> float:
        """`label`'s weighted mean probability (0 when it never got a vote)."""
        if self._weight <= 0.0:
            return 0.0
        return min(1.0, self._sums.get(label, 0.0) / self._weight)

    def winner(self, among: frozenset[str] | None = None) -> tuple[str, float] | None:
        """(label, its weighted mean probability); ties go to the alphabetically first label,
        so the result never depends on the order the frames came in. `among`: only these
        labels may win, when any of them got a vote (a garment's labels that agree with its
        category)."""
        if not self._sums or self._weight <= 0.0:
            return None
        candidates = [k for k in self._sums if among is None or k in among] or list(self._sums)
        label = min(candidates, key=lambda k: (-round(self._sums[k], 9), k))
        return label, min(1.0, self._sums[label] / self._weight)


@dataclass
class GarmentSlot:
    """One garment of one tracked person, accumulated over the frames it was seen in."""

    relative_box: np.ndarray  # (4,) float64: box in units of the person's box, smoothed
    category: LabelVote = field(default_factory=LabelVote)
    attributes: dict[str, LabelVote] = field(default_factory=dict)
    colour: LabelVote = field(default_factory=LabelVote)
    style: LabelVote = field(default_factory=LabelVote)
    # the frame numbers it was seen in: merged slots (two shoes) see the same frames, and a
    # garment's frame count must never exceed its wearer's
    frame_numbers: set[int] = field(default_factory=set)
    detections: int = 0  # detections voted (two shoes in one frame: two)
    score_sum: float = 0.0
    colour_rgb_sum: np.ndarray = field(default_factory=lambda: np.zeros(3))
    best_score: float = -1.0
    best_event_id: str = ""
    best_garment_index: int = -1
    last_frame: int = -1

    @property
    def frames(self) -> int:
        """Frames the garment was seen in."""
        return len(self.frame_numbers)

    def leading_category(self) -> str | None:
        won = self.category.winner()
        return None if won is None else won[0]

    def observe(
        self, garment: GarmentSeen, relative: np.ndarray, event_id: str, frame: int
    ) -> None:
        weight = max(garment.score, 1e-3)
        self.category.add({garment.category: 1.0}, weight)
        for head, probs in garment.probabilities.items():
            self.attributes.setdefault(head, LabelVote()).add(probs, weight)
        self.colour.add({garment.colour: 1.0}, weight * max(garment.colour_share, 1e-3))
        self.style.add({garment.style: garment.style_prob}, weight)
        self.colour_rgb_sum += np.asarray(garment.colour_rgb, np.float64) * weight
        self.frame_numbers.add(frame)
        self.detections += 1
        self.score_sum += garment.score
        if self.detections == 1:
            self.relative_box = relative.astype(np.float64)
        else:  # smoothed, so one odd box does not move the slot away from its garment
            self.relative_box = 0.7 * self.relative_box + 0.3 * relative
        if garment.score > self.best_score:
            self.best_score = garment.score
            self.best_event_id = event_id
            self.best_garment_index = garment.index
        self.last_frame = frame

    def merge(self, other: GarmentSlot) -> None:
        """Fold `other` (same voted category) into this slot: a person has one pair of shoes."""
        self.category.merge(other.category)
        for head, vote in other.attributes.items():
            self.attributes.setdefault(head, LabelVote()).merge(vote)
        self.colour.merge(other.colour)
        self.style.merge(other.style)
        self.colour_rgb_sum += other.colour_rgb_sum
        self.frame_numbers |= other.frame_numbers
        self.detections += other.detections
        self.score_sum += other.score_sum
        if other.best_score > self.best_score:
            self.best_score = other.best_score
            self.best_event_id = other.best_event_id
            self.best_garment_index = other.best_garment_index


@dataclass(frozen=True)
class SlotRules:
    """How garments are matched to slots and which slots count as the person's garments."""

    min_overlap: float = 0.2  # IoU of relative boxes for a garment to join a slot
    category_penalty: float = 0.35  # added cost when the garment's category differs
    min_frames: int = 2  # a garment seen fewer times is noise
    min_share: float = 0.2  # ... or seen in fewer than this share of the person's frames


class GarmentSlots:
    """The garments attached to one tracked person."""

    def __init__(self, rules: SlotRules) -> None:
        self.rules = rules
        self.slots: list[GarmentSlot] = []

    def observe(
        self, garments: list[GarmentSeen], person_box: Box, event_id: str, frame: int
    ) -> None:
        """Attach one frame's garments of this person to slots (new slots for the unmatched)."""
        if not garments:
            return
        relative = np.stack([relative_box(g.box, person_box) for g in garments])
        matched: dict[int, int] = {}
        if self.slots:
            cost = np.ones((len(garments), len(self.slots)))
            for i, g in enumerate(garments):
                for j, slot in enumerate(self.slots):
                    overlap = _iou(relative[i], slot.relative_box)
                    if overlap < self.rules.min_overlap:
                        continue
                    same = slot.leading_category() == g.category
                    penalty = 0.0 if same else self.rules.category_penalty
                    cost[i, j] = min(1.0, 1.0 - overlap + penalty)
            matched = dict(assign(cost, max_cost=0.999))
        for i, g in enumerate(garments):
            if i in matched:
                self.slots[matched[i]].observe(g, relative[i], event_id, frame)
            else:
                slot = GarmentSlot(relative_box=relative[i].astype(np.float64))
                slot.observe(g, relative[i], event_id, frame)
                self.slots.append(slot)

    def kept(self, person_frames: int) -> list[tuple[str, GarmentSlot]]:
        """(category, slot) for the slots seen often enough, those voted the same category
        merged into one, most seen first."""
        floor = max(self.rules.min_frames, self.rules.min_share * person_frames)
        by_category: dict[str, GarmentSlot] = {}
        for slot in self.slots:
            category = slot.leading_category()
            if category is None or slot.frames < floor:
                continue
            if category in by_category:
                by_category[category].merge(slot)
            else:
                merged = GarmentSlot(relative_box=slot.relative_box.copy())
                merged.merge(slot)
                by_category[category] = merged
        return sorted(by_category.items(), key=lambda item: (-item[1].frames, item[0]))


def relative_box(box: Box, person: Box) -> np.ndarray:
    """`box` in coordinates where the person's box is the unit square."""
    px1, py1, px2, py2 = person
    w = max(px2 - px1, 1.0)
    h = max(py2 - py1, 1.0)
    x1, y1, x2, y2 = box
    return np.array([(x1 - px1) / w, (y1 - py1) / h, (x2 - px1) / w, (y2 - py1) / h])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
