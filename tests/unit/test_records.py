import dataclasses
import json
from decimal import Decimal

import pytest

from fashionstream.core.errors import BadRecordError, DeadLetterReason
from fashionstream.core.records import (
    CatalogueFields,
    DeadLetter,
    Frame,
    ImageRequest,
    Origin,
    SourceKind,
    TaggedImage,
    WireColour,
    WireGarment,
    WireLabel,
    WireMask,
    WirePerson,
    event_id_for_frame,
    event_id_for_item,
)

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9"


def _request(**changes: object) -> ImageRequest:
    fields: dict[str, object] = {
        "feed": "shop",
        "item_id": "42",
        "image_url": "https://example.com/42.jpg",
        "submitted_at": 1_700_000_000.5,
        "attributes": {"title": "Blue shirt", "price": 19.9},
    }
    fields.update(changes)
    return ImageRequest(**fields)  # type: ignore[arg-type]


def test_image_request_round_trips() -> None:
    request = _request()
    assert ImageRequest.from_json(request.to_json()) == request


def test_event_ids_are_stable_and_distinguish_inputs() -> None:
    assert _request().event_id == _request().event_id
    assert _request().event_id != _request(image_url="https://example.com/other.jpg").event_id
    assert event_id_for_item("a", "1", "u") != event_id_for_item("b", "1", "u")
    assert event_id_for_frame("cam", "clip.mp4:123", 7) == event_id_for_frame(
        "cam", "clip.mp4:123", 7
    )
    assert event_id_for_frame("cam", "clip.mp4:123", 7) != event_id_for_frame(
        "cam", "clip.mp4:123", 8
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "empty value"),
        (b"", "empty value"),
        (b"\xff\xfe garbage", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"schema": "other.v1"}', "schema is 'other.v1'"),
        (b'{"schema": "fashion.image_request.v1", "feed": "f", "item_id": "1"}', "missing"),
        (
            b'{"schema": "fashion.image_request.v1", "feed": "f", "item_id": "", "image_url": "u",'
            b' "submitted_at": 1}',
            "item_id must be a non-empty string",
        ),
        (
            b'{"schema": "fashion.image_request.v1", "feed": "f", "item_id": "1", "image_url": "u",'
            b' "submitted_at": "yesterday"}',
            "submitted_at must be a finite number",
        ),
    ],
)
def test_bad_image_requests_raise_bad_record(value: bytes | None, message: str) -> None:
    with pytest.raises(BadRecordError, match=message) as info:
        ImageRequest.from_json(value)
    assert info.value.reason is DeadLetterReason.BAD_RECORD


def _frame(**changes: object) -> Frame:
    fields: dict[str, object] = {
        "event_id": event_id_for_frame("cam-1", "clip.mp4:99", 3),
        "source_kind": SourceKind.CAMERA,
        "source_id": "cam-1",
        "captured_at": 1_700_000_001.25,
        "submitted_at": 1_700_000_002.0,
        "jpeg": JPEG,
        "frame_number": 3,
    }
    fields.update(changes)
    return Frame(**fields)  # type: ignore[arg-type]


def test_camera_frame_round_trips_through_cloudevents_headers() -> None:
    frame = _frame()
    headers = frame.headers()
    names = {k for k, _ in headers}
    assert {"ce_id", "ce_source", "ce_type", "ce_time", "ce_specversion", "content-type"} <= names
    assert Frame.from_kafka(frame.jpeg, headers) == frame
    assert Frame.from_kafka(frame.jpeg, dict(headers)) == frame
    assert frame.key == "cam-1"
    assert frame.reference == "cam-1#3"


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({}, b"cam-1"),
        ({"source_kind": SourceKind.FEED, "frame_number": None, "item_id": "sku-9"}, b"sku-9"),
    ],
    ids=["camera", "feed"],
)
def test_a_frame_becomes_one_kafka_message_that_decodes_back_to_it(
    changes: dict[str, object], key: bytes
) -> None:
    frame = _frame(**changes)
    message_key, value, headers = frame.to_kafka()
    assert (message_key, value, headers) == (key, JPEG, frame.headers())
    assert Frame.from_kafka(value, headers) == frame


