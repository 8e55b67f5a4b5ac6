"""Visual similarity queries: the k catalogue products nearest a vector by cosine distance, each
by its product vector (`image_embeddings`, infra/migrations/0005_product_embeddings.sql: one per
catalogue image, its whole-product crop), one embedding model version at a time, optionally
filtered by the product's category and gender; and the stored vectors of a garment or of a
sighting's best view (`garment_embeddings`, 0003), to search from. Parameterised SQL only."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from sinks.errors import PostgresUnavailableError
from sinks.postgres import ConnectionFactory, ReconnectingConnection, vector_literal

# pgvector 0.6 filters after the HNSW scan: the scan keeps this many candidates per result
# asked for (at least EF_SEARCH_MIN), and a search left with fewer than k rows by its filters is
# run again as an exact scan
EF_SEARCH_PER_RESULT = 8
EF_SEARCH_MIN = 64
# a product may have several stored images (several photos, or tagged again by another
# tagger version): fetch more rows than k, keep each product's nearest
ROWS_PER_RESULT = 3

# Catalogue products by their product vector only: a garment's vector of a catalogue photo is
# never an answer (a model shot's trousers made a shirt product answer a trousers query). The
# match shows the photo's garment of the product's category (else its highest-scoring one) for
# its attributes, colour and style; None for a photo with no garment.
NEAREST = """
WITH hits AS (
    SELECT p.image_id, p.category, p.embedding <=> %(q)s::vector AS distance
    FROM image_embeddings p
    WHERE p.model_version = %(version)s
      AND (%(category)s::text IS NULL OR p.category = %(category)s::text)
      AND (%(gender)s::text IS NULL OR p.gender = %(gender)s::text)
    ORDER BY p.embedding <=> %(q)s::vector
    LIMIT %(rows)s
)
SELECT h.distance, g.id, h.category, g.attributes, g.colour_name, g.style,
       c.item_id, c.title, c.link, s.source_id, i.image_url
FROM hits h
JOIN images i ON i.id = h.image_id
JOIN catalogue_items c ON c.id = i.item_pk
JOIN sources s ON s.id = c.source_pk
LEFT JOIN LATERAL (
    SELECT g.id, g.attributes, g.colour_name, g.style
    FROM garments g
    WHERE g.image_id = h.image_id
    ORDER BY g.category = h.category DESC, g.score DESC, g.garment_index
    LIMIT 1
) g ON true
ORDER BY h.distance, h.image_id
"""

# the stored picture of each of some catalogue products (its newest tagged photo that has one)
PRODUCT_PICTURES = """
SELECT DISTINCT ON (s.source_id, c.item_id) s.source_id, c.item_id, t.jpeg
FROM unnest(%(feeds)s::text[], %(items)s::text[]) AS want (feed, item_id)
JOIN sources s ON s.kind = 'feed' AND s.source_id = want.feed
JOIN catalogue_items c ON c.source_pk = s.id AND c.item_id = want.item_id
JOIN images i ON i.item_pk = c.id
JOIN image_thumbnails t ON t.image_id = i.id
ORDER BY s.source_id, c.item_id, i.written_at DESC
"""

# a stored garment, its vector, and the catalogue product its photo shows (NULL: a camera's)
GARMENT = """
SELECT g.id, g.category, g.gender, e.model_version, e.embedding::text, NULL, s.source_id,
       c.item_id
FROM garments g
LEFT JOIN garment_embeddings e ON e.garment_id = g.id
JOIN images i ON i.id = g.image_id
LEFT JOIN catalogue_items c ON c.id = i.item_pk
LEFT JOIN sources s ON s.id = c.source_pk
WHERE g.id = %(id)s
"""

# a sighting's garments -> their best view's garment row (the newest tagging of that frame)
SIGHTING = """
SELECT DISTINCT ON (sg.garment_index)
       g.id, g.category, g.gender, e.model_version, e.embedding::text, sg.garment_index
FROM sightings si
JOIN sighting_garments sg ON sg.sighting_pk = si.id
JOIN images i ON i.event_id = sg.best_event_id
JOIN garments g ON g.image_id = i.id AND g.garment_index = sg.best_garment_index
LEFT JOIN garment_embeddings e ON e.garment_id = g.id
WHERE si.sighting_id = %(id)s::uuid
ORDER BY sg.garment_index, i.written_at DESC
"""


@dataclass(frozen=True)
class CatalogueMatch:
    """One catalogue product near a query (by its product vector), with the tags of its photo's
    garment of the product's category (`garment_id` None and no tags: no garment found)."""

    item_id: str
    feed: str
    title: str | None
    link: str | None
    image_url: str | None
    distance: float  # cosine distance, 0 = same direction, 2 = opposite
    garment_id: int | None
    category: str  # the product's (the classifier's category head on the product crop)
    attributes: Mapping[str, Mapping[str, Any]]  # head -> {label, prob}
    colour: str
    style: str

    def to_json(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "feed": self.feed,
            "title": self.title,
            "link": self.link,
            "image_url": self.image_url,
            "distance": round(self.distance, 6),
            "garment_id": self.garment_id,
            "category": self.category,
            "attributes": {k: dict(v) for k, v in self.attributes.items()},
            "colour": self.colour,
            "style": self.style,
        }


