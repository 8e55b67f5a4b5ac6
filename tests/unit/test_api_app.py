"""The API application in-process (httpx's ASGI transport, fakes for the producer, the broker
probe and the tagger): what a submission sends, and how failures are answered -- the broker or
Postgres down (503), a bug (a generic 500 that leaks nothing), a body streamed past the limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from fashionstream.app.api.app import create_app
from fashionstream.app.api.services import Services
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import ImageRequest, event_id_for_item
from fashionstream.core.settings import Settings
from infra.processes import free_port
from producers.feed import FeedItem
from producers.image_feed import DeliveryFailedError
from sinks.lookups import QueryPool


class FakeSubmitter:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.sent: list[tuple[FeedItem, str]] = []
        self.fail = fail

    def send_one(self, item: FeedItem, feed: str) -> ImageRequest:
        if self.fail is not None:
            raise self.fail
        self.sent.append((item, feed))
        return ImageRequest(feed, item.item_id, item.image_url, 1.0, item.attributes)

    def close(self) -> None:
        pass


def call(
    submitter: FakeSubmitter, request: Callable[[httpx.AsyncClient], Any], **settings: Any
) -> httpx.Response:
    # Postgres on a port nothing listens on: every query is an outage
    config = Settings(database_url=f"postgresql://x@127.0.0.1:{free_port()}/x", **settings)
    services = Services(
        config,
        Metrics(CollectorRegistry()),
        submitter=submitter,
        pool=QueryPool(config.database_url, application_name="test"),
        kafka_ready=lambda: True,
        tagger_factory=lambda: pytest.fail("no test here tags"),
    )
    app = create_app(config, services)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response: httpx.Response = await request(client)
            return response

    try:
        return asyncio.run(run())
    finally:
        services.close()


def test_a_submission_is_sent_as_a_feed_row_with_its_catalogue_columns() -> None:
    submitter = FakeSubmitter()
    url = "https://shop.example/a.jpg"
    body: dict[str, Any] = {
        "url": url,
        "id": " sku-9 ",
        "feed": "shop",
        "attributes": {"title": "Coat", "price": "49.50 GBP", "in_stock": True, "empty": ""},
    }
    response = call(submitter, lambda c: c.post("/v1/images", json=body))
    assert response.status_code == 202, response.text
    [(item, feed)] = submitter.sent
    assert feed == "shop"
    assert item.item_id == "sku-9"
    assert item.image_url == "https://shop.example/a.jpg"
    assert dict(item.attributes) == {"title": "Coat", "price": "49.50 GBP", "in_stock": True}
    assert item.catalogue.title == "Coat"
    assert str(item.catalogue.price) == "49.50"
    assert item.catalogue.currency == "GBP"
    assert response.json()["event_id"] == event_id_for_item("shop", "sku-9", url)


def test_without_an_id_or_feed_the_url_is_the_item_of_the_api_feed() -> None:
    submitter = FakeSubmitter()
    url = "https://shop.example/b.jpg"
    call(submitter, lambda c: c.post("/v1/images", json={"url": url}))
    [(item, feed)] = submitter.sent
    assert feed == "api"
    assert item.item_id.startswith("url-")


def test_an_unreachable_broker_is_a_503() -> None:
    submitter = FakeSubmitter(DeliveryFailedError("the broker did not answer"))
    response = call(submitter, lambda c: c.post("/v1/images", json={"url": "https://a.example/"}))
    assert response.status_code == 503
    assert response.json()["error"] == "broker_unavailable"


def test_a_bug_is_a_generic_500_that_leaks_nothing() -> None:
    submitter = FakeSubmitter(RuntimeError("password=hunter2 in a stack frame"))
    response = call(submitter, lambda c: c.post("/v1/images", json={"url": "https://a.example/"}))
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": "the server failed; the error is logged",
    }
    assert "hunter2" not in response.text


@pytest.mark.parametrize(
    "path",
    ["/v1/garments", "/v1/sightings", "/v1/images/00000000-0000-0000-0000-000000000000"],
)
def test_postgres_down_is_a_503(path: str) -> None:
    response = call(FakeSubmitter(), lambda c: c.get(path))
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "database_unavailable"


def test_health_says_postgres_is_down() -> None:
    response = call(FakeSubmitter(), lambda c: c.get("/healthz"))
    assert response.status_code == 503
    assert response.json()["checks"] == {"kafka": "ok", "postgres": "unreachable"}


def test_a_body_streamed_past_the_limit_is_cut_off() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):  # 64 KiB of a JSON string, no Content-Length
            yield b"x" * 1024

    submitter = FakeSubmitter()
    response = call(
        submitter,
        lambda c: c.post(
            "/v1/images", content=chunks(), headers={"content-type": "application/json"}
        ),
        api_max_body_bytes=16 * 1024,
    )
    assert "content-length" not in response.request.headers  # the limit held while streaming
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert submitter.sent == []
