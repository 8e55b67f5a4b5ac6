"""The garment embedding on the wire: float16 base64 with its model version, round trips,
size on a busy frame, and what a decoder refuses."""

from __future__ import annotations

import base64
import dataclasses
import json
import struct

import numpy as np
import pytest

from fashionstream.core.errors import BadRecordError
from fashionstream.core.records import SourceKind, TaggedImage, WireEmbedding, WireProduct
from tests.support.records import tagged_image


def _unit(dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_an_embedding_round_trips_within_float16_precision() -> None:
    vector = _unit(256)
    wire = WireEmbedding.encode("emb-v1", vector.tolist())
    back = np.asarray(wire.values(), np.float32)
    assert wire.dim == 256
    assert wire.version == "emb-v1"
    np.testing.assert_allclose(back, vector, atol=5e-4, rtol=0)
    assert abs(float(back @ vector) - 1.0) < 1e-3  # cosine barely moves
    assert len(wire.data) == 684  # 512 bytes of float16 in base64


def test_a_tagged_frame_with_embeddings_round_trips_and_stays_small() -> None:
    plain = tagged_image(garments=18, people=9)
    with_vectors = dataclasses.replace(
        plain,
        garments=tuple(
            dataclasses.replace(g, embedding=WireEmbedding.encode("emb-v1", _unit(256, i).tolist()))
            for i, g in enumerate(plain.garments)
        ),
    )
    assert TaggedImage.from_json(with_vectors.to_json()) == with_vectors
    added = len(with_vectors.to_json()) - len(plain.to_json())
    # 18 garments x (684 characters of data + field names and version): about 13.5 KB
    assert 18 * 684 < added < 18 * 800


def test_a_record_without_embeddings_decodes_with_none() -> None:
    tagged = tagged_image(source_kind=SourceKind.FEED, garments=2)
    data = json.loads(tagged.to_json())
    data["version"] = 2
    for g in data["garments"]:
        g.pop("embedding")
    decoded = TaggedImage.from_json(json.dumps(data).encode())
    assert all(g.embedding is None for g in decoded.garments)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": ""}, "version"),
        ({"dim": 0}, "dim"),
        ({"dim": 2001}, "dim"),
        ({"data": "not base64!"}, "base64"),
        ({"dim": 3}, "expected 6"),
        ({"data": base64.b64encode(struct.pack("<2e", 1.0, float("nan"))).decode()}, "finite"),
    ],
)
def test_a_bad_embedding_is_a_bad_record(change: dict[str, object], message: str) -> None:
    good = WireEmbedding.encode("emb-v1", [0.6, 0.8])
    fields = {**dataclasses.asdict(good), **change}
    with pytest.raises(BadRecordError, match=message):
        WireEmbedding(**fields)


def test_an_embedding_that_is_not_an_object_is_a_bad_record() -> None:
    tagged = tagged_image(garments=1)
    data = json.loads(tagged.to_json())
    data["garments"][0]["embedding"] = [0.1, 0.2]
    with pytest.raises(BadRecordError, match="embedding must be an object"):
        TaggedImage.from_json(json.dumps(data).encode())


def test_a_value_beyond_float16_is_refused_when_encoding() -> None:
    with pytest.raises(BadRecordError, match="float16"):
        WireEmbedding.encode("emb-v1", [1e6, 0.0])


def test_the_record_version_says_images_may_carry_a_product_vector() -> None:
    assert json.loads(tagged_image().to_json())["version"] == 5


def _with_product(gender: str | None = "Women") -> TaggedImage:
    return dataclasses.replace(
        tagged_image(source_kind=SourceKind.FEED, garments=2),
        product=WireProduct("top", gender, WireEmbedding.encode("emb-v1", _unit(256).tolist())),
    )


@pytest.mark.parametrize("gender", ["Women", None])
def test_a_catalogue_image_with_its_product_vector_round_trips(gender: str | None) -> None:
    tagged = _with_product(gender)
    assert TaggedImage.from_json(tagged.to_json()) == tagged


@pytest.mark.parametrize("version", [2, 3, 4])
def test_a_record_before_version_5_decodes_without_a_product(version: int) -> None:
    data = json.loads(_with_product().to_json())
    data["version"] = version
    data.pop("product")
    assert TaggedImage.from_json(json.dumps(data).encode()).product is None


@pytest.mark.parametrize(
    ("product", "message"),
    [
        ([1, 2], "product must be an object"),
        ({"category": "", "gender": None, "embedding": None}, "product.embedding"),
        ({"category": "top", "gender": None}, "embedding"),
        (
            {
                "category": "",
                "gender": None,
                "embedding": {
                    "version": "v",
                    "dim": 1,
                    "data": base64.b64encode(struct.pack("<e", 1.0)).decode(),
                },
            },
            "category",
        ),
    ],
)
def test_a_bad_product_is_a_bad_record(product: object, message: str) -> None:
    data = json.loads(_with_product().to_json())
    data["product"] = product
    with pytest.raises(BadRecordError, match=message):
        TaggedImage.from_json(json.dumps(data).encode())


def test_every_float16_is_accepted_exactly_when_it_is_finite() -> None:
    patterns = np.arange(1 << 16, dtype=np.uint16)
    for bits, value in zip(patterns.tolist(), patterns.view(np.float16).tolist(), strict=True):
        # first and second of two values (the other one 1.0): every position is checked
        for raw in (struct.pack("<2H", bits, 0x3C00), struct.pack("<2H", 0x3C00, bits)):
            data = base64.b64encode(raw).decode()
            if np.isfinite(value):
                WireEmbedding("emb-v1", 2, data)
            else:
                with pytest.raises(BadRecordError, match="finite"):
                    WireEmbedding("emb-v1", 2, data)
