"""models.tracking: people followed across a camera's frames (ByteTrack), their garments voted over
the track, when sightings end, identical sightings on re-runs and across a state save/restore.

The frames are built by hand: each test needs a known scene (who is where, when), which a real
clip cannot give a unit test. The real clips are tracked in tests/models/test_tracking_clips.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from models.tracking import (
    UNKNOWN_STREAM,
    CameraTracker,
    EndReason,
    FrameDetections,
    GarmentSeen,
    Sighting,
    SightingGarment,
    SkipReason,
    TrackerStateError,
    TrackingConfig,
    TrackingResult,
    frame_detections,
    sighting_id,
)
from models.tracking.votes import GarmentSlots, LabelVote, SlotRules, relative_box
from tests.support.records import tagged_image

FPS = 2.0
T0 = 1_700_000_000.0  # capture time of frame 0
MODEL = "detector-test"
Box = tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class Person:
    """A person in the scene: where their box is at frame 0 and how far it moves per frame."""

    x: float
    y: float = 100.0
    w: float = 80.0
    h: float = 220.0
    dx: float = 0.0
    score: float = 0.92
    wears: tuple[tuple[str, str, float], ...] = (("top", "Red", 0.9), ("trousers", "Blue", 0.8))

    def box(self, n: int) -> Box:
        x = self.x + self.dx * n
        return (x, self.y, x + self.w, self.y + self.h)


def garment(
    index: int,
    person_index: int | None,
    person_box: Box,
    category: str,
    colour: str = "Red",
    score: float = 0.8,
    article: Sequence[tuple[str, float]] = (("Tshirts", 0.7), ("Shirts", 0.3)),
) -> GarmentSeen:
    x1, y1, x2, y2 = person_box
    h = y2 - y1
    # tops on the upper half of the person, everything else on the lower half
    top = category in ("top", "outerwear", "dress")
    box = (
        (x1 + 5, y1 + 0.15 * h, x2 - 5, y1 + 0.55 * h)
        if top
        else (x1 + 5, y1 + 0.5 * h, x2 - 5, y2)
    )
    return GarmentSeen(
        index=index,
        category=category,
        score=score,
        box=box,
        person_index=person_index,
        probabilities={"articleType": dict(article)},
        colour=colour,
        colour_rgb=(200, 20, 20) if colour == "Red" else (20, 20, 200),
        colour_share=0.8,
        style="Casual",
        style_prob=0.6,
    )


def frame(
    n: int,
    people: Sequence[Person],
    *,
    stream: str = "clip.mp4:1000",
    fps: float = FPS,
    end: bool = False,
    model: str = MODEL,
) -> FrameDetections:
    boxes = [p.box(n) for p in people]
    garments: list[GarmentSeen] = []
    for i, (p, b) in enumerate(zip(people, boxes, strict=True)):
        for category, colour, score in p.wears:
            garments.append(garment(len(garments), i, b, category, colour, score))
    return FrameDetections(
        event_id=f"{stream}/{n}",
        stream_ref=stream,
        frame_number=n,
        captured_at=T0 + n / fps,
        width=1280,
        height=720,
        model_version=model,
        person_boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        person_scores=np.asarray([p.score for p in people], np.float32),
        garments=tuple(garments),
        end_of_stream=end,
    )


def scene(frames: int, who: Mapping[int, Sequence[Person]] | None = None) -> list[FrameDetections]:
    """`frames` frames; `who[n]` the people in frame n (none where missing)."""
    who = who or {}
    return [frame(n, who.get(n, ()), end=n == frames - 1) for n in range(frames)]


def run(frames: Iterable[FrameDetections], config: TrackingConfig | None = None) -> TrackingResult:
    tracker = CameraTracker("cam-1", config or TrackingConfig(fps=FPS))
    total = TrackingResult()
    for f in frames:
        total.extend(tracker.update(f))
    return total


def spans(sightings: Sequence[Sighting]) -> list[tuple[int, int]]:
    return sorted((s.first_frame, s.last_frame) for s in sightings)


# ---------------------------------------------------------------------------------------------
# association


def test_two_people_walking_past_each_other_stay_two_sightings() -> None:
    # at 2 fps a walker moves ~ a third of their width between frames
    left = Person(x=100, dx=30)
    right = Person(x=900, dx=-30, wears=(("dress", "Blue", 0.85),))
    frames = scene(20, {n: (left, right) for n in range(20)})
    result = run(frames)
    assert spans(result.sightings) == [(0, 19), (0, 19)]
    by_start = {s.best.box[0] < 640: s for s in result.sightings}
    assert [g.category for g in by_start[True].garments] == ["top", "trousers"]
    assert [g.category for g in by_start[False].garments] == ["dress"]
    assert all(s.end_reason is EndReason.END_OF_STREAM for s in result.sightings)
    assert all(s.frames == 20 for s in result.sightings)


def test_a_person_is_one_sighting_through_a_short_miss_and_two_after_a_long_absence() -> None:
    # seen 0-5, missed 6-7 (1 s < end_after_s), seen 8-12, gone 13-22 (5 s), back 23-29
    p = Person(x=300, dx=5)
    present = [*range(6), *range(8, 13), *range(23, 30)]
    frames = scene(30, {n: (p,) for n in present})
    result = run(frames, TrackingConfig(fps=FPS, end_after_s=3.0))
    assert spans(result.sightings) == [(0, 12), (23, 29)]
    first, second = sorted(result.sightings, key=lambda s: s.first_frame)
    assert first.end_reason is EndReason.LOST
    assert first.frames == 11
    assert second.end_reason is EndReason.END_OF_STREAM


def test_lost_sighting_is_emitted_once_end_after_s_of_capture_time_has_passed() -> None:
    p = Person(x=300)
    frames = scene(20, {n: (p,) for n in range(5)})  # last seen at frame 4 = 2.0 s
    tracker = CameraTracker("cam-1", TrackingConfig(fps=FPS, end_after_s=3.0))
    emitted_at = [f.frame_number for f in frames if tracker.update(f).sightings]
    # frame 10 (5.0 s) is the first more than 3 s after 2.0 s
    assert emitted_at == [11]
    # and 3 s is "more than", not "at least": frame 10 is exactly 3 s later
    assert frames[10].captured_at - frames[4].captured_at == pytest.approx(3.0)


def test_a_track_longer_than_max_duration_is_cut_and_goes_on_as_a_new_sighting() -> None:
    p = Person(x=300, dx=2)
    frames = scene(50, {n: (p,) for n in range(50)})  # 25 s
    result = run(frames, TrackingConfig(fps=FPS, end_after_s=3.0, max_duration_s=10.0))
    assert spans(result.sightings) == [(0, 19), (20, 39), (40, 49)]
    assert [s.end_reason for s in sorted(result.sightings, key=lambda s: s.first_frame)] == [
        EndReason.MAX_DURATION,
        EndReason.MAX_DURATION,
        EndReason.END_OF_STREAM,
    ]
    assert len({s.sighting_id for s in result.sightings}) == 3


def test_a_detection_in_fewer_than_min_frames_frames_is_not_a_sighting() -> None:
    p = Person(x=300)
    frames = scene(12, {3: (p,)})
    result = run(frames, TrackingConfig(fps=FPS, min_frames=2))
    assert result.sightings == []
    assert result.discarded == 1
    assert result.frames == []  # no links written for a track that never qualified


def test_links_are_held_until_the_track_qualifies_then_written_for_every_frame() -> None:
    p = Person(x=300)
    tracker = CameraTracker("cam-1", TrackingConfig(fps=FPS, min_frames=3))
    frames = scene(6, {n: (p,) for n in range(6)})
    links = [len(tracker.update(f).frames) for f in frames]
    assert links == [0, 0, 3, 1, 1, 1]


def test_a_weak_person_detection_neither_starts_nor_extends_a_sighting() -> None:
    person = Person(x=300)
    table = dataclasses.replace(person, score=0.55, wears=())
    # the person stands there for 3 s, then only the weak "person" (a table) stays
    who = {n: (person if n < 6 else table,) for n in range(20)}
    result = run(scene(20, who), TrackingConfig(fps=FPS, person_min_score=0.7))
    assert spans(result.sightings) == [(0, 5)]


def test_people_entering_one_after_another_are_one_sighting_each() -> None:
    a, b, c = Person(x=100, dx=20), Person(x=400, dx=-10), Person(x=800, dx=15)
    who: dict[int, Sequence[Person]] = {}
    for n in range(40):
        who[n] = tuple(
            p
            for p, (start, stop) in ((a, (0, 15)), (b, (10, 30)), (c, (25, 40)))
            if start <= n < stop
        )
    result = run(scene(40, who))
    assert spans(result.sightings) == [(0, 14), (10, 29), (25, 39)]


# ---------------------------------------------------------------------------------------------
# garments and votes


def test_label_vote_weights_each_frame_by_the_detectors_confidence() -> None:
    vote = LabelVote()
    for _ in range(3):
        vote.add({"outerwear": 1.0}, 0.9)  # three confident frames
    for _ in range(4):
        vote.add({"top": 1.0}, 0.3)  # four unsure ones
    assert vote.winner() == ("outerwear", pytest.approx(2.7 / 3.9))
    assert vote.share("top") == pytest.approx(1.2 / 3.9)
    assert vote.share("dress") == 0.0


@pytest.mark.parametrize(
    ("adds", "expected"),
    [
        ([], None),
        ([({"a": 1.0}, 0.0)], None),  # zero weight is not a vote
        ([({"b": 0.5}, 1.0), ({"a": 0.5}, 1.0)], ("a", 0.25)),  # a tie: alphabetical
        ([({"a": 0.5}, 1.0), ({"b": 0.5}, 1.0)], ("a", 0.25)),  # ... whatever the order
        ([({"a": 0.2, "b": 0.8}, 0.5), ({"a": 0.9, "b": 0.1}, 0.5)], ("a", 0.55)),
    ],
)
def test_label_vote_table(
    adds: list[tuple[dict[str, float], float]], expected: tuple[str, float] | None
) -> None:
    vote = LabelVote()
    for probabilities, weight in adds:
        vote.add(probabilities, weight)
    won = vote.winner()
    if expected is None:
        assert won is None
    else:
        assert won is not None
        assert won[0] == expected[0]
        assert won[1] == pytest.approx(expected[1])


def test_a_garment_the_detector_doubts_in_a_few_frames_keeps_its_confident_category() -> None:
    p = Person(x=300, dx=10, wears=())
    frames = []
    for n in range(10):
        f = frame(n, (p,), end=n == 9)
        # a coat: "outerwear" at 0.9 in 7 frames, "top" at 0.4 in 3 frames
        category, score = ("top", 0.4) if n % 3 == 1 else ("outerwear", 0.9)
        g = garment(0, 0, p.box(n), category, "Red", score, (("Jackets", 0.8), ("Tshirts", 0.2)))
        frames.append(dataclasses.replace(f, garments=(g,)))
    (sighting,) = run(frames).sightings
    (coat,) = sighting.garments
    assert coat.category == "outerwear"
    assert coat.frames == 10
    assert coat.category_share == pytest.approx(7 * 0.9 / (7 * 0.9 + 3 * 0.4))
    assert coat.attributes["articleType"].label == "Jackets"
    # the best reference is a frame where the detector was surest of it
    assert coat.best_event_id not in {"clip.mp4:1000/1", "clip.mp4:1000/4", "clip.mp4:1000/7"}


def test_label_vote_among_the_agreeing_labels() -> None:
    vote = LabelVote()
    vote.add({"Dresses": 0.5, "Trousers": 0.3, "Jeans": 0.2}, 1.0)
    assert vote.winner(frozenset({"Trousers", "Jeans"})) == ("Trousers", pytest.approx(0.3))
    # none of them got a vote: the plain winner
    assert vote.winner(frozenset({"Skirts"})) == ("Dresses", pytest.approx(0.5))


def _the_garment_of_six_frames(
    category: str,
    colour: str,
    article: Sequence[tuple[str, float]],
    config: TrackingConfig | None = None,
    **more: Mapping[str, float],
) -> SightingGarment:
    """The one garment of a one-person sighting seen in 6 frames, the classifier giving it
    these article-type probabilities (and `more` heads' ones) in every frame."""
    p = Person(x=300, wears=())
    frames = []
    for n in range(6):
        f = frame(n, (p,), end=n == 5)
        g = garment(0, 0, p.box(n), category, colour, 0.9, article)
        g = dataclasses.replace(g, probabilities={**g.probabilities, **more})
        frames.append(dataclasses.replace(f, garments=(g,)))
    (sighting,) = run(frames, config).sightings
    (only,) = sighting.garments
    return only


def _trousers_seen_as_a_dress(config: TrackingConfig | None = None) -> SightingGarment:
    """Trousers seen from behind, which the classifier leans to call a dress in every frame."""
    article = (("Dresses", 0.5), ("Trousers", 0.3), ("Jeans", 0.2))
    return _the_garment_of_six_frames("trousers", "Blue", article, config)


def test_a_sightings_garment_states_the_labels_that_agree_with_its_category() -> None:
    trousers = _trousers_seen_as_a_dress()
    assert trousers.category == "trousers"
    assert trousers.attributes["articleType"].label == "Trousers"
    assert trousers.attributes["articleType"].prob == pytest.approx(0.3)


def test_a_sightings_attribute_under_its_calibrated_threshold_is_unknown() -> None:
    config = TrackingConfig(fps=FPS, attribute_thresholds={"articleType": 0.4})
    trousers = _trousers_seen_as_a_dress(config)
    assert trousers.attributes["articleType"].label == "unknown"
    assert trousers.attributes["articleType"].prob == pytest.approx(0.3)


def _shoes_of(gender: Mapping[str, float], config: TrackingConfig | None = None) -> SightingGarment:
    """Shoes the classifier leans to call Heels in every frame, worn by someone of `gender`
    (the tagger gives each garment its wearer's gender)."""
    article = (("Heels", 0.6), ("Casual Shoes", 0.3), ("Flats", 0.1))
    return _the_garment_of_six_frames("footwear", "Black", article, config, gender=gender)


def test_a_sightings_article_type_agrees_with_its_wearers_gender() -> None:
    mens = _shoes_of({"Men": 0.8, "Women": 0.2})
    assert mens.attributes["gender"].label == "Men"
    assert mens.attributes["articleType"].label == "Casual Shoes"
    assert _shoes_of({"Men": 0.2, "Women": 0.8}).attributes["articleType"].label == "Heels"
    unsure = TrackingConfig(fps=FPS, attribute_thresholds={"gender": 0.9})
    assert _shoes_of({"Men": 0.8, "Women": 0.2}, unsure).attributes["articleType"].label == (
        "Heels"
    )


def test_tracking_settings_read_the_shipped_classifiers_thresholds(tmp_path: Path) -> None:
    from fashionstream.core.settings import Settings

    shipped = TrackingConfig.from_settings(Settings())
    assert 0.0 < shipped.attribute_thresholds["articleType"] < 1.0
    # no manifest: every voted label is stated, as before calibration existed
    bare = TrackingConfig.from_settings(Settings(weights_dir=tmp_path))
    assert bare.attribute_thresholds == {}


def test_garments_stay_with_their_wearer_when_people_cross() -> None:
    red = Person(x=200, dx=40, wears=(("top", "Red", 0.9),))
    blue = Person(x=800, dx=-40, wears=(("top", "Blue", 0.9),))
    result = run(scene(16, {n: (red, blue) for n in range(16)}))
    assert len(result.sightings) == 2
    colours = sorted(
        (s.best.box[0] < s.mean_box[0], s.garments[0].colour.label) for s in result.sightings
    )
    # each sighting has exactly one top, in one colour, seen in every frame
    assert [len(s.garments) for s in result.sightings] == [1, 1]
    assert sorted(c for _, c in colours) == ["Blue", "Red"]
    assert all(s.garments[0].frames == 16 for s in result.sightings)
    assert all(s.garments[0].colour.prob == pytest.approx(1.0) for s in result.sightings)


def test_a_garment_is_never_seen_in_more_frames_than_its_wearer() -> None:
    p = Person(x=300, wears=(("footwear", "Red", 0.9), ("footwear", "Red", 0.8)))
    frames = scene(6, {n: (p,) for n in range(6)})
    (sighting,) = run(frames).sightings
    (shoes,) = sighting.garments  # the two shoes, one garment
    assert (shoes.category, shoes.frames) == ("footwear", 6)
    assert shoes.score_mean == pytest.approx(0.85)


def test_a_garment_seen_in_too_few_of_the_persons_frames_is_dropped() -> None:
    p = Person(x=300, wears=(("top", "Red", 0.9),))
    frames = []
    for n in range(10):
        f = frame(n, (p,), end=n == 9)
        if n == 4:  # a bag detected once
            bag = garment(1, 0, p.box(n), "bag", "Blue", 0.95)
            f = dataclasses.replace(f, garments=(*f.garments, bag))
        frames.append(f)
    (sighting,) = run(frames).sightings
    assert [g.category for g in sighting.garments] == ["top"]


def test_garment_slots_follow_the_person_and_merge_slots_of_one_category() -> None:
    slots = GarmentSlots(SlotRules(min_frames=1, min_share=0.0))
    person = (100.0, 100.0, 200.0, 300.0)
    shoes_left = garment(0, 0, person, "footwear")
    shoes_left = dataclasses.replace(shoes_left, box=(100.0, 280.0, 140.0, 300.0))
    shoes_right = dataclasses.replace(shoes_left, index=1, box=(160.0, 280.0, 200.0, 300.0))
    top = garment(2, 0, person, "top")
    for n in range(3):
        slots.observe([shoes_left, shoes_right, top], person, f"e{n}", n)
    # the same garments, the person 500 px further right: still the same three slots
    moved = (600.0, 100.0, 700.0, 300.0)
    shifted = [
        dataclasses.replace(g, box=(g.box[0] + 500, g.box[1], g.box[2] + 500, g.box[3]))
        for g in (shoes_left, shoes_right, top)
    ]
    slots.observe(shifted, moved, "e3", 3)
    assert len(slots.slots) == 3
    kept = dict(slots.kept(person_frames=4))
    assert sorted(kept) == ["footwear", "top"]  # the two shoes are one "footwear"
    assert kept["footwear"].frames == 4  # seen in 4 frames, twice in each
    assert kept["footwear"].detections == 8
    assert relative_box((150, 200, 200, 300), person).tolist() == [0.5, 0.5, 1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# identity, determinism, restarts


def test_same_frames_give_the_same_sightings_every_time() -> None:
    a, b = Person(x=100, dx=25), Person(x=700, dx=-20, wears=(("dress", "Blue", 0.8),))
    # b misses a frame now and then (same sighting) and is away for 4.5 s (a new one)
    who = {n: (a,) if n % 7 == 3 or 10 <= n < 19 else (a, b) for n in range(30)}
    first = run(scene(30, who)).sightings
    second = run(scene(30, who)).sightings
    assert len(first) == 3
    assert first == second
    assert [s.to_json() for s in first] == [s.to_json() for s in second]


def test_sighting_ids_come_from_the_data_not_from_the_trackers_counters() -> None:
    p = Person(x=300)
    frames = scene(10, {n: (p,) for n in range(2, 10)})
    (sighting,) = run(frames).sightings
    assert sighting.sighting_id == sighting_id("cam-1", "clip.mp4:1000", MODEL, 2, 0)
    # another camera, stream or model: another sighting
    assert len({
        sighting_id("cam-1", "clip.mp4:1000", MODEL, 2, 0),
        sighting_id("cam-2", "clip.mp4:1000", MODEL, 2, 0),
        sighting_id("cam-1", "clip.mp4:1001", MODEL, 2, 0),
        sighting_id("cam-1", "clip.mp4:1000", "other", 2, 0),
        sighting_id("cam-1", "clip.mp4:1000", MODEL, 3, 0),
    }) == 5  # fmt: skip


@pytest.mark.parametrize("cut", [1, 5, 9, 14, 22, 29])
def test_a_restart_from_saved_state_gives_exactly_the_uninterrupted_sightings(cut: int) -> None:
    a, b = Person(x=100, dx=25), Person(x=700, dx=-20)
    who = {n: (a, b) if n < 12 or n > 20 else (b,) for n in range(30)}
    frames = scene(30, who)
    config = TrackingConfig(fps=FPS)
    whole = run(frames, config)

    before = CameraTracker("cam-1", config)
    total = TrackingResult()
    for f in frames[:cut]:
        total.extend(before.update(f))
    after = CameraTracker.from_bytes(before.to_bytes(), config)
    for f in frames[cut:]:
        total.extend(after.update(f))
    assert total.sightings == whole.sightings
    assert total.frames == whole.frames


def test_a_redelivered_frame_is_skipped_as_a_duplicate() -> None:
    p = Person(x=300)
    frames = scene(10, {n: (p,) for n in range(10)})
    tracker = CameraTracker("cam-1", TrackingConfig(fps=FPS))
    for f in frames[:6]:
        tracker.update(f)
    assert tracker.update(frames[4]).skipped is SkipReason.DUPLICATE
    assert tracker.update(frames[5]).skipped is SkipReason.DUPLICATE
    rest = TrackingResult()
    for f in frames[6:]:
        rest.extend(tracker.update(f))
    (sighting,) = rest.sightings
    assert sighting.frames == 10


def test_a_recording_processed_again_from_frame_0_gives_the_same_sightings() -> None:
    p = Person(x=300, dx=10)
    frames = scene(12, {n: (p,) for n in range(12)})
    tracker = CameraTracker("cam-1", TrackingConfig(fps=FPS))
    for f in frames[:7]:  # stopped mid-recording (no end mark)...
        tracker.update(f)
    again = TrackingResult()
    for f in frames:  # ... and sent again from the start, to its end mark
        again.extend(tracker.update(f))
    (expected,) = run(frames).sightings
    assert (expected.first_frame, expected.last_frame, expected.frames) == (0, 11, 12)
    assert again.sightings == [expected]


def test_another_stream_closes_the_open_tracks_and_a_late_frame_of_the_old_one_is_skipped() -> None:
    p = Person(x=300)
    tracker = CameraTracker("cam-1", TrackingConfig(fps=FPS))
    for n in range(5):
        tracker.update(frame(n, (p,), stream="a.mp4:1"))
    switched = tracker.update(frame(0, (p,), stream="b.mp4:2"))
    (closed,) = switched.sightings
    assert closed.end_reason is EndReason.STREAM_CHANGED
    assert closed.stream_ref == "a.mp4:1"
    assert tracker.update(frame(5, (p,), stream="a.mp4:1")).skipped is SkipReason.LATE
    assert tracker.stream_ref == "b.mp4:2"


def test_end_of_stream_closes_every_open_track_at_once() -> None:
    a, b = Person(x=100), Person(x=700)
    tracker = CameraTracker("cam-1", TrackingConfig(fps=FPS))
    for n in range(3):
        assert not tracker.update(frame(n, (a, b))).sightings
    last = tracker.update(frame(3, (a, b), end=True))
    assert [s.end_reason for s in last.sightings] == [EndReason.END_OF_STREAM] * 2
    assert tracker.open_tracks == 0


def test_a_changed_model_version_closes_the_tracks_of_the_old_model() -> None:
    p = Person(x=300)
    tracker = CameraTracker("cam-1", TrackingConfig(fps=FPS))
    for n in range(4):
        tracker.update(frame(n, (p,)))
    changed = tracker.update(frame(4, (p,), model="detector-v2"))
    assert [s.model_version for s in changed.sightings] == [MODEL]


@pytest.mark.parametrize(
    "data",
    [b"", b"not a pickle", b"\x80\x05\x95\x03\x00\x00\x00\x00\x00\x00\x00K\x01."],
    ids=["empty", "garbage", "another-object"],
)
def test_bytes_that_are_not_a_tracker_state_raise_a_typed_error(data: bytes) -> None:
    with pytest.raises(TrackerStateError):
        CameraTracker.from_bytes(data, TrackingConfig())


def test_a_state_of_another_format_is_refused() -> None:
    import pickle

    tracker = CameraTracker("cam-1", TrackingConfig())
    data = pickle.dumps(("fashionstream.tracking/0", tracker))
    with pytest.raises(TrackerStateError, match="format"):
        CameraTracker.from_bytes(data, TrackingConfig())


def test_a_state_pickled_before_sightings_moved_to_the_foundation_still_loads() -> None:
    # states in tracker_states name BestView / SightingFrame by their old module path
    import pickle

    from fashionstream.core.sightings import BestView

    best = BestView("e", 3, 0, 0.9, (0.0, 0.0, 10.0, 10.0))
    old = pickle.dumps(best, protocol=0).replace(
        b"fashionstream.core.sightings", b"models.tracking.sightings"
    )
    assert b"models.tracking.sightings" in old
    loaded = pickle.loads(old)
    assert loaded == best
    assert type(loaded) is BestView


# ---------------------------------------------------------------------------------------------
# validation


def _frame_kwargs(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e",
        "stream_ref": "s",
        "frame_number": 0,
        "captured_at": T0,
        "width": 640,
        "height": 480,
        "model_version": MODEL,
        "person_boxes": np.array([[0, 0, 10, 10]], np.float32),
        "person_scores": np.array([0.9], np.float32),
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"person_boxes": np.zeros((1, 3), np.float32)}, "expected shape"),
        ({"person_scores": np.array([0.9, 0.8], np.float32)}, "expected shape"),
        ({"person_scores": np.array([1.5], np.float32)}, r"\[0, 1\]"),
        ({"person_boxes": np.array([[10, 0, 0, 10]], np.float32)}, "x2 < x1"),
        ({"person_boxes": np.array([[0, 0, np.nan, 10]], np.float32)}, "finite"),
        ({"frame_number": -1}, "frame_number"),
        ({"captured_at": float("inf")}, "captured_at"),
        ({"width": 0}, "image size"),
        ({"stream_ref": ""}, "stream ref"),
    ],
)
def test_frame_detections_refuse_what_cannot_be_tracked(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FrameDetections(**_frame_kwargs(**changes))  # type: ignore[arg-type]


def test_a_garment_worn_by_a_person_who_is_not_there_is_refused() -> None:
    g = garment(0, 3, (0.0, 0.0, 10.0, 10.0), "top")
    with pytest.raises(ValueError, match="worn by person 3"):
        FrameDetections(**_frame_kwargs(garments=(g,)))  # type: ignore[arg-type]


def test_frame_detections_turns_a_tagged_camera_frame_into_the_trackers_input() -> None:
    record = tagged_image(index=7, garments=2, people=2, stream_ref="rec.mp4:100")
    detections = frame_detections(record)
    assert (detections.event_id, detections.stream_ref, detections.frame_number) == (
        record.event_id,
        "rec.mp4:100",
        7,
    )
    assert (detections.width, detections.height) == (640, 480)
    assert detections.person_boxes.tolist() == [list(p.box) for p in record.people]
    assert detections.person_scores.dtype == np.float32
    assert len(detections) == 2
    first = detections.garments[0]
    assert (first.index, first.category, first.person_index) == (0, "top", 0)
    assert (first.colour, first.colour_rgb, first.colour_share) == ("Navy Blue", (20, 30, 90), 0.62)
    assert (first.style, first.style_prob) == ("Casual", 0.8)
    # every label of a head the classifier scored; a head with only a top label gives that label
    assert first.probabilities["articleType"] == {"Tshirts": 0.66, "Shirts": 0.34}
    assert first.probabilities["season"] == {"Summer": 0.55}


def test_frame_detections_keeps_the_wire_index_of_each_garment() -> None:
    record = tagged_image(garments=3)
    kept = dataclasses.replace(record, garments=record.garments[1:])
    assert [g.index for g in frame_detections(kept).garments] == [1, 2]


def test_frame_detections_names_a_missing_stream_and_passes_end_of_stream() -> None:
    detections = frame_detections(tagged_image(stream_ref=None, end_of_stream=True))
    assert detections.stream_ref == UNKNOWN_STREAM
    assert detections.end_of_stream


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"frame_number": None}, "without a frame number"),
        ({"people": ()}, "worn by person 0 of 0"),
        ({"model_version": ""}, "model version"),
    ],
    ids=["no-frame-number", "missing-wearer", "no-model-version"],
)
def test_frame_detections_refuses_a_record_that_cannot_be_tracked(
    changes: dict[str, object], message: str
) -> None:
    record = dataclasses.replace(tagged_image(), **changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        frame_detections(record)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fps": 0.0}, "fps"),
        ({"end_after_s": 0.0}, "end_after_s"),
        ({"end_after_s": 10.0, "max_duration_s": 5.0}, "max_duration_s"),
        ({"min_frames": 0}, "min_frames"),
        ({"person_min_score": 1.5}, "person_min_score"),
    ],
)
def test_tracking_config_refuses_impossible_values(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrackingConfig(**changes)  # type: ignore[arg-type]
