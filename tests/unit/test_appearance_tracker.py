"""The track gate's association at a low frame rate: a walker whose box moves by more than its
width between frames keeps their track, as do two people crossing who are dressed differently;
someone dressed differently where a track should be starts their own; a track is forgotten
after `lost_s`; time going back is refused by the caller, not here."""

import numpy as np
import pytest

from models.tracking.appearance import (
    AppearanceRules,
    AppearanceTracker,
    look_distance,
    look_of,
)

H, W = 240, 400
RED, BLUE, GREEN = (200, 30, 30), (30, 40, 200), (30, 160, 40)
Box = tuple[float, float, float, float]


def _scene(*people: tuple[Box, tuple[int, int, int], tuple[int, int, int]]) -> np.ndarray:
    """A grey street with each person a box: `top` colour above, `bottom` colour below."""
    image = np.full((H, W, 3), 120, np.uint8)
    for (x0, y0, x1, y1), top, bottom in people:
        middle = int((y0 + y1) / 2)
        image[int(y0) : middle, int(x0) : int(x1)] = top
        image[middle : int(y1), int(x0) : int(x1)] = bottom
    return image


def _walker(x: float, y: float = 60.0) -> Box:
    return (x, y, x + 30.0, y + 80.0)


def test_a_walker_moving_their_width_a_frame_keeps_their_track() -> None:
    # 30 px a frame: 0.75 of their height a second, a walker's pace at 2 frames/s
    tracker = AppearanceTracker()
    ids = [
        tracker.update(_scene((_walker(x), RED, BLUE)), [_walker(x)], t)
        for t, x in ((0.0, 20.0), (0.5, 50.0), (1.0, 80.0), (1.5, 110.0), (2.0, 140.0))
    ]
    assert ids == [[1]] * 5  # their boxes in consecutive frames do not overlap at all


def test_two_people_crossing_keep_their_tracks_by_their_clothes() -> None:
    # they walk towards each other and pass between frames: by position alone each is now
    # nearer where the other was (30 px against 70 px), so the clothes must decide
    tracker = AppearanceTracker(AppearanceRules(max_shift=1.0))
    before = _scene((_walker(100.0), RED, BLUE), (_walker(200.0), GREEN, GREEN))
    assert tracker.update(before, [_walker(100.0), _walker(200.0)], 0.0) == [1, 2]
    after = _scene((_walker(170.0), RED, BLUE), (_walker(130.0), GREEN, GREEN))
    assert tracker.update(after, [_walker(170.0), _walker(130.0)], 0.5) == [1, 2]
    blind = AppearanceTracker(AppearanceRules(max_shift=1.0, max_look=1.0, look_weight=0.0))
    blind.update(before, [_walker(100.0), _walker(200.0)], 0.0)
    assert blind.update(after, [_walker(170.0), _walker(130.0)], 0.5) == [2, 1]


def test_someone_dressed_differently_where_a_track_should_be_starts_their_own() -> None:
    tracker = AppearanceTracker()
    assert tracker.update(_scene((_walker(100.0), RED, BLUE)), [_walker(100.0)], 0.0) == [1]
    assert tracker.update(_scene((_walker(105.0), GREEN, GREEN)), [_walker(105.0)], 0.5) == [2]


@pytest.mark.parametrize(
    ("box", "same"),
    [
        ((110.0, 60.0, 140.0, 140.0), True),  # a step to the side
        ((100.0, 20.0, 160.0, 180.0), False),  # twice the height: someone nearer the camera
        ((300.0, 60.0, 330.0, 140.0), False),  # seven heights away in half a second
    ],
)
def test_a_person_is_matched_only_within_reach_and_at_a_like_size(box: Box, same: bool) -> None:
    tracker = AppearanceTracker()
    tracker.update(_scene((_walker(100.0), RED, BLUE)), [_walker(100.0)], 0.0)
    (track,) = tracker.update(_scene((box, RED, BLUE)), [box], 0.5)
    assert (track == 1) is same


def test_a_track_unseen_for_longer_than_lost_s_is_forgotten() -> None:
    tracker = AppearanceTracker(AppearanceRules(lost_s=2.0))
    scene = _scene((_walker(100.0), RED, BLUE))
    tracker.update(scene, [_walker(100.0)], 0.0)
    tracker.update(scene, [], 1.0)
    assert tracker.track_ids == {1}
    assert tracker.update(scene, [_walker(100.0)], 1.5) == [1]  # missed once, found again
    tracker.update(scene, [], 4.0)
    assert tracker.track_ids == set()
    assert tracker.update(scene, [_walker(100.0)], 4.5) == [2]


def test_looks_of_the_same_clothes_are_alike_and_of_others_are_not() -> None:
    scene = _scene(
        (_walker(20.0), RED, BLUE), (_walker(120.0), RED, BLUE), (_walker(220.0), BLUE, RED)
    )
    same = look_distance(look_of(scene, _walker(20.0)), look_of(scene, _walker(120.0)))
    swapped = look_distance(look_of(scene, _walker(20.0)), look_of(scene, _walker(220.0)))
    assert same == pytest.approx(0.0, abs=1e-3)
    # the same colours, upside down: the halves tell them apart, beyond what may match
    assert swapped > AppearanceRules().max_look


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="motion"):
        AppearanceRules(max_height_ratio=0.5)
    with pytest.raises(ValueError, match="rules"):
        AppearanceRules(max_look=0.0)
