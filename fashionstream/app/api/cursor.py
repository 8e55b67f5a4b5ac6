"""Opaque page cursors: a page's last (time, id) key as URL-safe base64 of a small JSON object.

Opaque so clients never build one and the key can change without breaking them: a cursor from an
older format, or any text that is not one, is refused with `InvalidCursorError` (400).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

from sinks.lookups import PageKey

CURSOR_VERSION = 1
MAX_CURSOR_CHARS = 200


class InvalidCursorError(ValueError):
    """A cursor this API did not issue."""


def encode_cursor(key: PageKey) -> str:
    if key.at.tzinfo is None:
        raise ValueError("a page key's time must be timezone-aware")
    payload = {"v": CURSOR_VERSION, "t": key.at.isoformat(), "i": key.id}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> PageKey:
    """Raises InvalidCursorError naming what is wrong."""
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursorError("the cursor is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursorError("the cursor is not one this API issued") from None
    if not isinstance(payload, dict) or payload.get("v") != CURSOR_VERSION:
        raise InvalidCursorError("the cursor is not one this API issued")
    at, pk = payload.get("t"), payload.get("i")
    if not isinstance(at, str) or isinstance(pk, bool) or not isinstance(pk, int) or pk < 0:
        raise InvalidCursorError("the cursor is not one this API issued")
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:
        raise InvalidCursorError("the cursor is not one this API issued") from None
    if when.tzinfo is None:
        raise InvalidCursorError("the cursor is not one this API issued")
    return PageKey(when, pk)
