"""Annotated frames a person can read: one label per person naming what they wear, no label on
top of another even in a crowd, and the full per-garment labels still there for close-ups."""

import numpy as np
import pytest

from models.drawing import DrawStyle, LabelPlacer, _label_size, draw_tags, worn_summary, wrapped
from models.tags import ColourReading, GarmentTags, ImageTags, PersonTags, Prediction, RleMask

H, W = 240, 320


def _mask(box: tuple[float, float, float, float]) -> RleMask:
    mask = np.zeros((H, W), bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    mask[y0:y1, x0:x1] = True
    return RleMask.encode(mask)


def _garment(
    category: str, colour: str, box: tuple[float, float, float, float], person: int | None
) -> GarmentTags:
    return GarmentTags(
        category=category,
        score=0.8,
        box=box,
        mask=_mask(box),
        attributes={"articleType": Prediction("Jackets", 0.7)},
        probabilities={"articleType": {"Jackets": 0.7}},
        colour=ColourReading(colour, (10, 10, 10), 0.6),
        style=Prediction("Casual", 0.8),
        person_index=person,
    )


def _crowd(people: int) -> ImageTags:
    """`people` people standing side by side, each in a coat and trousers."""
    persons, garments = [], []
    for i in range(people):
        x = 8 + i * 22
        box = (float(x), 60.0, float(x + 18), 160.0)
        persons.append(PersonTags(0.9, box, _mask(box)))
        garments.append(_garment("outerwear", "Black", (x, 70.0, x + 18, 110.0), i))
        garments.append(_garment("trousers", "Navy Blue", (x, 110.0, x + 18, 155.0), i))
    return ImageTags(W, H, tuple(garments), tuple(persons), "test", {})


def test_a_person_is_summed_up_by_what_they_wear_top_to_bottom() -> None:
    tags = _crowd(1)
    assert worn_summary(list(reversed(tags.garments))) == "black outerwear, navy blue trousers"
    assert worn_summary([]) == "no garment found"
    assert wrapped("black outerwear, navy blue trousers, grey footwear", 26) == [
        "black outerwear,",
        "navy blue trousers,",
        "grey footwear",
    ]


def test_labels_in_a_crowd_do_not_cover_each_other() -> None:
    tags = _crowd(8)
    placer = LabelPlacer((H, W), [p.box for p in tags.people])
    rects = []
    for person in tags.people:
        lines = ["person 0 0.90", "black outerwear,", "navy blue trousers"]
        x, y = placer.place(np.zeros((H, W, 3), np.uint8), lines, person.box, 0.35)
        w, h = _label_size(lines, 0.35)
        assert 0 <= x <= W - w
        assert 0 <= y <= H - h
        rects.append((x, y, x + w, y + h))
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            overlap_w = min(a[2], b[2]) - max(a[0], b[0])
            overlap_h = min(a[3], b[3]) - max(a[1], b[1])
            assert overlap_w <= 0 or overlap_h <= 0, f"{a} covers {b}"


def test_both_label_styles_draw_without_touching_the_input() -> None:
    image = np.full((H, W, 3), 90, np.uint8)
    tags = _crowd(3)
    compact = draw_tags(image, tags)
    full = draw_tags(image, tags, DrawStyle(labels="garments"))
    assert (image == 90).all()
    assert compact.shape == full.shape == image.shape
    assert not np.array_equal(compact, full)  # the label boxes differ
    with pytest.raises(ValueError, match=r"DrawStyle\.labels"):
        DrawStyle(labels="everything")
