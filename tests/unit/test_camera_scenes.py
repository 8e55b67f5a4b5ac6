"""`eval detector --person-height`: CCP people shrunk onto camera frames, the tagger's garments
on the pasted person scored in frame coordinates."""

from collections.abc import Sequence

import numpy as np
import pytest

from models.detection.camera_scenes import camera_scenes, evaluate_tagger_on_scenes
from models.detection.samples import InstanceSample, boxes_from_masks
from models.tags import ColourReading, GarmentTags, ImageTags, PersonTags, Prediction, RleMask
from models.taxonomy import DETECTOR_CLASSES, PERSON


def _photo(index: int) -> InstanceSample:
    h, w = 400, 260
    image = np.random.default_rng(index).integers(0, 255, (h, w, 3), dtype=np.uint8)
    person = np.zeros((h, w), bool)
    person[20:380, 60:200] = True
    top = np.zeros((h, w), bool)
    top[80:200, 70:190] = True
    trousers = np.zeros((h, w), bool)
    trousers[200:360, 80:180] = True
    ids = [DETECTOR_CLASSES.index(c) for c in ("person", "top", "trousers")]
    return InstanceSample(f"p{index}", image, np.stack([person, top, trousers]), np.array(ids))


BACKGROUND = np.full((480, 640, 3), 90, np.uint8)


@pytest.mark.parametrize("height", [400, 100, 60])
def test_the_pasted_person_is_the_asked_height_standing_inside_the_frame(height: int) -> None:
    (scene,) = camera_scenes([_photo(0)], [BACKGROUND], height)
    assert scene.image.shape == (480, 640, 3)
    person = scene.masks[list(scene.class_ids).index(DETECTOR_CLASSES.index(PERSON))]
    x0, y0, x1, y1 = boxes_from_masks(person[None])[0]
    assert y1 - y0 == pytest.approx(height, abs=1)
    assert x0 >= 0
    assert x1 <= 640
    assert y0 >= 0
    assert y1 <= 480
    assert len(scene.class_ids) == 3  # the person and both garments, in frame coordinates


def _tags(scene: InstanceSample, extra: Sequence[tuple[str, np.ndarray]] = ()) -> ImageTags:
    """What a perfect tagger reports for a scene: its truth, plus `extra` garments."""
    garments = []
    people = []
    for mask, class_id in zip(scene.masks, scene.class_ids, strict=True):
        box = tuple(float(v) for v in boxes_from_masks(mask[None])[0])
        name = DETECTOR_CLASSES[int(class_id)]
        if name == PERSON:
            people.append(PersonTags(0.9, box, RleMask.encode(mask)))  # type: ignore[arg-type]
        else:
            garments.append((name, mask, box))
    for name, mask in extra:  # ranked above the truth: scored, they would be false positives
        garments.append((name, mask, tuple(float(v) for v in boxes_from_masks(mask[None])[0])))
    scores = [0.9] * (len(garments) - len(extra)) + [0.95] * len(extra)
    return ImageTags(
        width=640,
        height=480,
        garments=tuple(
            GarmentTags(
                category=name,
                score=score,
                box=box,  # type: ignore[arg-type]
                mask=RleMask.encode(mask),
                attributes={},
                probabilities={},
                colour=ColourReading("Grey", (90, 90, 90), 1.0),
                style=Prediction("Casual", 0.9),
            )
            for (name, mask, box), score in zip(garments, scores, strict=True)
        ),
        people=tuple(people),
        model_version="test",
        timings={},
    )


def test_a_tagger_that_reports_the_truth_scores_1_and_one_that_finds_nothing_0() -> None:
    scenes = list(camera_scenes([_photo(i) for i in range(4)], [BACKGROUND], 100))
    truth = {id(s.image): s for s in scenes}
    perfect = evaluate_tagger_on_scenes(lambda ims: [_tags(truth[id(im)]) for im in ims], scenes)
    assert perfect.mask_ap50 == pytest.approx(1.0)
    assert perfect.person_ap50 == pytest.approx(1.0)
    blind = evaluate_tagger_on_scenes(
        lambda ims: [ImageTags(640, 480, (), (), "test", {}) for _ in ims], scenes
    )
    assert blind.mask_ap50 == 0.0


def test_garments_of_other_people_in_the_frame_are_not_scored() -> None:
    scenes = list(camera_scenes([_photo(i) for i in range(4)], [BACKGROUND], 100))
    truth = {id(s.image): s for s in scenes}

    def elsewhere(scene: InstanceSample) -> np.ndarray:
        """A top far from the pasted person (a background person's)."""
        x0 = int(boxes_from_masks(scene.masks[:1])[0][0])
        mask = np.zeros((480, 640), bool)
        left = 500 if x0 < 320 else 20
        mask[10:60, left : left + 60] = True
        return mask

    scored = evaluate_tagger_on_scenes(
        lambda ims: [_tags(truth[id(im)], [("top", elsewhere(truth[id(im)]))]) for im in ims],
        scenes,
    )
    assert scored.mask_ap50 == pytest.approx(1.0)
