"""The ImageTags -> TaggedImage adapter: the tensor-to-wire contract of adapters.tagged_image."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from fashionstream.core.errors import DeadLetterReason, ModelError
from fashionstream.core.records import (
    Frame,
    SourceKind,
    TaggedImage,
    WireColour,
    WireLabel,
    WireMask,
    event_id_for_item,
)
from models.tags import (
    ColourReading,
    Embedding,
    GarmentTags,
    ImageTags,
    PersonTags,
    Prediction,
    ProductTags,
    RleMask,
)
from stream_processors.adapters import tagged_image

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9"
H, W = 48, 64


def mask() -> RleMask:
    m = np.zeros((H, W), bool)
    m[10:30, 20:40] = True
    return RleMask.encode(m)


def garment(**changes: Any) -> GarmentTags:
    values: dict[str, Any] = {
        "category": "dress",
        "score": 0.87,
        "box": (20.0, 10.0, 40.0, 30.0),
        "mask": mask(),
        "attributes": {"gender": Prediction("Women", 0.93), "season": Prediction("Summer", 0.6)},
        "probabilities": {"gender": {"Women": 0.93, "Men": 0.05, "Unisex": 0.02}},
        "colour": ColourReading("Red", (200, 20, 30), 0.7),
        "style": Prediction("Casual", 0.8),
        "person_index": 0,
    }
    values.update(changes)
    return GarmentTags(**values)


def tags(*garments: GarmentTags, **changes: Any) -> ImageTags:
    values: dict[str, Any] = {
        "width": W,
        "height": H,
        "garments": garments or (garment(),),
        "people": (PersonTags(0.95, (5.0, 2.0, 60.0, 47.0), mask()),),
        "model_version": "fashion-tagger-2026.11",
        "timings": {"detect": 0.4, "classify": 0.1},
    }
    values.update(changes)
    return ImageTags(**values)


def feed_frame() -> Frame:
    return Frame(
        event_id=event_id_for_item("shop", "sku-1", "https://shop.example/1.jpg"),
        source_kind=SourceKind.FEED,
        source_id="shop",
        captured_at=1_800_000_010.0,
        submitted_at=1_800_000_000.0,
        jpeg=JPEG,
        item_id="sku-1",
        image_url="https://shop.example/1.jpg",
        fetch_s=0.2,
        attributes={"title": "Red dress", "price": "59.90"},
    )


def test_adapter_copies_identity_geometry_and_predictions() -> None:
    frame = feed_frame()
    record = tagged_image(frame, tags(), {"decode": 0.01, "infer": 0.5, "queue": 0.3})

    assert (record.event_id, record.source_kind, record.source_id) == (
        frame.event_id,
        SourceKind.FEED,
        "shop",
    )
    assert (record.item_id, record.image_url, record.frame_number) == (
        "sku-1",
        "https://shop.example/1.jpg",
        None,
    )
    assert (record.captured_at, record.submitted_at) == (frame.captured_at, frame.submitted_at)
    assert record.attributes == {"title": "Red dress", "price": "59.90"}
    assert (record.width, record.height, record.model_version) == (W, H, "fashion-tagger-2026.11")
    assert record.timings == {
        "detect": 0.4,
        "classify": 0.1,
        "decode": 0.01,
        "infer": 0.5,
        "queue": 0.3,
    }
    (g,) = record.garments
    assert g.index == 0
    assert g.category == "dress"
    assert g.score == pytest.approx(0.87)
    assert g.box == (20.0, 10.0, 40.0, 30.0)
    assert g.mask == WireMask(size=(H, W), counts=mask().counts)
    assert g.attributes == {"gender": WireLabel("Women", 0.93), "season": WireLabel("Summer", 0.6)}
    assert g.probabilities == {"gender": {"Women": 0.93, "Men": 0.05, "Unisex": 0.02}}
    assert g.colour == WireColour("Red", (200, 20, 30), 0.7)
    assert g.style == WireLabel("Casual", 0.8)
    assert g.person_index == 0
    (p,) = record.people
    assert (p.index, p.score, p.box) == (0, 0.95, (5.0, 2.0, 60.0, 47.0))
    # the record survives the wire
    assert TaggedImage.from_json(record.to_json()) == record


def test_mask_is_carried_verbatim_and_decodes_to_the_same_pixels() -> None:
    record = tagged_image(feed_frame(), tags(), {})
    wire = record.garments[0].mask
    decoded = RleMask(size=wire.size, counts=wire.counts).decode()
    assert decoded.sum() == 20 * 20
    assert decoded[10:30, 20:40].all()


def test_garment_indexes_follow_the_taggers_order() -> None:
    record = tagged_image(
        feed_frame(), tags(garment(category="top"), garment(category="skirt"), garment()), {}
    )
    assert [(g.index, g.category) for g in record.garments] == [
        (0, "top"),
        (1, "skirt"),
        (2, "dress"),
    ]


def test_boxes_overshooting_the_image_are_clamped() -> None:
    record = tagged_image(feed_frame(), tags(garment(box=(-0.4, -1.0, W + 0.6, H + 2.0))), {})
    assert record.garments[0].box == (0.0, 0.0, float(W), float(H))


def test_an_image_without_garments_is_still_a_record() -> None:
    empty = dataclasses.replace(tags(), garments=(), people=())
    record = tagged_image(feed_frame(), empty, {})
    assert (record.garments, record.people) == ((), ())


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (tags(garment(score=math.nan)), "score is nan"),
        (tags(garment(box=(30.0, 10.0, 20.0, 30.0))), "inverted"),
        (tags(garment(box=(0.0, 0.0, math.inf, 1.0))), "box is inf"),
        (tags(garment(colour=ColourReading("Red", (1, 2, 3), 1.5))), "not in [0, 1]"),
        (tags(garment(probabilities={"gender": {"Women": -0.5}})), "gender/Women = -0.5"),
        (tags(garment(probabilities={"gender": {"Men": 0.1, "Women": math.nan}})), "Women is nan"),
        (tags(model_version=""), "model version"),
        (tags(timings={"detect": math.nan}), "timings"),
    ],
)
def test_contract_violations_are_model_errors(broken: ImageTags, message: str) -> None:
    with pytest.raises(ModelError) as caught:
        tagged_image(feed_frame(), broken, {})
    assert caught.value.reason is DeadLetterReason.MODEL_ERROR
    assert message in caught.value.detail


def test_label_probabilities_travel_to_six_decimals_and_slight_overshoots_are_clamped() -> None:
    probs = {"Women": 0.123456789, "Men": 1.0 + 4e-7, "Unisex": -4e-7, "Boys": 1.0 + 9e-7}
    record = tagged_image(feed_frame(), tags(garment(probabilities={"gender": probs})), {})
    sent = TaggedImage.from_json(record.to_json()).garments[0].probabilities["gender"]
    assert sent == {"Women": 0.123457, "Men": 1.0, "Unisex": 0.0, "Boys": 1.0}
    assert b"-0.0" not in record.to_json()


def test_mask_of_another_size_is_a_model_error() -> None:
    # ImageTags itself refuses this; a tagger bypassing that check is still caught here
    other = RleMask.encode(np.zeros((H + 1, W), bool))
    bad = tags(garment(person_index=None), people=())
    object.__setattr__(bad, "garments", (garment(mask=other, person_index=None),))
    with pytest.raises(ModelError, match="mask size"):
        tagged_image(feed_frame(), bad, {})


def _product(value: float = 0.6) -> ProductTags:
    return ProductTags("dress", "Women", Embedding("emb-v1", np.array([value, 0.8], np.float32)))


def test_a_catalogue_images_product_vector_goes_on_the_wire() -> None:
    record = tagged_image(feed_frame(), tags(product=_product()), {})
    assert record.product is not None
    assert (record.product.category, record.product.gender) == ("dress", "Women")
    assert record.product.embedding.version == "emb-v1"
    assert record.product.embedding.values() == pytest.approx((0.6, 0.8), abs=1e-3)


def test_a_camera_frame_carries_no_product_and_a_broken_product_is_a_model_error() -> None:
    camera = dataclasses.replace(
        feed_frame(), source_kind=SourceKind.CAMERA, item_id=None, frame_number=1
    )
    assert tagged_image(camera, tags(product=_product()), {}).product is None
    with pytest.raises(ModelError, match="product embedding is not finite"):
        tagged_image(feed_frame(), tags(product=_product(math.nan)), {})
