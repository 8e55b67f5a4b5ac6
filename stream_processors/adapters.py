"""The one adapter from the tagger's in-process results to the wire: ImageTags -> TaggedImage."""

from __future__ import annotations

import math
from collections.abc import Mapping

from fashionstream.core.errors import DeadLetterReason, ModelError
from fashionstream.core.records import (
    Frame,
    SourceKind,
    TaggedImage,
    WireColour,
    WireEmbedding,
    WireGarment,
    WireLabel,
    WireMask,
    WirePerson,
    WireProduct,
)
from models.tags import Embedding, GarmentTags, ImageTags, PersonTags, ProductTags, RleMask
from stream_processors.thumbnails import Thumbnails

# Label probabilities travel to 1e-6: finer than any threshold or vote needs (a float32 softmax
# itself holds about 7 significant digits), in under half the characters of a float's repr.
PROBABILITY_DECIMALS = 6


def tagged_image(
    frame: Frame,
    tags: ImageTags,
    timings: Mapping[str, float],
    thumbnails: Thumbnails | None = None,
) -> TaggedImage:
    """Convert the tagger's answer for one frame into the `fashion.items.v1` record.

    Input contract (what `Tagger.tag` returns for the RGB array decoded from `frame.jpeg`):

    - ``tags.width``, ``tags.height`` (int): size of that array, i.e. of the JPEG on the wire.
    - ``tags.garments[i].box`` (x1, y1, x2, y2) float pixels in that image, x to the right,
      y downwards, x1 <= x2, y1 <= y2. Copied as floats, clamped to [0, width] x [0, height]
      (detectors may overshoot by a fraction of a pixel).
    - ``tags.garments[i].mask`` COCO compressed RLE (column-major) of an (height, width) bool
      mask: copied verbatim as ``WireMask(size=(height, width), counts)``; never decoded here.
    - ``score``, attribute and style ``prob`` in [0, 1]; ``probabilities[head][label]`` every
      label's probability (sums to 1 per head). A non-finite number is a model fault: ModelError.
    - ``category`` a detector category name, ``attributes`` head -> top (label, prob),
      ``colour`` (name, rgb, share), ``style`` (label, prob), ``person_index`` into
      ``tags.people`` or None; ``embedding`` (version, (D,) float32 unit vector) or None:
      sent as float16 (``WireEmbedding``); a non-finite value is a model fault.
    - ``tags.people[j]`` (score, box, mask) as above.
    - ``tags.product`` (catalogue photos, when the embedding is shipped): the whole-product
      crop's category, gender and embedding, sent as ``WireProduct`` (its embedding as above);
      None for a camera frame (one there is dropped: cameras hold no catalogue products).
    - ``tags.timings`` stage -> seconds of this image's share of its batch (detect, classify...).

    Output: ``WireGarment.index`` / ``WirePerson.index`` = position in the tagger's list. The
    tagger's output order is deterministic for a given image and model, and (event_id,
    model_version, index) is the garment's idempotency key in Postgres. ``timings`` merges the
    tagger's own stages with the pipeline's (`timings` argument: fetch, decode, queue, infer).
    Identity and provenance fields are copied from `frame`. `thumbnails` (cut from the same
    pixels by stream_processors.thumbnails) give each person its crop and a catalogue image its
    picture; a person list of another length than ``tags.people`` is a fault (ValueError).

    Raises ModelError(MODEL_ERROR) when the answer breaks this contract.
    """
    if tags.width <= 0 or tags.height <= 0:
        raise ModelError(DeadLetterReason.MODEL_ERROR, f"image size {tags.width}x{tags.height}")
    size = (tags.height, tags.width)
    thumbs = thumbnails or Thumbnails()
    if thumbs.people and len(thumbs.people) != len(tags.people):
        raise ValueError(f"{len(thumbs.people)} person thumbnails for {len(tags.people)} people")
    people = tuple(
        _person(j, p, size, thumbs.people[j] if thumbs.people else None)
        for j, p in enumerate(tags.people)
    )
    garments = tuple(_garment(i, g, size, len(people)) for i, g in enumerate(tags.garments))
    merged = {str(k): _finite(f"timings[{k}]", v) for k, v in tags.timings.items()}
    merged.update({str(k): _finite(f"timings[{k}]", v) for k, v in timings.items()})
    if not tags.model_version:
        raise ModelError(DeadLetterReason.MODEL_ERROR, "the tagger gave no model version")
    return TaggedImage(
        event_id=frame.event_id,
        source_kind=frame.source_kind,
        source_id=frame.source_id,
        captured_at=frame.captured_at,
        submitted_at=frame.submitted_at,
        width=tags.width,
        height=tags.height,
        model_version=tags.model_version,
        timings=merged,
        garments=garments,
        people=people,
        frame_number=frame.frame_number,
        item_id=frame.item_id,
        image_url=frame.image_url,
        attributes=dict(frame.attributes),
        stream_ref=frame.stream_ref,
        end_of_stream=frame.end_of_stream,
        catalogue=frame.catalogue,
        thumbnail=thumbs.image,
        product=_product(tags.product) if frame.source_kind is SourceKind.FEED else None,
    )