@pytest.mark.parametrize(
    ("key", "message_key"),
    [(None, None), ("cam-1", b"cam-1"), ("bad\ud800key", b"bad?key")],
    ids=["no-key", "key", "lone-surrogate"],
)
def test_a_dead_letter_becomes_one_kafka_message_keyed_by_the_failed_record(
    key: str | None, message_key: bytes | None
) -> None:
    letter = DeadLetter(
        reason=DeadLetterReason.VIDEO_DECODE_ERROR,
        detail="no frames",
        stage="produce",
        failed_at=1_700_000_000.0,
        key=key,
    )
    assert letter.to_kafka() == (message_key, letter.to_json())
    assert DeadLetter.from_json(letter.to_kafka()[1]) == letter


def test_a_cameras_stream_and_its_end_mark_round_trip_and_default_to_none() -> None:
    last = _frame(stream_ref="clip.mp4:99", end_of_stream=True)
    assert Frame.from_kafka(last.jpeg, last.headers()) == last
    plain = _frame()
    assert "fs_stream_ref" not in dict(plain.headers())
    decoded = Frame.from_kafka(plain.jpeg, plain.headers())
    assert (decoded.stream_ref, decoded.end_of_stream) == (None, False)


def test_feed_frame_round_trips_with_attributes() -> None:
    frame = _frame(
        source_kind=SourceKind.FEED,
        source_id="shop",
        frame_number=None,
        item_id="42",
        image_url="https://example.com/42.jpg",
        fetch_s=0.12,
        attributes={"title": "Blue shirt"},
    )
    assert Frame.from_kafka(frame.jpeg, frame.headers()) == frame
    assert frame.key == "42"


@pytest.mark.parametrize(
    ("value", "drop", "replace", "message"),
    [
        (b"", None, None, "empty value"),
        (JPEG, "ce_id", None, "missing header 'ce_id'"),
        (JPEG, None, ("ce_type", b"something.else"), "ce_type"),
        (JPEG, None, ("fs_frame_number", b"seven"), "malformed header"),
        (JPEG, None, ("fs_source_kind", b"satellite"), "malformed header"),
        (b"GIF89a....", None, None, "not a JPEG"),
        (JPEG, None, ("ce_source", b"\xff\xfe"), "not UTF-8"),
    ],
)
def test_bad_frames_raise_bad_record(
    value: bytes, drop: str | None, replace: tuple[str, bytes] | None, message: str
) -> None:
    headers = [(k, v) for k, v in _frame().headers() if k != drop]
    if replace is not None:
        headers = [(k, replace[1] if k == replace[0] else v) for k, v in headers]
    with pytest.raises(BadRecordError, match=message):
        Frame.from_kafka(value, headers)


def test_frame_needs_exactly_one_of_frame_number_and_item_id() -> None:
    with pytest.raises(BadRecordError, match="exactly one"):
        _frame(item_id="42")
    with pytest.raises(BadRecordError, match="exactly one"):
        _frame(frame_number=None)


def _tagged() -> TaggedImage:
    mask = WireMask(size=(4, 6), counts="abc")
    garment = WireGarment(
        index=0,
        category="top",
        score=0.9,
        box=(1.0, 2.0, 3.0, 4.0),
        mask=mask,
        attributes={"gender": WireLabel("Women", 0.8)},
        probabilities={"gender": {"Women": 0.8, "Men": 0.2}},
        colour=WireColour("Blue", (10, 20, 200), 0.6),
        style=WireLabel("Casual", 0.7),
        person_index=0,
    )
    person = WirePerson(index=0, score=0.95, box=(0.0, 0.0, 6.0, 4.0), mask=mask)
    return TaggedImage(
        event_id="e1",
        source_kind=SourceKind.CAMERA,
        source_id="cam-1",
        captured_at=1.0,
        submitted_at=2.0,
        width=6,
        height=4,
        model_version="m1",
        timings={"infer": 0.1},
        garments=(garment,),
        people=(person,),
        frame_number=3,
    )


def test_tagged_image_round_trips() -> None:
    tagged = _tagged()
    assert TaggedImage.from_json(tagged.to_json()) == tagged


def test_a_record_is_written_as_its_nested_fields_in_order_like_dataclasses_asdict() -> None:
    # to_json meets nested records in the encoder instead of deep-copying them first: the
    # bytes on the wire must not change (schema, version, then every field, nested alike)
    tagged = dataclasses.replace(_tagged(), thumbnail=b"\xff\xd8\xffjpeg")
    as_before = {"schema": tagged.SCHEMA, "version": tagged.VERSION, **dataclasses.asdict(tagged)}
    as_before["thumbnail"] = "/9j/anBlZw=="  # base64, as ever
    assert json.loads(tagged.to_json()) == json.loads(json.dumps(as_before))
    assert list(json.loads(tagged.to_json())["garments"][0]) == [
        f.name for f in dataclasses.fields(WireGarment)
    ]


