"""The attribute classifier's crop rule (models.attributes.crop): shapes, placement, the mask,
and the error cases."""

import numpy as np
import pytest

from models.attributes import crop as K

GREY = np.array(K.FILL, np.uint8)


def _image(h: int = 100, w: int = 200) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = 200  # red everywhere
    return image


def test_whole_image_is_letterboxed_on_grey() -> None:
    out = K.prepare_crop(_image(100, 200), None, None, 64)
    assert out.shape == (64, 64, 3)
    assert out.dtype == np.uint8
    # 200x100 -> 64x32 centred: 16 grey rows above and below
    assert (out[:16] == GREY).all()
    assert (out[48:] == GREY).all()
    assert (out[16:48, :, 0] == 200).all()


def test_box_is_grown_by_the_pad_and_clipped() -> None:
    assert K.crop_region((100, 200), (50.0, 20.0, 150.0, 80.0), None) == (40, 14, 160, 86)
    assert K.crop_region((100, 200), (0.0, 0.0, 200.0, 100.0), None) == (0, 0, 200, 100)


def test_mask_alone_crops_its_bounding_box() -> None:
    mask = np.zeros((100, 200), bool)
    mask[40:60, 90:110] = True
    assert K.crop_region((100, 200), None, mask) == (88, 38, 112, 62)


def test_pixels_outside_the_mask_turn_grey() -> None:
    image = _image()
    image[:, 100:] = (0, 0, 255)  # right half blue
    mask = np.zeros((100, 200), bool)
    mask[:, :100] = True
    out = K.prepare_crop(image, (0.0, 0.0, 200.0, 100.0), mask, 64)
    assert (out[20:44, 4:28] == (200, 0, 0)).all()  # red kept
    assert (out[20:44, 36:60] == GREY).all()  # blue greyed out
    canvas, foreground = K.crop_canvas(image, (0.0, 0.0, 200.0, 100.0), mask, 64)
    assert (canvas[20:44, 36:60] == (0, 0, 255)).all()  # steps 1-2 keep the pixels
    assert foreground[20:44, 4:28].all()
    assert not foreground[20:44, 36:60].any()


def test_foreground_without_mask_is_the_photo_area() -> None:
    _, foreground = K.crop_canvas(_image(100, 200), None, None, 64)
    assert foreground[16:48].all()
    assert not foreground[:16].any()
    assert not foreground[48:].any()


@pytest.mark.parametrize(
    ("image", "box", "mask", "message"),
    [
        (np.zeros((10, 10), np.uint8), None, None, "image"),
        (np.zeros((10, 10, 3), np.float32), None, None, "image"),
        (np.zeros((10, 10, 4), np.uint8), None, None, "image"),
        (np.zeros((0, 10, 3), np.uint8), None, None, "empty"),
        (np.zeros((10, 10, 3), np.uint8), None, np.ones((10, 11), bool), "mask"),
        (np.zeros((10, 10, 3), np.uint8), None, np.ones((10, 10), np.uint8), "mask"),
        (np.zeros((10, 10, 3), np.uint8), None, np.zeros((10, 10), bool), "empty"),
        (np.zeros((10, 10, 3), np.uint8), (5.0, 5.0, 5.0, 8.0), None, "x2 > x1"),
        (np.zeros((10, 10, 3), np.uint8), (5.0, 8.0, 9.0, 2.0), None, "x2 > x1"),
        (np.zeros((10, 10, 3), np.uint8), (float("nan"), 0.0, 5.0, 5.0), None, "finite"),
        (np.zeros((10, 10, 3), np.uint8), (20.0, 20.0, 30.0, 30.0), None, "outside"),
    ],
)
def test_bad_inputs_are_refused(image, box, mask, message) -> None:
    with pytest.raises(ValueError, match=message):
        K.prepare_crop(image, box, mask, 32)


def test_mask_outside_the_box_is_refused() -> None:
    mask = np.zeros((100, 200), bool)
    mask[:5, :5] = True
    with pytest.raises(ValueError, match="no pixel inside the box"):
        K.prepare_crop(_image(), (100.0, 50.0, 150.0, 90.0), mask, 32)


def test_product_mask_keeps_white_inside_the_outline() -> None:
    image = np.full((60, 60, 3), 250, np.uint8)
    image[10:50, 10:50] = (20, 20, 20)  # a black frame...
    image[20:40, 20:40] = (255, 255, 255)  # ...around a white panel
    mask = K.product_mask(image)
    assert mask[10:50, 10:50].all()
    assert not mask[:10].any()
    assert not mask[:, 50:].any()


def test_product_mask_of_a_photo_with_no_white_is_everything() -> None:
    assert K.product_mask(np.full((8, 8, 3), 90, np.uint8)).all()
