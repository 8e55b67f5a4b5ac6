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
from fashionstream.app.api.failures import (
    Failure,
    RecentFailures,
    submission_event_id,
)
from fashionstream.app.api.services import Services
from fashionstream.core.errors import DeadLetterReason
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import DeadLetter, ImageRequest, Origin, event_id_for_item
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


class EmptyDatabase(QueryPool):
    """Postgres up, holding no image: every lookup finds nothing."""

    def run(self, query: Callable[..., Any]) -> Any:
        return None


def call(
    submitter: FakeSubmitter,
    request: Callable[[httpx.AsyncClient], Any],
    failures: RecentFailures | None = None,
    pool: type[QueryPool] = QueryPool,
    **settings: Any,
) -> httpx.Response:
    # Postgres on a port nothing listens on: every query is an outage
    config = Settings(database_url=f"postgresql://x@127.0.0.1:{free_port()}/x", **settings)
    services = Services(
        config,
        Metrics(CollectorRegistry()),
        submitter=submitter,
        pool=pool(config.database_url, application_name="test"),
        kafka_ready=lambda: True,
        tagger_factory=lambda: pytest.fail("no test here tags"),
        failures=failures,
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


SUBMITTED = event_id_for_item("shop", "sku-1", "https://shop.example/a.jpg")


def _letter(topic: str = "fashion.images.v1", **fields: Any) -> DeadLetter:
    values: dict[str, Any] = {
        "reason": DeadLetterReason.NOT_AN_IMAGE,
        "detail": "no image signature",
        "stage": "decode",
        "failed_at": 5.0,
        "source_id": "shop",
        "key": "sku-1",
        "reference": "https://shop.example/a.jpg",
        "origin": Origin(topic, 0, 7),
        **fields,
    }
    return DeadLetter(**values)


@pytest.mark.parametrize(
    ("letter", "expected"),
    [
        (_letter(), event_id_for_item("shop", "sku-1", "https://shop.example/a.jpg")),
        # later stages of the same catalogue image: its frame (tagging), its item (sink)
        (_letter(topic="fashion.frames.v1", stage="tag"), SUBMITTED),
        (_letter(topic="fashion.items.v1", stage="sink"), SUBMITTED),
        # a camera frame's letter names no submission
        (
            _letter(topic="fashion.frames.v1", source_id="cam-1", key="cam-1", reference="cam-1#7"),
            None,
        ),
        (_letter(topic="fashion.deadletter.v1"), None),
        (_letter(origin=None), None),
        (_letter(key=None), None),
        (_letter(source_id=None), None),
        (_letter(reference=None), None),
    ],
)
def test_a_dead_letter_of_any_stage_names_its_catalogue_submission(
    letter: DeadLetter, expected: str | None
) -> None:
    assert submission_event_id(letter) == expected


def test_recent_failures_are_bounded_and_a_resubmission_forgets_one() -> None:
    failures = RecentFailures(capacity=2)
    failure = Failure("not_an_image", "x", "decode", 1.0)
    for n in range(3):
        failures.record(f"00000000-0000-0000-0000-00000000000{n}", failure)
    assert failures.get("00000000-0000-0000-0000-000000000000") is None  # the oldest went
    assert failures.get("00000000-0000-0000-0000-00000000000A".lower()) is None
    assert failures.get("00000000-0000-0000-0000-000000000002") == failure
    failures.forget("00000000-0000-0000-0000-000000000002")
    assert failures.get("00000000-0000-0000-0000-000000000002") is None


def test_a_failure_from_before_a_resubmission_read_back_later_does_not_count() -> None:
    """The tail reads old letters back at its start: the attempt sent again starts over."""
    failures = RecentFailures(clock=lambda: 100.0)
    failures.forget(SUBMITTED)  # sent again at t=100
    failures.add_letters([_letter(failed_at=50.0)])  # the first attempt's letter, read late
    assert failures.get(SUBMITTED) is None
    failures.add_letters([_letter(failed_at=150.0)])  # the new attempt failed too
    assert failures.get(SUBMITTED) is not None


def test_a_failed_submission_is_a_422_with_the_dead_letters_reason() -> None:
    failures = RecentFailures()
    failures.add_letters([_letter()])
    event_id = event_id_for_item("shop", "sku-1", "https://shop.example/a.jpg")
    response = call(
        FakeSubmitter(),
        lambda c: c.get(f"/v1/images/{event_id.upper()}"),
        failures=failures,
        pool=EmptyDatabase,
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": "not_an_image",
        "detail": "the pipeline could not tag this image (decode): no image signature",
        "status": "failed",
        "event_id": event_id,
    }
