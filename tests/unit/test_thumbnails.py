"""Best-view thumbnails: cut at tagging time, carried on the wire, kept by the tracker for the
best view of each track (the sinks' side is tested on a real Postgres in
tests/integration/test_sink_thumbnails.py)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from fashionstream.core.errors import BadRecordError
from fashionstream.core.records import TaggedImage
from fashionstream.core.sightings import BestView
from models.tracking import CameraTracker, TrackingConfig, frame_detections
from stream_processors.thumbnails import MAX_HEIGHT, MAX_WIDTH, jpeg_thumbnail
from tests.support.records import tagged_image


def _scene(height: int = 480, width: int = 640) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.full((height, width, 3), 200, np.uint8)
    image[100:400, 200:300] = rng.integers(0, 255, (300, 100, 3), dtype=np.uint8)
    return image


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((200.0, 100.0, 300.0, 400.0), (48, 144)),  # a standing person: height-bound
        ((0.0, 0.0, 640.0, 480.0), (96, 72)),  # the whole frame: width-bound
        (None, (96, 72)),  # no box: the whole image (catalogue photos)
        ((600.0, 400.0, 700.0, 600.0), None),  # past the corner: clipped, still a crop
        ((10.0, 10.0, 10.0, 10.0), "empty"),  # a zero-size box: no thumbnail
    ],
)
def test_a_thumbnail_fits_the_card_and_is_a_few_kilobytes(
    box: tuple[float, float, float, float] | None, expected: object
) -> None:
    jpeg = jpeg_thumbnail(_scene(), box)
    if expected == "empty":
        assert jpeg is None
        return
    assert jpeg is not None
    assert jpeg.startswith(b"\xff\xd8\xff")
    assert len(jpeg) < 8192
    size = Image.open(io.BytesIO(jpeg)).size
    assert size[0] <= MAX_WIDTH
    assert size[1] <= MAX_HEIGHT
    if expected is not None:
        assert size == expected


def test_a_thumbnail_needs_an_rgb_image() -> None:
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        jpeg_thumbnail(np.zeros((10, 10), np.uint8))


def test_thumbnails_round_trip_on_the_wire_as_base64() -> None:
    jpeg = jpeg_thumbnail(_scene(), (200.0, 100.0, 300.0, 400.0))
    record = tagged_image(people=2)
    people = (dataclasses.replace(record.people[0], thumbnail=jpeg), record.people[1])
    record = dataclasses.replace(record, people=people, thumbnail=jpeg)
    data = json.loads(record.to_json())
    assert data["version"] >= 3  # thumbnails came with version 3
    assert base64.b64decode(data["people"][0]["thumbnail"]) == jpeg
    assert data["people"][1]["thumbnail"] is None
    back = TaggedImage.from_json(record.to_json())
    assert back == record


@pytest.mark.parametrize(
    ("value", "match"),
    [(12, "base64 string"), ("not base64!", "not base64"), ("aGVsbG8=", "not a JPEG")],
)
def test_a_bad_thumbnail_is_a_bad_record(value: object, match: str) -> None:
    data = json.loads(tagged_image().to_json())
    data["people"][0]["thumbnail"] = value
    with pytest.raises(BadRecordError, match=match):
        TaggedImage.from_json(json.dumps(data).encode())


def test_a_version_2_record_without_thumbnails_still_reads() -> None:
    data = json.loads(tagged_image().to_json())
    data["version"] = 2
    del data["thumbnail"]
    for person in data["people"]:
        del person["thumbnail"]
    record = TaggedImage.from_json(json.dumps(data).encode())
    assert record.thumbnail is None
    assert all(p.thumbnail is None for p in record.people)


def test_the_sighting_keeps_the_crop_of_its_best_view() -> None:
    # one person, sharpest (highest score) in frame 2: the sighting's thumbnail is frame 2's crop
    crops = [bytes([0xFF, 0xD8, 0xFF, n]) for n in range(5)]
    scores = [0.6, 0.7, 0.95, 0.7, 0.6]
    tracker = CameraTracker("cam-1", TrackingConfig(fps=2.0))
    sightings = []
    for n in range(5):
        base = tagged_image(index=n, people=1, end_of_stream=n == 4, stream_ref="clip:1")
        person = dataclasses.replace(base.people[0], score=scores[n], thumbnail=crops[n])
        record = dataclasses.replace(base, people=(person,), captured_at=1e9 + n / 2)
        sightings.extend(tracker.update(frame_detections(record)).sightings)
    assert len(sightings) == 1
    best = sightings[0].best
    assert best.frame_number == 2
    assert best.thumbnail == crops[2]


def test_a_tracker_state_pickled_before_thumbnails_loads_with_no_thumbnail() -> None:
    # the state's layout is unchanged (STATE_FORMAT kept): an old BestView has no `thumbnail`
    # in its pickled dict and reads the dataclass default
    best = BestView("e", 3, 0, 0.9, (0.0, 0.0, 10.0, 10.0), b"\xff\xd8\xffx")
    old = pickle.loads(pickle.dumps(best))
    del old.__dict__["thumbnail"]
    again = pickle.loads(pickle.dumps(old))
    assert "thumbnail" not in again.__dict__
    assert again.thumbnail is None


def test_a_catalogue_picture_is_kept_larger_for_zooming_onto_its_garments() -> None:
    from stream_processors.thumbnails import IMAGE_MAX_HEIGHT, IMAGE_MAX_WIDTH

    jpeg = jpeg_thumbnail(_scene(), None, (IMAGE_MAX_WIDTH, IMAGE_MAX_HEIGHT))
    assert jpeg is not None
    assert Image.open(io.BytesIO(jpeg)).size == (192, 144)
    assert len(jpeg) < 16384
