"""The SSRF guard: which addresses may be connected to, which URLs may be fetched."""

from __future__ import annotations

import ipaddress

import pytest

from fashionstream.core.errors import DeadLetterReason, FetchError
from stream_processors.ssrf import AddressPolicy, validate_url

DEFAULT = AddressPolicy()


@pytest.mark.parametrize(
    ("address", "category"),
    [
        # IPv4
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata service
        ("169.254.0.1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),  # limited broadcast
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "shared address space"),
        ("192.0.2.10", "private"),  # documentation (TEST-NET-1)
        ("198.18.0.1", "private"),  # benchmarking
        # IPv6
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "private"),  # documentation
        ("fec0::1", "site-local"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        # IPv6 forms carrying an IPv4 address are judged by it
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2002:a9fe:a9fe::", "link-local"),  # 6to4 of 169.254.169.254
    ],
)
def test_refused_addresses(address: str, category: str) -> None:
    why = DEFAULT.refusal(address)
    assert why is not None
    assert category in why
    with pytest.raises(FetchError) as caught:
        DEFAULT.check(address)
    assert caught.value.reason is DeadLetterReason.ADDRESS_REFUSED


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",  # IPv4-mapped form of a public address
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert DEFAULT.refusal(address) is None


def test_scoped_ipv6_is_judged_without_its_zone() -> None:
    assert DEFAULT.refusal(ipaddress.IPv6Address("fe80::1%eth0")) is not None


def test_allow_list_admits_only_the_listed_networks() -> None:
    policy = AddressPolicy.from_cidrs(["127.0.0.2/32", "10.20.0.0/16", "fd00::/8"])
    assert policy.refusal("127.0.0.2") is None
    assert policy.refusal("10.20.3.4") is None
    assert policy.refusal("fd00::5") is None
    assert policy.refusal("::ffff:127.0.0.2") is None  # the mapped form of an allowed address
    assert policy.refusal("127.0.0.1") is not None
    assert policy.refusal("169.254.169.254") is not None
    assert policy.refusal("10.21.0.1") is not None


def test_malformed_allow_list_entries_fail_loudly() -> None:
    with pytest.raises(ValueError, match="not-a-cidr"):
        AddressPolicy.from_cidrs(["not-a-cidr"])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.jpg", DeadLetterReason.SCHEME_NOT_ALLOWED),
        ("file:///etc/passwd", DeadLetterReason.SCHEME_NOT_ALLOWED),
        ("gopher://example.com/", DeadLetterReason.SCHEME_NOT_ALLOWED),
        ("javascript:alert(1)", DeadLetterReason.SCHEME_NOT_ALLOWED),
        ("example.com/a.jpg", DeadLetterReason.INVALID_URL),  # no scheme
        ("dress-1.jpg", DeadLetterReason.INVALID_URL),
        ("http:///a.jpg", DeadLetterReason.INVALID_URL),  # no host
        ("http://", DeadLetterReason.INVALID_URL),
        ("http://user:secret@example.com/a.jpg", DeadLetterReason.INVALID_URL),
        ("http://user@example.com/a.jpg", DeadLetterReason.INVALID_URL),
        ("http://example.com:99999/a.jpg", DeadLetterReason.INVALID_URL),
        ("http://127.0.0.1/a.jpg", DeadLetterReason.ADDRESS_REFUSED),
        ("http://169.254.169.254/latest/meta-data/", DeadLetterReason.ADDRESS_REFUSED),
        ("http://[::1]:8080/a.jpg", DeadLetterReason.ADDRESS_REFUSED),
        ("http://[::ffff:127.0.0.1]/a.jpg", DeadLetterReason.ADDRESS_REFUSED),
        ("http://[fe80::1]/a.jpg", DeadLetterReason.ADDRESS_REFUSED),
        ("http://0.0.0.0/a.jpg", DeadLetterReason.ADDRESS_REFUSED),
        ("http://2130706433/a.jpg", DeadLetterReason.INVALID_URL),  # 127.0.0.1 as one number
        ("http://127.1/a.jpg", DeadLetterReason.INVALID_URL),
        ("http://0x7f.0.0.1/a.jpg", DeadLetterReason.INVALID_URL),
    ],
)
def test_url_validation_refuses(url: str, reason: DeadLetterReason) -> None:
    with pytest.raises(FetchError) as caught:
        validate_url(url, DEFAULT)
    assert caught.value.reason is reason, caught.value.detail


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/img/a.jpg?sig=abc",
        "http://8.8.8.8/a.jpg",
        "HTTPS://EXAMPLE.COM/A.JPG",
        "http://[2606:4700:4700::1111]/a.jpg",
        "https://xn--bcher-kva.example/a.jpg",
    ],
)
def test_url_validation_accepts(url: str) -> None:
    target = validate_url(url, DEFAULT)
    assert target.url.host


def test_ip_literal_on_the_allow_list_is_accepted() -> None:
    policy = AddressPolicy.from_cidrs(["127.0.0.2/32"])
    target = validate_url("http://127.0.0.2:8000/a.jpg", policy)
    assert target.literal == ipaddress.IPv4Address("127.0.0.2")
    with pytest.raises(FetchError):
        validate_url("http://127.0.0.1:8000/a.jpg", policy)
