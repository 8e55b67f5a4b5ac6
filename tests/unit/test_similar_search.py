"""SimilarSearch with injected parts: one search per garment of the photo with its own vector
and version, results as JSON, the SSRF guard on URLs, and what it refuses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from fashionstream.app.similar import (
    NoEmbeddingError,
    SimilarError,
    SimilarSearch,
    UnknownGarmentError,
    fetch_guarded,
)
from fashionstream.core.errors import DeadLetterReason, FetchError
from fashionstream.core.settings import Settings
from models.tags import ColourReading, Embedding, GarmentTags, ImageTags, Prediction, RleMask
from sinks.similar import CatalogueMatch, StoredGarment


class FakeIndex:
    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self.stored: dict[int, StoredGarment] = {}
        self.sightings: dict[str, list[StoredGarment]] = {}

    def nearest(self, vector: Sequence[float], **kw: Any) -> list[CatalogueMatch]:
        self.asked.append({"vector": list(vector), **kw})
        return [
            CatalogueMatch(
                item_id=f"sku-{i}",
                feed="shop",
                title=f"item {i}",
                link=None,
                image_url=None,
                distance=0.1 * i,
                garment_id=None if i % 2 else 100 + i,  # odd: a photo with no garment
                category="top",
                attributes={"articleType": {"label": "Tshirts", "prob": 0.9}},
                colour="Blue",
                style="Casual",
            )
            for i in range(kw["k"])
        ]

    def garment(self, garment_id: int) -> StoredGarment | None:
        return self.stored.get(garment_id)

    def sighting(self, sighting_id: str) -> list[StoredGarment]:
        return self.sightings.get(sighting_id, [])

    def product_pictures(self, products: Sequence[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
        return {(feed, item): f"jpeg of {item}".encode() for feed, item in products[:1]}

    def close(self) -> None:
        pass


class FakeTagger:
    def __init__(self, version: str = "emb-v1") -> None:
        self.embedding_version = version

    def tag(self, images: Sequence[np.ndarray]) -> list[ImageTags]:
        (image,) = images
        h, w = image.shape[:2]
        mask = RleMask.encode(np.ones((h, w), bool))
        garments = tuple(
            GarmentTags(
                category=c,
                score=0.9,
                box=(0.0, 0.0, float(w), float(h)),
                mask=mask,
                attributes={"gender": Prediction("Women", 0.8)},
                probabilities={},
                colour=ColourReading("Blue", (0, 0, 255), 1.0),
                style=Prediction("Casual", 0.9),
                embedding=None if c == "bag" else Embedding(self.embedding_version, v),
            )
            for c, v in (("top", np.eye(4)[0]), ("skirt", np.eye(4)[1]), ("bag", np.eye(4)[2]))
        )
        return [ImageTags(w, h, garments, (), "tagger-v1")]


def _search(tagger: FakeTagger | None = None) -> tuple[SimilarSearch, FakeIndex]:
    index = FakeIndex()
    search = SimilarSearch(
        index,  # type: ignore[arg-type]
        lambda: tagger or FakeTagger(),
        decode=lambda data: np.zeros((8, 8, 3), np.uint8),
    )
    return search, index


def test_every_garment_with_a_vector_searches_with_its_own_version_and_filters() -> None:
    search, index = _search()
    result = search.for_image(np.zeros((20, 10, 3), np.uint8), k=3, gender="Women")
    assert [g.garment.category for g in result.garments] == ["top", "skirt"]  # the bag: no vector
    assert [a["vector"][:2] for a in index.asked] == [[1.0, 0.0], [0.0, 1.0]]
    assert {(a["model_version"], a["k"], a["gender"], a["category"]) for a in index.asked} == {
        ("emb-v1", 3, "Women", None)
    }
    payload = result.to_json()
    assert payload["query"] == "image"
    assert payload["embedding_version"] == "emb-v1"
    assert payload["filters"] == {"category": None, "gender": "Women"}
    first = payload["garments"][0]
    assert first["garment"]["box"] == [0.0, 0.0, 10.0, 20.0]
    assert [m["item_id"] for m in first["matches"]] == ["sku-0", "sku-1", "sku-2"]


def test_bytes_are_decoded_as_the_pipeline_would() -> None:
    search, _ = _search()
    result = search.for_image(b"\xff\xd8 any bytes", k=1)
    assert result.garments[0].garment.box == (0.0, 0.0, 8.0, 8.0)


def test_a_stored_garment_searches_with_its_version_and_never_finds_itself() -> None:
    search, index = _search()
    # a catalogue photo's trousers: its own product (sku-0, a shirt) is not an answer
    index.stored[100] = StoredGarment(
        100, "trousers", "Women", "emb-old", (1.0, 0.0), product=("shop", "sku-0")
    )
    index.stored[7] = StoredGarment(7, "top", None, None, None)
    result = search.for_garment(100, k=2)
    assert index.asked[0]["model_version"] == "emb-old"
    assert index.asked[0]["k"] == 3  # one more: the garment itself is dropped
    assert [m.item_id for m in result.garments[0].matches] == ["sku-1", "sku-2"]
    with pytest.raises(UnknownGarmentError):
        search.for_garment(8)
    with pytest.raises(NoEmbeddingError):
        search.for_garment(7)


@pytest.mark.parametrize("k", [0, 101])
def test_k_out_of_range_is_refused(k: int) -> None:
    search, _ = _search()
    with pytest.raises(SimilarError, match="k must be"):
        search.for_garment(1, k=k)


def test_a_tagger_without_an_embedding_head_is_a_409() -> None:
    search, _ = _search(FakeTagger(version=""))
    with pytest.raises(NoEmbeddingError) as raised:
        search.for_image(np.zeros((8, 8, 3), np.uint8))
    assert raised.value.status == 409


def test_a_sighting_id_that_is_not_a_uuid_is_a_400() -> None:
    search, _ = _search()
    with pytest.raises(SimilarError, match="UUID") as raised:
        search.for_sighting("../../etc/passwd")
    assert raised.value.status == 400


def test_a_url_to_a_private_address_is_refused_by_the_ssrf_guard() -> None:
    with pytest.raises(FetchError) as raised:
        fetch_guarded("http://127.0.0.1:1/x.jpg", Settings())
    assert raised.value.reason is DeadLetterReason.ADDRESS_REFUSED


def test_a_sighting_gets_k_products_even_those_whose_photo_has_no_garment() -> None:
    search, index = _search()
    sid = "00000000-0000-0000-0000-00000000000a"
    index.sightings[sid] = [StoredGarment(5, "trousers", None, "emb-v1", (0.0, 1.0))]
    (found,) = search.for_sighting(sid, k=4).garments
    assert [m.item_id for m in found.matches] == ["sku-0", "sku-1", "sku-2", "sku-3"]
    assert [m.garment_id for m in found.matches] == [100, None, 102, None]


def test_the_report_gets_each_matched_product_with_its_stored_picture() -> None:
    from fashionstream.app.report import StreetGarmentRef

    search, index = _search()
    sid = "00000000-0000-0000-0000-00000000000b"
    index.sightings[sid] = [
        StoredGarment(5, "trousers", None, "emb-v1", (0.0, 1.0), sighting_garment_index=0)
    ]
    ref = StreetGarmentRef(sid, 0, "trousers", "Jeans", "Blue")
    matches = search.report_matches(ref, 2)
    assert [(m.item_id, m.jpeg) for m in matches] == [("sku-0", b"jpeg of sku-0"), ("sku-1", None)]
