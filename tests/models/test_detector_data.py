"""Detector data and plumbing on small real inputs: CCP instances from the committed label maps,
the per-photo label rules, the split, copy-paste augmentation, mask pasting against
torchvision's, and the COCO scorer on a perfect and an empty detector."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from models.detection import augment, ccp
from models.detection.evaluate import evaluate_detector
from models.detection.processing import paste_masks
from models.detection.samples import InstanceSample
from models.tags import Detections
from models.taxonomy import DETECTOR_CLASSES

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "ccp"
PERSON = DETECTOR_CLASSES.index("person")


def _names(sample: InstanceSample) -> list[str]:
    return sorted(DETECTOR_CLASSES[c] for c in sample.class_ids)


def test_fixture_photos_give_a_person_and_their_garments() -> None:
    samples = list(ccp.iter_samples(FIXTURE, ccp.image_ids(FIXTURE)))
    assert [s.image_id for s in samples] == ["0010", "0042", "0043", "0253"]
    assert _names(samples[1]) == ["bag", "footwear", "footwear", "person", "skirt", "top"]
    assert _names(samples[3]) == ["bag", "footwear", "person", "shorts", "top"]
    for sample in samples:
        person = sample.masks[sample.class_ids == PERSON]
        assert len(person) == 1
        garments = sample.masks[sample.class_ids != PERSON]
        # every garment pixel is a person pixel, and garments of one photo never overlap
        assert not (garments & ~person[0]).any()
        assert garments.sum(axis=0).max() <= 1


def _labels(*names: str) -> ccp.CcpLabels:
    return ccp.CcpLabels(names=("null", *names))


@pytest.mark.parametrize(
    ("present", "label", "expected"),
    [
        (("vest", "blouse"), "vest", "outerwear"),  # worn over a top
        (("vest", "dress"), "vest", "outerwear"),
        (("vest", "jeans"), "vest", "top"),  # nothing under it: a tank top
        (("bodysuit", "skirt"), "bodysuit", "top"),
        (("bodysuit", "heels"), "bodysuit", "dress"),  # no separate bottom: a one-piece
        (("suit", "pants"), "suit", "outerwear"),
        (("romper",), "romper", "dress"),
        (("purse",), "purse", "bag"),
        (("belt", "skin"), "belt", None),  # part of the person, no category
    ],
)
def test_label_mapping_per_photo(
    present: tuple[str, ...], label: str, expected: str | None
) -> None:
    labels = _labels(*present)
    label_map = np.zeros((4, 4), np.uint8)
    for i in range(len(present)):
        label_map[i] = i + 1
    categories = labels.category_of(label_map)
    row = present.index(label)
    assert categories[row, 0] == (0 if expected is None else DETECTOR_CLASSES.index(expected))


def test_shoes_are_separate_instances_and_fragments_join_them() -> None:
    shoe = DETECTOR_CLASSES.index("footwear")
    top = DETECTOR_CLASSES.index("top")
    categories = np.zeros((100, 100), np.int64)
    categories[80:95, 10:30] = shoe  # left shoe, 300 px
    categories[80:95, 60:80] = shoe  # right shoe
    categories[96:98, 10:14] = shoe  # an 8 px sliver under the left shoe: a fragment
    categories[10:30, 20:80] = top  # a top split in two by a strap
    categories[31:50, 20:80] = top
    label_map = (categories > 0).astype(np.uint8)
    sample = ccp.extract_instances(categories, label_map)
    assert _names(sample) == ["footwear", "footwear", "person", "top"]
    shoes = sample.masks[sample.class_ids == shoe]
    assert sorted(int(m.sum()) for m in shoes) == [300, 308]
    assert int(sample.masks[sample.class_ids == top][0].sum()) == 60 * 39


def test_the_split_is_stable_and_near_its_share() -> None:
    ids = [f"{i:04d}" for i in range(1, 1001)]
    held = [i for i in ids if ccp.is_held_out(i)]
    assert 0.12 < len(held) / len(ids) < 0.18
    assert ccp.is_held_out("0244")
    assert not ccp.is_held_out("0001")


def _fixture_sample(index: int) -> InstanceSample:
    ids = ccp.image_ids(FIXTURE)
    return ccp.load_sample(FIXTURE, ids[index], ccp.read_labels(FIXTURE))


def test_pasting_a_person_occludes_what_is_under_it() -> None:
    base = _fixture_sample(0)
    cutout = augment.cut_out_person(_fixture_sample(1))
    assert cutout is not None
    h, w = base.image.shape[:2]
    pasted = augment.paste_person(base, cutout, x=w // 4, y=h // 4, height=h // 2)
    people = pasted.masks[pasted.class_ids == PERSON]
    assert len(people) == 2
    new_person = people[-1]
    # instances underneath lost exactly the pixels the new person covers
    for mask in pasted.masks[: len(pasted.masks) - len(cutout.class_ids) - 1]:
        assert not (mask & new_person).any()
    # the pasted garments are inside the pasted person
    pasted_garments = pasted.masks[len(pasted.masks) - len(cutout.class_ids) :]
    assert not (pasted_garments & ~new_person).any()


def test_scenes_have_their_size_and_several_people() -> None:
    rng = np.random.default_rng(3)
    tiles = [_fixture_sample(i) for i in range(3)]
    donors = [c for c in (augment.cut_out_person(t) for t in tiles) if c is not None]
    config = augment.AugmentConfig(plain_background_prob=0.0)
    scene = augment.compose_scene(tiles, donors * 2, (480, 640), config, rng)
    assert scene.image.shape == (480, 640, 3)
    assert scene.masks.shape[1:] == (480, 640)
    assert (scene.class_ids == PERSON).sum() >= 3
    assert (scene.masks.sum(axis=(1, 2)) >= augment.MIN_INSTANCE_PIXELS).all()


def test_flipping_mirrors_image_and_masks() -> None:
    sample = _fixture_sample(2)
    flipped = augment.hflip(sample)
    np.testing.assert_array_equal(flipped.image[:, 0], sample.image[:, -1])
    np.testing.assert_array_equal(flipped.masks[:, :, 0], sample.masks[:, :, -1])


def test_mask_pasting_matches_torchvision() -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((5, 1, 28, 28)).astype(np.float32)
    boxes = np.array(
        [[10, 20, 60, 90], [0, 0, 30, 30], [100, 40, 159, 119], [50.5, 10.2, 80.7, 33.3],
         [150, 110, 170, 130]],
        np.float32,
    )  # fmt: skip
    ours = paste_masks(probs, boxes, 120, 160)
    theirs = paste_masks_in_image(torch.from_numpy(probs), torch.from_numpy(boxes), (120, 160))
    theirs = (theirs[:, 0] > 0.5).numpy()
    agree = (ours == theirs).mean(axis=(1, 2))
    # the same arithmetic: at most the odd pixel differs where a probability rounds at 0.5
    assert agree.min() > 0.999


class EchoDetector:
    """Returns the ground truth of each photo it is shown, or nothing."""

    def __init__(self, samples: Sequence[InstanceSample], empty: bool = False) -> None:
        self.samples = {s.image.tobytes()[:4096]: s for s in samples}
        self.empty = empty

    @property
    def class_names(self) -> tuple[str, ...]:
        return DETECTOR_CLASSES

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for image in images:
            s = self.samples[image.tobytes()[:4096]]
            if self.empty:
                out.append(Detections.empty(image.shape[0], image.shape[1], DETECTOR_CLASSES))
                continue
            out.append(
                Detections(
                    boxes=s.boxes,
                    masks=s.masks,
                    scores=np.ones(len(s.class_ids), np.float32),
                    class_ids=s.class_ids,
                    class_names=DETECTOR_CLASSES,
                )
            )
        return out


def test_the_scorer_gives_a_perfect_detector_ap_1_and_an_empty_one_0() -> None:
    samples = list(ccp.iter_samples(FIXTURE, ccp.image_ids(FIXTURE)))
    perfect = evaluate_detector(EchoDetector(samples), samples)
    assert perfect.images == 4
    assert perfect.box_ap == pytest.approx(1.0)
    assert perfect.mask_ap50 == pytest.approx(1.0)
    assert perfect.person_ap50 == pytest.approx(1.0)
    assert perfect.per_category["skirt"]["instances"] == 1
    assert perfect.per_category["hat"]["mask_ap50"] == pytest.approx(1.0)
    empty = evaluate_detector(EchoDetector(samples, empty=True), samples)
    assert empty.box_ap50 == pytest.approx(0.0)
    assert empty.person_ap50 == pytest.approx(0.0)