@dataclass(frozen=True)
class StoredGarment:
    """A garment row and its stored embedding (None when it has none)."""

    garment_id: int
    category: str
    gender: str | None
    model_version: str | None
    vector: tuple[float, ...] | None = field(default=None, repr=False)
    sighting_garment_index: int | None = None  # its index among its sighting's garments
    product: tuple[str, str] | None = None  # (feed, item id) when its photo is a catalogue one


class SimilarityIndex:
    """Reads over one Postgres connection (reopened after a failure); thread-safe."""

    def __init__(self, connect: ConnectionFactory) -> None:
        self._db = ReconnectingConnection(connect)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.drop()

    def nearest(
        self,
        vector: Sequence[float],
        *,
        model_version: str,
        k: int = 10,
        category: str | None = None,
        gender: str | None = None,
    ) -> list[CatalogueMatch]:
        """The k catalogue products nearest `vector` among product vectors of
        `model_version`, nearest first, one row per product (its nearest stored photo);
        `category` and `gender` filter on the product's own."""
        if not 1 <= k <= 1000:
            raise ValueError(f"k must be 1..1000, got {k}")
        if not model_version:
            raise ValueError("model_version is empty")
        params = {
            "q": vector_literal(vector),
            "version": model_version,
            "category": category,
            "gender": gender,
            "rows": k * ROWS_PER_RESULT,
        }
        ef_search = max(EF_SEARCH_MIN, EF_SEARCH_PER_RESULT * k * ROWS_PER_RESULT)
        rows = self._read(NEAREST, params, ef_search=ef_search)
        matches = _best_per_product(rows, k)
        if len(matches) < k:  # the filters left the index scan short: exact scan
            matches = _best_per_product(self._read(NEAREST, params, exact=True), k)
        return matches

    def index_used(
        self,
        vector: Sequence[float],
        *,
        model_version: str,
        k: int = 10,
        category: str | None = None,
    ) -> str:
        """How the planner scans for `nearest` (EXPLAIN): the HNSW index's name or "exact"."""
        params = {
            "q": vector_literal(vector),
            "version": model_version,
            "category": category,
            "gender": None,
            "rows": k * ROWS_PER_RESULT,
        }
        plan = " ".join(str(r[0]) for r in self._read("EXPLAIN " + NEAREST, params))
        if "image_embeddings_hnsw" in plan:
            return "image_embeddings_hnsw"
        return "exact" if "Seq Scan on image_embeddings" in plan else plan[:200]

    def product_pictures(self, products: Sequence[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
        """(feed, item id) -> the JPEG the sink kept of that product's photo, for those that
        have one."""
        if not products:
            return {}
        params = {"feeds": [f for f, _ in products], "items": [i for _, i in products]}
        rows = self._read(PRODUCT_PICTURES, params)
        return {(feed, item): bytes(jpeg) for feed, item, jpeg in rows}

    def garment(self, garment_id: int) -> StoredGarment | None:
        rows = self._read(GARMENT, {"id": garment_id})
        return _stored(rows[0]) if rows else None

    def sighting(self, sighting_id: str) -> list[StoredGarment]:
        """The garments of a sighting, each as its best view's garment row."""
        return [_stored(r) for r in self._read(SIGHTING, {"id": sighting_id})]

    def _read(
        self,
        query: str,
        params: Mapping[str, Any],
        *,
        ef_search: int | None = None,
        exact: bool = False,
    ) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                conn = self._db.get()
                with conn.cursor() as cur:
                    if ef_search is not None:
                        cur.execute("SET LOCAL hnsw.ef_search = %s", (int(ef_search),))
                    if exact:
                        cur.execute("SET LOCAL enable_indexscan = off")
                    cur.execute(query, params)
                    rows = list(cur.fetchall())
                conn.rollback()  # read-only: end the transaction, undo the SET LOCALs
                return rows
            except psycopg2.OperationalError as exc:
                self._db.drop()
                raise PostgresUnavailableError(f"similarity search failed: {exc}") from exc
            except psycopg2.Error:
                self._db.drop()
                raise


def _best_per_product(rows: Sequence[tuple[Any, ...]], k: int) -> list[CatalogueMatch]:
    seen: set[tuple[str, str]] = set()
    out: list[CatalogueMatch] = []
    for distance, gid, category, attributes, colour, style, item, title, link, feed, url in rows:
        if (feed, item) in seen:
            continue
        seen.add((feed, item))
        out.append(
            CatalogueMatch(
                item_id=item,
                feed=feed,
                title=title,
                link=link,
                image_url=url,
                distance=float(distance),
                garment_id=None if gid is None else int(gid),
                category=category,
                attributes=attributes or {},
                colour=colour or "",
                style=style or "",
            )
        )
        if len(out) == k:
            break
    return out


def _stored(row: tuple[Any, ...]) -> StoredGarment:
    gid, category, gender, version, text, *rest = row
    vector = None if text is None else tuple(float(v) for v in text.strip("[]").split(","))
    index = rest[0] if rest else None
    feed, item = rest[1:3] if len(rest) >= 3 else (None, None)
    return StoredGarment(
        int(gid),
        category,
        gender,
        version,
        vector,
        None if index is None else int(index),
        None if feed is None or item is None else (str(feed), str(item)),
    )
