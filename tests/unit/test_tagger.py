"""FashionTagger on synthetic inputs with a fake detector and classifier: person association,
the catalogue fallback, thresholds, batching and the result contract."""

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from models.detection import crops
from models.people.boxes import PersonBoxes
from models.tagger import FashionTagger, TaggerThresholds, catalogue_product_mask
from models.tags import ColourReading, Detections, FrameSource
from models.taxonomy import DETECTOR_CLASSES, GARMENT_CATEGORIES
from models.track_gate import GateRules, TrackGates

H, W = 120, 160


def _mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _detections(items: Sequence[tuple[str, float, tuple[int, int, int, int]]]) -> Detections:
    if not items:
        return Detections.empty(H, W, DETECTOR_CLASSES)
    return Detections(
        boxes=np.array([box for _, _, box in items], np.float32),
        masks=np.stack([_mask(*box) for _, _, box in items]),
        scores=np.array([score for _, score, _ in items], np.float32),
        class_ids=np.array([DETECTOR_CLASSES.index(name) for name, _, _ in items], np.int64),
        class_names=DETECTOR_CLASSES,
    )


class FakeDetector:
    def __init__(self, per_image: Sequence[Detections]) -> None:
        self.per_image = list(per_image)
        self.calls: list[int] = []

    @property
    def class_names(self) -> tuple[str, ...]:
        return DETECTOR_CLASSES

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        self.calls.append(len(images))
        return [self.per_image.pop(0) for _ in images]


class FakeClassifier:
    """Category head says `category` with 0.8; every crop is 8x8 and records what it saw."""

    def __init__(self, category: str = "bag") -> None:
        self.category = category
        self.calls: list[int] = []
        self.prepared: list[tuple[tuple[float, float, float, float] | None, int]] = []

    @property
    def heads(self) -> Mapping[str, Sequence[str]]:
        return {
            "category": GARMENT_CATEGORIES,
            "gender": ("Men", "Women"),
            "usage": ("Casual", "Formal"),
        }

    def prepare(
        self,
        image: np.ndarray,
        box: tuple[float, float, float, float] | None,
        mask: np.ndarray | None,
    ) -> np.ndarray:
        self.prepared.append((box, 0 if mask is None else int(mask.sum())))
        return np.zeros((8, 8, 3), np.uint8)

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        self.calls.append(len(crops))
        category = np.full(len(GARMENT_CATEGORIES), 0.2 / (len(GARMENT_CATEGORIES) - 1))
        category[GARMENT_CATEGORIES.index(self.category)] = 0.8
        return [
            {
                "category": category.astype(np.float32),
                "gender": np.array([0.3, 0.7], np.float32),
                "usage": np.array([0.9, 0.1], np.float32),
            }
            for _ in crops
        ]


def _colour(image: np.ndarray, mask: np.ndarray) -> ColourReading:
    return ColourReading("Blue", (0, 0, 255), 1.0)


def _tagger(
    detector: FakeDetector, classifier: FakeClassifier | None = None, **kw: object
) -> FashionTagger:
    return FashionTagger(
        detector,
        classifier or FakeClassifier(),
        model_version="det:test+attr:test",
        colour=_colour,
        **kw,  # type: ignore[arg-type]
    )


def _street() -> np.ndarray:
    """A busy (non-studio) image: random texture everywhere, borders included."""
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_garments_go_to_the_person_that_holds_most_of_them() -> None:
    detections = _detections(
        [
            ("person", 0.9, (10, 10, 60, 110)),
            ("person", 0.8, (90, 10, 150, 110)),
            ("top", 0.9, (15, 20, 55, 60)),  # inside person 0
            ("trousers", 0.9, (95, 60, 145, 108)),  # inside person 1
            ("bag", 0.9, (50, 60, 100, 80)),  # 10 px in person 0, 10 px in person 1, 30 in neither
            ("footwear", 0.9, (58, 100, 70, 110)),  # 2 of 12 columns in person 0's mask
        ]
    )
    (tags,) = _tagger(FakeDetector([detections])).tag([_street()])
    assert len(tags.people) == 2
    by_category = {g.category: g for g in tags.garments}
    assert by_category["top"].person_index == 0
    assert by_category["trousers"].person_index == 1
    assert by_category["bag"].person_index is None
    assert by_category["footwear"].person_index is None


def test_box_containment_is_the_fallback_when_masks_do_not_overlap() -> None:
    detections = _detections([("person", 0.9, (10, 10, 60, 110)), ("hat", 0.9, (20, 12, 40, 20))])
    # the person's mask misses the hat (only its lower half is marked), its box holds it
    person_mask = _mask(10, 60, 60, 110)
    detections.masks[0] = person_mask
    (tags,) = _tagger(FakeDetector([detections])).tag([_street()])
    assert tags.garments[0].person_index == 0


