"""The person-crop geometry the tagger, the detector's training views and the camera-scene
evaluation share, and the degraded camera crops the garment detector trains on."""

import numpy as np
import pytest

from models.detection import crops
from models.detection.augment import AugmentConfig, camera_crop_view, cut_out_person
from models.detection.samples import InstanceSample
from models.taxonomy import DETECTOR_CLASSES


def test_the_window_is_2_by_3_around_the_person_with_the_margin() -> None:
    window = crops.crop_window((100.0, 50.0, 140.0, 250.0), margin=0.1)
    x0, y0, x1, y1 = window
    assert (y1 - y0) == 240  # 200 px person + 20 px above and below
    assert (x1 - x0) / (y1 - y0) == pytest.approx(crops.CROP_WIDTH / crops.CROP_HEIGHT, abs=0.01)
    assert (x0 + x1) / 2 == pytest.approx(120, abs=1)
    assert (y0 + y1) / 2 == pytest.approx(150, abs=1)


def test_a_wide_person_widens_the_window_instead_of_being_cut() -> None:
    x0, y0, x1, y1 = crops.crop_window((0.0, 0.0, 300.0, 100.0), margin=0.1)
    assert x1 - x0 >= 300 + 2 * 10
    assert (x1 - x0) / (y1 - y0) == pytest.approx(crops.CROP_WIDTH / crops.CROP_HEIGHT, abs=0.01)


def test_a_crop_past_the_frame_edge_repeats_the_edge_and_maps_back_exactly() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[:, :50] = 200  # left half bright
    window = crops.crop_window((-10.0, 10.0, 30.0, 90.0))  # person cut by the left edge
    crop = crops.cut(frame, window)
    assert crop.shape == (crops.CROP_HEIGHT, crops.CROP_WIDTH, 3)
    assert crop[:, 0].min() == 200  # beyond the edge: the edge column, not black
    boxes = crops.boxes_to_frame(np.array([[0.0, 0.0, 224.0, 336.0]]), window)
    assert boxes[0] == pytest.approx(window, abs=1e-3)


def test_masks_go_to_the_crop_and_back_to_the_same_pixels() -> None:
    mask = np.zeros((1, 240, 320), bool)
    mask[0, 100:160, 150:180] = True
    window = crops.crop_window((140.0, 90.0, 190.0, 170.0))
    cropped = crops.cut_masks(mask, window)
    assert cropped.shape == (1, crops.CROP_HEIGHT, crops.CROP_WIDTH)
    back = crops.mask_to_frame(cropped[0], window, (240, 320))
    iou = (back & mask[0]).sum() / (back | mask[0]).sum()
    assert iou > 0.9
    assert not back[:90].any()
    assert not back[:, :140].any()


def _photo() -> InstanceSample:
    """A 300x200 'photo': a person 40-160 x 20-280 with a top and trousers."""
    h, w = 300, 200
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    person = np.zeros((h, w), bool)
    person[20:280, 40:160] = True
    top = np.zeros((h, w), bool)
    top[60:140, 50:150] = True
    trousers = np.zeros((h, w), bool)
    trousers[140:270, 60:140] = True
    ids = [DETECTOR_CLASSES.index(c) for c in ("person", "top", "trousers")]
    return InstanceSample("p", image, np.stack([person, top, trousers]), np.array(ids))


def test_a_camera_crop_view_keeps_the_persons_garments_at_the_crop_size() -> None:
    photo = _photo()
    donor = cut_out_person(photo)
    assert donor is not None
    config = AugmentConfig(camera_crop_prob=1.0, crop_occlusion_prob=0.0)
    view = camera_crop_view(photo, [donor], config, np.random.default_rng(3))
    assert view is not None
    assert view.image.shape == (crops.CROP_HEIGHT, crops.CROP_WIDTH, 3)
    assert sorted(DETECTOR_CLASSES[i] for i in view.class_ids) == ["person", "top", "trousers"]
    # the person fills most of the crop's height, as the tagger cuts them
    rows = np.flatnonzero(view.masks[0].any(axis=1))
    assert 0.6 * crops.CROP_HEIGHT < rows[-1] - rows[0] < crops.CROP_HEIGHT
    # and the image is degraded: far less fine detail than the sharp random texture
    sharp = crops.cut(photo.image, crops.crop_window((40.0, 20.0, 160.0, 280.0)))
    assert (
        np.abs(np.diff(view.image.astype(int), axis=1)).mean()
        < 0.5 * np.abs(np.diff(sharp.astype(int), axis=1)).mean()
    )


def test_a_photo_without_a_person_gives_no_camera_crop() -> None:
    photo = _photo()
    no_person = InstanceSample("q", photo.image, photo.masks[1:], photo.class_ids[1:])
    config = AugmentConfig(camera_crop_prob=1.0)
    assert camera_crop_view(no_person, [], config, np.random.default_rng(0)) is None
