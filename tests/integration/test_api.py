"""The HTTP API against the real broker and Postgres, through a real HTTP client (httpx) talking
to the running service (uvicorn on a free port): submissions travel the feed path through a
worker (the fake tagger: these tests are about the API, Kafka and Postgres) and come back as rows
the query endpoints serve; hostile input is refused up front or dead-lettered by the worker;
keys are enforced. The synchronous tag endpoint runs the real tagger on one catalogue photo.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2.extensions
import pytest
from prometheus_client import CollectorRegistry

from fashionstream.app.api.background import ensure_api, stop_api
from fashionstream.app.api.failures import DeadLetterTail, RecentFailures
from fashionstream.app.api.server import ApiServer
from fashionstream.app.api.services import Services
from fashionstream.app.local_run import WorkerProcess, start_group_at_end
from fashionstream.core.errors import DeadLetterReason
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import DeadLetter, Origin, Topic, event_id_for_item
from fashionstream.core.settings import REPO_ROOT, Settings
from infra.processes import free_port, tail
from producers.kafka import Deliveries, build_producer
from tests.support import fake_worker
from tests.support.pipeline import (
    IMAGE_HOST,
    WORKER_STATE_DIR,
    DeadLetterReader,
    ImageServer,
    decompression_bomb_png,
    real_tagger_available,
    running_worker,
    send_video,
    unique,
    wait_for_sightings,
)

KEY = "test-key-0123456789"
CLIP = REPO_ROOT / "tests" / "fixtures" / "video" / "person_4s.mp4"  # 8 frames at 2 fps
TIMEOUT_S = 90.0
SHARED_PHOTO = Path(__file__).resolve().parents[3] / "shared" / "data" / "products" / "images"
UPLOAD_LIMIT = 2 * 1024 * 1024  # the API's fetch_max_bytes here: uploads over it are refused


@dataclasses.dataclass
class Running:
    url: str
    client: httpx.Client  # carries the key
    images: ImageServer
    worker: WorkerProcess
    settings: Settings


@pytest.fixture(scope="module")
def api(local_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    group = unique("it-api")
    start_group_at_end(local_stack, group)
    settings = dataclasses.replace(
        local_stack,
        api_host="127.0.0.1",
        api_keys=(KEY, "second-key"),
        fetch_allow_networks=(f"{IMAGE_HOST}/32",),
        fetch_max_bytes=UPLOAD_LIMIT,
        state_dir=WORKER_STATE_DIR,  # the tagger's ONNX exports are cached there
        api_wait_max_s=TIMEOUT_S,
    )
    log = tmp_path_factory.mktemp("api") / "worker.log"
    services = Services.from_settings(settings, Metrics(CollectorRegistry()))
    with (
        ImageServer() as images,
        running_worker(local_stack, group, log, fake_worker.command()) as worker,
        ApiServer(settings, port=free_port(), services=services) as server,
        httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=120) as client,
    ):
        assert services.dead_letter_tail is not None
        assert services.dead_letter_tail.ready.wait(30), "the API never reached the broker"
        yield Running(server.url, client, images, worker, settings)


def submit(api: Running, body: dict[str, Any], *, wait: float = 0.0) -> httpx.Response:
    return api.client.post("/v1/images", params={"wait": wait}, json=body)


def tagged(api: Running, body: dict[str, Any]) -> dict[str, Any]:
    """Submit and wait for the tagged result (200)."""
    response = submit(api, body, wait=TIMEOUT_S)
    assert response.status_code == 200, f"{response.status_code} {response.text}\n" + (
        api.worker.tail()
    )
    result: dict[str, Any] = response.json()
    return result


def image_rows(db: psycopg2.extensions.connection, feed: str) -> list[tuple[str, dt.datetime]]:
    with db.cursor() as cur:
        cur.execute(
            "SELECT i.event_id::text, i.written_at FROM images i"
            " JOIN sources s ON s.id = i.source_pk WHERE s.source_id = %s",
            (feed,),
        )
        return list(cur.fetchall())


def test_a_submitted_url_becomes_a_tagged_row_that_the_queries_serve(
    api: Running, db: psycopg2.extensions.connection
) -> None:
    feed = unique("api-feed")
    url = api.images.base_url + "dress-1.jpg"
    body = {
        "url": url,
        "id": "sku-1",
        "feed": feed,
        "attributes": {"title": "Red dress", "brand": "sample", "price": "19.99 EUR"},
    }
    queued = submit(api, body)
    assert queued.status_code == 202, queued.text
    event_id = event_id_for_item(feed, "sku-1", url)  # the feed path's id
    assert queued.json() == {
        "event_id": event_id,
        "status": "queued",
        "status_url": f"/v1/images/{event_id}",
    }
    assert queued.headers["location"] == f"/v1/images/{event_id}"

    result = tagged(api, body)
    assert result["status"] == "tagged"
    assert result["event_id"] == event_id
    image = result["image"]
    assert image["item_id"] == "sku-1"
    assert image["source_kind"] == "feed"
    assert image["source_id"] == feed
    assert image["catalogue"] == {
        "title": "Red dress",
        "brand": "sample",
        "price": "19.99",
        "currency": "EUR",
    }
    assert image["garment_count"] == len(image["garments"]) >= 1

    got = api.client.get(f"/v1/images/{event_id}")
    assert got.status_code == 200
    assert got.json()["garments"] == image["garments"]
    assert got.json()["event_id"] == event_id
    # a UUID in upper case is the same image
    assert api.client.get(f"/v1/images/{event_id.upper()}").json()["event_id"] == event_id


def test_the_same_id_submitted_twice_is_one_row(
    api: Running, db: psycopg2.extensions.connection
) -> None:
    feed = unique("api-twice")
    body = {"url": api.images.base_url + "dress-2.jpg", "id": "sku-2", "feed": feed}
    first = tagged(api, body)
    [(event_id, written_before)] = image_rows(db, feed)
    again = submit(api, body)
    assert again.status_code == 202
    assert again.json()["event_id"] == first["event_id"] == event_id
    # wait until the second request was processed (the row is rewritten), then count
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=TIMEOUT_S)
    rows = image_rows(db, feed)
    while rows[0][1] == written_before and dt.datetime.now(dt.UTC) < deadline:
        assert api.worker.alive(), api.worker.tail()
        time.sleep(0.2)
        rows = image_rows(db, feed)
    assert len(rows) == 1
    assert rows[0][0] == event_id
    assert rows[0][1] > written_before, "the second submission was never processed"

    # without an id, the URL is the item: the same URL twice is one event too
    url_only = {"url": api.images.base_url + "dress-2.jpg", "feed": feed}
    assert submit(api, url_only).json()["event_id"] == submit(api, url_only).json()["event_id"]


def test_garments_are_paged_with_an_opaque_cursor(
    api: Running, db: psycopg2.extensions.connection
) -> None:
    feed = unique("api-pages")
    names = sorted(api.images.images)[:4]
    for n, name in enumerate(names):
        tagged(api, {"url": api.images.base_url + name, "id": f"p-{n}", "feed": feed})
    with db.cursor() as cur:
        cur.execute(
            "SELECT g.id FROM garments g JOIN sources s ON s.id = g.source_pk"
            " WHERE s.source_id = %s ORDER BY g.captured_at DESC, g.id DESC",
            (feed,),
        )
        expected = [r[0] for r in cur.fetchall()]
    assert len(expected) >= 4

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"source": feed, "limit": 1}
        if cursor is not None:
            params["cursor"] = cursor
        response = api.client.get("/v1/garments", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(g["id"] for g in page["garments"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages <= len(expected)
    assert seen == expected  # every garment once, newest first, across pages
    assert pages == len(expected)

    first = api.client.get("/v1/garments", params={"source": feed, "limit": 500}).json()
    assert [g["id"] for g in first["garments"]] == expected
    assert first["next_cursor"] is None
    category = first["garments"][0]["category"]
    same = api.client.get("/v1/garments", params={"source": feed, "category": category}).json()
    assert {g["category"] for g in same["garments"]} == {category}
    none = api.client.get("/v1/garments", params={"source": feed, "category": "no-such"}).json()
    assert none == {"garments": [], "count": 0, "next_cursor": None}
    future = api.client.get("/v1/garments", params={"source": feed, "since": "2999-01-01"}).json()
    assert future["garments"] == []
    # sightings: none from a feed, the listing still answers a page
    sightings = api.client.get("/v1/sightings", params={"camera": feed, "limit": 5})
    assert sightings.status_code == 200
    assert sightings.json() == {"sightings": [], "count": 0, "next_cursor": None}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"url": "not a url"}, 422, "invalid_url"),
        ({"url": "ftp://example.com/a.jpg"}, 422, "scheme_not_allowed"),
        ({"url": "http://user:pw@example.com/a.jpg"}, 422, "invalid_url"),
        ({"url": "http://example.com/" + "a" * 5000}, 422, "invalid_request"),
        ({"url": ""}, 422, "invalid_request"),
        ({"url": "http://example.com/a.jpg", "id": "x" * 513}, 422, "invalid_request"),
        ({"url": "http://example.com/a.jpg", "colour": "red"}, 422, "invalid_request"),
        ({"url": 5}, 422, "invalid_request"),
        ({"url": "http://10.1.2.3/a.jpg"}, 400, "refused_address"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, 400, "refused_address"),
        ({"url": "http://127.0.0.1:5432/"}, 400, "refused_address"),
        ({"url": "http://[::1]/a.jpg"}, 400, "refused_address"),
        ({"url": "http://2130706433/a.jpg"}, 422, "invalid_url"),
    ],
)
def test_hostile_submissions_are_refused_up_front_with_a_json_error(
    api: Running, body: dict[str, Any], status: int, error: str
) -> None:
    response = submit(api, body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"] == error
    assert answer["detail"]
    assert "Traceback" not in response.text


def test_bad_requests_get_4xx_json_and_no_traces(api: Running) -> None:
    big = {"url": "http://example.com/a.jpg", "attributes": {"x": "y" * (2 * 1024 * 1024)}}
    cases = [
        (api.client.post("/v1/images", json=big), 413, "too_large"),
        (
            api.client.post(
                "/v1/images", content=b"{not json", headers={"content-type": "application/json"}
            ),
            422,
            "invalid_request",
        ),
        (api.client.get("/v1/garments", params={"cursor": "bogus"}), 400, "invalid_cursor"),
        (api.client.get("/v1/garments", params={"limit": 0}), 422, "invalid_request"),
        (api.client.get("/v1/garments", params={"since": "last tuesday"}), 422, "invalid_request"),
        (api.client.get("/v1/images/00000000-0000-0000-0000-000000000000"), 404, "not_found"),
        (api.client.get("/v1/images/not-a-uuid"), 404, "not_found"),
        (api.client.get("/v1/nothing-here"), 404, "not_found"),
        (api.client.delete("/v1/garments"), 405, "method_not_allowed"),
    ]
    for response, status, error in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert response.json()["error"] == error, response.text
        assert "Traceback" not in response.text


def test_what_only_a_fetch_can_tell_becomes_a_dead_letter(api: Running) -> None:
    letters = DeadLetterReader(api.settings)
    try:
        feed = unique("api-dead")
        unreachable = f"http://{IMAGE_HOST}:1/nothing.jpg"  # nothing listens on port 1
        not_an_image = api.images.base_url + "not-an-image.jpg"
        for n, url in enumerate((unreachable, not_an_image)):
            response = submit(api, {"url": url, "id": f"dead-{n}", "feed": feed})
            assert response.status_code == 202, response.text
        wanted = {unreachable: "connect_error", not_an_image: "not_an_image"}
        got = letters.wait_for(lambda seen: wanted.keys() <= {d.reference for d in seen}, TIMEOUT_S)
        reasons = {d.reference: d.reason.value for d in got if d.reference in wanted}
        assert reasons == wanted, api.worker.tail()
        # the API read the same letters: its status URL says why, with the same code
        for n, (url, reason) in enumerate(wanted.items()):
            status_url = f"/v1/images/{event_id_for_item(feed, f'dead-{n}', url)}"
            deadline = time.monotonic() + 15
            answer = api.client.get(status_url)
            while answer.status_code == 404 and time.monotonic() < deadline:
                time.sleep(0.2)
                answer = api.client.get(status_url)
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"] == reason
            assert answer.json()["status"] == "failed"
        # and a submission that waits hears of its failure instead of timing out
        waited = submit(api, {"url": not_an_image, "id": "dead-wait", "feed": feed}, wait=60)
        assert waited.status_code == 422, waited.text
        assert waited.json()["error"] == "not_an_image"
    finally:
        letters.close()


def test_failures_from_before_the_api_started_are_read_back(local_stack: Settings) -> None:
    """A letter already on the topic when an API process starts (here: the sink's letter of a
    catalogue image, a later stage than the fetch) is known to it, and so is one that comes
    after."""
    feed = unique("api-before")
    urls = [f"https://shop.example/{feed}-{n}.jpg" for n in range(2)]

    def send_letter(n: int) -> None:
        letter = DeadLetter(
            reason=DeadLetterReason.INTERNAL_ERROR,
            detail=f"letter {n}",
            stage="sink",
            failed_at=time.time(),
            source_id=feed,
            reference=urls[n],
            key=f"sku-{n}",
            origin=Origin(Topic.ITEMS.value, 0, n),
        )
        producer = build_producer(local_stack, client_id="test-api-letters")
        try:
            key, value = letter.to_kafka()
            deliveries = Deliveries()
            deliveries.track(producer.send(Topic.DEADLETTER.value, key=key, value=value))
            deliveries.wait(producer, 30)
            assert deliveries.delivered == 1, deliveries.failed
        finally:
            producer.close()

    send_letter(0)
    failures = RecentFailures()
    tail = DeadLetterTail.from_settings(local_stack, failures).start()
    try:
        assert tail.ready.wait(30)
        send_letter(1)
        ids = [event_id_for_item(feed, f"sku-{n}", url) for n, url in enumerate(urls)]
        deadline = time.monotonic() + 20
        while not all(failures.get(i) for i in ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        got = [failures.get(i) for i in ids]
        assert [f.detail if f else None for f in got] == ["letter 0", "letter 1"]
    finally:
        tail.stop()


def test_keys_are_required_everywhere_but_health(api: Running) -> None:
    bare = httpx.Client(base_url=api.url, timeout=30)
    try:
        for path in ("/v1/garments", "/metrics", "/v1/images/x", "/docs", "/openapi.json"):
            response = bare.get(path)
            assert response.status_code == 401, path
            assert response.json()["error"] == "unauthorized"
        wrong = bare.get("/v1/garments", headers={"X-API-Key": "wrong"})
        assert wrong.status_code == 401
        assert wrong.json()["detail"].startswith("wrong API key")
        assert bare.post("/v1/images", json={"url": "http://10.0.0.1/"}).status_code == 401
        bearer = bare.get("/v1/garments", headers={"Authorization": "Bearer second-key"})
        assert bearer.status_code == 200
        health = bare.get("/healthz")
        assert health.status_code == 200, health.text
        assert health.json() == {"status": "ok", "checks": {"kafka": "ok", "postgres": "ok"}}
        docs = bare.get("/docs", headers={"X-API-Key": KEY})
        assert docs.status_code == 200
        # the docs page draws with the wheel's own Swagger UI: no CDN
        assert "/docs-assets/swagger-ui-bundle.js" in docs.text
        assert "cdn." not in docs.text
        assert bare.get("/docs-assets/swagger-ui-bundle.js").status_code == 401
        script = bare.get("/docs-assets/swagger-ui-bundle.js", headers={"X-API-Key": KEY})
        assert script.status_code == 200
        assert "SwaggerUIBundle" in script.text
    finally:
        bare.close()


def test_metrics_count_requests_per_route_and_status(api: Running) -> None:
    api.client.get("/v1/images/00000000-0000-0000-0000-000000000000")
    text = api.client.get("/metrics").text
    assert (
        'fashionstream_api_requests_total{method="GET",route="/v1/images/{event_id}",'
        'status="404"}' in text
    )
    assert "fashionstream_api_request_duration_seconds_bucket" in text
    assert 'route="/v1/images/00000000' not in text  # templates, never raw paths


def test_health_names_what_is_down(local_stack: Settings) -> None:
    down = dataclasses.replace(
        local_stack,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        api_host="127.0.0.1",
    )
    with ApiServer(down, port=free_port()) as server:
        response = httpx.get(server.url + "/healthz", timeout=30)
    assert response.status_code == 503
    assert response.json()["checks"] == {"kafka": "unreachable", "postgres": "ok"}
    assert response.json()["error"] == "unavailable"


def test_an_uploaded_photo_is_tagged_synchronously_within_the_fetch_limits(api: Running) -> None:
    assert real_tagger_available(), "the real tagger (models/tagger.py + weights/) is missing"
    photo = SHARED_PHOTO / "10000.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} is not on this machine")
    response = api.client.post(
        "/v1/images:tag", files={"file": ("10000.jpg", photo.read_bytes(), "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model_version"]
    assert result["width"] > 0
    assert result["height"] > 0
    assert len(result["garments"]) >= 1
    garment = result["garments"][0]
    assert {"category", "score", "box", "attributes", "colour", "style"} <= garment.keys()

    for content, status, error in [
        (b"<html>not an image</html>", 422, "not_an_image"),
        (b"", 422, "not_an_image"),
        (decompression_bomb_png(), 413, "too_large"),  # over fetch_max_pixels
        (b"\xff\xd8\xff" + b"\0" * UPLOAD_LIMIT, 413, "too_large"),  # over fetch_max_bytes
    ]:
        refused = api.client.post(
            "/v1/images:tag", files={"file": ("x.jpg", content, "image/jpeg")}
        )
        assert refused.status_code == status, refused.text
        assert refused.json()["error"] == error
    missing = api.client.post("/v1/images:tag", data={"other": "x"})
    assert missing.status_code == 422


def test_the_demo_leaves_one_api_serving_until_down(local_stack: Settings, tmp_path: Path) -> None:
    settings = dataclasses.replace(
        local_stack, api_host="127.0.0.1", api_port=free_port(), state_dir=tmp_path
    )
    first = ensure_api(settings)
    try:
        assert first.started
        assert first.pid is not None
        health = httpx.get(first.url + "/healthz", timeout=30)
        assert health.status_code == 200, tail(first.log_file)
        again = ensure_api(settings)  # a second demo reuses it
        assert not again.started
        assert again.pid == first.pid
    finally:
        stopped = stop_api(settings)
    assert stopped is True
    with pytest.raises(httpx.TransportError):
        httpx.get(first.url + "/healthz", timeout=5)
    assert stop_api(settings) is None


def test_sightings_are_paged_and_filtered_by_camera(
    api: Running, db: psycopg2.extensions.connection
) -> None:
    cameras = [unique("api-cam") for _ in range(3)]
    for camera in cameras:
        send_video(api.settings, CLIP, camera, fps=2.0)
    for camera in cameras:  # the fake tagger sees one person in every frame: one sighting each
        wait_for_sightings(db, camera, 1, TIMEOUT_S, api.worker)
    with db.cursor() as cur:
        cur.execute("SELECT id FROM sightings ORDER BY first_seen_at DESC, id DESC")
        expected = [r[0] for r in cur.fetchall()]
    assert len(expected) == 3  # the same clip: equal times, so the pages' order rests on the id

    seen: list[int] = []
    params: dict[str, Any] = {"limit": 1}
    for _ in range(len(expected) + 1):
        page = api.client.get("/v1/sightings", params=params).json()
        seen.extend(s["id"] for s in page["sightings"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == expected

    one = api.client.get("/v1/sightings", params={"camera": cameras[1]}).json()
    [sighting] = one["sightings"]
    assert sighting["camera"] == cameras[1]
    assert sighting["frames_seen"] >= 2
    assert sighting["garments"], "the fake tagger's garment is voted into the sighting"
    best = api.client.get(f"/v1/images/{sighting['best_view']['event_id']}")
    assert best.status_code == 200  # the best view is a stored frame
    assert best.json()["source_id"] == cameras[1]


def test_the_report_serves_what_was_tagged_as_json_and_as_one_html_page(api: Running) -> None:
    feed = unique("api-report")
    tagged(api, {"url": api.images.base_url + "dress-1.jpg", "id": "sku-r", "feed": feed})

    body = api.client.get("/v1/report", params={"since": "1h", "sources": feed}).json()
    assert body["sources"] == [feed]
    assert body["totals"]["catalogue_images"] == 1
    assert body["totals"]["sightings"] == 0
    assert body["top_catalogue_garments"], "the fake tagger's garment is a top catalogue garment"

    page = api.client.get("/v1/report", params={"since": "1h", "sources": feed, "format": "html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert feed in page.text
    assert "<svg" in page.text

    missing = api.client.get("/v1/report", params={"since": "1h", "sources": "no-such-feed"})
    assert missing.json()["unknown_sources"] == ["no-such-feed"]
    bad = api.client.get("/v1/report", params={"since": "yesterday-ish"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_period"
    assert api.client.get("/v1/report", params={"format": "pdf"}).status_code == 422
    assert body["timezone"] == "UTC"  # the server's setting
    tokyo = api.client.get(
        "/v1/report", params={"since": "1h", "sources": feed, "tz": "Asia/Tokyo"}
    )
    assert tokyo.json()["timezone"] == "Asia/Tokyo"
    assert tokyo.json()["totals"] == body["totals"]
    nowhere = api.client.get("/v1/report", params={"tz": "Mars/Olympus_Mons"})
    assert nowhere.status_code == 400
    assert nowhere.json()["error"] == "invalid_timezone"
