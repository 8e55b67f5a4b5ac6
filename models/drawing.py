"""Drawing what the models see onto an image: masks and outlines for garments and people, and
labels. By default one compact label per person naming what they wear ("black outerwear, blue
trousers"), placed where it covers no other label; `DrawStyle(labels="garments")` labels each
garment in full (category and score, top attributes, colour with a swatch, style), for a close-up.

`draw_tags(image, tags)` is a pure function of one RGB frame and its `ImageTags`, so a video
annotator draws each decoded frame with it and encodes the results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.tags import GarmentTags, ImageTags
from models.taxonomy import GARMENT_CATEGORIES

# one colour per category, far apart in hue (RGB)
CATEGORY_COLOURS: Mapping[str, tuple[int, int, int]] = {
    "top": (230, 25, 75),
    "outerwear": (60, 180, 75),
    "dress": (240, 50, 230),
    "skirt": (255, 225, 25),
    "shorts": (245, 130, 48),
    "trousers": (0, 130, 200),
    "footwear": (145, 30, 180),
    "bag": (70, 240, 240),
    "hat": (210, 245, 60),
}
PERSON_COLOUR = (255, 255, 255)
OTHER_COLOUR = (128, 128, 128)


@dataclass(frozen=True)
class DrawStyle:
    mask_alpha: float = 0.45
    # attribute heads shown under the category, in this order, when the classifier has them
    attribute_heads: Sequence[str] = ("articleType", "gender")
    min_label_score: float = 0.0  # garments below this are drawn without a text label
    colours: Mapping[str, tuple[int, int, int]] = field(default_factory=lambda: CATEGORY_COLOURS)
    # "people": one label per person listing their garments (a crowd stays readable);
    # "garments": every garment's full label
    labels: str = "people"
    line_chars: int = 26  # a person's garments wrap after about this many characters

    def __post_init__(self) -> None:
        if self.labels not in ("people", "garments"):
            raise ValueError(f"DrawStyle.labels: 'people' or 'garments', got {self.labels!r}")


def draw_tags(
    image: np.ndarray,
    tags: ImageTags,
    style: DrawStyle | None = None,
    person_labels: Sequence[str] | None = None,
) -> np.ndarray:
    """A new RGB uint8 image: `image` with `tags` drawn on it. `person_labels`: the text drawn
    beside each person (e.g. a track id) instead of "person <index> <score>"."""
    style = style or DrawStyle()
    if image.shape[:2] != (tags.height, tags.width):
        raise ValueError(f"image is {image.shape[:2]}, tags are for {(tags.height, tags.width)}")
    canvas = image.copy()
    scale = max(0.35, min(tags.width, tags.height) / 900)
    thickness = max(1, round(scale * 2))
    # masks first (largest first so small garments stay visible on top), then outlines, text
    order = sorted(range(len(tags.garments)), key=lambda i: -tags.garments[i].mask.area())
    for i in order:
        garment = tags.garments[i]
        colour = style.colours.get(garment.category, OTHER_COLOUR)
        mask = garment.mask.decode()
        tinted = canvas[mask].astype(np.float32) * (1 - style.mask_alpha)
        canvas[mask] = (tinted + np.array(colour, np.float32) * style.mask_alpha).astype(np.uint8)
    for person in tags.people:
        _outline(canvas, person.mask.decode(), PERSON_COLOUR, thickness)
    for i in order:
        garment = tags.garments[i]
        colour = style.colours.get(garment.category, OTHER_COLOUR)
        _outline(canvas, garment.mask.decode(), colour, thickness)
        x1, y1, x2, y2 = (round(v) for v in garment.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, max(1, thickness - 1))
    titles = [
        person_labels[index] if person_labels is not None else f"person {index} {person.score:.2f}"
        for index, person in enumerate(tags.people)
    ]
    if style.labels == "garments":
        for person, title in zip(tags.people, titles, strict=True):
            _label(canvas, [title], (int(person.box[0]), int(person.box[1])), PERSON_COLOUR, scale)
        # smallest garments last, so the text of big ones does not cover small ones
        for i in reversed(order):
            garment = tags.garments[i]
            if garment.score < style.min_label_score:
                continue
            colour = style.colours.get(garment.category, OTHER_COLOUR)
            x1, y1 = int(garment.box[0]), int(garment.box[1])
            _label(canvas, garment_lines(garment, style), (x1, y1), colour, scale, garment)
        return canvas
    placed = LabelPlacer(canvas.shape[:2], [p.box for p in tags.people])
    for index in sorted(range(len(tags.people)), key=lambda j: tags.people[j].box[1]):
        worn = [g for g in tags.garments if g.person_index == index]
        lines = [titles[index], *wrapped(worn_summary(worn, style), style.line_chars)]
        _label(
            canvas,
            lines,
            placed.place(canvas, lines, tags.people[index].box, scale),
            PERSON_COLOUR,
            scale,
            at_corner=True,
        )
    for garment in tags.garments:
        if garment.person_index is None and garment.score >= style.min_label_score:
            colour = style.colours.get(garment.category, OTHER_COLOUR)
            lines = [worn_summary([garment], style)]
            corner = placed.place(canvas, lines, garment.box, scale)
            _label(canvas, lines, corner, colour, scale, at_corner=True)
    return canvas


def worn_summary(garments: Sequence[GarmentTags], style: DrawStyle | None = None) -> str:
    """What a person wears, in a few words each: "black outerwear, blue trousers", top to
    bottom; garments under the style's label score are left out."""
    style = style or DrawStyle()
    shown = sorted(
        (g for g in garments if g.score >= style.min_label_score), key=lambda g: g.box[1]
    )
    if not shown:
        return "no garment found"
    return ", ".join(f"{g.colour.name.lower()} {g.category}" for g in shown)


