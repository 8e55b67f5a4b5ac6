"""Sample wire records for sink and agent tests."""

from __future__ import annotations

import time
from typing import Any

from fashionstream.core.records import (
    SourceKind,
    TaggedImage,
    WireColour,
    WireGarment,
    WireLabel,
    WireMask,
    WirePerson,
    event_id_for_frame,
    event_id_for_item,
)


def tagged_image(
    *,
    index: int = 0,
    source_kind: SourceKind = SourceKind.CAMERA,
    source_id: str = "cam-1",
    garments: int = 2,
    people: int = 1,
    model_version: str = "test-v1",
    attributes: dict[str, str | int | float | bool | None] | None = None,
    **overrides: Any,
) -> TaggedImage:
    """A plausible `TaggedImage` (a camera frame, or a catalogue image with source_kind=FEED)
    with `garments` garments worn by the first of `people` people. `index` makes the event id,
    frame number or item id distinct; `overrides` replace any field."""
    width, height = 640, 480
    mask = WireMask(size=(height, width), counts="PPYo1k0O2N1O1N2")
    person_list = tuple(
        WirePerson(index=i, score=0.9, box=(10.0 + i, 20.0, 200.0 + i, 470.0), mask=mask)
        for i in range(people)
    )
    garment_list = tuple(
        WireGarment(
            index=i,
            category=("top", "trousers", "footwear")[i % 3],
            score=0.8 - 0.1 * (i % 3),
            box=(30.0, 40.0 + i, 180.0, 240.0 + i),
            mask=mask,
            attributes={
                "gender": WireLabel("Women", 0.91),
                "masterCategory": WireLabel("Apparel", 0.97),
                "articleType": WireLabel("Tshirts", 0.66),
                "season": WireLabel("Summer", 0.55),
            },
            probabilities={
                "gender": {"Women": 0.91, "Men": 0.07, "Unisex": 0.02},
                "articleType": {"Tshirts": 0.66, "Shirts": 0.34},
            },
            colour=WireColour("Navy Blue", (20, 30, 90), 0.62),
            style=WireLabel("Casual", 0.8),
            person_index=0 if people else None,
        )
        for i in range(garments)
    )
    now = time.time()
    if source_kind is SourceKind.CAMERA:
        identity: dict[str, Any] = {
            "event_id": event_id_for_frame(source_id, "test.mp4", index),
            "frame_number": index,
        }
    else:
        item_id = f"sku-{index}"
        url = f"https://shop.example/img/{index}.jpg"
        identity = {
            "event_id": event_id_for_item(source_id, item_id, url),
            "item_id": item_id,
            "image_url": url,
        }
    fields: dict[str, Any] = {
        "source_kind": source_kind,
        "source_id": source_id,
        "captured_at": now - 2.0,
        "submitted_at": now - 1.5,
        "width": width,
        "height": height,
        "model_version": model_version,
        "timings": {"decode": 0.004, "infer": 0.7, "queue": 0.2},
        "garments": garment_list,
        "people": person_list,
        "attributes": attributes or {},
        **identity,
    }
    fields.update(overrides)
    return TaggedImage(**fields)
