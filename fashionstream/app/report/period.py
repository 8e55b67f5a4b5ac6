"""The report period as people write it: `7d`, `24h`, `2w` before the end, or ISO dates. The
command and the API read it the same way."""

from __future__ import annotations

import datetime as dt
import re

_AGO = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_period(
    since: str, until: str, now: dt.datetime, zone: dt.tzinfo = dt.UTC
) -> tuple[dt.datetime, dt.datetime]:
    """(since, until) from the command's words; times without a zone are `zone`'s (the report's
    time zone: `--since 2026-11-01` is that day's midnight there). Raises ValueError."""
    end = now if until == "now" else _instant(until, zone)
    match = _AGO.match(since.strip())
    if match:
        start = end - dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        start = _instant(since, zone)
    if end <= start:
        raise ValueError(f"since {since} is not before until {until}")
    return start, end


def _instant(text: str, zone: dt.tzinfo) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (7d, 24h, 2w) nor an ISO date") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)