def test_detections_below_the_thresholds_are_dropped() -> None:
    detections = _detections(
        [
            ("person", 0.4, (10, 10, 60, 110)),
            ("top", 0.55, (15, 20, 55, 60)),
            ("skirt", 0.45, (15, 60, 55, 90)),
        ]
    )
    tagger = _tagger(
        FakeDetector([detections]), thresholds=TaggerThresholds(garment=0.5, person=0.5)
    )
    (tags,) = tagger.tag([_street()])
    assert [g.category for g in tags.garments] == ["top"]
    assert tags.people == ()
    assert tags.garments[0].person_index is None


def test_a_studio_photo_without_detections_becomes_one_garment() -> None:
    image = np.full((H, W, 3), 250, np.uint8)
    image[30:90, 50:110] = (20, 40, 160)
    image[50:60, 70:80] = 250  # a white logo inside the product: a hole to fill
    classifier = FakeClassifier(category="footwear")
    (tags,) = _tagger(FakeDetector([_detections([])]), classifier).tag([image])
    assert len(tags.garments) == 1
    garment = tags.garments[0]
    assert garment.category == "footwear"
    assert garment.score == pytest.approx(0.8)
    assert garment.person_index is None
    truth = _mask(50, 30, 110, 90)
    found = garment.mask.decode()
    iou = (found & truth).sum() / (found | truth).sum()
    assert iou > 0.9
    np.testing.assert_allclose(garment.box, (50, 30, 110, 90), atol=2)


def test_a_street_frame_without_detections_stays_empty() -> None:
    (tags,) = _tagger(FakeDetector([_detections([])])).tag([_street()])
    assert tags.garments == ()
    assert tags.people == ()


def test_a_studio_photo_with_a_person_but_no_garment_still_gets_its_product() -> None:
    image = np.full((H, W, 3), 250, np.uint8)
    image[10:110, 60:100] = 90
    detections = _detections([("person", 0.9, (60, 10, 100, 110))])
    (tags,) = _tagger(FakeDetector([detections])).tag([image])
    assert len(tags.people) == 1
    assert len(tags.garments) == 1
    np.testing.assert_allclose(tags.garments[0].box, (60, 10, 100, 110), atol=2)


def test_a_street_frame_with_a_person_but_no_garment_stays_without_garments() -> None:
    detections = _detections([("person", 0.9, (60, 10, 100, 110))])
    (tags,) = _tagger(FakeDetector([detections])).tag([_street()])
    assert tags.garments == ()
    assert len(tags.people) == 1


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        (lambda im: None, "whole"),  # nothing stands out: the whole image is the product
        (lambda im: im.__setitem__((slice(0, H), slice(0, 8)), 0), None),  # border not flat
    ],
)
def test_catalogue_mask_edge_cases(draw: object, expected: str | None) -> None:
    image = np.full((H, W, 3), 245, np.uint8)
    draw(image)  # type: ignore[operator]
    mask = catalogue_product_mask(image, TaggerThresholds())
    if expected is None:
        assert mask is None
    else:
        assert mask is not None
        assert mask.all()


def test_every_crop_of_a_batch_is_classified_in_one_call_per_chunk() -> None:
    one = _detections([("top", 0.9, (15, 20, 55, 60)), ("skirt", 0.9, (15, 60, 55, 90))])
    two = _detections([("dress", 0.9, (15, 20, 55, 90))])
    detector = FakeDetector([one, two, one, two, one])
    classifier = FakeClassifier()
    tagger = _tagger(detector, classifier, max_batch=2)
    results = tagger.tag([_street()] * 5)
    assert detector.calls == [2, 2, 1]
    assert classifier.calls == [3, 3, 2]
    assert [len(r.garments) for r in results] == [2, 1, 2, 1, 2]
    # crops are mask-aware: the classifier got each garment's box and its mask
    assert classifier.prepared[0] == ((15.0, 20.0, 55.0, 60.0), 40 * 40)


