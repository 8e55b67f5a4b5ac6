"""The track gate's rules: a track's garments are inferred when it is first seen, then only from
a clearly better crop and not more often than the interval; a restarted stream starts afresh;
carried garments move and scale with their wearer; a crop's quality falls when others cover it
or the frame's edge cuts it."""

import numpy as np
import pytest

from models.tags import ColourReading, GarmentTags, Prediction, RleMask
from models.track_gate import CameraGate, GateRules, carry, crop_quality

H, W = 200, 300


def _frame() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _plan(gate: CameraGate, box: tuple[float, float, float, float], t: float) -> bool:
    (plan,) = gate.plan(_frame(), [box], t)
    assert plan.track is not None
    return plan.infer


def test_first_seen_then_carried_until_a_clearly_better_crop_after_the_interval() -> None:
    gate = CameraGate(GateRules(min_interval_s=2.0, better_by=1.25))
    small = (100.0, 60.0, 130.0, 140.0)
    assert _plan(gate, small, 0.0)  # first seen
    assert not _plan(gate, (102.0, 60.0, 132.0, 140.0), 0.5)  # same size: carried
    larger = (100.0, 40.0, 145.0, 160.0)  # clearly larger, but only 1 s after the first
    assert not _plan(gate, larger, 1.0)
    assert _plan(gate, (101.0, 40.0, 146.0, 160.0), 2.5)  # larger and due
    assert not _plan(gate, (101.0, 40.0, 146.0, 160.0), 5.0)  # due, but no better
    assert gate.stats.inferred == 2
    assert gate.stats.carried == 3


def test_time_going_back_is_a_restarted_stream_whose_people_are_seen_afresh() -> None:
    gate = CameraGate(GateRules())
    box = (100.0, 60.0, 130.0, 140.0)
    assert _plan(gate, box, 10.0)
    assert not _plan(gate, box, 10.5)
    assert _plan(gate, box, 0.0)


def _garment(box: tuple[float, float, float, float]) -> GarmentTags:
    mask = np.zeros((H, W), bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    mask[y0:y1, x0:x1] = True
    mask[y0, x0] = False  # a corner off: the shape, not only the box, travels
    return GarmentTags(
        category="top",
        score=0.8,
        box=box,
        mask=RleMask.encode(mask),
        attributes={"articleType": Prediction("Tshirts", 0.7)},
        probabilities={"articleType": {"Tshirts": 0.7}},
        colour=ColourReading("Red", (200, 0, 0), 0.7),
        style=Prediction("Casual", 0.8),
        person_index=3,
    )


def test_a_carried_garment_keeps_its_place_in_the_person_and_its_labels() -> None:
    garment = _garment((110.0, 70.0, 130.0, 100.0))
    was = (100.0, 60.0, 140.0, 140.0)
    now = (150.0, 40.0, 230.0, 200.0)  # moved and twice the size
    moved = carry(garment, was, now, person=0, frame_shape=(H, W))
    assert moved.box == pytest.approx((170.0, 60.0, 210.0, 120.0))
    assert moved.person_index == 0
    assert (moved.attributes, moved.colour) == (garment.attributes, garment.colour)
    mask = moved.mask.decode()
    assert mask.sum() == pytest.approx(40 * 60, rel=0.02)
    assert not mask[60, 170]  # the missing corner, scaled
    assert mask[61:120, 172:210].all()
    # cut by the frame's edge: the box and mask stop at the edge
    edge = carry(garment, was, (260.0, 60.0, 300.0, 140.0), person=0, frame_shape=(H, W))
    assert edge.box[2] <= W
    assert edge.mask.decode().shape == (H, W)


def test_a_crop_others_cover_or_the_edge_cuts_is_worth_less() -> None:
    box = (100.0, 50.0, 140.0, 150.0)
    alone = crop_quality(box, [], (H, W))
    assert alone == pytest.approx(np.sqrt(40 * 100))
    half_covered = crop_quality(box, [(120.0, 0.0, 200.0, 200.0)], (H, W))
    assert half_covered == pytest.approx(alone / 2)
    at_edge = crop_quality((0.0, 50.0, 40.0, 150.0), [], (H, W))
    assert at_edge == pytest.approx(alone / 2)
    assert crop_quality((5.0, 5.0, 5.0, 9.0), [], (H, W)) == 0.0
