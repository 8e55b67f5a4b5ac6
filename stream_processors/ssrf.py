"""The fetch agent's SSRF guard: which URLs may be fetched and which addresses may be connected to.

Only http(s) URLs with a host and no credentials are fetched. An address is refused unless it
is globally routable unicast: private, loopback, link-local (169.254.169.254, the cloud metadata
service, included), multicast, reserved, unspecified, shared (100.64/10), documentation and
benchmark ranges are refused, in IPv4 and IPv6 alike. IPv6 forms that embed an IPv4 address
(IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that IPv4 address;
Teredo and deprecated site-local IPv6 are refused. `fetch_allow_networks` lists CIDRs that are
fetched anyway (a test server, an internal CDN).

The guard runs where the connection is made (see `fetch.GuardedResolver`): the addresses checked
are the addresses connected to, so DNS rebinding cannot slip a private address in after the check.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL

from fashionstream.core.errors import DeadLetterReason, FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT: not global, not private


class AddressPolicy:
    """Decides whether an IP address may be connected to."""

    def __init__(self, allow_networks: Iterable[IPNetwork] = ()) -> None:
        self.allow_networks = tuple(allow_networks)

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> AddressPolicy:
        """Raises ValueError naming a malformed CIDR."""
        networks = []
        for cidr in cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"fetch_allow_networks: {cidr!r} is not a CIDR: {exc}") from None
        return cls(networks)

    def refusal(self, address: IPAddress | str) -> str | None:
        """Why `address` must not be connected to, or None when it may."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if self._allowed(ip):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(ip)
            if embedded is not None:
                if self._allowed(embedded):
                    return None
                why = _category(embedded)
                return f"{ip} embeds {embedded}, {why}" if why else None
            if ip.teredo is not None:
                return f"{ip} is a Teredo address"
            if ip in _SITE_LOCAL:
                return f"{ip} is site-local"
        why = _category(ip)
        return f"{ip} is {why}" if why else None

    def check(self, address: IPAddress | str) -> None:
        """Raises FetchError(ADDRESS_REFUSED) when `address` must not be connected to."""
        why = self.refusal(address)
        if why is not None:
            raise FetchError(DeadLetterReason.ADDRESS_REFUSED, why)

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow_networks)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def _category(ip: IPAddress) -> str | None:
    """The first reason an address is not a public unicast one, or None."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared address space"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class FetchTarget:
    """A URL that passed validation; `literal` is its host when the host is an IP address."""

    url: URL
    literal: IPAddress | None


def validate_url(raw: str | URL, policy: AddressPolicy) -> FetchTarget:
    """Check a URL before any connection: scheme, host, no credentials, and the address
    itself when the host is an IP literal (IP literals never reach a resolver).

    Raises FetchError with INVALID_URL, SCHEME_NOT_ALLOWED or ADDRESS_REFUSED.
    """
    text = str(raw)
    try:
        url = raw if isinstance(raw, URL) else URL(text)
    except (ValueError, TypeError) as exc:
        raise FetchError(DeadLetterReason.INVALID_URL, f"not a URL: {exc}") from None
    scheme = (url.scheme or "").lower()
    if not scheme:
        raise FetchError(DeadLetterReason.INVALID_URL, f"{_short(text)} has no scheme")
    if scheme not in ALLOWED_SCHEMES:
        raise FetchError(
            DeadLetterReason.SCHEME_NOT_ALLOWED, f"scheme {scheme!r} is not fetched (http(s) only)"
        )
    try:
        host = url.raw_host
    except (ValueError, UnicodeError) as exc:  # e.g. an invalid IDNA name
        raise FetchError(DeadLetterReason.INVALID_URL, f"bad host: {exc}") from None
    if not host:
        raise FetchError(DeadLetterReason.INVALID_URL, f"{_short(text)} has no host")
    if url.raw_user is not None or url.raw_password is not None:
        # Credentials in an image URL would be sent to whoever it redirects to, and logged.
        raise FetchError(DeadLetterReason.INVALID_URL, "URL carries credentials (user:pass@)")
    try:
        port = url.port
    except ValueError as exc:
        raise FetchError(DeadLetterReason.INVALID_URL, f"bad port: {exc}") from None
    if port is not None and not 0 < port < 65536:
        raise FetchError(DeadLetterReason.INVALID_URL, f"port {port} is out of range")
    literal = _ip_literal(host)
    if literal is not None:
        policy.check(literal)
    elif _legacy_numeric_ipv4(host):
        # "2130706433" or "127.1" resolve to 127.0.0.1 through getaddrinfo: refuse the form.
        raise FetchError(DeadLetterReason.INVALID_URL, f"host {host!r} is a non-canonical IPv4")
    return FetchTarget(url=url, literal=literal)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _legacy_numeric_ipv4(host: str) -> bool:
    parts = host.rstrip(".").split(".")
    if not 1 <= len(parts) <= 4:
        return False
    return all(_numeric_part(p) for p in parts)


def _numeric_part(part: str) -> bool:
    lowered = part.lower()
    if lowered.startswith("0x"):
        return len(lowered) > 2 and all(c in "0123456789abcdef" for c in lowered[2:])
    return part.isdigit()


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
