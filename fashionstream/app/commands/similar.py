"""Visual similarity ("shop the look"): `fashionstream similar`, `train embedding`,
`eval similar`, `bench similar` and `data split-catalogue`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from fashionstream.app.commands import Commands
from fashionstream.app.extras import needs_training_stack
from fashionstream.core.settings import REPO_ROOT, Settings

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_WEIGHTS = REPO_ROOT / "weights"


def register(
    commands: Commands, train: Commands, evaluate: Commands, bench: Commands, data: Commands
) -> None:
    """Adds `similar`, `train embedding`, `eval similar`, `bench similar`, `data
    split-catalogue`."""
    t = train.add_parser(
        "embedding",
        help="train the appearance embedding head (visual similarity)",
        description="Caches the attribute network's pooled features of every catalogue photo "
        "and CCP garment (resumable), trains the projection head on the catalogue photos and "
        "CCP garments outside the attribute model's held-out splits, measures held-out "
        "retrieval for the raw pooled features, the head alone and the head guided by the "
        "attribute network's articleType prediction (weight and temperature chosen on a "
        "validation share of the training items), and ships the head "
        "(weights/embedding_type_guided.pt and the manifest entry `embedding`).",
    )
    t.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a shared/data folder")
    t.add_argument(
        "--out", type=Path, default=Path("runs/embedding"), help="feature cache, checkpoint"
    )
    t.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument(
        "--dim",
        type=int,
        default=256,
        help="embedding size (the schema stores vector(256): another size needs a migration)",
    )
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    t.add_argument("--no-street", action="store_true", help="skip the CCP street figures")
    t.set_defaults(func=_train)

    s = commands.add_parser(
        "similar",
        help="catalogue products that look like the garments of a photo, garment or sighting",
        description="Detects the garments of IMAGE (a file or an http(s) URL, fetched with the "
        "pipeline's SSRF guard and limits) and prints, for each, the k nearest catalogue "
        "products stored in Postgres (same embedding model version only); or searches from a "
        "stored garment (--garment) or from each garment of a sighting's best view (--sighting).",
    )
    query = s.add_mutually_exclusive_group(required=True)
    query.add_argument("image", nargs="?", help="an image file or an http(s) URL")
    query.add_argument("--garment", type=int, help="a garments.id")
    query.add_argument("--sighting", help="a sightings.sighting_id (UUID)")
    s.add_argument("--k", type=int, default=10, help="products per garment (1..100)")
    s.add_argument("--category", help="only products of this garment category (e.g. top)")
    s.add_argument("--gender", help="only products of this gender (e.g. Women)")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.set_defaults(func=_similar)

    e = evaluate.add_parser(
        "similar",
        help="precision@k of catalogue retrieval with the shipped embedding",
        description="Embeds every photo of --index and --queries (catalogue layout: "
        "styles.csv + images/<id>.jpg) as the tagger does a catalogue product shot (the "
        "attribute classifier's crop of the product mask, its forward giving the embedding; "
        "--embed tagger: what the pipeline stores and searches, the whole tagger, detector "
        "first: an index photo by its product vector, a query photo by its garment of the "
        "product's own category, else its largest) "
        "and prints precision@k of the k nearest index photos by cosine distance: same "
        "articleType, and same articleType and baseColour. --ccp DIR adds street queries: "
        "the held-out CCP garment regions, relevant = same garment category.",
    )
    e.add_argument("--index", type=Path, required=True, help="catalogue-layout folder searched")
    e.add_argument("--queries", type=Path, required=True, help="catalogue-layout query folder")
    e.add_argument("--ccp", type=Path, help="a CCP folder (street/ccp) for the street figure")
    e.add_argument("--k", type=int, default=10)
    e.add_argument("--embed", choices=("crop", "tagger"), default="crop")
    e.add_argument("--limit", type=int, help="only the first N queries (smoke runs)")
    e.add_argument(
        "--index-limit", type=int, help="only the first N index photos (--embed tagger runs)"
    )
    e.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    e.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_eval)

    b = bench.add_parser(
        "similar",
        help="similarity search latency at 10k and 100k stored vectors (embedded Postgres)",
        description="Starts a private embedded Postgres (migrated: pgvector, HNSW), stores "
        "catalogue vectors through the real sink - the shipped embeddings of the real "
        "catalogue photos, then copies of them with Gaussian noise up to each size - and "
        "times k-nearest searches from held-out catalogue and street (CCP) queries, with "
        "recall against an exact search.",
    )
    b.add_argument("--sizes", default="10000,100000", help="stored vectors, comma-separated")
    b.add_argument("--queries", type=int, default=200, help="query vectors")
    b.add_argument("--k", type=int, default=10)
    b.add_argument("--noise", type=float, default=0.5, help="norm of the noise of the copies")
    b.add_argument("--features", type=Path, default=Path("runs/embedding"), help="feature cache")
    b.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_bench)

    d = data.add_parser(
        "split-catalogue",
        help="held-out and rest folders of a catalogue (symlinks), for eval similar",
        description="Writes OUT/held_out and OUT/rest, each styles.csv + images/ of symlinks "
        "to the photos, split by the attribute model's held-out rule (sha256 of the id), so "
        "`eval similar --index OUT/rest --queries OUT/held_out` measures on photos neither "
        "model trained on.",
    )
    d.add_argument("--products", type=Path, default=DEFAULT_DATA / "products")
    d.add_argument("--out", type=Path, required=True)
    d.set_defaults(func=_split)


@needs_training_stack("train embedding")
def _train(settings: Settings, args: argparse.Namespace) -> int:
    import logging
    import platform

    import torch

    from models import weights as W
    from models.attributes.classifier import AttributeClassifier
    from models.attributes.data import DataLayout
    from models.embedding import features as F
    from models.embedding import guidance as G
    from models.embedding.evaluate import unit
    from models.embedding.figures import held_out_figures
    from models.embedding.head import GUIDING_HEAD
    from models.embedding.train import TrainConfig, ship, train_head

    logging.getLogger("models.embedding").setLevel(logging.INFO)
    torch.set_num_threads(max(1, args.threads))
    started = time.monotonic()
    attributes = W.entry(args.weights, W.ATTRIBUTES_ENTRY)
    # pooled features of the attribute network alone (a shipped head may be stale)
    classifier = AttributeClassifier.from_weights(args.weights, with_embedding=False)
    network = classifier.network
    type_labels = classifier.heads[GUIDING_HEAD]
    layout = DataLayout(args.data)
    cache = args.out / f"features-{attributes.sha256[:12]}"
    catalogue = F.extract(layout, classifier, cache / "catalogue", sources=("catalogue",))
    street = None
    if not args.no_street:
        street = F.extract(layout, classifier, cache / "ccp", sources=("ccp",))
    config = TrainConfig(dim=args.dim, epochs=args.epochs)
    train_set = catalogue.where(lambda i: not i.held_out)
    if street is not None:
        train_set = train_set.joined(street.where(lambda i: not i.held_out))
    # the guidance is chosen for a head that has not seen the validation items
    fit, validation = G.validation_split(train_set)
    probe = train_head(fit, config, checkpoint=args.out / f"head-{args.dim}d-fit.pt")
    choice = G.choose_guidance(network, type_labels, probe, fit, validation)
    head = train_head(train_set, config, checkpoint=args.out / f"head-{args.dim}d.pt")
    figures = {
        "raw_pooled_features": held_out_figures(catalogue, street, unit),
        "head_unguided": held_out_figures(catalogue, street, lambda x: G.embed(network, head, x)),
    }
    if choice.guidance.weight:
        head.guide(G.type_centres(head, train_set, type_labels), choice.guidance)
    figures["head"] = held_out_figures(catalogue, street, lambda x: G.embed(network, head, x))
    command = "fashionstream train embedding " + " ".join(shlex.quote(a) for a in sys.argv[3:] if a)
    entry = ship(
        head,
        args.weights,
        attributes_version=attributes.version,
        metrics={"held_out": figures},
        training={
            "data": "catalogue photos of ../shared/data/products and CCP garment regions "
            "of ../shared/data/street/ccp outside the attribute model's held-out splits "
            "(models/attributes/data.py); weak labels articleType, baseColour, "
            "articleType+baseColour, usage, gender, category",
            "loss": "normalised-softmax (cosine classifier) per weak label, weights "
            + json.dumps(config.targets),
            "config": {k: v for k, v in config.__dict__.items() if k != "targets"},
            "guidance_validation": {
                "items": {"fit": len(fit.items), "validation": len(validation.items)},
                "chosen": {
                    "weight": choice.guidance.weight,
                    "temperature": choice.guidance.temperature,
                },
                "tried": choice.table,
            },
            "command": command.strip(),
            "duration_s": round(time.monotonic() - started, 1),
            "machine": f"{platform.machine()} {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}",
        },
    )
    print(json.dumps({"file": entry.file, "version": entry.version, "metrics": figures}, indent=2))
    return 0


def _split(settings: Settings, args: argparse.Namespace) -> int:
    import csv

    from models.attributes import data as D

    rows = D.read_styles(args.products)
    with (args.products / "styles.csv").open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    counts = {}
    for name, held in (("held_out", True), ("rest", False)):
        folder = args.out / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        chosen = [r for r in rows if D.is_held_out(r["id"], D.CATALOGUE_HELD_OUT) == held]
        with (folder / "styles.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(chosen)
        for r in chosen:
            link = folder / "images" / f"{r['id']}.jpg"
            if not link.is_symlink():
                link.symlink_to((args.products / "images" / f"{r['id']}.jpg").resolve())
        counts[name] = len(chosen)
    print(json.dumps({"out": str(args.out), **counts}))
    return 0


@needs_training_stack("eval similar")
def _eval(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np
    import torch

    from models.attributes import data as D
    from models.attributes import labels as L
    from models.attributes.classifier import AttributeClassifier
    from models.embedding import features as F
    from models.embedding.evaluate import nearest_products, product_figures

    torch.set_num_threads(max(1, args.threads))
    index_rows = D.read_styles(args.index)[: args.index_limit]
    query_rows = D.read_styles(args.queries)[: args.limit]
    labels = lambda rows: [{k: (r.get(k) or "").strip() or None for k in r} for r in rows]  # noqa: E731
    started = time.monotonic()
    # every photo gives vectors, each owned by its photo's row: one per photo for the crop
    # path; for the tagger path, what the pipeline stores and searches on the index side (a
    # catalogue photo's product vector) and one per garment found on the query side
    Embedded = tuple[np.ndarray, np.ndarray, list[str | None], list[int]]
    query_products: dict[int, np.ndarray] = {}  # query row -> its product vector (--embed tagger)
    if args.embed == "crop":
        classifier = AttributeClassifier.from_weights(args.weights)
        version = classifier.embedding_version

        def embed(folder: Path, rows: list[dict[str, str]], catalogue: bool = False) -> Embedded:
            """Index and query photos alike: their product crop."""
            vectors = F.catalogue_embeddings(
                classifier,
                folder,
                [r["id"] for r in rows],
                progress=lambda n: _progress(f"embedding {folder}", n, len(rows)),
            )
            return vectors, np.arange(len(rows)), [None] * len(rows), [1] * len(rows)
    else:
        from fashionstream.app.similar import decode_like_the_pipeline
        from models.tagger import FashionTagger

        tagger = FashionTagger.from_settings(
            dataclasses.replace(settings, torch_threads=args.threads)
        )
        version = tagger.embedding_version

        def embed(folder: Path, rows: list[dict[str, str]], catalogue: bool = False) -> Embedded:
            """`catalogue`: the index side, as the pipeline stores a feed photo (its product
            vector, what the search compares); else the query side, as `fashionstream similar`
            tags a photo (its garments). Query photos are tagged as catalogue photos too (their
            garments are the same; the product crop is one more crop of the call), so that
            their stored product vectors can query as well (`product_queries`)."""
            vectors, owners, areas = [], [], []
            categories: list[str | None] = []
            for n, r in enumerate(rows, 1):
                # the photo as the pipeline would fetch, resize and decode it
                data = (folder / "images" / f"{r['id']}.jpg").read_bytes()
                (tags,) = tagger.tag([decode_like_the_pipeline(data, settings)], catalogue=[True])
                if n % 100 == 0:
                    _progress(f"tagging {folder}", n, len(rows))
                if tags.product is not None and not catalogue:
                    query_products[n - 1] = tags.product.embedding.vector
                if catalogue:
                    if tags.product is not None:
                        vectors.append(tags.product.embedding.vector)
                        owners.append(n - 1)
                        categories.append(tags.product.category)
                        areas.append(1)
                    continue
                for g in tags.garments:
                    if g.embedding is not None:
                        vectors.append(g.embedding.vector)
                        owners.append(n - 1)
                        categories.append(g.category)
                        areas.append(g.mask.area())
            return np.stack(vectors), np.asarray(owners), categories, areas

    def query_rows_of(
        rows: list[dict[str, str]], embedded: Embedded
    ) -> tuple[list[int], list[int]]:
        """Per photo with a vector, the one that queries: the garment of the product's own
        category (the largest such), else its largest garment."""
        _, owners, categories, areas = embedded
        picked, photos = [], []
        for row, r in enumerate(rows):
            mine = [i for i in range(len(owners)) if owners[i] == row]
            if not mine:
                continue  # the tagger found nothing: no query
            product = L.catalogue_heads(r).get("category")
            same = [i for i in mine if categories[i] in (None, product)] or mine
            picked.append(max(same, key=lambda i: areas[i]))
            photos.append(row)
        return picked, photos

    index_embedded = embed(args.index, index_rows, catalogue=True)
    query_embedded = embed(args.queries, query_rows)
    picked, photos = query_rows_of(query_rows, query_embedded)
    neighbours = nearest_products(
        query_embedded[0][picked], index_embedded[0], index_embedded[1], len(index_rows), args.k
    )
    figures = product_figures(
        neighbours, labels([query_rows[i] for i in photos]), labels(index_rows)
    )
    report: dict[str, Any] = {
        f"precision_at_{args.k}": figures,
        "queries": len(photos),
        "queries_without_garment": len(query_rows) - len(photos),
        "index": len(index_rows),
        "index_vectors": len(index_embedded[0]),
        "embed": args.embed,
        "embedding_version": version,
    }
    if query_products:
        # the same index queried by each query photo's own stored product vector (a catalogue
        # product's "more like this"), not by one of its garments
        rows_with = sorted(query_products)
        by_product = nearest_products(
            np.stack([query_products[i] for i in rows_with]),
            index_embedded[0],
            index_embedded[1],
            len(index_rows),
            args.k,
        )
        report[f"precision_at_{args.k}_product_queries"] = product_figures(
            by_product, labels([query_rows[i] for i in rows_with]), labels(index_rows)
        )
        report["product_queries"] = len(rows_with)
    if args.ccp is not None:
        classifier = AttributeClassifier.from_weights(args.weights)
        crops, street_labels = [], []
        for item, image, mask in D.ccp_items(args.ccp):
            if item.held_out and "category" in item.labels:
                crops.append(F.region_crop(classifier, image, mask))
                street_labels.append(dict(item.labels))
        street = np.concatenate(
            [F.embeddings(classifier, crops[i : i + 64]) for i in range(0, len(crops), 64)]
        )
        # the catalogue's garment category, from its articleType as the attribute model maps it
        index_category = [L.catalogue_heads(r) for r in index_rows]
        street_neighbours = nearest_products(
            street, index_embedded[0], index_embedded[1], len(index_rows), args.k
        )
        report[f"street_precision_at_{args.k}"] = product_figures(
            street_neighbours, street_labels, index_category, {"category": ("category",)}
        )
        report["street_queries"] = len(crops)
    report["duration_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


def _progress(what: str, done: int, total: int) -> None:
    print(f"{what}: {done}/{total}", file=sys.stderr, flush=True)


@needs_training_stack("bench similar")
def _bench(settings: Settings, args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from fashionstream.app.bench_similar import BenchVectors, run
    from models import weights as W
    from models.attributes.classifier import AttributeClassifier
    from models.embedding import features as F
    from models.embedding import guidance as G

    torch.set_num_threads(2)
    attributes = W.entry(args.weights, W.ATTRIBUTES_ENTRY)
    classifier = AttributeClassifier.from_weights(args.weights)
    if classifier.embedding is None:
        print("fashionstream bench similar: no embedding head is shipped", file=sys.stderr)
        return 2
    head, version = classifier.embedding, classifier.embedding_version
    embed = lambda features: G.embed(classifier.network, head, features)  # noqa: E731
    cache = args.features / f"features-{attributes.sha256[:12]}"
    if not (cache / "catalogue" / "items.json").is_file():
        print(
            f"fashionstream bench similar: no feature cache in {cache}: run "
            "`fashionstream train embedding` first (it writes it)",
            file=sys.stderr,
        )
        return 2
    catalogue = F.load(cache / "catalogue")
    rest = catalogue.where(lambda i: not i.held_out)
    queries = [catalogue.where(lambda i: i.held_out)]
    if (cache / "ccp" / "items.json").is_file():
        queries.append(F.load(cache / "ccp").where(lambda i: i.held_out))
    rng = np.random.default_rng(0)
    query_features = np.concatenate([q.features for q in queries])
    pick = rng.choice(len(query_features), min(args.queries, len(query_features)), replace=False)
    vectors = BenchVectors(
        stored=embed(rest.features),
        categories=[i.labels.get("category", "other") for i in rest.items],
        queries=embed(query_features[pick]),
        version=version,
    )
    sizes = [int(s) for s in args.sizes.split(",") if s]
    report = run(
        settings,
        vectors,
        sizes,
        k=args.k,
        noise=args.noise,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(json.dumps(report, indent=2) if args.json else report)
    return 0


def _similar(settings: Settings, args: argparse.Namespace) -> int:
    from fashionstream.app.similar import SimilarError, SimilarSearch
    from fashionstream.core.errors import PipelineError

    search = SimilarSearch.from_settings(settings)
    try:
        if args.garment is not None:
            result = search.for_garment(args.garment, args.k, args.category, args.gender)
        elif args.sighting is not None:
            result = search.for_sighting(args.sighting, args.k, args.category, args.gender)
        elif args.image.startswith(("http://", "https://")):
            result = search.for_url(args.image, args.k, args.category, args.gender)
        else:
            path = Path(args.image)
            if not path.is_file():
                print(f"fashionstream similar: {path}: no such file", file=sys.stderr)
                return 2
            result = search.for_image(path.read_bytes(), args.k, args.category, args.gender)
    except (SimilarError, PipelineError) as exc:
        print(f"fashionstream similar: {exc}", file=sys.stderr)
        return 1
    finally:
        search.close()
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(f"embedding {result.embedding_version}, k={result.k}")
    if not result.garments:
        print("no garment found")
    for found in result.garments:
        g = found.garment
        where = f"garment {g.index}" if g.garment_id is None else f"garment id {g.garment_id}"
        print(f"\n{where}: {g.category}")
        if not found.matches:
            print("  no catalogue product stored with this embedding version")
        for rank, m in enumerate(found.matches, 1):
            title = m.title or "-"
            print(
                f"  {rank:>2}. {m.distance:.3f}  {m.feed}/{m.item_id}  {m.category:<9} "
                f"{m.attributes.get('articleType', {}).get('label', '-'):<14} {m.colour:<10} "
                f"{title[:40]}  {m.link or ''}"
            )
    return 0
