"""Visual similarity on the real embedded Postgres: pgvector loads, the sink stores each
garment's vector in the garment's transaction, and sinks.similar finds the nearest catalogue
products, one embedding version at a time, with category and gender filters."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import numpy as np
import psycopg2.extensions
import pytest
from prometheus_client import CollectorRegistry

from fashionstream.core.metrics import Metrics
from fashionstream.core.records import (
    SourceKind,
    TaggedImage,
    WireEmbedding,
    WireLabel,
    WireProduct,
)
from fashionstream.core.settings import Settings
from sinks.postgres import PostgresSink, connection_factory
from sinks.similar import SimilarityIndex
from tests.support.records import tagged_image
from tests.support.stack import count_rows

DIM = 256


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM)
    return v / np.linalg.norm(v)


def _near(v: np.ndarray, seed: int, noise: float = 0.1) -> np.ndarray:
    w = v + noise * _unit(seed)
    return w / np.linalg.norm(w)


def _with_vector(
    t: TaggedImage, vector: np.ndarray | None, version: str, category: str, gender: str
) -> TaggedImage:
    g = t.garments[0]
    embedding = None if vector is None else WireEmbedding.encode(version, vector.tolist())
    attributes = {**g.attributes, "gender": WireLabel(gender, 0.9)}
    garment = dataclasses.replace(g, category=category, attributes=attributes, embedding=embedding)
    # a catalogue photo's product vector: here its one garment's (what a search compares)
    product = None
    if embedding is not None and t.source_kind is SourceKind.FEED:
        product = WireProduct(category, gender, embedding)
    return dataclasses.replace(t, garments=(garment,), product=product)


def _product(
    index: int, vector: np.ndarray | None, *, version: str = "emb-v1", category: str = "top",
    gender: str = "Women", tagger: str = "tagger-v1",
) -> TaggedImage:  # fmt: skip
    t = tagged_image(
        index=index, source_kind=SourceKind.FEED, source_id="shop", people=0, garments=1,
        model_version=tagger,
    )  # fmt: skip
    return _with_vector(t, vector, version, category, gender)


def _jpeg_of_product() -> bytes:
    import cv2

    image = np.full((48, 32, 3), (30, 60, 200), np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def _write(settings: Settings, *records: TaggedImage) -> None:
    sink = PostgresSink.from_settings(settings, Metrics(CollectorRegistry(), process_metrics=False))
    try:
        for r in records:
            sink.add(r)
        sink.flush()
    finally:
        sink.close()


@pytest.fixture
def index(local_stack: Settings) -> Iterator[SimilarityIndex]:
    found = SimilarityIndex(connection_factory(local_stack, "test-similar"))
    yield found
    found.close()


def test_pgvector_is_the_wheel_s_version_and_the_search_uses_the_hnsw_index(
    db: psycopg2.extensions.connection,
) -> None:
    with db.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cur.fetchone() == ("0.6.2",)
        cur.execute("SET enable_seqscan = off")
        q = "[" + ",".join(["0.1"] * DIM) + "]"
        cur.execute(
            "EXPLAIN SELECT image_id FROM image_embeddings ORDER BY embedding <=> %s::vector"
            " LIMIT 10",
            (q,),
        )
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert "image_embeddings_hnsw" in plan


def test_the_nearest_catalogue_products_of_one_version_with_filters(
    local_stack: Settings, db: psycopg2.extensions.connection, index: SimilarityIndex
) -> None:
    base = [_unit(i) for i in range(4)]
    products = [
        _product(0, base[0], category="top", gender="Women"),
        _product(1, _near(base[0], 10, 0.5), category="top", gender="Men"),
        _product(2, base[1], category="trousers", gender="Women"),
        _product(3, base[2], category="footwear", gender="Women"),
        # the same photos tagged by a new embedding model: other vectors, never mixed in
        _product(0, base[3], version="emb-v2", tagger="tagger-v2"),
        _product(1, base[3], version="emb-v2", tagger="tagger-v2"),
        # a product without an embedding (a model without the head)
        _product(4, None),
    ]
    camera = _with_vector(tagged_image(index=9, garments=1), _near(base[0], 11, 0.01), "emb-v1",
                          "top", "Women")  # fmt: skip
    _write(local_stack, *products, camera)
    assert count_rows(db, "garment_embeddings") == 7
    assert count_rows(db, "image_embeddings") == 6  # the catalogue photos with a vector

    query = _near(base[0], 12, 0.05).tolist()
    found = index.nearest(query, model_version="emb-v1", k=10)
    # every v1 product, nearest first, the camera garment (a query, not an answer) never
    assert [m.item_id for m in found[:2]] == ["sku-0", "sku-1"]
    assert {m.item_id for m in found} == {"sku-0", "sku-1", "sku-2", "sku-3"}
    distances = [m.distance for m in found]
    assert distances == sorted(distances)
    assert 0.0 <= distances[0] < 0.05
    top = found[0]
    assert (top.feed, top.category, top.colour, top.style) == ("shop", "top", "Navy Blue", "Casual")
    assert top.attributes["gender"]["label"] == "Women"
    assert top.to_json()["item_id"] == "sku-0"

    only_v2 = index.nearest(query, model_version="emb-v2", k=10)
    assert {m.item_id for m in only_v2} == {"sku-0", "sku-1"}
    assert {m.garment_id for m in only_v2}.isdisjoint({m.garment_id for m in found})
    assert index.nearest(query, model_version="emb-v3", k=10) == []

    trousers = index.nearest(query, model_version="emb-v1", k=10, category="trousers")
    assert [m.item_id for m in trousers] == ["sku-2"]
    men = index.nearest(query, model_version="emb-v1", k=10, gender="Men")
    assert [m.item_id for m in men] == ["sku-1"]
    assert [m.item_id for m in index.nearest(query, model_version="emb-v1", k=1)] == ["sku-0"]


def test_a_stored_garment_gives_its_vector_and_a_rewrite_without_one_removes_it(
    local_stack: Settings, db: psycopg2.extensions.connection, index: SimilarityIndex
) -> None:
    vector = _unit(5)
    _write(local_stack, _product(0, vector))
    with db.cursor() as cur:
        cur.execute("SELECT id FROM garments")
        ((garment_id,),) = cur.fetchall()
    stored = index.garment(garment_id)
    assert stored is not None
    assert (stored.category, stored.gender, stored.model_version) == ("top", "Women", "emb-v1")
    assert stored.vector is not None
    np.testing.assert_allclose(stored.vector, vector, atol=1e-3)
    assert index.garment(garment_id + 1000) is None

    assert count_rows(db, "image_embeddings") == 1
    _write(local_stack, _product(0, None))  # the same image again, now without a vector
    assert count_rows(db, "garment_embeddings") == 0
    assert count_rows(db, "image_embeddings") == 0
    again = index.garment(garment_id)
    assert again is not None
    assert again.vector is None


def test_a_vector_of_the_wrong_size_is_that_record_s_dead_letter(
    local_stack: Settings, db: psycopg2.extensions.connection
) -> None:
    from sinks.errors import RecordsRejectedError

    wrong = _product(0, np.ones(8) / np.sqrt(8))
    good = _product(1, _unit(1))
    sink = PostgresSink.from_settings(
        local_stack, Metrics(CollectorRegistry(), process_metrics=False)
    )
    try:
        sink.add(wrong)
        sink.add(good)
        with pytest.raises(RecordsRejectedError) as raised:
            sink.flush()
    finally:
        sink.close()
    assert [r.tagged.item_id for r in raised.value.rejected] == ["sku-0"]
    assert count_rows(db, "garment_embeddings") == 1


def test_a_sighting_searches_from_its_garments_best_views(
    local_stack: Settings, db: psycopg2.extensions.connection, index: SimilarityIndex
) -> None:
    from fashionstream.app.similar import SimilarSearch, UnknownGarmentError
    from tests.integration.test_sink_sightings import camera_frames, sinks, track, write_for

    picture = _jpeg_of_product()
    products = [
        dataclasses.replace(_product(0, _unit(20), category="top"), thumbnail=picture),
        _product(1, _unit(21), category="trousers"),
        _product(2, _unit(22), category="footwear"),
    ]
    # a camera's frames: garment 0 a top near product 0, garment 1 trousers near product 1
    frames = [
        dataclasses.replace(
            f,
            garments=tuple(
                dataclasses.replace(
                    g,
                    embedding=WireEmbedding.encode(
                        "emb-v1", _near(_unit(20 + g.index), i).tolist()
                    ),
                )
                for g in f.garments
            ),
        )
        for i, f in enumerate(camera_frames("cam-look", 12))
    ]
    rows, sightings, _ = sinks(local_stack)
    for r in [*products, *frames]:
        rows.add(r)
    rows.flush()
    tracker, result = track("cam-look", frames)
    assert len(result.sightings) == 1
    sightings.add(write_for("cam-look", tracker, result, expected_version=0))
    sightings.flush()
    with db.cursor() as cur:
        cur.execute("SELECT sighting_id::text FROM sightings")
        ((sighting_id,),) = cur.fetchall()

    def refuse_to_tag() -> object:
        raise AssertionError("a stored sighting needs no tagger")

    search = SimilarSearch(index, refuse_to_tag, decode=np.asarray)  # type: ignore[arg-type]
    found = search.for_sighting(sighting_id.upper(), k=2)
    assert found.query == "sighting"
    assert found.embedding_version == "emb-v1"
    nearest = {g.garment.category: g.matches[0].item_id for g in found.garments}
    assert nearest == {"top": "sku-0", "trousers": "sku-1"}
    assert json.loads(json.dumps(found.to_json()))["garments"][0]["matches"]

    # the popular-items report asks the same search about one garment of a sighting
    from fashionstream.app.report.model import StreetGarmentRef

    for index_in_sighting, (category, item) in enumerate([("top", "sku-0"), ("trousers", "sku-1")]):
        ref = StreetGarmentRef(sighting_id, index_in_sighting, category, None, "Navy Blue")
        matches = search.report_matches(ref, 2)
        assert [m.item_id for m in matches][:1] == [item]
        assert matches[0].source_id == "shop"
        # the report shows each product with the picture the sink kept of its photo
        assert matches[0].jpeg == (picture if item == "sku-0" else None)
    assert search.report_matches(StreetGarmentRef(sighting_id, 9, "top", None, "Blue"), 2) == []
    with pytest.raises(UnknownGarmentError):
        search.for_sighting("00000000-0000-4000-8000-000000000000")


def test_a_model_shot_is_found_by_its_product_not_by_what_the_model_also_wears(
    local_stack: Settings, db: psycopg2.extensions.connection, index: SimilarityIndex
) -> None:
    shirt, trousers = _unit(20), _unit(21)
    # a shirt product photographed on a model in trousers: the detector stores both garments,
    # the trousers' vector right by the query; the product vector is the shirt's
    shot = tagged_image(index=0, source_kind=SourceKind.FEED, source_id="shop", people=1,
                        garments=2, model_version="tagger-v1")  # fmt: skip
    worn = [
        dataclasses.replace(g, category=c, embedding=WireEmbedding.encode("emb-v1", v.tolist()))
        for g, c, v in zip(shot.garments, ("top", "trousers"), (shirt, trousers), strict=True)
    ]
    shot = dataclasses.replace(
        shot,
        garments=tuple(worn),
        product=WireProduct("top", "Women", WireEmbedding.encode("emb-v1", shirt.tolist())),
    )
    far_trousers = _near(trousers, 22, 0.9)  # a trousers product, less alike than the worn ones
    _write(local_stack, shot, _product(1, far_trousers, category="trousers"))
    query = _near(trousers, 23, 0.05).tolist()
    # by garments, the shirt product came first (its model's trousers) and passed the filter
    found = index.nearest(query, model_version="emb-v1", k=2)
    assert [m.item_id for m in found] == ["sku-1", "sku-0"]
    assert [m.category for m in found] == ["trousers", "top"]
    assert found[1].garment_id is not None  # the photo's shirt garment shows its tags
    filtered = index.nearest(query, model_version="emb-v1", k=10, category="trousers")
    assert [m.item_id for m in filtered] == ["sku-1"]
    # a catalogue photo tagged before product vectors (no row) is not an answer
    _write(local_stack, dataclasses.replace(shot, product=None))
    assert [m.item_id for m in index.nearest(query, model_version="emb-v1", k=10)] == ["sku-1"]
