"""Image URL -> bytes over http(s), behind the SSRF guard, with bounded time and size.

- Every hop (the URL and each redirect target) is validated before it is requested; redirects
  are followed by hand, at most `fetch_max_redirects`.
- Host names are resolved by `GuardedResolver`, which drops refused addresses from the answer
  that aiohttp then connects to: the addresses checked are the addresses used (no DNS-rebinding
  window). IP-literal hosts never reach a resolver, so `validate_url` checks them itself.
- Connect, between-bytes and total timeouts; the byte limit is enforced while streaming (a
  Content-Length over the limit fails before reading), and counts decompressed bytes.
- No proxies from the environment, no cookies kept between fetches.

Every failure is a `FetchError` carrying the dead-letter reason.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from fashionstream.core.errors import DeadLetterReason, FetchError
from fashionstream.core.settings import Settings
from stream_processors.ssrf import AddressPolicy, validate_url

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024
USER_AGENT = "fashionstream-fetch/0.1 (+catalogue image tagging)"


class AddressRefusedError(OSError):
    """Raised by GuardedResolver when every address of a host is refused. An OSError so that
    aiohttp reports it as a DNS failure (ClientConnectorDNSError) carrying this cause."""


class GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then keeps only the addresses `policy` allows."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refusals: list[str] = []
        for answer in answers:
            why = self._policy.refusal(answer["host"])
            if why is None:
                allowed.append(answer)
            else:
                refusals.append(why)
        if not allowed:
            raise AddressRefusedError(f"{host} resolves only to refused addresses: {refusals[0]}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class FetchOptions:
    connect_timeout_s: float
    read_timeout_s: float
    total_timeout_s: float
    max_bytes: int
    max_redirects: int
    concurrency: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchOptions:
        return cls(
            connect_timeout_s=settings.fetch_connect_timeout_s,
            read_timeout_s=settings.fetch_read_timeout_s,
            total_timeout_s=settings.fetch_total_timeout_s,
            max_bytes=settings.fetch_max_bytes,
            max_redirects=settings.fetch_max_redirects,
            concurrency=settings.fetch_concurrency,
        )


@dataclass(frozen=True)
class FetchedImage:
    url: str  # the final URL, after redirects
    body: bytes
    content_type: str | None  # as the server claimed it; informational only
    redirects: int
    elapsed_s: float


class ImageFetcher:
    """Fetches image bodies. Build inside the running event loop with `open(...)`."""

    def __init__(
        self, session: aiohttp.ClientSession, policy: AddressPolicy, options: FetchOptions
    ) -> None:
        self._session = session
        self._policy = policy
        self._options = options

    @classmethod
    def open(cls, policy: AddressPolicy, options: FetchOptions) -> ImageFetcher:
        """A fetcher with its own connection pool; call from within the event loop."""
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(policy),
            limit=max(1, options.concurrency),
            ttl_dns_cache=30,
            enable_cleanup_closed=True,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # no HTTP(S)_PROXY: a proxy would connect wherever it is told
            headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.5"},
            auto_decompress=True,
        )
        return cls(session, policy, options)

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageFetcher:
        return cls.open(
            AddressPolicy.from_cidrs(settings.fetch_allow_networks),
            FetchOptions.from_settings(settings),
        )

    async def close(self) -> None:
        await self._session.close()

    async def fetch(self, url: str) -> FetchedImage:
        """GET `url` (following checked redirects). Raises FetchError with its reason."""
        target = validate_url(url, self._policy)
        options = self._options
        started = time.monotonic()
        try:
            async with asyncio.timeout(options.total_timeout_s):
                return await self._follow(target.url, started)
        except FetchError:
            raise
        except TimeoutError:
            elapsed = time.monotonic() - started
            raise FetchError(
                DeadLetterReason.TIMEOUT, f"no complete answer after {elapsed:.1f}s"
            ) from None
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, AddressRefusedError):
                raise FetchError(DeadLetterReason.ADDRESS_REFUSED, str(exc.os_error)) from None
            raise FetchError(
                DeadLetterReason.DNS_ERROR, f"cannot resolve: {exc.os_error}"
            ) from None
        except aiohttp.InvalidURL as exc:
            raise FetchError(DeadLetterReason.INVALID_URL, f"invalid URL: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            raise FetchError(DeadLetterReason.CONNECT_ERROR, f"cannot connect: {exc}") from None
        except aiohttp.ClientPayloadError as exc:
            raise FetchError(
                DeadLetterReason.CONNECT_ERROR, f"body transfer failed: {exc}"
            ) from None
        except aiohttp.ClientResponseError as exc:
            raise FetchError(DeadLetterReason.HTTP_STATUS, f"bad HTTP answer: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchError(DeadLetterReason.CONNECT_ERROR, f"fetch failed: {exc!r}") from None

    async def _follow(self, url: URL, started: float) -> FetchedImage:
        options = self._options
        timeout = aiohttp.ClientTimeout(
            total=None,  # the whole fetch is bounded by asyncio.timeout in fetch()
            connect=options.connect_timeout_s,
            sock_connect=options.connect_timeout_s,
            sock_read=options.read_timeout_s,
        )
        for hop in range(options.max_redirects + 1):
            async with self._session.get(url, allow_redirects=False, timeout=timeout) as response:
                if response.status in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchError(
                            DeadLetterReason.HTTP_STATUS,
                            f"HTTP {response.status} without a Location from {_show(url)}",
                        )
                    try:
                        next_url = url.join(URL(location))
                    except ValueError as exc:
                        raise FetchError(
                            DeadLetterReason.INVALID_URL, f"bad redirect target: {exc}"
                        ) from None
                    # Re-check scheme, credentials and IP literals of every hop; host names are
                    # re-checked by the resolver when the next connection is made.
                    url = validate_url(next_url, self._policy).url
                    continue
                if not 200 <= response.status < 300:
                    raise FetchError(
                        DeadLetterReason.HTTP_STATUS, f"HTTP {response.status} from {_show(url)}"
                    )
                body = await self._read_body(response, url)
                return FetchedImage(
                    url=str(url),
                    body=body,
                    content_type=response.headers.get("Content-Type"),
                    redirects=hop,
                    elapsed_s=time.monotonic() - started,
                )
        raise FetchError(
            DeadLetterReason.TOO_MANY_REDIRECTS,
            f"more than fetch_max_redirects={options.max_redirects} redirects",
        )

    async def _read_body(self, response: aiohttp.ClientResponse, url: URL) -> bytes:
        limit = self._options.max_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise FetchError(
                DeadLetterReason.TOO_LARGE,
                f"Content-Length {declared} over fetch_max_bytes={limit} ({_show(url)})",
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise FetchError(
                    DeadLetterReason.TOO_LARGE,
                    f"body over fetch_max_bytes={limit} after {size} bytes ({_show(url)})",
                )
            chunks.append(chunk)
        if not size:
            raise FetchError(DeadLetterReason.NOT_AN_IMAGE, f"empty body from {_show(url)}")
        return b"".join(chunks)


def _show(url: URL | Any) -> str:
    """A URL for messages: no query string (signed URLs carry tokens there), no credentials."""
    if isinstance(url, URL):
        return str(url.with_query(None).with_fragment(None).with_user(None))
    return str(url)