def wrapped(text: str, width: int) -> list[str]:
    """`text` in lines of about `width` characters, broken after commas."""
    lines: list[str] = []
    for part in text.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            if lines:
                lines[-1] += ","
            lines.append(part)
    return lines


class LabelPlacer:
    """Where each label goes: beside its box (above, below, right, left, then further up or
    down), at the first place inside the image that covers no label placed before it, else
    where it covers least; a place that covers another person costs less than one that covers
    a label but more than a free one."""

    def __init__(self, shape: tuple[int, int], people: Sequence[Sequence[float]]) -> None:
        self.height, self.width = shape
        self.people = [tuple(int(v) for v in box) for box in people]
        self.taken: list[tuple[int, int, int, int]] = []

    def place(
        self, canvas: np.ndarray, lines: Sequence[str], box: Sequence[float], scale: float
    ) -> tuple[int, int]:
        w, h = _label_size(lines, scale)
        x0, y0, x1, y1 = (int(v) for v in box)
        candidates = [
            (x0, y0 - h), (x0, y1), (x1 + 2, y0), (x0 - w - 2, y0),
            (x0, y0 - 2 * h), (x0, y1 + h), (x1 + 2, y0 - h), (x0 - w - 2, y0 - h),
        ]  # fmt: skip
        best, best_cost = (0, 0), float("inf")
        for cx, cy in candidates:
            cx = min(max(cx, 0), max(self.width - w, 0))
            cy = min(max(cy, 0), max(self.height - h, 0))
            rect = (cx, cy, cx + w, cy + h)
            on_labels = sum(_overlap(rect, t) for t in self.taken)
            on_people = sum(_overlap(rect, p) for p in self.people if not _same(p, box))
            cost = on_labels * 10 + on_people
            if cost < best_cost:
                best, best_cost = (cx, cy), cost
            if cost == 0:
                break
        self.taken.append((best[0], best[1], best[0] + w, best[1] + h))
        return best


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(abs(float(u) - float(v)) < 1 for u, v in zip(a, b, strict=True))


