"""Shop the look end to end on the real embedded Postgres with the shipped models: the demo's
sample catalogue is tagged and written through the adapter and the sink, then a frame of the
demo's store camera finds catalogue products (SimilarSearch and `fashionstream similar`), and a
stored garment finds its look-alikes but never itself."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import av
import numpy as np
import psycopg2.extensions
import pytest
from prometheus_client import CollectorRegistry

from fashionstream.app.cli import main
from fashionstream.app.similar import (
    SimilarSearch,
    UnknownGarmentError,
    decode_like_the_pipeline,
)
from fashionstream.core.errors import DecodeError
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import Frame, SourceKind, event_id_for_frame, event_id_for_item
from fashionstream.core.settings import REPO_ROOT, Settings
from models.tagger import FashionTagger
from producers.feed import catalogue_fields
from sinks.postgres import PostgresSink, connection_factory
from sinks.similar import SimilarityIndex
from stream_processors.adapters import tagged_image
from stream_processors.images import prepare_image

pytestmark = pytest.mark.models

SAMPLES = REPO_ROOT / "fashionstream" / "app" / "samples"
FEED = "sample-shop"


def _camera_frame(second: float = 8.0) -> np.ndarray:
    with av.open(str(SAMPLES / "store_camera.mp4")) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= second:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("the sample clip is shorter than expected")


def _jpeg(rgb: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def tagged_catalogue(
    stack: object, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, FashionTagger, list[str]]:
    """The sample catalogue's photos (its two broken rows left out, as the pipeline
    dead-letters them) and one store camera frame, tagged and stored; their ids."""
    from tests.support.stack import connect, truncate_tables

    settings: Settings = dataclasses.replace(
        stack.settings,  # type: ignore[attr-defined]
        state_dir=tmp_path_factory.mktemp("state"),
        torch_threads=2,
    )
    with connect(settings) as conn:
        truncate_tables(conn)
    tagger = FashionTagger.from_settings(settings)
    sink = PostgresSink.from_settings(settings, Metrics(CollectorRegistry(), process_metrics=False))
    with (SAMPLES / "catalogue.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    now = time.time()
    stored = []
    for row in rows:
        path = SAMPLES / row["image_link"]
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            prepared = prepare_image(
                data,
                max_pixels=settings.fetch_max_pixels,
                max_side=settings.image_max_side,
                quality=settings.jpeg_quality,
            )
        except DecodeError:
            continue
        stored.append(row["id"])
        url = f"http://127.0.0.1/{row['image_link']}"
        frame = Frame(
            event_id=event_id_for_item(FEED, row["id"], url),
            source_kind=SourceKind.FEED,
            source_id=FEED,
            captured_at=now,
            submitted_at=now,
            jpeg=prepared.jpeg,
            item_id=row["id"],
            image_url=url,
            attributes=dict(row),
            catalogue=catalogue_fields(row),
        )
        (tags,) = tagger.tag([decode_like_the_pipeline(data, settings)], catalogue=[True])
        sink.add(tagged_image(frame, tags, {}))
    camera = _camera_frame()
    (tags,) = tagger.tag([camera])
    frame = Frame(
        event_id=event_id_for_frame("store", "store_camera.mp4", 16),
        source_kind=SourceKind.CAMERA,
        source_id="store",
        captured_at=now,
        submitted_at=now,
        jpeg=_jpeg(camera),
        frame_number=16,
        stream_ref="store_camera.mp4",
    )
    sink.add(tagged_image(frame, tags, {}))
    sink.flush()
    sink.close()
    assert len(stored) == len(rows) - 2
    return settings, tagger, stored


@pytest.fixture
def search(tagged_catalogue: tuple[Settings, FashionTagger, list[str]]) -> Iterator[SimilarSearch]:
    settings, tagger, _ = tagged_catalogue
    found = SimilarSearch(
        SimilarityIndex(connection_factory(settings, "test-similar-search")),
        lambda: tagger,
        decode=lambda data: decode_like_the_pipeline(data, settings),
    )
    yield found
    found.close()


def _garment_ids(settings: Settings, kind: str) -> list[int]:
    with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT g.id FROM garments g JOIN images i ON i.id = g.image_id"
            " JOIN sources s ON s.id = i.source_pk WHERE s.kind = %s ORDER BY g.id",
            (kind,),
        )
        return [r[0] for r in cur.fetchall()]


def test_every_catalogue_garment_and_camera_garment_has_a_vector(
    tagged_catalogue: tuple[Settings, FashionTagger, list[str]],
) -> None:
    settings, tagger, ids = tagged_catalogue
    with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT e.catalogue, count(*), count(DISTINCT e.model_version), min(e.model_version)"
            " FROM garments g JOIN garment_embeddings e ON e.garment_id = g.id"
            " GROUP BY e.catalogue ORDER BY e.catalogue"
        )
        rows = cur.fetchall()
        cur.execute("SELECT count(*) FROM garments")
        (garments,) = cur.fetchone()
    by_side = {catalogue: (n, versions, v) for catalogue, n, versions, v in rows}
    assert by_side[True][0] >= len(ids)  # every catalogue photo has at least one garment
    assert by_side[False][0] >= 1  # the camera frame's garments, stored but never answers
    assert sum(n for n, _, _ in by_side.values()) == garments
    assert {v for _, _, v in by_side.values()} == {tagger.embedding_version}


def test_every_catalogue_photo_has_its_product_vector_and_no_camera_frame_has_one(
    tagged_catalogue: tuple[Settings, FashionTagger, list[str]],
) -> None:
    settings, tagger, ids = tagged_catalogue
    with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT s.kind, c.item_id, p.model_version, p.category FROM images i"
            " JOIN sources s ON s.id = i.source_pk"
            " LEFT JOIN catalogue_items c ON c.id = i.item_pk"
            " LEFT JOIN image_embeddings p ON p.image_id = i.id"
        )
        rows = cur.fetchall()
    feed = {item: (version, category) for kind, item, version, category in rows if kind == "feed"}
    assert sorted(feed) == sorted(ids)
    assert {version for version, _ in feed.values()} == {tagger.embedding_version}
    assert all(category for _, category in feed.values())
    assert [version for kind, _, version, _ in rows if kind == "camera"] == [None]


def test_a_store_camera_frame_finds_catalogue_products(
    search: SimilarSearch, tagged_catalogue: tuple[Settings, FashionTagger, list[str]]
) -> None:
    _, _, ids = tagged_catalogue
    result = search.for_image(_jpeg(_camera_frame()), k=5)
    assert result.garments, "the store camera frame has garments"
    for found in result.garments:
        assert len(found.matches) == 5
        assert {m.item_id for m in found.matches} <= set(ids)
        distances = [m.distance for m in found.matches]
        assert distances == sorted(distances)
        assert all(0.0 <= d <= 2.0 for d in distances)
    payload = json.loads(json.dumps(result.to_json()))
    assert payload["query"] == "image"
    assert payload["garments"][0]["matches"][0]["title"]  # the feed's title came along


def test_a_catalogue_garment_finds_look_alikes_never_itself_and_filters_hold(
    search: SimilarSearch, tagged_catalogue: tuple[Settings, FashionTagger, list[str]]
) -> None:
    settings, _, _ = tagged_catalogue
    garment_id = _garment_ids(settings, "feed")[0]
    with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT g.id, c.item_id FROM garments g JOIN images i ON i.id = g.image_id"
            " JOIN catalogue_items c ON c.id = i.item_pk ORDER BY g.id"
        )
        products = cur.fetchall()
    # every garment of a catalogue photo (the model's trousers too): never its own product
    for gid, item in products:
        (found,) = search.for_garment(gid, k=5).garments
        assert item not in {m.item_id for m in found.matches}
        assert gid not in {m.garment_id for m in found.matches}
        assert len(found.matches) == 5
    tops = search.for_garment(garment_id, k=3, category="top")
    assert all(m.category == "top" for m in tops.garments[0].matches)
    camera_garment = _garment_ids(settings, "camera")[0]
    assert search.for_garment(camera_garment, k=3).garments[0].matches
    with pytest.raises(UnknownGarmentError):
        search.for_garment(10**9)
    with pytest.raises(UnknownGarmentError):
        search.for_sighting("6f1c1f0e-0000-4000-8000-000000000000")


def test_the_similar_command_prints_catalogue_products_for_a_demo_frame(
    tagged_catalogue: tuple[Settings, FashionTagger, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, _, ids = tagged_catalogue
    photo = tmp_path / "frame.jpg"
    photo.write_bytes(_jpeg(_camera_frame()))
    monkeypatch.setenv("FASHIONSTREAM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("FASHIONSTREAM_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("FASHIONSTREAM_TORCH_THREADS", "2")
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["similar", str(photo), "--k", "3", "--json"]) == 0
    result = json.loads(out.getvalue())
    assert result["garments"]
    assert {m["item_id"] for g in result["garments"] for m in g["matches"]} <= set(ids)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["similar", str(tmp_path / "missing.jpg")]) == 2


def test_the_api_answers_shop_the_look_from_an_upload_and_a_stored_garment(
    tagged_catalogue: tuple[Settings, FashionTagger, list[str]],
) -> None:
    import httpx

    from fashionstream.app.api.server import ApiServer
    from fashionstream.app.api.services import Services
    from infra.processes import free_port

    settings, _, ids = tagged_catalogue
    settings = dataclasses.replace(settings, api_host="127.0.0.1")
    services = Services.from_settings(settings, Metrics(CollectorRegistry(), process_metrics=False))
    with (
        ApiServer(settings, port=free_port(), services=services) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        frame = ("frame.jpg", _jpeg(_camera_frame()), "image/jpeg")
        upload = client.post("/v1/similar", params={"k": 3}, files={"file": frame})
        assert upload.status_code == 200, upload.text
        body = upload.json()
        assert body["query"] == "image"
        assert body["garments"], "the store camera frame has garments"
        for found in body["garments"]:
            assert len(found["matches"]) == 3
            assert {m["item_id"] for m in found["matches"]} <= set(ids)

        garment_id = _garment_ids(settings, "feed")[0]
        stored = client.get("/v1/similar", params={"garment": garment_id, "k": 4})
        assert stored.status_code == 200, stored.text
        (found,) = stored.json()["garments"]
        assert len(found["matches"]) == 4
        assert garment_id not in {m["garment_id"] for m in found["matches"]}

        def refused(response: httpx.Response) -> tuple[int, str]:
            return response.status_code, response.json()["error"]

        assert refused(client.get("/v1/similar", params={"garment": 10**12})) == (404, "not_found")
        assert refused(client.get("/v1/similar")) == (422, "invalid_request")
        both = client.get("/v1/similar", params={"garment": garment_id, "sighting": "x"})
        assert refused(both) == (422, "invalid_request")
        assert refused(client.get("/v1/similar", params={"sighting": "nope"})) == (
            400,
            "bad_request",
        )
        private = client.get("/v1/similar", params={"url": "http://10.0.0.1/a.jpg"})
        assert refused(private) == (400, "refused_address")
        junk = client.post("/v1/similar", files={"file": ("x.jpg", b"not an image", "image/jpeg")})
        assert junk.status_code == 422
        assert client.get("/v1/similar", params={"garment": garment_id, "k": 0}).status_code == 422


MODEL_SHOT = REPO_ROOT / "tests" / "fixtures" / "similar" / "model_shot_tshirt_1902.jpg"
JEANS = REPO_ROOT / "tests" / "fixtures" / "attributes" / "products" / "images" / "10597.jpg"


def test_a_tshirt_worn_with_trousers_is_no_answer_to_a_trousers_query(
    search: SimilarSearch, tagged_catalogue: tuple[Settings, FashionTagger, list[str]]
) -> None:
    """A real model shot: catalogue T-shirt 1902 on a model in trousers. The detector stores
    its top and its trousers; before product vectors, a trousers query found the T-shirt by the
    model's trousers. Now the product is matched by its own (whole-product) vector."""
    settings, tagger, _ = tagged_catalogue
    data = MODEL_SHOT.read_bytes()
    (tags,) = tagger.tag([decode_like_the_pipeline(data, settings)], catalogue=[True])
    assert {"top", "trousers"} <= {g.category for g in tags.garments}
    assert tags.product is not None
    assert tags.product.category == "top"
    url = "http://127.0.0.1/model-shot-1902.jpg"
    frame = Frame(
        event_id=event_id_for_item(FEED, "shot-1902", url),
        source_kind=SourceKind.FEED,
        source_id=FEED,
        captured_at=time.time(),
        submitted_at=time.time(),
        jpeg=data,
        item_id="shot-1902",
        image_url=url,
    )
    sink = PostgresSink.from_settings(settings, Metrics(CollectorRegistry(), process_metrics=False))
    sink.add(tagged_image(frame, tags, {}))
    sink.flush()
    sink.close()
    try:
        result = search.for_image(JEANS.read_bytes(), k=10, category="trousers")
        (query,) = [g for g in result.garments if g.garment.category == "trousers"]
        assert query.matches, "the sample catalogue's trousers products answer"
        assert "shot-1902" not in {m.item_id for m in query.matches}
        assert {m.category for m in query.matches} == {"trousers"}
        # the case is real: by garment vectors (what was searched before) the T-shirt is one of
        # the sample catalogue's 7 products with a trousers garment, so one of those 10 answers
        (jeans_tags,) = tagger.tag([decode_like_the_pipeline(JEANS.read_bytes(), settings)])
        (jeans,) = [g for g in jeans_tags.garments if g.category == "trousers"]
        assert jeans.embedding is not None
        with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT DISTINCT ON (c.item_id) c.item_id, e.embedding <=> %s::vector AS d"
                " FROM garment_embeddings e JOIN garments g ON g.id = e.garment_id"
                " JOIN images i ON i.id = g.image_id JOIN catalogue_items c ON c.id = i.item_pk"
                " WHERE e.catalogue AND e.category = 'trousers' ORDER BY c.item_id, d",
                ("[" + ",".join(str(float(v)) for v in jeans.embedding.vector) + "]",),
            )
            by_garment = [item for item, _ in sorted(cur.fetchall(), key=lambda r: r[1])]
        assert "shot-1902" in by_garment[:10]
    finally:
        with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM images WHERE event_id = %s::uuid", (frame.event_id,))
            cur.execute("DELETE FROM catalogue_items WHERE item_id = 'shot-1902'")
