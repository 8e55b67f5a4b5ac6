"""The DeepFashion2 loader on a tiny sample in its official layout (image/ + annos/, one JSON per
image), made here: category mapping, polygon masks, item order, and malformed files."""

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from models.detection.deepfashion2 import (
    DF2_CATEGORIES,
    DeepFashion2FormatError,
    DeepFashion2Source,
    parse_annotation,
)
from models.taxonomy import DETECTOR_CLASSES, GARMENT_CATEGORIES


def _item(category_id: int, polygon: list[float], **extra: Any) -> dict[str, Any]:
    xs, ys = polygon[0::2], polygon[1::2]
    return {
        "category_id": category_id,
        "category_name": DF2_CATEGORIES[category_id][0] if category_id in DF2_CATEGORIES else "?",
        "bounding_box": [min(xs), min(ys), max(xs), max(ys)],
        "segmentation": [polygon],
        "landmarks": [0] * 75,
        "style": 1,
        "occlusion": 1,
        "scale": 2,
        "zoom_in": 1,
        "viewpoint": 2,
        **extra,
    }


def _write_sample(root: Path) -> None:
    (root / "image").mkdir(parents=True)
    (root / "annos").mkdir()
    image = np.full((60, 80, 3), 200, np.uint8)
    for name in ("000001", "000002"):
        cv2.imwrite(str(root / "image" / f"{name}.jpg"), image)
    first = {
        "source": "user",
        "pair_id": 1,
        # item2 listed first: the loader must order items numerically
        "item2": _item(8, [10, 30, 30, 30, 30, 58, 10, 58]),  # trousers
        "item1": _item(1, [10, 5, 40, 5, 40, 28, 10, 28]),  # short sleeve top
    }
    second = {
        "source": "shop",
        "pair_id": 1,
        "item1": _item(13, [50, 5, 75, 5, 75, 55, 50, 55]),  # sling dress
        "item10": _item(4, [0, 0, 20, 0, 20, 20, 0, 20]),  # long sleeve outwear
    }
    (root / "annos" / "000001.json").write_text(json.dumps(first))
    (root / "annos" / "000002.json").write_text(json.dumps(second))
    # an annotation without its image is not part of the set
    (root / "annos" / "000003.json").write_text(json.dumps(first))


def test_reads_the_official_layout_and_maps_categories(tmp_path: Path) -> None:
    _write_sample(tmp_path)
    source = DeepFashion2Source.open(tmp_path)
    assert source.ids == ("000001", "000002")
    first = source.load(0)
    names = [DETECTOR_CLASSES[c] for c in first.class_ids]
    assert names == ["top", "trousers"]
    assert first.image.shape == (60, 80, 3)
    # the polygon 10..40 x 5..28 filled: about 31 x 24 pixels, and its box matches
    assert 600 < first.masks[0].sum() < 850
    np.testing.assert_allclose(first.boxes[0], [10, 5, 41, 29], atol=1)
    second = source.load(1)
    assert [DETECTOR_CLASSES[c] for c in second.class_ids] == ["dress", "outerwear"]


def test_every_deepfashion2_category_maps_to_a_garment_category() -> None:
    assert sorted(DF2_CATEGORIES) == list(range(1, 14))
    assert {category for _, category in DF2_CATEGORIES.values()} <= set(GARMENT_CATEGORIES)


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ({"item1": {"segmentation": [[0, 0, 5, 0, 5, 5]]}}, "lacks"),
        ({"item1": _item(14, [0, 0, 5, 0, 5, 5])}, "category_id 14"),
        ({"item1": _item(0, [0, 0, 5, 0, 5, 5])}, "category_id 0"),
        ({"item1": _item(1, [0, 0, 5, 0])}, "polygon"),
        ({"item1": _item(1, [0, 0, 5, 0, 5])}, "polygon"),
        ({"item1": {"category_id": "x", "segmentation": []}}, "lacks"),
    ],
)
def test_malformed_annotations_are_refused(annotation: dict[str, Any], message: str) -> None:
    with pytest.raises(DeepFashion2FormatError, match=message):
        parse_annotation(annotation, (10, 10))


def test_an_item_outside_the_image_is_skipped() -> None:
    masks, ids = parse_annotation({"item1": _item(9, [100, 100, 120, 100, 120, 130])}, (10, 10))
    assert masks.shape == (0, 10, 10)
    assert ids.shape == (0,)


def test_a_folder_without_pairs_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "image").mkdir()
    (tmp_path / "annos").mkdir()
    with pytest.raises(FileNotFoundError, match="no image"):
        DeepFashion2Source.open(tmp_path)


def test_a_file_that_is_not_json_names_itself(tmp_path: Path) -> None:
    _write_sample(tmp_path)
    (tmp_path / "annos" / "000001.json").write_text("{not json")
    with pytest.raises(DeepFashion2FormatError, match=r"000001\.json"):
        DeepFashion2Source.open(tmp_path).load(0)