def test_results_follow_the_contract() -> None:
    detections = _detections([("person", 0.9, (10, 10, 60, 110)), ("top", 0.9, (15, 20, 55, 60))])
    (tags,) = _tagger(FakeDetector([detections])).tag([_street()])
    assert (tags.width, tags.height) == (W, H)
    assert tags.model_version == "det:test+attr:test"
    assert set(tags.timings) == {"detect", "crop", "classify", "colour_and_assemble", "total"}
    assert all(v >= 0 for v in tags.timings.values())
    garment = tags.garments[0]
    assert garment.attributes["gender"].label == "Women"
    assert garment.style.label == "Casual"
    assert garment.style.prob == pytest.approx(0.9)
    assert garment.probabilities["gender"] == pytest.approx({"Men": 0.3, "Women": 0.7})
    assert garment.colour.name == "Blue"
    assert garment.mask.size == (H, W)
    assert garment.mask.area() == 40 * 40


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((H, W), np.uint8),
        np.zeros((H, W, 4), np.uint8),
        np.zeros((H, W, 3), np.float32),
    ],
    ids=["grey", "rgba", "float"],
)
def test_images_that_are_not_rgb_uint8_are_refused(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected RGB uint8"):
        _tagger(FakeDetector([])).tag([image])


def test_a_classifier_without_category_or_style_heads_is_refused() -> None:
    class NoStyle(FakeClassifier):
        @property
        def heads(self) -> Mapping[str, Sequence[str]]:
            return {"category": GARMENT_CATEGORIES}

    with pytest.raises(ValueError, match="'usage'"):
        _tagger(FakeDetector([]), NoStyle())


def test_an_empty_batch_gives_no_results() -> None:
    detector = FakeDetector([])
    assert _tagger(detector).tag([]) == []
    assert detector.calls == []


class FakePeople:
    def __init__(self, per_image: Sequence[PersonBoxes]) -> None:
        self.per_image = list(per_image)

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonBoxes]:
        return [self.per_image.pop(0) for _ in images]


def _people(*items: tuple[float, tuple[float, float, float, float]]) -> PersonBoxes:
    return PersonBoxes(
        boxes=np.array([box for _, box in items], np.float32).reshape(-1, 4),
        scores=np.array([score for score, _ in items], np.float32),
    )


def test_with_a_person_detector_people_are_its_boxes_not_the_garment_models() -> None:
    detections = _detections(
        [
            ("person", 0.95, (10, 10, 60, 110)),  # the garment model's person: not used
            ("top", 0.9, (95, 20, 145, 60)),
            ("trousers", 0.9, (15, 60, 55, 108)),
        ]
    )
    people = _people(
        (0.9, (90.4, 10.0, 150.0, 110.0)),
        (0.7, (12.0, 8.0, 58.0, 112.0)),
        (0.3, (0.0, 0.0, 20.0, 20.0)),  # below the person threshold
    )
    tagger = _tagger(FakeDetector([detections]), people=FakePeople([people]))
    (tags,) = tagger.tag([_street()])
    assert [p.score for p in tags.people] == pytest.approx([0.9, 0.7])
    assert tags.people[0].box == pytest.approx((90.4, 10.0, 150.0, 110.0))
    # the mask is the box
    assert tags.people[1].mask.area() == (58 - 12) * (112 - 8)
    by_category = {g.category: g for g in tags.garments}
    assert by_category["top"].person_index == 0
    assert by_category["trousers"].person_index == 1
    assert "people" in tags.timings


def test_a_frame_where_the_person_detector_finds_nobody_has_no_people() -> None:
    detections = _detections([("person", 0.95, (10, 10, 60, 110)), ("top", 0.9, (15, 20, 55, 60))])
    tagger = _tagger(FakeDetector([detections]), people=FakePeople([_people()]))
    (tags,) = tagger.tag([_street()])
    assert tags.people == ()
    assert tags.garments[0].person_index is None


class CropDetector(FakeDetector):
    """The garment detector fed person crops: answers every crop with the same detections
    (in crop pixels, CROP_WIDTH x CROP_HEIGHT) and records the crops it saw."""

    def __init__(self, items: Sequence[tuple[str, float, tuple[int, int, int, int]]]) -> None:
        super().__init__([])
        self.items = items
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        self.calls.append(len(images))
        self.shapes.extend(image.shape for image in images)
        return [_crop_detections(self.items) for _ in images]


def _crop_detections(items: Sequence[tuple[str, float, tuple[int, int, int, int]]]) -> Detections:
    h, w = crops.CROP_HEIGHT, crops.CROP_WIDTH
    masks = np.zeros((len(items), h, w), bool)
    for i, (_, _, (x1, y1, x2, y2)) in enumerate(items):
        masks[i, y1:y2, x1:x2] = True
    return Detections(
        boxes=np.array([box for _, _, box in items], np.float32).reshape(-1, 4),
        masks=masks,
        scores=np.array([score for _, score, _ in items], np.float32),
        class_ids=np.array([DETECTOR_CLASSES.index(name) for name, _, _ in items], np.int64),
        class_names=DETECTOR_CLASSES,
    )