def _garment(index: int, g: GarmentTags, size: tuple[int, int], n_people: int) -> WireGarment:
    if g.person_index is not None and not 0 <= g.person_index < n_people:
        raise ModelError(
            DeadLetterReason.MODEL_ERROR, f"garment {index} worn by missing person {g.person_index}"
        )
    return WireGarment(
        index=index,
        category=g.category,
        score=_prob(f"garment {index} score", g.score),
        box=_box(f"garment {index}", g.box, size),
        mask=_mask(f"garment {index}", g.mask, size),
        attributes={
            head: WireLabel(p.label, _prob(f"garment {index} {head}", p.prob))
            for head, p in g.attributes.items()
        },
        probabilities={
            head: _distribution(f"garment {index} {head}", probs)
            for head, probs in g.probabilities.items()
        },
        colour=WireColour(
            name=g.colour.name,
            rgb=(int(g.colour.rgb[0]), int(g.colour.rgb[1]), int(g.colour.rgb[2])),
            share=_prob(f"garment {index} colour share", g.colour.share),
        ),
        style=WireLabel(g.style.label, _prob(f"garment {index} style", g.style.prob)),
        person_index=g.person_index,
        embedding=_embedding(index, g),
    )


def _embedding(index: int, g: GarmentTags) -> WireEmbedding | None:
    if g.embedding is None:
        return None
    return _wire_embedding(f"garment {index}", g.embedding)


def _product(product: ProductTags | None) -> WireProduct | None:
    if product is None:
        return None
    return WireProduct(
        category=product.category,
        gender=product.gender,
        embedding=_wire_embedding("product", product.embedding),
    )


def _wire_embedding(what: str, embedding: Embedding) -> WireEmbedding:
    values = [float(v) for v in embedding.vector]
    if not all(math.isfinite(v) and abs(v) <= 65504.0 for v in values):
        raise ModelError(DeadLetterReason.MODEL_ERROR, f"{what} embedding is not finite")
    return WireEmbedding.encode(embedding.version, values)


def _person(
    index: int, p: PersonTags, size: tuple[int, int], thumbnail: bytes | None
) -> WirePerson:
    return WirePerson(
        index=index,
        score=_prob(f"person {index} score", p.score),
        box=_box(f"person {index}", p.box, size),
        mask=_mask(f"person {index}", p.mask, size),
        thumbnail=thumbnail,
    )


def _box(
    what: str, box: tuple[float, float, float, float], size: tuple[int, int]
) -> tuple[float, float, float, float]:
    height, width = size
    x1, y1, x2, y2 = (_finite(f"{what} box", float(v)) for v in box)
    if x2 < x1 or y2 < y1:
        raise ModelError(DeadLetterReason.MODEL_ERROR, f"{what} box {box} is inverted")
    return (
        min(max(x1, 0.0), float(width)),
        min(max(y1, 0.0), float(height)),
        min(max(x2, 0.0), float(width)),
        min(max(y2, 0.0), float(height)),
    )


def _mask(what: str, mask: RleMask, size: tuple[int, int]) -> WireMask:
    if tuple(mask.size) != size:
        raise ModelError(
            DeadLetterReason.MODEL_ERROR, f"{what} mask size {mask.size} != image size {size}"
        )
    return WireMask(size=(int(mask.size[0]), int(mask.size[1])), counts=mask.counts)


def _distribution(what: str, probs: Mapping[str, float]) -> dict[str, float]:
    """A head's every label's probability, to PROBABILITY_DECIMALS places. A busy camera frame
    carries about 4,800 of them: their 17-digit reprs were 70% of its 190 KB record, and
    checking each through `_prob` (with its message built first) a quarter of the adapter."""
    # + 0.0: a tiny negative rounds to -0.0, which would travel as "-0.0"
    rounded = {label: round(float(v), PROBABILITY_DECIMALS) + 0.0 for label, v in probs.items()}
    if all(0.0 <= v <= 1.0 for v in rounded.values()):  # NaN fails both comparisons
        return rounded
    # raises for the first bad value, or clamps the slight overshoots _prob allows
    return {
        label: round(_prob(f"{what}/{label}", v), PROBABILITY_DECIMALS) + 0.0
        for label, v in probs.items()
    }


def _prob(what: str, value: float) -> float:
    value = _finite(what, value)
    if not -1e-6 <= value <= 1.0 + 1e-6:
        raise ModelError(DeadLetterReason.MODEL_ERROR, f"{what} = {value} is not in [0, 1]")
    return min(max(value, 0.0), 1.0)


def _finite(what: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ModelError(DeadLetterReason.MODEL_ERROR, f"{what} is {value}")
    return value
