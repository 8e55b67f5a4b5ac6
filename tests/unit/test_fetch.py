"""Fetching (against local HTTP servers) and preparing images: magic bytes, pixel limit, EXIF."""

from __future__ import annotations

import asyncio
import gzip
import io
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from PIL import Image

from fashionstream.core.errors import DeadLetterReason, DecodeError, FetchError
from stream_processors.fetch import FetchOptions, GuardedResolver, ImageFetcher
from stream_processors.images import (
    check_jpeg,
    check_pixels,
    decode_jpeg,
    prepare_image,
    sniff_format,
)
from stream_processors.ssrf import AddressPolicy

SAMPLES = Path(__file__).resolve().parents[2] / "fashionstream" / "app" / "samples" / "catalogue"
TEST_HOST = "127.0.0.2"  # loopback on Linux, and the only address the tests' policy allows
POLICY = AddressPolicy.from_cidrs([f"{TEST_HOST}/32"])
IMAGE = (SAMPLES / "dress-1.jpg").read_bytes()


FRAMES = Path(__file__).parents[1] / "fixtures" / "frames"


def jpeg_bytes(width: int = 64, height: int = 48, exif: Any = None, quality: int = 90) -> bytes:
    image = Image.new("RGB", (width, height), (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, width // 2, height // 2))  # blue top-left quadrant
    out = io.BytesIO()
    if exif is not None:
        image.save(out, "JPEG", quality=quality, exif=exif)
    else:
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------------------------------
# magic bytes, pixel limit, EXIF, re-encoding


def _webp() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "WEBP")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (jpeg_bytes(), "JPEG"),
        (png_with_size(4, 4), "PNG"),
        (b"GIF89a" + b"\x00" * 20, "GIF"),
        (b"GIF87a" + b"\x00" * 20, "GIF"),
        (_webp(), "WEBP"),
        (b"BM" + b"\x00" * 40, "BMP"),
        (b"II*\x00" + b"\x00" * 20, "TIFF"),
        (b"MM\x00*" + b"\x00" * 20, "TIFF"),
        (b"<!DOCTYPE html><html>not an image</html>", None),
        (b"%PDF-1.7", None),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),  # RIFF, but audio
        (b"\xff\xd8", None),  # too short for a JPEG signature
        (b"", None),
    ],
)
def test_magic_byte_sniffing(data: bytes, expected: str | None) -> None:
    assert sniff_format(data) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html><body>404 page served as image/jpeg</body></html>", "not_an_image"),
        (jpeg_bytes(400, 300)[:600], "truncated_image"),  # cut inside the header
        (IMAGE[: len(IMAGE) * 2 // 3], "truncated_image"),  # cut inside the scan data
        (
            png_with_size(64, 64)[:29] + b"\x00\x00\x00\x00" + png_with_size(64, 64)[33:],
            "corrupt_image",
        ),
        (png_with_size(50_000, 50_000), "decompression_bomb"),
        (png_with_size(0, 10), "corrupt_image"),
    ],
)
def test_prepare_image_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        prepare_image(data, max_pixels=40_000_000, max_side=1024, quality=85)
    assert caught.value.reason is DeadLetterReason(reason), caught.value.detail


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    # 12k x 12k greyscale would need 144 MB to decode; the refusal is immediate
    with pytest.raises(DecodeError) as caught:
        prepare_image(
            png_with_size(12_000, 12_000), max_pixels=10_000_000, max_side=1024, quality=85
        )
    assert caught.value.reason is DeadLetterReason.DECOMPRESSION_BOMB
    assert "12000x12000" in caught.value.detail
    check_pixels(1000, 1000, 1_000_000)  # exactly at the limit is fine
    with pytest.raises(DecodeError):
        check_pixels(1001, 1000, 1_000_000)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: displays rotated 90 degrees clockwise
    prepared = prepare_image(
        jpeg_bytes(64, 48, exif=exif), max_pixels=10**7, max_side=1024, quality=95
    )
    assert (prepared.width, prepared.height) == (48, 64)
    assert (prepared.source_width, prepared.source_height) == (64, 48)
    image = np.asarray(Image.open(io.BytesIO(prepared.jpeg)))
    # the blue quadrant was top-left as stored; rotated clockwise it is top-right
    top_right = image[5:20, 35:45].mean(axis=(0, 1))
    top_left = image[5:20, 3:13].mean(axis=(0, 1))
    assert top_right[2] > 150 > top_right[0]
    assert top_left[0] > 150 > top_left[2]


