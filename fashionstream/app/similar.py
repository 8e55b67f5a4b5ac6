"""Shop the look: the catalogue products that look like a garment. `SimilarSearch` is what the
`fashionstream similar` command and the API's `GET /v1/similar` call: from a photo (tagged here,
one search per garment found), from a stored garment, or from a sighting (each garment's best
view). Results are dataclasses with `to_json()`.

A photo goes the way a fetched catalogue image goes through the pipeline (upright, long side at
most FASHIONSTREAM_IMAGE_MAX_SIDE, JPEG at the wire's quality, decoded, tagged), so its vectors
are the ones the pipeline would store for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fashionstream.app.report.model import CatalogueMatch as ReportMatch
from fashionstream.app.report.model import StreetGarmentRef
from fashionstream.core.settings import Settings
from sinks.similar import CatalogueMatch, SimilarityIndex, StoredGarment

if TYPE_CHECKING:  # the API imports this module without the model stack installed
    from models.tags import ImageTags

DEFAULT_K = 10


class SimilarError(Exception):
    """A search that cannot be answered; `status` is the HTTP status an API gives it."""

    status = 400


class UnknownGarmentError(SimilarError):
    status = 404


class NoEmbeddingError(SimilarError):
    """The garment (or every garment of the sighting) was stored without a vector: tagged
    before the embedding head shipped."""

    status = 409


class EmbeddingTagger(Protocol):
    """What the search needs of the tagger (models.tagger.FashionTagger)."""

    @property
    def embedding_version(self) -> str: ...

    def tag(self, images: Sequence[np.ndarray]) -> list[ImageTags]: ...


@dataclass(frozen=True)
class QueryGarment:
    """The garment searched from: found in the query photo (`index`, `box`) or stored
    (`garment_id`)."""

    category: str
    attributes: dict[str, dict[str, Any]]  # head -> {label, prob}; empty for a stored garment
    box: tuple[float, float, float, float] | None = None
    index: int | None = None
    garment_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "garment_id": self.garment_id,
            "category": self.category,
            "box": None if self.box is None else [round(v, 1) for v in self.box],
            "attributes": self.attributes,
        }


@dataclass(frozen=True)
class GarmentMatches:
    garment: QueryGarment
    matches: tuple[CatalogueMatch, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "garment": self.garment.to_json(),
            "matches": [m.to_json() for m in self.matches],
        }


@dataclass(frozen=True)
class SimilarResult:
    """Per query garment, its nearest catalogue products (nearest first)."""

    query: str  # "image", "garment" or "sighting"
    embedding_version: str
    k: int
    category: str | None
    gender: str | None
    garments: tuple[GarmentMatches, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "embedding_version": self.embedding_version,
            "k": self.k,
            "filters": {"category": self.category, "gender": self.gender},
            "garments": [g.to_json() for g in self.garments],
        }


class SimilarSearch:
    """Built from its parts (tests inject them) or `from_settings`. The tagger is built on
    first use of `for_image` only (loading it takes seconds). Thread-safe."""

    def __init__(
        self,
        index: SimilarityIndex,
        tagger: Callable[[], EmbeddingTagger],
        *,
        decode: Callable[[bytes], np.ndarray],
        fetch: Callable[[str], bytes] | None = None,
    ) -> None:
        self.index = index
        self._make_tagger = tagger
        self._tagger: EmbeddingTagger | None = None
        self._tagger_lock = threading.Lock()
        self._decode = decode
        self._fetch = fetch

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        tagger: Callable[[], EmbeddingTagger] | None = None,
        *,
        application_name: str = "fashionstream-similar",
    ) -> SimilarSearch:
        """`tagger`: where photos are tagged (default: the shipped tagger, loaded on first
        use); a process that has loaded one already passes it, so one model is in memory."""
        from sinks.postgres import connection_factory

        def shipped_tagger() -> EmbeddingTagger:
            from models.tagger import FashionTagger

            return FashionTagger.from_settings(settings)

        return cls(
            SimilarityIndex(connection_factory(settings, application_name)),
            tagger or shipped_tagger,
            decode=lambda data: decode_like_the_pipeline(data, settings),
            fetch=lambda url: fetch_guarded(url, settings),
        )

    def close(self) -> None:
        self.index.close()

    def tagger(self) -> EmbeddingTagger:
        with self._tagger_lock:
            if self._tagger is None:
                self._tagger = self._make_tagger()
            return self._tagger

    def for_url(
        self, url: str, k: int = DEFAULT_K, category: str | None = None, gender: str | None = None
    ) -> SimilarResult:
        """`for_image` of the photo at `url`, fetched with the pipeline's SSRF guard and
        limits (raises fashionstream.core.errors.FetchError)."""
        if self._fetch is None:
            raise SimilarError("this search was built without a fetcher")
        return self.for_image(self._fetch(url), k, category, gender)

    def for_image(
        self,
        image: bytes | np.ndarray,
        k: int = DEFAULT_K,
        category: str | None = None,
        gender: str | None = None,
    ) -> SimilarResult:
        """Tags the photo (encoded bytes, or an RGB uint8 (H, W, 3) array) and searches from
        every garment found. Raises DecodeError for bytes that are not an image."""
        _check_k(k)
        rgb = self._decode(image) if isinstance(image, bytes | bytearray) else image
        tagger = self.tagger()
        version = tagger.embedding_version
        if not version:
            raise NoEmbeddingError("the shipped tagger has no embedding head")
        (tags,) = tagger.tag([rgb])
        found = []
        for i, g in enumerate(tags.garments):
            if g.embedding is None:
                continue
            query = QueryGarment(
                category=g.category,
                attributes={h: {"label": p.label, "prob": p.prob} for h, p in g.attributes.items()},
                box=g.box,
                index=i,
            )
            matches = self.index.nearest(
                g.embedding.vector.tolist(),
                model_version=g.embedding.version,
                k=k,
                category=category,
                gender=gender,
            )
            found.append(GarmentMatches(query, tuple(matches)))
        return SimilarResult("image", version, k, category, gender, tuple(found))

    def for_garment(
        self,
        garment_id: int,
        k: int = DEFAULT_K,
        category: str | None = None,
        gender: str | None = None,
    ) -> SimilarResult:
        """From a stored garment's vector, among vectors of its own embedding version."""
        _check_k(k)
        stored = self.index.garment(garment_id)
        if stored is None:
            raise UnknownGarmentError(f"no garment {garment_id}")
        if stored.vector is None or stored.model_version is None:
            raise NoEmbeddingError(f"garment {garment_id} was stored without an embedding")
        found = self._search(stored, k, category, gender, exclude=stored.product)
        return SimilarResult("garment", stored.model_version, k, category, gender, (found,))

    def for_sighting(
        self,
        sighting_id: str,
        k: int = DEFAULT_K,
        category: str | None = None,
        gender: str | None = None,
    ) -> SimilarResult:
        """From each garment of a sighting, as seen in its best view."""
        _check_k(k)
        try:
            garments = self.index.sighting(_uuid(sighting_id))
        except ValueError as exc:
            raise SimilarError(str(exc)) from None
        if not garments:
            raise UnknownGarmentError(f"no sighting {sighting_id} (or it has no garments)")
        with_vectors = [g for g in garments if g.vector is not None and g.model_version]
        if not with_vectors:
            raise NoEmbeddingError(f"sighting {sighting_id}: no garment has an embedding")
        found = tuple(self._search(g, k, category, gender) for g in with_vectors)
        versions = sorted({str(g.model_version) for g in with_vectors})
        return SimilarResult("sighting", ",".join(versions), k, category, gender, found)

    def report_matches(self, ref: StreetGarmentRef, k: int) -> list[ReportMatch]:
        """The report's `SimilarItems` (fashionstream.app.report.model): the k catalogue
        products closest to one garment of a sighting, seen in its best view; none when that
        garment has no vector."""
        garments = self.index.sighting(_uuid(ref.sighting_id))
        mine = [g for g in garments if g.sighting_garment_index == ref.garment_index]
        if not mine or mine[0].vector is None or mine[0].model_version is None:
            return []
        found = self._search(mine[0], k, None, None)
        pictures = self.index.product_pictures([(m.feed, m.item_id) for m in found.matches])
        return [
            ReportMatch(
                item_id=m.item_id,
                distance=m.distance,
                title=m.title,
                link=m.link,
                source_id=m.feed,
                category=m.category,
                colour=m.colour,
                jpeg=pictures.get((m.feed, m.item_id)),
            )
            for m in found.matches
        ]

    def _search(
        self,
        stored: StoredGarment,
        k: int,
        category: str | None,
        gender: str | None,
        exclude: tuple[str, str] | None = None,
    ) -> GarmentMatches:
        if stored.vector is None or stored.model_version is None:
            raise NoEmbeddingError(f"garment {stored.garment_id} has no embedding")
        # a catalogue photo's garment is near its own product: ask for one more, drop that
        matches = self.index.nearest(
            stored.vector,
            model_version=stored.model_version,
            k=k + (exclude is not None),
            category=category,
            gender=gender,
        )
        kept = tuple(m for m in matches if (m.feed, m.item_id) != exclude)[:k]
        query = QueryGarment(category=stored.category, attributes={}, garment_id=stored.garment_id)
        return GarmentMatches(query, kept)


def _check_k(k: int) -> None:
    if not 1 <= k <= 100:
        raise SimilarError(f"k must be 1..100, got {k}")


def _uuid(text: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValueError(f"not a sighting id (a UUID): {text[:80]!r}") from None


def decode_like_the_pipeline(data: bytes, settings: Settings) -> np.ndarray:
    """Bytes of any supported image -> the RGB array the pipeline would tag for them (the
    fetch stage's prepare_image, then the tag stage's decode). Raises DecodeError."""
    from stream_processors.images import decode_jpeg, prepare_fetched

    prepared = prepare_fetched(bytes(data), settings)
    return decode_jpeg(prepared.jpeg, settings.fetch_max_pixels)


def fetch_guarded(url: str, settings: Settings) -> bytes:
    """GET an image with the pipeline's fetcher: its SSRF guard, timeouts and size limit.
    Raises FetchError."""
    from stream_processors.fetch import ImageFetcher

    async def get() -> bytes:
        fetcher = ImageFetcher.from_settings(settings)
        try:
            return (await fetcher.fetch(url)).body
        finally:
            await fetcher.close()

    return asyncio.run(get())