def _per_person_tagger(
    whole: FakeDetector,
    on_crops: CropDetector,
    people: Sequence[PersonBoxes],
    thresholds: TaggerThresholds = TaggerThresholds(large_person=1.01),  # noqa: B008
) -> FashionTagger:
    """People in these 120 px frames are 80-100 px tall: by default only people taller than
    the frame count as large, so they go through the crops."""
    return _tagger(whole, people=FakePeople(people), crop_detector=on_crops, thresholds=thresholds)


def test_garments_are_found_on_each_persons_crop_and_mapped_back_to_the_frame() -> None:
    # a 40x90 person: their 2:3 crop window is about 70x105 frame pixels, scaled 3.2x
    person = (30.0, 20.0, 70.0, 110.0)
    window = crops.crop_window(person)
    scale = crops.crop_scale(window)
    # a top in the crop's middle, and a bag at the crop's left edge, outside the person's box
    top = (80, 100, 150, 180)
    bag = (0, 150, 20, 200)
    on_crops = CropDetector([("top", 0.9, top), ("bag", 0.9, bag), ("person", 0.99, (0, 0, 5, 5))])
    whole = FakeDetector([])
    (tags,) = _per_person_tagger(whole, on_crops, [_people((0.9, person))]).tag([_street()])
    assert whole.calls == []  # a frame with people never goes through the detector whole
    assert on_crops.shapes == [(crops.CROP_HEIGHT, crops.CROP_WIDTH, 3)]
    assert [g.category for g in tags.garments] == ["top"]  # the bag is a neighbour's
    (garment,) = tags.garments
    expected = (
        window[0] + top[0] / scale,
        window[1] + top[1] / scale,
        window[0] + top[2] / scale,
        window[1] + top[3] / scale,
    )
    assert garment.box == pytest.approx(expected, abs=0.01)
    # the mask lands on the same frame pixels (to within the rounding of the scaling)
    mask = garment.mask.decode()
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert cols[0] == pytest.approx(expected[0], abs=1.5)
    assert rows[-1] + 1 == pytest.approx(expected[3], abs=1.5)
    assert garment.person_index == 0
    assert len(tags.people) == 1
    assert {"people", "detect"} <= set(tags.timings)


def test_all_crops_of_a_chunk_go_through_the_detector_in_one_call() -> None:
    people = [
        _people((0.9, (10.0, 10.0, 50.0, 110.0)), (0.9, (100.0, 10.0, 140.0, 110.0))),
        _people((0.9, (60.0, 20.0, 90.0, 100.0))),
    ]
    on_crops = CropDetector([("top", 0.9, (80, 100, 150, 180))])
    tagged = _per_person_tagger(FakeDetector([]), on_crops, people).tag([_street(), _street()])
    assert on_crops.calls == [3]
    assert [[g.person_index for g in t.garments] for t in tagged] == [[0, 1], [0]]


def test_a_garment_found_again_on_an_overlapping_neighbours_crop_is_kept_once() -> None:
    # two people almost on top of each other: the top is found on both crops
    people = _people((0.9, (40.0, 10.0, 80.0, 110.0)), (0.8, (42.0, 12.0, 82.0, 112.0)))
    on_crops = CropDetector([("top", 0.9, (80, 100, 150, 180))])
    (tags,) = _per_person_tagger(FakeDetector([]), on_crops, [people]).tag([_street()])
    assert [g.category for g in tags.garments] == ["top"]


def test_an_image_without_people_goes_through_the_garment_detector_whole() -> None:
    whole = FakeDetector([_detections([("bag", 0.9, (20, 20, 80, 80))])])
    on_crops = CropDetector([("top", 0.9, (80, 100, 150, 180))])
    (tags,) = _per_person_tagger(whole, on_crops, [_people()]).tag([_street()])
    assert whole.calls == [1]
    assert on_crops.calls == []
    assert [g.category for g in tags.garments] == ["bag"]
    assert tags.garments[0].box == (20.0, 20.0, 80.0, 80.0)


def test_garments_per_person_without_a_person_detector_is_refused() -> None:
    with pytest.raises(ValueError, match="person detector"):
        _tagger(FakeDetector([]), crop_detector=CropDetector([]))


class GenderClassifier(FakeClassifier):
    """Gender (Men, Women) from what was cropped: a person crop (no mask) says Women 0.9,
    footwear (masks under 100 px) says Men 0.8, anything else Women 0.6."""

    def prepare(
        self,
        image: np.ndarray,
        box: tuple[float, float, float, float] | None,
        mask: np.ndarray | None,
    ) -> np.ndarray:
        super().prepare(image, box, mask)
        kind = 0 if mask is None else (1 if mask.sum() < 100 else 2)
        return np.full((8, 8, 3), kind, np.uint8)

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        out = super().predict(crops)
        women = {0: 0.9, 1: 0.2, 2: 0.6}
        for probs, crop in zip(out, crops, strict=True):
            probs["gender"] = np.array([1 - women[int(crop[0, 0, 0])], women[int(crop[0, 0, 0])]])
        return out