def test_resize_keeps_aspect_and_output_is_jpeg() -> None:
    prepared = prepare_image(jpeg_bytes(3000, 1500), max_pixels=10**8, max_side=1024, quality=85)
    assert (prepared.width, prepared.height) == (1024, 512)
    assert prepared.jpeg.startswith(b"\xff\xd8\xff")
    small = prepare_image(jpeg_bytes(300, 200), max_pixels=10**8, max_side=1024, quality=85)
    assert (small.width, small.height) == (300, 200)  # never enlarged


def test_transparent_png_goes_on_white_and_gif_is_converted() -> None:
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    out = io.BytesIO()
    rgba.save(out, "PNG")
    prepared = prepare_image(out.getvalue(), max_pixels=10**6, max_side=64, quality=95)
    assert np.asarray(Image.open(io.BytesIO(prepared.jpeg))).min() > 240
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, "GIF")
    assert prepare_image(gif.getvalue(), max_pixels=10**6, max_side=64, quality=90).width == 8


def test_decode_jpeg_gives_rgb_uint8() -> None:
    array = decode_jpeg(jpeg_bytes(64, 48), max_pixels=10**6)
    assert array.shape == (48, 64, 3)
    assert array.dtype == np.uint8
    with pytest.raises(DecodeError) as caught:
        decode_jpeg(jpeg_bytes(64, 48), max_pixels=100)
    assert caught.value.reason is DeadLetterReason.DECOMPRESSION_BOMB


@pytest.mark.parametrize(
    "cut", [None, 0.999, 0.9, 0.5, 0.05], ids=["whole", "end", "90%", "half", "header"]
)
def test_check_jpeg_judges_a_frame_as_decoding_it_does(cut: float | None) -> None:
    """A live frame is only checked when taken (it may be skipped): same verdict and reason
    as the full decode, on a real camera frame cut short."""
    whole = (FRAMES / "intel_person_0360.jpg").read_bytes()
    data = whole if cut is None else whole[: int(len(whole) * cut)]

    def verdict(judge: Callable[[bytes, int], object]) -> DeadLetterReason | None:
        try:
            judge(data, 10**7)
        except DecodeError as exc:
            return exc.reason
        return None

    assert verdict(check_jpeg) == verdict(decode_jpeg)
    assert (verdict(check_jpeg) is None) == (cut is None)


# ---------------------------------------------------------------------------------------------
# the fetcher, against aiohttp servers on 127.0.0.2 (allowed) and 127.0.0.1 (refused)

OPTIONS = FetchOptions(
    connect_timeout_s=2.0,
    read_timeout_s=0.5,
    total_timeout_s=3.0,
    max_bytes=1_000_000,
    max_redirects=3,
    concurrency=4,
)


def make_app(port_of: Callable[[], int]) -> web.Application:
    async def image(_: web.Request) -> web.Response:
        return web.Response(body=IMAGE, content_type="text/html")  # the header lies

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404, text="no such image")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound(f"/loop/{n + 1}")

    async def big_declared(_: web.Request) -> web.Response:
        return web.Response(body=b"\xff\xd8\xff" + b"\x00" * 2_000_000)

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"\x00" * 65536)
        await response.write_eof()
        return response

    async def gzip_bomb(_: web.Request) -> web.Response:
        body = gzip.compress(b"\x00" * 5_000_000)
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(IMAGE[:100])
        await asyncio.sleep(2.0)
        await response.write(IMAGE[100:])
        return response

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(0, len(IMAGE), 200):  # each write within the read timeout, forever-ish
            await response.write(IMAGE[i : i + 200])
            await asyncio.sleep(0.3)
        return response

    async def empty(_: web.Request) -> web.Response:
        return web.Response(body=b"")

    app = web.Application()
    app.add_routes(
        [
            web.get("/dress.jpg", image),
            web.get("/missing.jpg", missing),
            web.get("/redirect", redirect),
            web.get("/loop/{n}", loop),
            web.get("/big-declared", big_declared),
            web.get("/big-chunked", big_chunked),
            web.get("/gzip-bomb", gzip_bomb),
            web.get("/slow", slow),
            web.get("/drip", drip),
            web.get("/empty", empty),
        ]
    )
    return app


@asynccontextmanager
async def serve(host: str, port: int = 0) -> AsyncIterator[int]:
    runner = web.AppRunner(make_app(lambda: port))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield int(bound)
    finally:
        await runner.cleanup()


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


async def fetch(url: str, *, resolver: AbstractResolver | None = None) -> bytes:
    if resolver is None:
        fetcher = ImageFetcher.open(POLICY, OPTIONS)
    else:
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(POLICY, resolver)),
            trust_env=False,
        )
        fetcher = ImageFetcher(session, POLICY, OPTIONS)
    try:
        return (await fetcher.fetch(url)).body
    finally:
        await fetcher.close()


