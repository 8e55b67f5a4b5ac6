"""models.colour: CIELAB maths against published values, naming of synthetic garments (skin,
shadows, stripes), error cases, and a real CCP street photo."""

import json
from pathlib import Path

import numpy as np
import pytest

from models import colour as C
from models.attributes.data import ccp_photo

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "attributes"


# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula": test pairs 1, 7, 13, 17,
# 25 and 34 of their table.
@pytest.mark.parametrize(
    ("lab1", "lab2", "expected"),
    [
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
        ((50.0, 2.4900, -0.0010), (50.0, -2.4900, 0.0009), 7.1792),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
        ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ],
)
def test_ciede2000_matches_published_pairs(lab1, lab2, expected) -> None:
    got = float(C.delta_e_2000(np.array(lab1), np.array(lab2)))
    assert got == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [
        ((255, 255, 255), (100.0, 0.0, 0.0)),
        ((0, 0, 0), (0.0, 0.0, 0.0)),
        ((255, 0, 0), (53.24, 80.09, 67.20)),
        ((0, 0, 255), (32.30, 79.19, -107.86)),
    ],
)
def test_srgb_to_lab(rgb, lab) -> None:
    np.testing.assert_allclose(C.srgb_to_lab(np.array(rgb)), lab, atol=0.02)


def _patch(rgb: tuple[int, int, int], size: int = 40) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = rgb
    return image


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((25, 25, 28), "Black"),
        ((240, 240, 240), "White"),
        ((150, 150, 150), "Grey"),
        ((190, 30, 40), "Red"),
        ((30, 35, 75), "Navy Blue"),
        ((40, 90, 185), "Blue"),
        ((40, 140, 70), "Green"),
        ((245, 220, 60), "Yellow"),
        ((240, 125, 40), "Orange"),
        ((110, 30, 45), "Maroon"),
        ((240, 150, 185), "Pink"),
        ((100, 70, 50), "Brown"),
    ],
)
def test_plain_garments_get_their_name(rgb, name) -> None:
    reading = C.read_colour(_patch(rgb), np.ones((40, 40), bool))
    assert reading.name == name
    assert reading.share == pytest.approx(1.0)
    assert np.abs(np.array(reading.rgb) - rgb).max() <= 1


def test_only_the_masked_pixels_count() -> None:
    image = _patch((240, 240, 240))
    image[10:30, 10:30] = (190, 30, 40)
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    assert C.read_colour(image, mask).name == "Red"
    assert C.read_colour(image, ~mask).name == "White"


def test_skin_inside_the_mask_is_ignored() -> None:
    # a sleeveless blue top: 45% of the mask is arm skin
    image = _patch((40, 90, 185))
    image[:, :18] = (224, 172, 140)
    reading = C.read_colour(image, np.ones((40, 40), bool))
    assert reading.name == "Blue"
    assert reading.share == pytest.approx(22 / 40, abs=0.02)


def test_a_skin_coloured_garment_keeps_its_pixels() -> None:
    reading = C.read_colour(_patch((224, 172, 140)), np.ones((40, 40), bool))
    assert reading.name in {"Peach", "Beige", "Tan"}
    assert reading.share == pytest.approx(1.0)


def test_shadow_pixels_do_not_outvote_the_garment() -> None:
    # a yellow garment with a third of it in deep shadow, in two tones so clusters split
    image = _patch((245, 220, 60))
    image[:, 20:] = (235, 210, 55)
    image[:14] = (20, 18, 5)
    assert C.read_colour(image, np.ones((40, 40), bool)).name == "Yellow"


def test_three_different_stripes_read_as_multi() -> None:
    image = _patch((190, 30, 40))
    image[14:27] = (40, 140, 70)
    image[27:] = (40, 90, 185)
    assert C.read_colour(image, np.ones((40, 40), bool)).name == C.MULTI


def test_two_tone_garment_reads_the_larger_tone() -> None:
    image = _patch((30, 35, 75))
    image[:12] = (240, 240, 240)
    assert C.read_colour(image, np.ones((40, 40), bool)).name == "Navy Blue"


def test_palette_names_are_catalogue_colours_in_lab_range() -> None:
    for name, (lightness, a, b) in C.PALETTE_LAB.items():
        assert 0 <= lightness <= 100, name
        assert -128 <= a <= 127, name
        assert -128 <= b <= 127, name
    assert C.MULTI not in C.PALETTE_LAB


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [
        (np.zeros((4, 4), np.uint8), np.ones((4, 4), bool), "image"),
        (np.zeros((4, 4, 3), np.float32), np.ones((4, 4), bool), "image"),
        (np.zeros((4, 4, 3), np.uint8), np.ones((4, 5), bool), "mask"),
        (np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.uint8), "mask"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool), "empty"),
    ],
)
def test_bad_inputs_are_refused(image, mask, message) -> None:
    with pytest.raises(ValueError, match=message):
        C.read_colour(image, mask)


def test_real_street_photo_garments() -> None:
    """CCP photo 0244: dark blue skinny jeans and white sneakers (labels from its label map)."""
    ccp = FIXTURES / "ccp"
    image, labels = ccp_photo(ccp, "0244")
    index = json.loads((ccp / "labels.json").read_text())
    jeans = labels == index.index("jeans")
    sneakers = labels == index.index("sneakers")
    assert C.read_colour(image, jeans).name in {"Navy Blue", "Blue"}
    assert C.read_colour(image, sneakers).name in {"White", "Off White", "Silver"}
