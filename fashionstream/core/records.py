"""Versioned wire records: what travels on each Kafka topic, shared by producers, agents and sinks.

Choice of carriage (DESIGN.md asks to pick one and document it):
- `fashion.images.v1`: JSON `ImageRequest`, key = item id.
- `fashion.frames.v1`: the value is the JPEG itself; metadata rides in Kafka headers in
  CloudEvents binary style (`ce_id`, `ce_source`, `ce_type`, `ce_time`, `content-type`) plus
  `fs_*` extension headers. Key = camera id (video) or item id (catalogue image), so one camera's
  frames stay ordered on one partition.
- `fashion.items.v1`: JSON `TaggedImage`, key = the frame's key.
- `fashion.deadletter.v1`: JSON `DeadLetter`, key = the failed record's key.

The JSON records carry `schema` (the record type, its major version: a new one is a new topic)
and `version` (additive changes within it; absent means 1). Version 2 of `ImageRequest` and
`TaggedImage` adds `catalogue` (`CatalogueFields`: title, brand, price, currency, product link,
read once from the feed row by the producer); a version 1 record decodes with empty ones.
Version 3 of `TaggedImage` adds thumbnails (the image's and each person's, base64 JPEG); version
4 adds each garment's appearance `embedding` (`WireEmbedding`: float16 little-endian, base64,
with its model version); a garment without one decodes as None. Version 5 adds a catalogue
image's `product` (`WireProduct`: the whole-product crop's category, gender and embedding); a
record without one decodes as None.

Every decoder raises `BadRecordError` naming what is wrong; nothing here touches Kafka itself.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import json
import math
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from fashionstream.core.errors import BadRecordError, DeadLetterReason


class Topic(enum.StrEnum):
    IMAGES = "fashion.images.v1"
    FRAMES = "fashion.frames.v1"
    ITEMS = "fashion.items.v1"
    DEADLETTER = "fashion.deadletter.v1"


class SourceKind(enum.StrEnum):
    FEED = "feed"  # an e-commerce catalogue feed; one image per item
    CAMERA = "camera"  # a video source; many frames


# Ids are keys of unique indexes in Postgres (a btree entry holds at most ~2.7 kB) and labels of
# logs: 512 characters (at most 2 kB of UTF-8) is far beyond any real SKU, feed or camera name.
MAX_ID_CHARS = 512
# Dead letters must always fit in a Kafka message whatever the failed record held: their free
# text is cut to these lengths (with a marker and a hash of the original, see `bounded_text`).
DEAD_LETTER_TEXT_CHARS = 2000
DEAD_LETTER_ID_CHARS = MAX_ID_CHARS


def bounded_text(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its head and a marker naming the
    original length and the first 16 hex digits of its SHA-256 (of its UTF-8, lone surrogates
    kept), so two different long values never look the same and the original can be matched."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    marker = f"...[truncated: {len(text)} chars, sha256 {digest}]"
    return text[: max(0, limit - len(marker))] + marker


def check_id(name: str, value: object) -> str:
    """A non-empty id of at most MAX_ID_CHARS characters, or BadRecordError saying which."""
    if not isinstance(value, str) or not value:
        raise BadRecordError(f"{name} must be a non-empty string")
    if len(value) > MAX_ID_CHARS:
        raise BadRecordError(
            f"{name} is {len(value)} characters long, over the limit of {MAX_ID_CHARS}"
            f" ({bounded_text(value, 80)})"
        )
    return value


def normal_event_id(event_id: str) -> str:
    """The canonical text of a UUID event id (lower case, hyphenated), as Postgres prints it:
    the same id in two letter cases is one image. Anything else is returned unchanged (Postgres
    refuses it as data, and the sink dead-letters that record)."""
    try:
        return str(uuid.UUID(event_id))
    except (ValueError, TypeError, AttributeError):
        return event_id


def event_id_for_item(feed: str, item_id: str, image_url: str) -> str:
    """Stable id of one catalogue image, so that re-running a feed adds no rows."""
    return str(uuid.uuid5(_NAMESPACE, f"feed\0{feed}\0{item_id}\0{image_url}"))


# The stream reference of a live session starts with this (a recording's is its file's name
# and size): a live frame may be skipped when it is stale, a recording's never is.
LIVE_STREAM_PREFIX = "live:"


def event_id_for_frame(camera_id: str, stream_ref: str, frame_number: int) -> str:
    """Stable id of one video frame. `stream_ref` names the recording (a file's name and size)
    or the live session (its start time), so a re-run of a file repeats its ids."""
    return str(uuid.uuid5(_NAMESPACE, f"camera\0{camera_id}\0{stream_ref}\0{frame_number}"))


_NAMESPACE = uuid.UUID("6f1d8a8e-2a55-4d2b-9a2f-2d4c7e0b9f31")

# ---------------------------------------------------------------------------------------------
# catalogue columns (fashion.images.v1 onwards)

# Postgres' catalogue_items.price is numeric(14, 4): no negative, NaN or larger amount is a price
MAX_PRICE = Decimal(10) ** 10


@dataclass(frozen=True)
class CatalogueFields:
    """A catalogue item's typed columns, interpreted once from its feed row by the producer
    (producers/feed.py: `catalogue_fields`); every one is optional. The row's raw columns still
    travel as `attributes`."""

    title: str | None = None
    brand: str | None = None
    price: Decimal | None = None  # 0 <= price < MAX_PRICE; on the wire a decimal string
    currency: str | None = None
    link: str | None = None  # the product page

    def __post_init__(self) -> None:
        for name in ("title", "brand", "currency", "link"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise BadRecordError(f"CatalogueFields.{name} must be a non-empty string or null")
        price = self.price
        if price is not None and (
            not isinstance(price, Decimal)
            or not price.is_finite()
            or not Decimal(0) <= price < MAX_PRICE
        ):
            raise BadRecordError(
                f"CatalogueFields.price must be a decimal in [0, {MAX_PRICE}) or null: {price!r}"
            )

    @classmethod
    def from_wire(cls, data: object) -> CatalogueFields:
        """The inverse of the `catalogue` object `to_json` writes; None or absent: empty."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise BadRecordError("catalogue must be an object")
        price = data.get("price")
        if price is not None:
            if not isinstance(price, str):
                raise BadRecordError("catalogue.price must be a decimal string or null")
            try:
                price = Decimal(price)
            except InvalidOperation:
                raise BadRecordError(f"catalogue.price is not a decimal: {price!r}") from None
        return cls(
            title=data.get("title"),
            brand=data.get("brand"),
            price=price,
            currency=data.get("currency"),
            link=data.get("link"),
        )


# ---------------------------------------------------------------------------------------------
# fashion.images.v1


@dataclass(frozen=True)
class ImageRequest:
    """One catalogue item whose image should be fetched and tagged."""

    SCHEMA = "fashion.image_request.v1"
    VERSION = 2  # 2: `catalogue`

    feed: str  # the source id of the feed (e.g. the file's stem); groups items in Postgres
    item_id: str
    image_url: str
    submitted_at: float  # epoch seconds when the producer sent it; end-to-end latency starts here
    attributes: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
    catalogue: CatalogueFields = field(default_factory=CatalogueFields)

    def __post_init__(self) -> None:
        check_id("ImageRequest.feed", self.feed)
        check_id("ImageRequest.item_id", self.item_id)
        if not isinstance(self.image_url, str) or not self.image_url:
            raise BadRecordError("ImageRequest.image_url must be a non-empty string")
        _require_time("ImageRequest.submitted_at", self.submitted_at)

    @property
    def event_id(self) -> str:
        return event_id_for_item(self.feed, self.item_id, self.image_url)

    def to_json(self) -> bytes:
        return _dump({"schema": self.SCHEMA, "version": self.VERSION, **_fields(self)})

    def to_kafka(self) -> tuple[bytes, bytes]:
        """The one way a request becomes a `fashion.images.v1` message: (key, value), keyed by
        item id. Used by the feed producer and the API's submit alike."""
        return self.item_id.encode("utf-8"), self.to_json()

    @classmethod
    def from_json(cls, value: bytes | None) -> ImageRequest:
        data = _load(value, cls.SCHEMA)
        catalogue = _catalogue(data)
        attributes = data.get("attributes", {})
        if not isinstance(attributes, dict):
            raise BadRecordError("ImageRequest.attributes must be an object")
        try:
            return cls(
                feed=data["feed"],
                item_id=data["item_id"],
                image_url=data["image_url"],
                submitted_at=data["submitted_at"],
                attributes=attributes,
                catalogue=catalogue,
            )
        except KeyError as exc:
            raise BadRecordError(f"ImageRequest is missing {exc.args[0]!r}") from None


# ---------------------------------------------------------------------------------------------
# fashion.frames.v1


@dataclass(frozen=True)
class Frame:
    """One image to tag: a video frame or a fetched catalogue photo, as JPEG bytes.

    Exactly one of `frame_number` (cameras) and `item_id` (feeds) is set.
    """

    CE_TYPE = "fashion.frame.v1"

    event_id: str
    source_kind: SourceKind
    source_id: str  # camera id or feed name
    captured_at: float  # epoch seconds: capture time (camera) or fetch time (feed)
    submitted_at: float  # epoch seconds: when the frame (or the catalogue item) entered Kafka
    jpeg: bytes
    frame_number: int | None = None
    item_id: str | None = None
    image_url: str | None = None
    fetch_s: float | None = None  # time the fetch agent spent getting the image
    attributes: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
    # cameras: the recording or live session the frame belongs to (what `event_id_for_frame`
    # was given), and True on the last frame a recording will send (the tracker closes its
    # open tracks there)
    stream_ref: str | None = None
    end_of_stream: bool = False
    catalogue: CatalogueFields = field(default_factory=CatalogueFields)  # feeds: typed columns

    def __post_init__(self) -> None:
        if not self.event_id or not self.source_id:
            raise BadRecordError("Frame needs an event id and a source id")
        check_id("Frame.source_id", self.source_id)
        if self.item_id is not None:
            check_id("Frame.item_id", self.item_id)
        if (self.frame_number is None) == (self.item_id is None):
            raise BadRecordError("Frame needs exactly one of frame_number and item_id")
        _require_time("Frame.captured_at", self.captured_at)
        _require_time("Frame.submitted_at", self.submitted_at)
        if not self.jpeg.startswith(b"\xff\xd8"):
            raise BadRecordError("Frame value is not a JPEG (no SOI marker)")

    @property
    def key(self) -> str:
        return self.source_id if self.source_kind is SourceKind.CAMERA else str(self.item_id)

    @property
    def live(self) -> bool:
        """A camera frame of a live session (not a recording, not a catalogue photo)."""
        return self.stream_ref is not None and self.stream_ref.startswith(LIVE_STREAM_PREFIX)

    @property
    def reference(self) -> str:
        """What a person would look up: the image URL, or camera#frame."""
        if self.image_url is not None:
            return self.image_url
        return f"{self.source_id}#{self.frame_number}"

    def to_kafka(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """The one way a frame becomes a `fashion.frames.v1` message: (key, value, headers).
        Key: the camera id (one camera's frames stay ordered on one partition) or the item id;
        value: the JPEG bytes; headers: CloudEvents binary mode (`headers()`). The inverse of
        `from_kafka`."""
        return self.key.encode(), self.jpeg, self.headers()

    def headers(self) -> list[tuple[str, bytes]]:
        """The CloudEvents (`ce_*`) and fashionstream (`fs_*`) headers of `to_kafka`."""
        pairs: list[tuple[str, Any]] = [
            ("ce_specversion", "1.0"),
            ("ce_id", self.event_id),
            ("ce_source", self.source_id),
            ("ce_type", self.CE_TYPE),
            ("ce_time", _rfc3339(self.captured_at)),
            ("content-type", "image/jpeg"),
            ("fs_source_kind", self.source_kind.value),
            ("fs_captured_at", repr(self.captured_at)),
            ("fs_submitted_at", repr(self.submitted_at)),
        ]
        if self.frame_number is not None:
            pairs.append(("fs_frame_number", str(self.frame_number)))
        if self.item_id is not None:
            pairs.append(("fs_item_id", self.item_id))
        if self.image_url is not None:
            pairs.append(("fs_image_url", self.image_url))
        if self.fetch_s is not None:
            pairs.append(("fs_fetch_s", repr(self.fetch_s)))
        if self.attributes:
            pairs.append(("fs_attributes", json.dumps(dict(self.attributes))))
        if self.stream_ref is not None:
            pairs.append(("fs_stream_ref", self.stream_ref))
        if self.end_of_stream:
            pairs.append(("fs_end_of_stream", "1"))
        if self.catalogue != CatalogueFields():
            pairs.append(("fs_catalogue", _dump(_fields(self.catalogue)).decode()))
        return [(k, str(v).encode()) for k, v in pairs]

    @classmethod
    def from_kafka(
        cls, value: bytes | None, headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None
    ) -> Frame:
        """Rebuild a frame from a Kafka value and its headers (a list of pairs or a mapping)."""
        if not value:
            raise BadRecordError("Frame has an empty value")
        pairs = headers.items() if isinstance(headers, Mapping) else (headers or [])
        h: dict[str, str] = {}
        for k, v in pairs:
            try:
                h[k] = v.decode() if isinstance(v, bytes | bytearray) else str(v)
            except UnicodeDecodeError:
                raise BadRecordError(f"Frame header {k!r} is not UTF-8") from None
        if h.get("ce_type") != cls.CE_TYPE:
            raise BadRecordError(
                f"Frame header ce_type is {h.get('ce_type')!r}, not {cls.CE_TYPE!r}"
            )
        try:
            attributes = json.loads(h["fs_attributes"]) if "fs_attributes" in h else {}
            return cls(
                event_id=h["ce_id"],
                source_kind=SourceKind(h["fs_source_kind"]),
                source_id=h["ce_source"],
                captured_at=float(h["fs_captured_at"]),
                submitted_at=float(h["fs_submitted_at"]),
                jpeg=bytes(value),
                frame_number=int(h["fs_frame_number"]) if "fs_frame_number" in h else None,
                item_id=h.get("fs_item_id"),
                image_url=h.get("fs_image_url"),
                fetch_s=float(h["fs_fetch_s"]) if "fs_fetch_s" in h else None,
                attributes=attributes if isinstance(attributes, dict) else {},
                stream_ref=h.get("fs_stream_ref"),
                end_of_stream=h.get("fs_end_of_stream") == "1",
                catalogue=CatalogueFields.from_wire(
                    json.loads(h["fs_catalogue"]) if "fs_catalogue" in h else None
                ),
            )
        except KeyError as exc:
            raise BadRecordError(f"Frame is missing header {exc.args[0]!r}") from None
        except ValueError as exc:
            raise BadRecordError(f"Frame has a malformed header: {exc}") from None


# ---------------------------------------------------------------------------------------------
# fashion.items.v1


@dataclass(frozen=True)
class WireMask:
    """COCO compressed RLE (pycocotools), column-major, of an image of `size` = (height, width)."""

    size: tuple[int, int]
    counts: str


@dataclass(frozen=True)
class WireLabel:
    label: str
    prob: float


@dataclass(frozen=True)
class WireColour:
    name: str  # catalogue colour name measured from the pixels inside the mask
    rgb: tuple[int, int, int]  # the dominant colour inside the mask
    share: float  # fraction of mask pixels nearest that colour


@dataclass(frozen=True)
class WirePerson:
    index: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the tagged image
    mask: WireMask
    # a small JPEG crop of the person (base64 on the wire); the tracker keeps its track's best
    thumbnail: bytes | None = None


# an embedding longer than this is refused: pgvector indexes at most 2,000 dimensions
MAX_EMBEDDING_DIM = 2000
# high byte of a little-endian float16 -> 1 where the value is inf or NaN, else 0
_FLOAT16_NOT_FINITE = bytes(int(b & 0x7C == 0x7C) for b in range(256))


@dataclass(frozen=True)
class WireEmbedding:
    """A garment's appearance embedding: `dim` float16 values, little-endian, base64 (a
    256-d vector is 684 characters, about 13 KB for a tram frame's 18 garments), and the
    embedding model's `version` (vectors of different versions are never compared)."""

    version: str
    dim: int
    data: str

    def __post_init__(self) -> None:
        if not self.version:
            raise BadRecordError("WireEmbedding.version is empty")
        if not 1 <= self.dim <= MAX_EMBEDDING_DIM:
            raise BadRecordError(
                f"WireEmbedding.dim must be 1..{MAX_EMBEDDING_DIM}, not {self.dim}"
            )
        try:
            raw = base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRecordError(f"WireEmbedding.data is not base64: {exc}") from None
        if len(raw) != 2 * self.dim:
            raise BadRecordError(
                f"WireEmbedding.data holds {len(raw)} bytes, expected {2 * self.dim} (float16)"
            )
        # a float16 is inf or NaN when its exponent bits, 0x7C of its high (little-endian:
        # second) byte, are all set; checked over the bytes at C speed, where unpacking each
        # value was a third of parsing a busy frame's record, which two agents parse
        if 1 in raw[1::2].translate(_FLOAT16_NOT_FINITE):
            raise BadRecordError("WireEmbedding.data holds a value that is not finite")

    @classmethod
    def encode(cls, version: str, values: Sequence[float]) -> WireEmbedding:
        """Float values (stored as float16; out-of-range values raise BadRecordError)."""
        try:
            raw = struct.pack(f"<{len(values)}e", *(float(v) for v in values))
        except (OverflowError, struct.error) as exc:
            raise BadRecordError(f"an embedding value does not fit float16: {exc}") from None
        return cls(version, len(values), base64.b64encode(raw).decode("ascii"))

    @property
    def raw(self) -> bytes:
        """The float16 little-endian bytes."""
        return base64.b64decode(self.data)

    def values(self) -> tuple[float, ...]:
        return struct.unpack(f"<{self.dim}e", self.raw)


@dataclass(frozen=True)
class WireGarment:
    index: int  # position in the image's garment list: part of the idempotency key
    category: str
    score: float
    box: tuple[float, float, float, float]
    mask: WireMask
    attributes: Mapping[str, WireLabel]  # head -> top label, e.g. "gender" -> ("Women", 0.93)
    probabilities: Mapping[str, Mapping[str, float]]  # head -> label -> prob (all labels)
    colour: WireColour
    style: WireLabel
    person_index: int | None  # the WirePerson this garment is worn by, if any
    embedding: WireEmbedding | None = None  # appearance, for visual similarity (version 3)


@dataclass(frozen=True)
class WireProduct:
    """A catalogue image's whole product (version 5): its category and gender as the attribute
    classifier reads its product crop, and that crop's embedding; what a catalogue search
    matches, rather than each garment the model in the photo wears."""

    category: str
    gender: str | None
    embedding: WireEmbedding

    def __post_init__(self) -> None:
        if not self.category:
            raise BadRecordError("WireProduct.category is empty")


@dataclass(frozen=True)
class TaggedImage:
    """The tagger's result for one frame or catalogue image, as written to fashion.items.v1."""

    SCHEMA = "fashion.tagged_image.v1"
    # 2: `catalogue`; 3: `thumbnail` and `people[].thumbnail` (base64 JPEG); 4: garments'
    # `embedding`; 5: `product` (catalogue images)
    VERSION = 5

    event_id: str
    source_kind: SourceKind
    source_id: str
    captured_at: float
    submitted_at: float
    width: int
    height: int
    model_version: str
    timings: Mapping[str, float]  # stage -> seconds: fetch, decode, infer, queue (frame waited)
    garments: tuple[WireGarment, ...]
    people: tuple[WirePerson, ...]
    frame_number: int | None = None
    item_id: str | None = None
    image_url: str | None = None
    attributes: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
    stream_ref: str | None = None  # copied from the Frame (cameras)
    end_of_stream: bool = False
    catalogue: CatalogueFields = field(default_factory=CatalogueFields)  # copied from the Frame
    thumbnail: bytes | None = None  # a small JPEG of the whole image (catalogue photos)
    product: WireProduct | None = None  # the whole product's vector (catalogue photos)

    @property
    def key(self) -> str:
        return self.source_id if self.source_kind is SourceKind.CAMERA else str(self.item_id)

    def to_json(self) -> bytes:
        return _dump({"schema": self.SCHEMA, "version": self.VERSION, **_fields(self)})

    @classmethod
    def from_json(cls, value: bytes | None) -> TaggedImage:
        data = _load(value, cls.SCHEMA)
        catalogue = _catalogue(data)
        try:
            item_id = data.get("item_id")
            return cls(
                event_id=normal_event_id(_str(data, "event_id")),
                source_kind=SourceKind(data["source_kind"]),
                source_id=check_id("TaggedImage.source_id", data["source_id"]),
                captured_at=float(data["captured_at"]),
                submitted_at=float(data["submitted_at"]),
                width=int(data["width"]),
                height=int(data["height"]),
                model_version=_str(data, "model_version"),
                timings={str(k): float(v) for k, v in data["timings"].items()},
                garments=tuple(_garment(g) for g in data["garments"]),
                people=tuple(_person(p) for p in data["people"]),
                frame_number=None
                if data.get("frame_number") is None
                else int(data["frame_number"]),
                item_id=None if item_id is None else check_id("TaggedImage.item_id", item_id),
                image_url=data.get("image_url"),
                attributes=dict(data.get("attributes") or {}),
                stream_ref=_optional_str(data, "stream_ref"),
                end_of_stream=data.get("end_of_stream") is True,
                catalogue=catalogue,
                thumbnail=_thumbnail(data),
                product=_product(data.get("product")),
            )
        except BadRecordError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadRecordError(f"TaggedImage is malformed: {exc!r}") from None


def _mask(d: Mapping[str, Any]) -> WireMask:
    h, w = d["size"]
    return WireMask(size=(int(h), int(w)), counts=str(d["counts"]))


def _box(values: Sequence[Any]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _person(d: Mapping[str, Any]) -> WirePerson:
    return WirePerson(
        index=int(d["index"]),
        score=float(d["score"]),
        box=_box(d["box"]),
        mask=_mask(d["mask"]),
        thumbnail=_thumbnail(d),
    )


def _thumbnail(d: Mapping[str, Any]) -> bytes | None:
    """A record's base64 `thumbnail` (absent before version 3), checked to be a JPEG."""
    value = d.get("thumbnail")
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRecordError("thumbnail must be a base64 string or null")
    try:
        jpeg = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise BadRecordError(f"thumbnail is not base64: {exc}") from None
    if not jpeg.startswith(b"\xff\xd8\xff"):
        raise BadRecordError("thumbnail is not a JPEG")
    return jpeg


def _garment(d: Mapping[str, Any]) -> WireGarment:
    r, g, b = (int(v) for v in d["colour"]["rgb"])
    return WireGarment(
        index=int(d["index"]),
        category=str(d["category"]),
        score=float(d["score"]),
        box=_box(d["box"]),
        mask=_mask(d["mask"]),
        attributes={
            k: WireLabel(str(v["label"]), float(v["prob"])) for k, v in d["attributes"].items()
        },
        probabilities={
            k: {str(lbl): float(p) for lbl, p in v.items()} for k, v in d["probabilities"].items()
        },
        colour=WireColour(str(d["colour"]["name"]), (r, g, b), float(d["colour"]["share"])),
        style=WireLabel(str(d["style"]["label"]), float(d["style"]["prob"])),
        person_index=None if d.get("person_index") is None else int(d["person_index"]),
        embedding=_embedding(d.get("embedding")),
    )


def _embedding(d: object) -> WireEmbedding | None:
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise BadRecordError(f"embedding must be an object, not {type(d).__name__}")
    return WireEmbedding(version=_str(d, "version"), dim=int(d["dim"]), data=_str(d, "data"))


def _product(d: object) -> WireProduct | None:
    """A record's `product` (absent before version 5)."""
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise BadRecordError(f"product must be an object, not {type(d).__name__}")
    embedding = _embedding(d["embedding"])
    if embedding is None:
        raise BadRecordError("product.embedding is missing")
    return WireProduct(
        category=_str(d, "category"), gender=_optional_str(d, "gender"), embedding=embedding
    )


# ---------------------------------------------------------------------------------------------
# fashion.deadletter.v1


@dataclass(frozen=True)
class Origin:
    """Where a failed record was read from."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLetter:
    SCHEMA = "fashion.deadletter.v1"

    reason: DeadLetterReason
    detail: str  # a sentence a person can act on, e.g. "HTTP 404 from https://..."
    stage: str  # produce, fetch, decode, tag, sink
    failed_at: float
    source_id: str | None = None
    reference: str | None = None  # the URL, camera#frame, or file that failed
    key: str | None = None  # the failed record's Kafka key (UTF-8, undecodable bytes replaced)
    origin: Origin | None = None

    def __post_init__(self) -> None:
        # A dead letter must fit wherever the record it reports did not: every free-text field
        # is bounded here, so no caller can build one that is too large to send.
        limits = {
            "detail": DEAD_LETTER_TEXT_CHARS,
            "reference": DEAD_LETTER_TEXT_CHARS,
            "source_id": DEAD_LETTER_ID_CHARS,
            "key": DEAD_LETTER_ID_CHARS,
        }
        for name, limit in limits.items():
            value = getattr(self, name)
            if isinstance(value, str) and len(value) > limit:
                object.__setattr__(self, name, bounded_text(value, limit))

    def to_json(self) -> bytes:
        return _dump({"schema": self.SCHEMA, **_fields(self)})

    def to_kafka(self) -> tuple[bytes | None, bytes]:
        """The one way a dead letter becomes a `fashion.deadletter.v1` message: (key, value).
        Key: the failed record's key (already bounded; bytes that are not UTF-8 were replaced
        when it was read, a lone surrogate is replaced here, so the key always encodes); value:
        `to_json()`. Dead letters carry no headers."""
        key = None if self.key is None else self.key.encode("utf-8", "replace")
        return key, self.to_json()

    @classmethod
    def from_json(cls, value: bytes | None) -> DeadLetter:
        data = _load(value, cls.SCHEMA)
        try:
            origin = data.get("origin")
            return cls(
                reason=DeadLetterReason(data["reason"]),
                detail=str(data["detail"]),
                stage=str(data["stage"]),
                failed_at=float(data["failed_at"]),
                source_id=data.get("source_id"),
                reference=data.get("reference"),
                key=data.get("key"),
                origin=None if origin is None else Origin(**origin),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRecordError(f"DeadLetter is malformed: {exc!r}") from None


# ---------------------------------------------------------------------------------------------
# helpers


def _dump(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False, default=_default).encode()


def _fields(record: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, one level deep: `json.dumps` meets the nested records in
    `_default`. dataclasses.asdict deep-copies every value first, which cost 7 ms of the
    worker's event loop per busy camera frame (22 garments with every label's probability)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


def _default(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)  # exact: a price is never a float on the wire
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")  # thumbnails
    raise TypeError(f"not serialisable: {type(value).__name__}")


def _load(value: bytes | None, schema: str) -> dict[str, Any]:
    if not value:
        raise BadRecordError(f"empty value where a {schema} record was expected")
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRecordError(f"not JSON where a {schema} record was expected: {exc}") from None
    if not isinstance(data, dict):
        raise BadRecordError(f"a {schema} record must be a JSON object")
    if data.get("schema") != schema:
        raise BadRecordError(f"schema is {data.get('schema')!r}, expected {schema!r}")
    return data


def _catalogue(data: Mapping[str, Any]) -> CatalogueFields:
    """The `catalogue` of a JSON record: empty in a version 1 record (written before it
    existed). Versions only add fields, so a later one is read for the fields known here."""
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BadRecordError(f"version must be a positive integer, not {version!r}")
    if version == 1:
        return CatalogueFields()
    return CatalogueFields.from_wire(data.get("catalogue"))


def _str(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not value:
        raise BadRecordError(f"{name} must be a non-empty string")
    return value


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BadRecordError(f"{name} must be a non-empty string or null")
    return value


def _require_time(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRecordError(f"{name} must be a finite number of epoch seconds")


def _rfc3339(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).isoformat()