def test_gender_is_decided_once_per_person_from_their_crop_and_all_their_garments() -> None:
    detections = _detections(
        [
            ("person", 0.9, (10, 10, 60, 110)),
            ("top", 0.9, (15, 20, 55, 60)),  # 1600 px: Women 0.6
            ("footwear", 0.9, (20, 100, 28, 108)),  # 64 px: Men 0.8 on its own
            ("bag", 0.9, (100, 20, 140, 60)),  # worn by nobody: keeps its own answer
        ]
    )
    classifier = GenderClassifier()
    (tags,) = _tagger(FakeDetector([detections]), classifier).tag([_street()])
    by_category = {g.category: g for g in tags.garments}
    # mean of the person crop (0.9), the top (0.6) and the shoe (0.2): Women 0.567
    for worn in ("top", "footwear"):
        assert by_category[worn].attributes["gender"].label == "Women"
        assert by_category[worn].attributes["gender"].prob == pytest.approx(1.7 / 3, abs=1e-5)
        assert by_category[worn].probabilities["gender"]["Men"] == pytest.approx(1.3 / 3, abs=1e-5)
    assert by_category["bag"].attributes["gender"].prob == pytest.approx(0.6)
    # one extra crop, the wearer's, classified in the same call as the garments
    assert classifier.calls == [4]
    assert (10.0, 10.0, 60.0, 110.0) in [box for box, _ in classifier.prepared]


def test_an_attribute_under_its_calibrated_threshold_is_unknown_with_its_probabilities() -> None:
    detections = _detections([("top", 0.9, (15, 20, 55, 60))])
    tagger = _tagger(FakeDetector([detections]), confidence={"gender": 0.75, "usage": 0.5})
    (tags,) = tagger.tag([_street()])
    (garment,) = tags.garments
    assert garment.attributes["gender"].label == "unknown"
    assert garment.attributes["gender"].prob == pytest.approx(0.7)
    assert garment.probabilities["gender"] == pytest.approx({"Men": 0.3, "Women": 0.7})
    assert garment.attributes["usage"].label == "Casual"  # 0.9 >= 0.5
    assert garment.style.label == "Casual"
    # no threshold: always stated; the label agrees with the detector's category, the
    # probabilities stay the classifier's (bag 0.8)
    assert garment.attributes["category"].label == "top"
    assert garment.probabilities["category"]["bag"] == pytest.approx(0.8)


def test_an_image_whose_people_are_all_large_goes_through_the_detector_whole() -> None:
    # a model shot: one person 100 of 120 px tall (0.83 >= 0.6); garments from the whole image
    whole = FakeDetector([_detections([("top", 0.9, (15, 20, 55, 60))])])
    on_crops = CropDetector([("trousers", 0.9, (80, 100, 150, 180))])
    people = [_people((0.9, (10.0, 10.0, 60.0, 110.0)))]
    (tags,) = _per_person_tagger(whole, on_crops, people, TaggerThresholds()).tag([_street()])
    assert whole.calls == [1]
    assert on_crops.calls == []
    assert [g.category for g in tags.garments] == ["top"]
    assert tags.garments[0].person_index == 0  # its wearer by overlap, as before


def test_a_large_person_in_a_camera_frame_goes_through_their_crop() -> None:
    # the same 100 of 120 px person as above, in a camera frame: a close-up, not a model shot
    whole = FakeDetector([_detections([("top", 0.9, (15, 20, 55, 60))])])
    on_crops = CropDetector([("trousers", 0.9, (80, 100, 150, 180))])
    people = [_people((0.9, (10.0, 10.0, 60.0, 110.0)))]
    tagger = _per_person_tagger(whole, on_crops, people, TaggerThresholds())
    (tags,) = tagger.tag([_street()], sources=[FrameSource("cam", 0.0)])
    assert whole.calls == []
    assert on_crops.calls == [1]
    assert [(g.category, g.person_index) for g in tags.garments] == [("trousers", 0)]


