"""Property-based tests (hypothesis): the record decoders and the feed parser never raise
anything but their typed errors, whatever bytes they are given, and dead letters always fit."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashionstream.core.errors import BadRecordError, DeadLetterReason
from fashionstream.core.records import (
    DEAD_LETTER_TEXT_CHARS,
    MAX_ID_CHARS,
    DeadLetter,
    Frame,
    ImageRequest,
    Origin,
    TaggedImage,
)
from producers.feed import FeedFormat, FeedItem, SkippedRow, read_feed

# JSON values as a hostile producer might send them (lone surrogates included)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(codec=None)),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def record_like(schema: str, keys: list[str]) -> st.SearchStrategy[bytes]:
    """JSON objects that name `schema` and hold some of `keys` with arbitrary values."""
    fields = st.fixed_dictionaries({}, optional={k: json_values for k in keys})
    return fields.map(lambda d: json.dumps({"schema": schema, **d}).encode())


hostile_bytes = st.binary(max_size=300)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    hostile_bytes
    | record_like(
        ImageRequest.SCHEMA, ["feed", "item_id", "image_url", "submitted_at", "attributes"]
    )
)
def test_image_request_decoder_raises_only_bad_record(value: bytes) -> None:
    try:
        request = ImageRequest.from_json(value)
    except BadRecordError:
        return
    assert 0 < len(request.item_id) <= MAX_ID_CHARS
    assert 0 < len(request.feed) <= MAX_ID_CHARS


tagged_keys = [
    "event_id", "source_kind", "source_id", "captured_at", "submitted_at", "width", "height",
    "model_version", "timings", "garments", "people", "frame_number", "item_id", "image_url",
    "attributes", "stream_ref", "end_of_stream",
]  # fmt: skip


@SETTINGS
@given(hostile_bytes | record_like(TaggedImage.SCHEMA, tagged_keys))
def test_tagged_image_decoder_raises_only_bad_record(value: bytes) -> None:
    try:
        tagged = TaggedImage.from_json(value)
    except BadRecordError:
        return
    assert len(tagged.source_id) <= MAX_ID_CHARS


@SETTINGS
@given(
    value=hostile_bytes.map(lambda b: b"\xff\xd8" + b),
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                ["ce_id", "ce_source", "ce_type", "fs_source_kind", "fs_captured_at",
                 "fs_submitted_at", "fs_frame_number", "fs_item_id", "fs_attributes", "junk"]
            ),
            st.binary(max_size=40) | st.sampled_from([b"fashion.frame.v1", b"camera", b"1.5"]),
        ),
        max_size=10,
    ),
)  # fmt: skip
def test_frame_decoder_raises_only_bad_record(value: bytes, headers: list[Any]) -> None:
    with contextlib.suppress(BadRecordError):
        Frame.from_kafka(value, headers)


@SETTINGS
@given(
    hostile_bytes
    | record_like(DeadLetter.SCHEMA, ["reason", "detail", "stage", "failed_at", "origin", "key"])
)
def test_dead_letter_decoder_raises_only_bad_record(value: bytes) -> None:
    with contextlib.suppress(BadRecordError):
        DeadLetter.from_json(value)


@SETTINGS
@given(
    detail=st.text(st.characters(codec=None), max_size=5000),
    reference=st.text(st.characters(codec=None), max_size=5000) | st.none(),
    key=st.text(st.characters(codec=None), max_size=2000) | st.none(),
)
def test_a_dead_letter_is_bounded_and_round_trips(
    detail: str, reference: str | None, key: str | None
) -> None:
    letter = DeadLetter(
        reason=DeadLetterReason.INTERNAL_ERROR,
        detail=detail,
        stage="fetch",
        failed_at=1.0,
        source_id=key,
        reference=reference,
        key=key,
        origin=Origin("fashion.images.v1", 0, 1),
    )
    assert len(letter.detail) <= DEAD_LETTER_TEXT_CHARS
    if len(detail) > DEAD_LETTER_TEXT_CHARS:
        assert "truncated" in letter.detail
    encoded = letter.to_json()
    # every field bounded: at most 6 bytes of JSON per character (\uXXXX), far under 1 MB
    assert len(encoded) < 64 * 1024
    assert DeadLetter.from_json(encoded) == letter


def feed_files() -> st.SearchStrategy[bytes]:
    """Bytes that look like feeds some of the time: CSV and JSON Lines fragments, ids and
    URLs, mixed with arbitrary bytes (invalid UTF-8 included)."""
    pieces = st.sampled_from(
        [b"id,image_link,title\n", b'{"id": "a", "image_link": "https://x.test/a.jpg"}\n',
         b"a1,https://x.test/a1.jpg,shirt\n", b'"quoted\nfield",x\n', b",,,\n", b"\xff\xfe",
         b'{"id": "\\ud800", "image_url": "u"}\n', b"\t", b"\r\n", b"\x00", b'"', b"[1,2]\n"]
    )  # fmt: skip
    return st.lists(pieces | st.binary(max_size=20), max_size=15).map(b"".join)


@SETTINGS
@given(data=feed_files(), fmt=st.sampled_from(list(FeedFormat)))
def test_the_feed_parser_never_raises_and_yields_only_sendable_items(
    data: bytes, fmt: FeedFormat
) -> None:
    stream = io.TextIOWrapper(
        io.BytesIO(data), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )
    rows = list(read_feed(stream, fmt))
    lines = [row.line for row in rows]
    assert lines == sorted(lines)
    for row in rows:
        assert isinstance(row, FeedItem | SkippedRow)
        if isinstance(row, FeedItem):
            assert 0 < len(row.item_id) <= MAX_ID_CHARS
            row.item_id.encode("utf-8")  # a Kafka key: must be encodable
            row.image_url.encode("utf-8")
            json.dumps(dict(row.attributes)).encode("utf-8")