def test_tagged_image_carries_the_stream_and_end_mark_of_its_frame() -> None:
    tagged = dataclasses.replace(_tagged(), stream_ref="clip.mp4:99", end_of_stream=True)
    assert TaggedImage.from_json(tagged.to_json()) == tagged
    data = json.loads(tagged.to_json())
    data["stream_ref"] = ""
    with pytest.raises(BadRecordError, match="stream_ref"):
        TaggedImage.from_json(json.dumps(data).encode())


def test_tagged_image_with_a_broken_garment_is_a_bad_record() -> None:
    data = json.loads(_tagged().to_json())
    del data["garments"][0]["colour"]
    with pytest.raises(BadRecordError, match="malformed"):
        TaggedImage.from_json(json.dumps(data).encode())


def test_dead_letter_round_trips() -> None:
    letter = DeadLetter(
        reason=DeadLetterReason.HTTP_STATUS,
        detail="HTTP 404 from https://example.com/x.jpg",
        stage="fetch",
        failed_at=3.0,
        source_id="shop",
        reference="https://example.com/x.jpg",
        key="42",
        origin=Origin(topic="fashion.images.v1", partition=1, offset=17),
    )
    assert DeadLetter.from_json(letter.to_json()) == letter
    assert json.loads(letter.to_json())["reason"] == "http_status"


# --------------------------------------------------------------------- catalogue fields (v2)

SHIRT = CatalogueFields(
    title="Blue shirt", brand="Acme", price=Decimal("19.90"), currency="EUR", link="https://s/42"
)


def test_catalogue_fields_round_trip_in_every_record_that_carries_them() -> None:
    request = _request(catalogue=SHIRT)
    assert json.loads(request.to_json())["version"] == ImageRequest.VERSION == 2
    assert json.loads(request.to_json())["catalogue"]["price"] == "19.90"  # exact, not a float
    assert ImageRequest.from_json(request.to_json()) == request
    frame = _frame(frame_number=None, item_id="42", source_kind=SourceKind.FEED, catalogue=SHIRT)
    assert Frame.from_kafka(frame.jpeg, frame.headers()).catalogue == SHIRT
    tagged = dataclasses.replace(_tagged(), catalogue=SHIRT)
    assert TaggedImage.from_json(tagged.to_json()) == tagged


def test_a_frame_without_catalogue_fields_sends_no_header_for_them() -> None:
    assert "fs_catalogue" not in dict(_frame().headers())
    assert _frame().catalogue == CatalogueFields()


@pytest.mark.parametrize("record", ["request", "tagged"])
def test_a_version_1_record_decodes_with_empty_catalogue_fields(record: str) -> None:
    """Written before `catalogue` existed: no `version`, and any `catalogue` key is not read."""
    if record == "request":
        data = json.loads(_request(catalogue=SHIRT).to_json())
    else:
        data = json.loads(dataclasses.replace(_tagged(), catalogue=SHIRT).to_json())
    del data["version"]
    decoder = ImageRequest.from_json if record == "request" else TaggedImage.from_json
    decoded = decoder(json.dumps(data).encode())
    assert decoded.catalogue == CatalogueFields()
    del data["catalogue"]
    assert decoder(json.dumps(data).encode()).catalogue == CatalogueFields()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 0}, "version must be a positive integer"),
        ({"version": "2"}, "version must be a positive integer"),
        ({"catalogue": ["Blue shirt"]}, "catalogue must be an object"),
        ({"catalogue": {"price": 19.9}}, "price must be a decimal string"),
        ({"catalogue": {"price": "cheap"}}, "not a decimal"),
        ({"catalogue": {"price": "-1"}}, "price must be a decimal in"),
        ({"catalogue": {"price": "NaN"}}, "price must be a decimal in"),
        ({"catalogue": {"price": "1e10"}}, "price must be a decimal in"),
        ({"catalogue": {"title": ""}}, "title must be a non-empty string"),
        ({"catalogue": {"brand": 7}}, "brand must be a non-empty string"),
    ],
)
def test_bad_catalogue_fields_raise_bad_record(change: dict[str, object], message: str) -> None:
    data = json.loads(_request().to_json())
    data.update(change)
    with pytest.raises(BadRecordError, match=message):
        ImageRequest.from_json(json.dumps(data).encode())
