"""API keys: when `api_keys` is set, every request but the health check must present one, as
`X-API-Key: KEY` or `Authorization: Bearer KEY`. Keys are compared in constant time, and every
configured key is compared, so the time taken says nothing about which key came close."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

OPEN_PATHS = frozenset({"/healthz"})  # load balancers and orchestrators probe without a key


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries (X-API-Key first, then a Bearer token), or None."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def key_is_valid(presented: str | None, keys: Iterable[str]) -> bool:
    """True when `presented` equals one of `keys`."""
    if presented is None:
        return False
    given = presented.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        # no early exit: every key is compared whatever the outcome
        matched |= hmac.compare_digest(given, key.encode("utf-8", "surrogateescape"))
    return matched


def needs_key(path: str, keys: tuple[str, ...]) -> bool:
    return bool(keys) and path not in OPEN_PATHS