def _overlap(a: Sequence[int], b: Sequence[int]) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def garment_lines(garment: GarmentTags, style: DrawStyle | None = None) -> list[str]:
    """The text drawn beside a garment: category and score (and wearer), top attributes,
    colour and style."""
    style = style or DrawStyle()
    first = f"{garment.category} {garment.score:.2f}"
    if garment.person_index is not None:
        first += f" P{garment.person_index}"
    shown = [
        f"{garment.attributes[h].label} {garment.attributes[h].prob:.2f}"
        for h in style.attribute_heads
        if h in garment.attributes
    ]
    lines = [first]
    if shown:
        lines.append(" | ".join(shown))
    lines.append(f"{garment.colour.name} | {garment.style.label} {garment.style.prob:.2f}")
    return lines


def _outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], t: int) -> None:
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(canvas, contours, -1, colour, t)


def _font(scale: float) -> tuple[float, int]:
    return 0.45 * scale * 1.6, max(1, round(scale * 1.5))


def _label_size(lines: Sequence[str], scale: float, swatch: bool = False) -> tuple[int, int]:
    """(width, height) of the box `_label` draws for `lines`."""
    font_scale, thick = _font(scale)
    sizes = [
        cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)[0] for line in lines
    ]
    line_h = max(s[1] for s in sizes) + max(3, round(6 * scale))
    return max(s[0] for s in sizes) + 8 + (line_h - 4 if swatch else 0), line_h * len(lines) + 4


def _label(
    canvas: np.ndarray,
    lines: Sequence[str],
    corner: tuple[int, int],
    colour: tuple[int, int, int],
    scale: float,
    garment: GarmentTags | None = None,
    *,
    at_corner: bool = False,
) -> None:
    """Text on a dark box just above `corner` (or below it at the top edge), kept inside the
    image (`at_corner`: with its top-left at `corner`, a place already chosen); a swatch of the
    garment's measured colour before the last line."""
    h, w = canvas.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale, thick = _font(scale)
    box_w, box_h = _label_size(lines, scale, swatch=garment is not None)
    line_h = (box_h - 4) // len(lines)
    swatch = line_h - 4 if garment is not None else 0
    x = min(max(corner[0], 0), max(w - box_w, 0))
    above = corner[1] - box_h if corner[1] - box_h >= 0 else corner[1]
    y = corner[1] if at_corner else above
    y = min(max(y, 0), max(h - box_h, 0))
    region = canvas[y : y + box_h, x : x + box_w]
    region[:] = (region.astype(np.float32) * 0.3).astype(np.uint8)
    cv2.rectangle(canvas, (x, y), (x + box_w - 1, y + box_h - 1), colour, 1)
    for n, line in enumerate(lines):
        baseline = y + line_h * (n + 1) - 2
        offset = 4
        if garment is not None and n == len(lines) - 1:
            cv2.rectangle(
                canvas,
                (x + 4, baseline - swatch + 2),
                (x + 4 + swatch - 4, baseline),
                tuple(int(c) for c in garment.colour.rgb),
                -1,
            )
            offset += swatch
        cv2.putText(
            canvas,
            line,
            (x + offset, baseline),
            font,
            font_scale,
            (255, 255, 255),
            thick,
            cv2.LINE_AA,
        )


def legend(width: int, categories: Sequence[str] = GARMENT_CATEGORIES) -> np.ndarray:
    """A strip naming each category's colour, to stack under an annotated image."""
    height = 22
    strip = np.full((height, width, 3), 30, np.uint8)
    x = 6
    for name in categories:
        colour = CATEGORY_COLOURS.get(name, OTHER_COLOUR)
        cv2.rectangle(strip, (x, 5), (x + 12, 17), colour, -1)
        cv2.putText(
            strip,
            name,
            (x + 16, 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.42,
            (230, 230, 230),
            1,
            cv2.LINE_AA,
        )
        x += 22 + cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)[0][0]
        if x > width - 40:
            break
    return strip