def test_a_large_persons_garments_come_from_the_whole_image_a_small_ones_from_their_crop() -> None:
    # person 0: 100 of 120 px (large); person 1: 50 px (small), standing at x 100-120
    people = [_people((0.9, (10.0, 10.0, 60.0, 110.0)), (0.9, (100.0, 60.0, 120.0, 110.0)))]
    whole = FakeDetector(
        [
            _detections(
                [
                    ("top", 0.9, (15, 20, 55, 60)),  # worn by the large person: kept
                    ("trousers", 0.9, (102, 85, 118, 108)),  # the small one's: their crop has it
                ]
            )
        ]
    )
    on_crops = CropDetector([("footwear", 0.9, (80, 280, 150, 320))])
    (tags,) = _per_person_tagger(whole, on_crops, people, TaggerThresholds()).tag([_street()])
    assert whole.calls == [1]
    assert on_crops.calls == [1]  # one crop: the small person's
    assert sorted((g.category, g.person_index) for g in tags.garments) == [
        ("footwear", 1),
        ("top", 0),
    ]


def test_a_studio_photo_goes_through_the_detector_whole_whatever_its_people() -> None:
    # a product on white that the person detector took for a small person
    image = np.full((H, W, 3), 250, np.uint8)
    image[40:80, 60:100] = (120, 30, 30)
    whole = FakeDetector([_detections([("bag", 0.9, (60, 40, 100, 80))])])
    on_crops = CropDetector([("top", 0.9, (80, 100, 150, 180))])
    people = [_people((0.9, (60.0, 40.0, 100.0, 80.0)))]
    (tags,) = _per_person_tagger(whole, on_crops, people, TaggerThresholds()).tag([image])
    assert whole.calls == [1]
    assert on_crops.calls == []
    assert [g.category for g in tags.garments] == ["bag"]