def test_fetch_returns_the_body_whatever_the_content_type() -> None:
    async def go() -> bytes:
        async with serve(TEST_HOST) as port:
            return await fetch(f"http://{TEST_HOST}:{port}/dress.jpg")

    assert run(go()) == IMAGE


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/missing.jpg", DeadLetterReason.HTTP_STATUS),
        ("/loop/0", DeadLetterReason.TOO_MANY_REDIRECTS),
        ("/redirect?to=http://127.0.0.1/x.jpg", DeadLetterReason.ADDRESS_REFUSED),
        ("/redirect?to=http://169.254.169.254/latest/meta-data/", DeadLetterReason.ADDRESS_REFUSED),
        ("/redirect?to=http://[::ffff:127.0.0.1]/x.jpg", DeadLetterReason.ADDRESS_REFUSED),
        ("/redirect?to=ftp://127.0.0.2/x.jpg", DeadLetterReason.SCHEME_NOT_ALLOWED),
        ("/redirect?to=http://localhost/x.jpg", DeadLetterReason.ADDRESS_REFUSED),
        ("/big-declared", DeadLetterReason.TOO_LARGE),
        ("/big-chunked", DeadLetterReason.TOO_LARGE),
        ("/gzip-bomb", DeadLetterReason.TOO_LARGE),
        ("/slow", DeadLetterReason.TIMEOUT),
        ("/drip", DeadLetterReason.TIMEOUT),
        ("/empty", DeadLetterReason.NOT_AN_IMAGE),
    ],
)
def test_fetch_failures_carry_their_reason(path: str, reason: DeadLetterReason) -> None:
    async def go() -> FetchError:
        async with serve(TEST_HOST) as port:
            with pytest.raises(FetchError) as caught:
                await fetch(f"http://{TEST_HOST}:{port}{path}")
            return caught.value

    error = run(go())
    assert error.reason is reason, error.detail


def test_redirects_within_the_limit_are_followed() -> None:
    async def go() -> bytes:
        async with serve(TEST_HOST) as port:
            hop = f"http://{TEST_HOST}:{port}/dress.jpg"
            return await fetch(f"http://{TEST_HOST}:{port}/redirect?to={hop}")

    assert run(go()) == IMAGE


def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind((TEST_HOST, 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(FetchError) as caught:
        run(fetch(f"http://{TEST_HOST}:{port}/x.jpg"))
    assert caught.value.reason is DeadLetterReason.CONNECT_ERROR


def test_unresolvable_host_is_a_dns_error() -> None:
    with pytest.raises(FetchError) as caught:
        run(fetch("http://no-such-host.invalid/x.jpg"))
    assert caught.value.reason is DeadLetterReason.DNS_ERROR


class FixedResolver(AbstractResolver):
    """Answers every name with the given addresses, in order (a rebinding DNS server)."""

    def __init__(self, *hosts: str) -> None:
        self.hosts = hosts
        self.calls = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls += 1
        return [
            {
                "hostname": host,
                "host": h,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for h in self.hosts
        ]

    async def close(self) -> None:
        pass


def test_a_name_resolving_only_to_refused_addresses_is_refused() -> None:
    with pytest.raises(FetchError) as caught:
        run(fetch("http://rebind.example/x.jpg", resolver=FixedResolver("169.254.169.254")))
    assert caught.value.reason is DeadLetterReason.ADDRESS_REFUSED


def test_connection_goes_only_to_the_checked_addresses() -> None:
    """A name answering [127.0.0.1, 127.0.0.2]: a secret server listens on 127.0.0.1 on the same
    port. aiohttp tries answers in order, so without the guard's filtering it would get the
    secret; with it, it may only connect to 127.0.0.2."""

    async def secret(_: web.Request) -> web.Response:
        return web.Response(body=b"\xff\xd8\xffSECRET")

    async def go() -> bytes:
        async with serve(TEST_HOST) as port:
            evil = web.Application()
            evil.add_routes([web.get("/dress.jpg", secret)])
            runner = web.AppRunner(evil)
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", port).start()
            except OSError:
                await runner.cleanup()
                pytest.skip(f"127.0.0.1:{port} is taken")
            try:
                resolver = FixedResolver("127.0.0.1", TEST_HOST)
                return await fetch(f"http://shop.example:{port}/dress.jpg", resolver=resolver)
            finally:
                await runner.cleanup()

    assert run(go()) == IMAGE


def test_ip_literals_are_checked_without_a_resolver() -> None:
    resolver = FixedResolver(TEST_HOST)
    with pytest.raises(FetchError) as caught:
        run(fetch("http://127.0.0.1:1/x.jpg", resolver=resolver))
    assert caught.value.reason is DeadLetterReason.ADDRESS_REFUSED
    assert resolver.calls == 0
