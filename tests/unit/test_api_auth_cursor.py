"""The API's pure parts: opaque page cursors round-trip and refuse what the API did not issue;
API keys are read from either header and compared against every configured key."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from fashionstream.app.api.auth import key_is_valid, needs_key, presented_key
from fashionstream.app.api.cursor import InvalidCursorError, decode_cursor, encode_cursor
from sinks.lookups import PageKey

UTC = dt.UTC


@pytest.mark.parametrize(
    "key",
    [
        PageKey(dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), 42),
        PageKey(
            dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=5))), 0
        ),
        PageKey(dt.datetime(2026, 6, 1, tzinfo=UTC), 2**62),
    ],
)
def test_a_cursor_round_trips_exactly(key: PageKey) -> None:
    cursor = encode_cursor(key)
    assert cursor.isascii()
    assert not set(cursor) & set("=/+")  # URL-safe as it is, no padding
    assert decode_cursor(cursor) == key


def _b64(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64 at all!",
        "x" * 201,
        _b64([1, 2]),
        _b64({"v": 2, "t": "2026-01-01T00:00:00+00:00", "i": 1}),  # another format version
        _b64({"v": 1, "t": "2026-01-01T00:00:00", "i": 1}),  # no time zone
        _b64({"v": 1, "t": "yesterday", "i": 1}),
        _b64({"v": 1, "t": "2026-01-01T00:00:00+00:00", "i": -1}),
        _b64({"v": 1, "t": "2026-01-01T00:00:00+00:00", "i": "1"}),
        _b64({"v": 1, "t": "2026-01-01T00:00:00+00:00", "i": True}),
        _b64({"v": 1, "t": "2026-01-01T00:00:00+00:00"}),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_cursor_the_api_did_not_issue_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(cursor)


def test_a_naive_page_key_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="timezone"):
        encode_cursor(PageKey(dt.datetime(2026, 1, 1), 1))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"x-api-key": "k1"}, "k1"),
        ({"x-api-key": " k1 "}, "k1"),
        ({"authorization": "Bearer k2"}, "k2"),
        ({"authorization": "bearer   k2"}, "k2"),
        ({"authorization": "Basic azE6"}, None),
        ({"authorization": "Bearer "}, None),
        ({"x-api-key": "k1", "authorization": "Bearer k2"}, "k1"),
    ],
)
def test_the_presented_key_comes_from_either_header(
    headers: dict[str, str], expected: str | None
) -> None:
    assert presented_key(headers) == expected


@pytest.mark.parametrize(
    ("presented", "keys", "valid"),
    [
        ("k1", ("k1",), True),
        ("k2", ("k1", "k2"), True),
        ("k1", ("k0", "k1", "k2"), True),
        ("k", ("k1",), False),
        ("k1 ", ("k1",), False),
        ("K1", ("k1",), False),
        (None, ("k1",), False),
        ("", ("k1",), False),
        ("k1", (), False),
        ("ключ", ("ключ",), True),
    ],
)
def test_a_key_is_valid_only_when_it_equals_a_configured_one(
    presented: str | None, keys: tuple[str, ...], valid: bool
) -> None:
    assert key_is_valid(presented, keys) is valid


@pytest.mark.parametrize(
    ("path", "keys", "needed"),
    [
        ("/healthz", ("k",), False),
        ("/metrics", ("k",), True),
        ("/v1/images", ("k",), True),
        ("/docs", ("k",), True),
        ("/v1/images", (), False),
    ],
)
def test_every_path_but_health_needs_a_key_when_keys_are_set(
    path: str, keys: tuple[str, ...], needed: bool
) -> None:
    assert needs_key(path, keys) is needed
