"""Scoring a tracker's links against a reference: right links, swaps, reference breaks and
unreferenced detections are told apart; recall counts the reference's links between consecutive
sampled frames that the tracker made too."""

import numpy as np
import pytest

from models.tracking.association_eval import PeopleFrames, score_links


def test_each_kind_of_link_is_counted() -> None:
    # reference ids for 5 frames of up to 3 people; reference person 7 ends at frame 2 and
    # person 9 starts at frame 3 (the reference lost someone)
    reference: list[list[int | None]] = [
        [1, 2, 7],
        [1, 2, 7],
        [1, 2, 7],
        [1, 2, 9],
        [1, 2, None],
    ]
    frames = [0, 2, 3, 4]  # the sampled frames
    ids: list[list[int | None]] = [
        [10, 20, 30],  # frame 0
        [10, 20, 30],  # frame 2: three right links
        [20, 10, 30],  # frame 3: 1 and 2 swapped (both go on); 7 -> 9 is a reference break
        [20, 10, 30],  # frame 4: two right links (as swapped); the third is unreferenced
    ]
    scores = score_links(ids, frames, reference)
    assert (scores.links, scores.right, scores.swaps) == (9, 5, 2)
    assert (scores.reference_breaks, scores.unreferenced) == (1, 1)
    assert scores.precision == pytest.approx(5 / 9)
    # reference links between consecutive sampled frames: 0-2: 3, 2-3: 2, 3-4: 2 -> made 3+0+2
    assert (scores.reference_links, scores.reference_links_made) == (7, 5)
    assert scores.tracks == 3


def test_untracked_detections_make_no_links() -> None:
    scores = score_links([[None], [None]], [0, 1], [[1], [1]])
    assert (scores.links, scores.reference_links, scores.reference_links_made) == (0, 1, 0)
    assert scores.recall == 0.0


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="sampled frames"):
        score_links([[1]], [0, 1], [[1], [1]])
    with pytest.raises(ValueError, match="frame 0"):
        PeopleFrames([np.zeros((2, 4))], [np.zeros(3)], [0.0])
