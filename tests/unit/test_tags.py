import numpy as np
import pytest

from models.tags import Detections, ImageTags, PersonTags, RleMask


def test_rle_mask_round_trips_and_measures_area() -> None:
    mask = np.zeros((5, 7), bool)
    mask[1:4, 2:6] = True
    rle = RleMask.encode(mask)
    assert rle.size == (5, 7)
    assert np.array_equal(rle.decode(), mask)
    assert rle.area() == 12


def _pycocotools_counts(mask: np.ndarray) -> str:
    from pycocotools import mask as coco_mask

    counts: bytes = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))["counts"]
    return counts.decode("ascii")


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (6, 7), (48, 64)])
def test_rle_mask_counts_are_pycocotools_own(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    h, w = shape
    masks = [np.zeros(shape, bool), np.ones(shape, bool)]
    for density in (0.02, 0.3, 0.9):
        masks += [rng.random(shape) < density for _ in range(20)]
    for y, x in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]:  # one pixel in each corner
        corner = np.zeros(shape, bool)
        corner[y, x] = True
        masks.append(corner)
    strip = np.zeros(shape, bool)
    strip[:, w // 2 :] = True  # through the last column and the last row
    masks.append(strip)
    for mask in masks:
        rle = RleMask.encode(mask)
        assert rle.counts == _pycocotools_counts(mask)
        assert rle.size == shape
        assert np.array_equal(rle.decode(), mask)


def test_rle_mask_refuses_a_stack_of_masks() -> None:
    with pytest.raises(ValueError, match=r"must be \(H, W\)"):
        RleMask.encode(np.zeros((2, 5, 7), bool))


def _detections(**changes: np.ndarray) -> Detections:
    fields = {
        "boxes": np.zeros((2, 4), np.float32),
        "masks": np.zeros((2, 8, 9), bool),
        "scores": np.array([0.9, 0.8], np.float32),
        "class_ids": np.array([0, 1], np.int64),
    }
    fields.update(changes)
    return Detections(class_names=("person", "top"), **fields)


def test_valid_detections_have_a_length() -> None:
    assert len(_detections()) == 2
    assert len(Detections.empty(8, 9, ("person",))) == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"boxes": np.zeros((3, 4), np.float32)}, r"boxes: expected shape \(2, 4\), got \(3, 4\)"),
        ({"class_ids": np.array([0, 2])}, "outside class_names"),
        ({"masks": np.zeros((2, 8, 9), np.uint8)}, "expected dtype bool"),
        ({"masks": np.zeros((8, 9), bool)}, r"masks: expected shape \(2, H, W\)"),
    ],
)
def test_inconsistent_detections_name_expected_and_actual(
    changes: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _detections(**changes)


def test_image_tags_refuse_a_person_index_without_person() -> None:
    from models.tags import ColourReading, GarmentTags, Prediction

    mask = RleMask.encode(np.ones((4, 6), bool))
    garment = GarmentTags(
        category="top",
        score=0.9,
        box=(0, 0, 6, 4),
        mask=mask,
        attributes={},
        probabilities={},
        colour=ColourReading("Blue", (0, 0, 255), 1.0),
        style=Prediction("Casual", 0.5),
        person_index=1,
    )
    person = PersonTags(score=0.9, box=(0, 0, 6, 4), mask=mask)
    with pytest.raises(ValueError, match="person_index 1 has no person"):
        ImageTags(width=6, height=4, garments=(garment,), people=(person,), model_version="m")
    alone = GarmentTags(**{**garment.__dict__, "person_index": None})
    with pytest.raises(ValueError, match="mask size"):
        ImageTags(width=7, height=4, garments=(alone,), people=(), model_version="m")
