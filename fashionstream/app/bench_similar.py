"""`fashionstream bench similar`: query latency of the visual-similarity search at growing
numbers of stored catalogue vectors, in a private embedded Postgres (pgvector HNSW, the real
schema), written through the real sink.

Stored vectors: the shipped embeddings of real catalogue photos; beyond their number, copies of
them with Gaussian noise (norm `noise` before re-normalising, so a copy keeps a cosine of about
1/sqrt(1 + noise^2) to its original) - the measured distribution, not uniform random vectors.
Queries: held-out catalogue photos and CCP street garments. Recall@k: the share of the exact
(numpy, brute force) k nearest products that the HNSW search returned.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionstream.core.metrics import Metrics
from fashionstream.core.records import SourceKind, TaggedImage, WireEmbedding, WireLabel
from fashionstream.core.settings import Settings

FEED = "bench-similar"
WRITE_BATCH = 500


@dataclass(frozen=True)
class BenchVectors:
    stored: np.ndarray  # (M, D) real unit vectors, grown with noisy copies as needed
    categories: Sequence[str]
    queries: np.ndarray  # (Q, D)
    version: str


@contextlib.contextmanager
def private_postgres(settings: Settings) -> Iterator[str]:
    """A migrated Postgres in a temporary folder on a free loopback port; its URL."""
    from infra.migrate import migrate
    from infra.postgres import Endpoint, LocalPostgres
    from infra.processes import free_port

    root = Path(tempfile.mkdtemp(prefix="fashionstream-bench-similar-"))
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/bench_similar"
    pg = LocalPostgres(
        endpoint=Endpoint.parse(url), root=root / "postgres", log_file=root / "pg.log"
    )
    try:
        pg.start(120.0)
        pg.ensure_database(30.0)
        migrate(url, 60.0)
        yield url
    finally:
        try:
            pg.stop(60.0)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def grown(vectors: np.ndarray, n: int, noise: float, seed: int = 0) -> np.ndarray:
    """`n` unit vectors: the real ones first, then noisy copies of them."""
    if n <= len(vectors):
        return vectors[:n]
    rng = np.random.default_rng(seed)
    extra = vectors[rng.integers(0, len(vectors), n - len(vectors))]
    d = vectors.shape[1]
    extra = extra + noise * rng.normal(size=extra.shape).astype(np.float32) / np.sqrt(d)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.concatenate([vectors, extra.astype(np.float32)])


def _record(row: int, vector: np.ndarray, category: str, version: str) -> TaggedImage:
    from fashionstream.core.records import WireColour, WireGarment, WireMask, WireProduct

    mask = WireMask(size=(80, 60), counts="PPYo1k0O2N1O1N2")
    garment = WireGarment(
        index=0,
        category=category,
        score=0.9,
        box=(0.0, 0.0, 60.0, 80.0),
        mask=mask,
        attributes={"gender": WireLabel("Women", 0.9)},
        probabilities={"gender": {"Women": 0.9, "Men": 0.1}},
        colour=WireColour("Blue", (10, 20, 200), 0.5),
        style=WireLabel("Casual", 0.8),
        person_index=None,
        embedding=WireEmbedding.encode(version, vector.tolist()),
    )
    # what the tagger stores for a catalogue photo: its garment's vector and its product's,
    # the one a search compares (here the same vector)
    product = WireProduct(category, "Women", WireEmbedding.encode(version, vector.tolist()))
    return TaggedImage(
        event_id=f"00000000-0000-4000-8000-{row:012d}",
        source_kind=SourceKind.FEED,
        source_id=FEED,
        captured_at=1.7e9,
        submitted_at=1.7e9,
        width=60,
        height=80,
        model_version="bench",
        timings={},
        garments=(garment,),
        people=(),
        item_id=f"b{row}",
        product=product,
    )


def run(
    settings: Settings,
    vectors: BenchVectors,
    sizes: Sequence[int],
    *,
    k: int = 10,
    noise: float = 0.5,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from fashionstream.core.settings import Settings as S
    from sinks.postgres import PostgresSink, connection_factory
    from sinks.similar import SimilarityIndex

    out: dict[str, Any] = {
        "k": k,
        "noise": noise,
        "queries": len(vectors.queries),
        "embedding_version": vectors.version,
        "sizes": {},
    }
    stored = grown(vectors.stored, max(sizes), noise)
    cats = [vectors.categories[i % len(vectors.categories)] for i in range(len(stored))]
    with private_postgres(settings) as url:
        local = S.from_env(environ={}, database_url=url)
        sink = PostgresSink.from_settings(
            local, Metrics(CollectorRegistry(), process_metrics=False)
        )
        index = SimilarityIndex(connection_factory(local, "bench-similar"))
        written = 0
        try:
            for size in sorted(sizes):
                started = time.monotonic()
                while written < size:
                    for row in range(written, min(size, written + WRITE_BATCH)):
                        sink.add(_record(row, stored[row], cats[row], vectors.version))
                    sink.flush()
                    written = min(size, written + WRITE_BATCH)
                    if written % 10_000 == 0:
                        rate = written / max(time.monotonic() - started, 1e-9)
                        say(f"bench similar: {written} vectors stored ({rate:.0f}/s this size)")
                write_s = time.monotonic() - started
                _analyse(url)  # what autovacuum does after a bulk load
                out["sizes"][str(size)] = _measure(index, stored[:size], cats[:size], vectors, k)
                out["sizes"][str(size)]["write_s"] = round(write_s, 1)
                say(f"bench similar: {size}: {out['sizes'][str(size)]}")
        finally:
            index.close()
            sink.close()
    return out


def _analyse(url: str) -> None:
    import psycopg2

    with contextlib.closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE garment_embeddings")
            cur.execute("ANALYZE image_embeddings")


def _measure(
    index: Any, stored: np.ndarray, cats: Sequence[str], vectors: BenchVectors, k: int
) -> dict[str, Any]:
    from models.embedding.evaluate import nearest

    exact = nearest(vectors.queries, stored, k)
    latencies, filtered, recalls = [], [], []
    for q, truth in zip(vectors.queries, exact, strict=True):
        started = time.perf_counter()
        found = index.nearest(q.tolist(), model_version=vectors.version, k=k)
        latencies.append(time.perf_counter() - started)
        got = {int(m.item_id[1:]) for m in found}
        recalls.append(len(got & {int(j) for j in truth}) / k)
        started = time.perf_counter()
        index.nearest(q.tolist(), model_version=vectors.version, k=k, category=cats[int(truth[0])])
        filtered.append(time.perf_counter() - started)
    probe = vectors.queries[0].tolist()
    return {
        "index_used": index.index_used(probe, model_version=vectors.version, k=k),
        "category_filter_index_used": index.index_used(
            probe, model_version=vectors.version, k=k, category=cats[int(exact[0][0])]
        ),
        "latency_ms_p50": round(1000 * float(np.median(latencies)), 2),
        "latency_ms_p95": round(1000 * float(np.percentile(latencies, 95)), 2),
        "category_filter_latency_ms_p50": round(1000 * float(np.median(filtered)), 2),
        "category_filter_latency_ms_p95": round(1000 * float(np.percentile(filtered, 95)), 2),
        f"recall_at_{k}": round(float(np.mean(recalls)), 4),
    }