class EmbeddingFakeClassifier(FakeClassifier):
    """FakeClassifier whose forward also gives an embedding: crop i of a call gets the unit
    vector e_i (so each garment's vector says which crop it came from)."""

    embedding_version = "emb:test"

    def __init__(self) -> None:
        super().__init__()
        self.embedded_calls: list[int] = []

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        raise AssertionError("with an embedding head the tagger calls predict_embedded only")

    def predict_embedded(
        self, crops: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
        self.embedded_calls.append(len(crops))
        probs = FakeClassifier.predict(self, crops)
        return probs, np.eye(len(crops), 16, dtype=np.float32)


def test_the_embedding_of_each_garment_comes_from_the_same_classifier_call() -> None:
    detections = _detections(
        [
            ("person", 0.9, (10, 10, 60, 110)),
            ("top", 0.9, (15, 20, 55, 60)),
            ("trousers", 0.9, (15, 60, 55, 108)),
        ]
    )
    classifier = EmbeddingFakeClassifier()
    tagger = _tagger(FakeDetector([detections, detections]), classifier)
    assert tagger.embedding_version == "emb:test"
    first, second = tagger.tag([_street(), _street()])
    # one call for both images: 2 garments + 1 wearer crop each; the wearer's crop (gender)
    # gets no garment's vector
    assert classifier.embedded_calls == [6]
    for tags, offset in ((first, 0), (second, 3)):
        vectors = [g.embedding for g in tags.garments]
        assert all(v is not None and v.version == "emb:test" for v in vectors)
        rows = [int(np.argmax(v.vector)) for v in vectors if v is not None]
        assert rows == [offset, offset + 1]


def test_a_classifier_without_an_embedding_head_leaves_garments_without_one() -> None:
    detections = _detections([("top", 0.9, (15, 20, 55, 60))])
    tagger = _tagger(FakeDetector([detections]))
    assert tagger.embedding_version == ""
    (tags,) = tagger.tag([_street()])
    assert tags.garments[0].embedding is None


def _model_shot() -> np.ndarray:
    """A studio photo: a product (rows 20-100) on a flat white border."""
    image = np.full((H, W, 3), 250, np.uint8)
    image[20:100, 40:120] = (20, 40, 160)
    return image


def test_a_catalogue_photo_gets_its_product_vector_from_one_more_crop_of_the_same_call() -> None:
    # a model shot: the detector finds the model's top and trousers; the product is the whole
    # product crop, not either garment
    detections = _detections(
        [("top", 0.9, (40, 20, 120, 60)), ("trousers", 0.9, (40, 60, 120, 100))]
    )
    classifier = EmbeddingFakeClassifier()
    tagger = _tagger(FakeDetector([detections, detections]), classifier)
    catalogue, street = tagger.tag([_model_shot(), _street()], catalogue=[True, False])
    # 2 garments + the product crop, then 2 garments: one call
    assert classifier.embedded_calls == [5]
    product = catalogue.product
    assert product is not None
    assert int(np.argmax(product.embedding.vector)) == 2  # the third crop of the call
    assert product.embedding.version == "emb:test"
    assert (product.category, product.gender) == ("bag", "Women")
    # the product crop is the product mask's box (the catalogue fallback's crop rule)
    box, area = classifier.prepared[2]
    assert box == pytest.approx((40, 20, 120, 100), abs=2)
    assert area > 0.9 * 80 * 80
    assert street.product is None
    assert [int(np.argmax(g.embedding.vector)) for g in street.garments if g.embedding] == [3, 4]


def test_a_catalogue_photo_whose_garment_is_the_fallback_reuses_that_crop() -> None:
    classifier = EmbeddingFakeClassifier()
    tagger = _tagger(FakeDetector([_detections([])]), classifier)
    (tags,) = tagger.tag([_model_shot()], catalogue=[True])
    assert classifier.embedded_calls == [1]  # no second crop of the same pixels
    assert tags.product is not None
    (garment,) = tags.garments
    assert garment.embedding is not None
    np.testing.assert_array_equal(tags.product.embedding.vector, garment.embedding.vector)


def test_a_catalogue_photo_that_is_not_a_studio_shot_is_embedded_whole() -> None:
    classifier = EmbeddingFakeClassifier()
    tagger = _tagger(FakeDetector([_detections([("top", 0.9, (15, 20, 55, 60))])]), classifier)
    (tags,) = tagger.tag([_street()], catalogue=[True])
    assert tags.product is not None
    assert classifier.prepared[-1] == (None, 0)  # the whole image, no mask


def test_no_product_without_an_embedding_head_or_without_the_catalogue_flag() -> None:
    detections = _detections([("top", 0.9, (40, 20, 120, 60))])
    (plain,) = _tagger(FakeDetector([detections])).tag([_model_shot()], catalogue=[True])
    assert plain.product is None
    classifier = EmbeddingFakeClassifier()
    (unflagged,) = _tagger(FakeDetector([detections]), classifier).tag([_model_shot()])
    assert unflagged.product is None
    assert classifier.embedded_calls == [1]
    with pytest.raises(ValueError, match="catalogue flags"):
        _tagger(FakeDetector([detections])).tag([_model_shot()], catalogue=[True, False])


class ArticleClassifier(FakeClassifier):
    """Sure the crop is a dress: articleType Dresses 0.5, Trousers 0.3, Jeans 0.2."""

    @property
    def heads(self) -> Mapping[str, Sequence[str]]:
        return {
            **super().heads,
            "articleType": ("Dresses", "Trousers", "Jeans"),
            "subCategory": ("Dress", "Bottomwear", "Topwear"),
            "baseColour": ("Black", "Blue"),
        }

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        out = super().predict(crops)
        for probs in out:
            probs["articleType"] = np.array([0.5, 0.3, 0.2], np.float32)
            probs["subCategory"] = np.array([0.6, 0.3, 0.1], np.float32)
            probs["baseColour"] = np.array([0.7, 0.3], np.float32)
        return out


def test_a_detected_garments_attributes_agree_with_its_category() -> None:
    detections = _detections([("trousers", 0.9, (15, 20, 55, 110))])
    (tags,) = _tagger(FakeDetector([detections]), ArticleClassifier()).tag([_street()])
    (garment,) = tags.garments
    assert garment.category == "trousers"
    assert garment.attributes["articleType"].label == "Trousers"
    assert garment.attributes["articleType"].prob == pytest.approx(0.3)
    assert garment.attributes["subCategory"].label == "Bottomwear"
    assert garment.attributes["category"].label == "trousers"
    # the probabilities are stored as the classifier gave them, colour untouched
    assert garment.probabilities["articleType"] == pytest.approx(
        {"Dresses": 0.5, "Trousers": 0.3, "Jeans": 0.2}
    )
    assert garment.attributes["baseColour"].label == "Black"


def test_an_agreeing_label_is_stated_only_as_sure_as_the_classifier_is_of_it() -> None:
    # renormalised over the agreeing types Trousers would be 0.6 and pass a 0.4 threshold;
    # the classifier itself gave it 0.3, and the threshold was calibrated on its own figures
    detections = _detections([("trousers", 0.9, (15, 20, 55, 110))])
    tagger = _tagger(
        FakeDetector([detections]), ArticleClassifier(), confidence={"articleType": 0.4}
    )
    (garment,) = tagger.tag([_street()])[0].garments
    assert garment.attributes["articleType"].label == "unknown"
    assert garment.attributes["articleType"].prob == pytest.approx(0.3)


class ShoeClassifier(FakeClassifier):
    """Leans to Heels for every crop (Heels 0.6, Casual Shoes 0.3, Flats 0.1), and says every
    crop, the wearer's included, is of `men` probability Men."""

    def __init__(self, men: float) -> None:
        super().__init__()
        self.men = men

    @property
    def heads(self) -> Mapping[str, Sequence[str]]:
        return {**super().heads, "articleType": ("Heels", "Casual Shoes", "Flats")}

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        out = super().predict(crops)
        for probs in out:
            probs["articleType"] = np.array([0.6, 0.3, 0.1], np.float32)
            probs["gender"] = np.array([self.men, 1 - self.men], np.float32)
        return out


@pytest.mark.parametrize(
    ("men", "gender_threshold", "stated"),
    [
        (0.8, 0.0, "Casual Shoes"),  # a man's shoes are not Heels
        (0.2, 0.0, "Heels"),  # a woman's may be
        (0.8, 0.9, "Heels"),  # unsure of the wearer: the shoe's own answer
    ],
)
def test_a_wearers_gender_leaves_out_article_types_not_sold_to_them(
    men: float, gender_threshold: float, stated: str
) -> None:
    detections = _detections(
        [("person", 0.9, (10, 10, 60, 110)), ("footwear", 0.9, (20, 100, 28, 108))]
    )
    tagger = _tagger(
        FakeDetector([detections]), ShoeClassifier(men), confidence={"gender": gender_threshold}
    )
    (shoe,) = tagger.tag([_street()])[0].garments
    assert shoe.attributes["articleType"].label == stated
    # the classifier's probabilities are stored unchanged
    assert shoe.probabilities["articleType"] == pytest.approx(
        {"Heels": 0.6, "Casual Shoes": 0.3, "Flats": 0.1}
    )


def test_the_catalogue_fallback_is_named_by_the_classifier_alone() -> None:
    studio = np.full((H, W, 3), 255, np.uint8)
    studio[30:90, 50:110] = (20, 20, 200)
    empty = _detections([])
    (tags,) = _tagger(FakeDetector([empty]), ArticleClassifier(category="dress")).tag([studio])
    (garment,) = tags.garments
    assert garment.category == "dress"
    assert garment.probabilities["articleType"] == pytest.approx(
        {"Dresses": 0.5, "Trousers": 0.3, "Jeans": 0.2}
    )


def test_a_tracked_persons_garments_are_inferred_once_and_carried_to_later_frames() -> None:
    # one person walking right 10 px a frame; the third frame is 2.5 s later and its crop
    # is clearly larger (taller), so it is inferred again
    boxes = [(20.0, 20.0, 50.0, 100.0), (30.0, 20.0, 60.0, 100.0), (40.0, 5.0, 80.0, 115.0)]
    people = [_people((0.9, box)) for box in boxes]
    on_crops = CropDetector([("top", 0.9, (80, 100, 150, 180))])
    tagger = _tagger(
        FakeDetector([]),
        people=FakePeople(people),
        crop_detector=on_crops,
        thresholds=TaggerThresholds(large_person=1.01),
        gates=TrackGates(GateRules(min_interval_s=2.0)),
    )
    sources = [FrameSource("cam", t) for t in (0.0, 0.5, 2.5)]
    tagged = tagger.tag([_street()] * 3, sources=sources)
    assert on_crops.calls == [2]  # frames 1 and 3: the second carries the first's garments
    first, carried, again = (t.garments for t in tagged)
    assert len(first) == len(carried) == len(again) == 1
    # the carried top moved with its wearer: 10 px right, same size, same labels
    assert carried[0].box[0] == pytest.approx(first[0].box[0] + 10, abs=0.01)
    assert carried[0].box[3] == pytest.approx(first[0].box[3], abs=0.01)
    assert carried[0].attributes == first[0].attributes
    assert carried[0].person_index == 0
    assert carried[0].mask.area() == pytest.approx(first[0].mask.area(), rel=0.1)
    assert tagger.gate_stats is not None
    assert (tagger.gate_stats.inferred, tagger.gate_stats.carried) == (2, 1)


def test_frames_without_a_source_and_catalogue_photos_are_never_carried() -> None:
    person = (20.0, 20.0, 50.0, 100.0)
    on_crops = CropDetector([("top", 0.9, (80, 100, 150, 180))])
    tagger = _tagger(
        FakeDetector([]),
        people=FakePeople([_people((0.9, person))] * 2),
        crop_detector=on_crops,
        thresholds=TaggerThresholds(large_person=1.01),
        gates=TrackGates(GateRules()),
    )
    tagger.tag([_street(), _street()])
    assert on_crops.calls == [2]


def test_the_gate_needs_the_per_person_path() -> None:
    with pytest.raises(ValueError, match="track gate"):
        _tagger(FakeDetector([]), gates=TrackGates(GateRules()))
