"""Scoring the attribute classifier on labelled photos, always through the shipped classifier's
own `prepare` + `predict` (the path the tagger uses), never through training shortcuts.

Counting rules (`evaluate_products`):
- a head is scored on the items whose styles.csv cell for it is filled and is one of the head's
  labels: accuracy, and macro F1 over every label that occurs among those items' truths or
  predictions;
- `unknown` counts (item, head) pairs whose cell is filled with a label the head has no output
  for (a rare article type, the usage "Home", ...): they are not scored. Empty and "NA" cells
  are neither scored nor unknown;
- `category` is scored too, its truth derived from articleType by labels.ARTICLE_TO_CATEGORY
  (products whose type has no detector category are left out of it, not counted unknown).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from models import camera_look
from models.attributes import data as D
from models.attributes import labels as L
from models.attributes.calibration import TARGET_PRECISION, calibrate_head
from models.attributes.classifier import AttributeClassifier
from models.attributes.crop import Box, product_mask
from models.colour import read_colour

log = logging.getLogger(__name__)
T = TypeVar("T")
Progress = Callable[[Iterable[T], str, int | None], Iterator[T]]


def _no_progress(items: Iterable[T], _desc: str, _total: int | None) -> Iterator[T]:
    yield from items


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over the labels in truth or predictions (0 when empty)."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} truths but {len(predicted)} predictions")
    labels = sorted(set(truth) | set(predicted))
    if not labels:
        return 0.0
    t, p = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    scores = []
    for label in labels:
        tp = float(np.sum((t == label) & (p == label)))
        fp = float(np.sum((t != label) & (p == label)))
        fn = float(np.sum((t == label) & (p != label)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def head_score(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    n = len(truth)
    hits = sum(a == b for a, b in zip(truth, predicted, strict=True))
    return {
        "accuracy": round(hits / n, 4) if n else 0.0,
        "macro_f1": round(macro_f1(truth, predicted), 4),
        "n": n,
    }


Crop = tuple[np.ndarray, Box | None, np.ndarray | None]


def predict_top(
    classifier: AttributeClassifier,
    crops: Iterable[Crop],
    batch_size: int = 64,
) -> Iterator[dict[str, str]]:
    """{head: top label} per (image, box, mask), in order, predicted in batches."""
    batch: list[np.ndarray] = []

    def flush() -> Iterator[dict[str, str]]:
        for probs in classifier.predict(batch):
            yield {h: classifier.heads[h][int(np.argmax(p))] for h, p in probs.items()}
        batch.clear()

    for image, box, mask in crops:
        batch.append(classifier.prepare(image, box, mask))
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()


def score_catalogue(
    classifier: AttributeClassifier,
    rows: Sequence[Mapping[str, str]],
    predictions: Sequence[Mapping[str, str]],
) -> dict[str, Any]:
    """The --products report for styles.csv rows and their predictions (see module doc)."""
    heads = [h for h in L.CATALOGUE_HEADS if h in classifier.heads]
    truth: dict[str, list[str]] = {h: [] for h in [*heads, "category"]}
    predicted: dict[str, list[str]] = {h: [] for h in truth}
    unknown = 0
    for row, pred in zip(rows, predictions, strict=True):
        for head in heads:
            value = row.get(head, "").strip()
            if value in L.MISSING:
                continue
            if value not in classifier.heads[head]:
                unknown += 1
                continue
            truth[head].append(value)
            predicted[head].append(pred[head])
        article = row.get("articleType", "").strip()
        if "category" in classifier.heads and article in L.ARTICLE_TO_CATEGORY:
            truth["category"].append(L.ARTICLE_TO_CATEGORY[article])
            predicted["category"].append(pred["category"])
    return {
        "heads": {h: head_score(truth[h], predicted[h]) for h in truth if truth[h]},
        "unknown": unknown,
    }


def evaluate_products(
    classifier: AttributeClassifier,
    products_dir: Path,
    *,
    rows: Sequence[Mapping[str, str]] | None = None,
    batch_size: int = 64,
    progress: Progress[Any] = _no_progress,
) -> dict[str, Any]:
    """`fashionstream eval attributes --products DIR`: each whole photo classified (no box, no
    mask, as the tagger does for a single-product photo). Rows without a photo are skipped."""
    if rows is None:
        listed = D.read_styles(products_dir, require_image=False)
        chosen: Sequence[Mapping[str, str]] = D.read_styles(products_dir)
        if len(chosen) < len(listed):
            log.warning(
                "%d of %d styles.csv rows have no images/<id>.jpg: skipped",
                len(listed) - len(chosen),
                len(listed),
            )
    else:
        chosen = rows
    crops = (
        (D.catalogue_image(products_dir, r["id"]), None, None)
        for r in progress(chosen, "classify products", len(chosen))
    )
    predictions = list(predict_top(classifier, crops, batch_size))
    return score_catalogue(classifier, chosen, predictions)


def evaluate_folders(
    classifier: AttributeClassifier,
    folder: Path,
    *,
    batch_size: int = 64,
    progress: Progress[Any] = _no_progress,
) -> dict[str, Any]:
    """`fashionstream eval attributes --folders DIR`: DIR/<class>/*.jpg, whole photos, scored
    by the `clothing` head (its labels are the clothing-small classes, no mapping needed)."""
    if "clothing" not in classifier.heads:
        raise ValueError("this model has no `clothing` head to score clothing-small classes")
    files = list(D.clothing_files(folder))
    crops = (
        (D.read_rgb(path), None, None) for _, path in progress(files, "classify photos", len(files))
    )
    predictions = [p["clothing"] for p in predict_top(classifier, crops, batch_size)]
    truth = [cls for cls, _ in files]
    per_class: dict[str, dict[str, Any]] = {}
    for cls in sorted(set(truth)):
        picked = [p for t, p in zip(truth, predictions, strict=True) if t == cls]
        per_class[cls] = {
            "accuracy": round(sum(p == cls for p in picked) / len(picked), 4),
            "n": len(picked),
        }
    n = len(truth)
    hits = sum(t == p for t, p in zip(truth, predictions, strict=True))
    return {"accuracy": round(hits / n, 4) if n else 0.0, "n": n, "per_class": per_class}


def _ccp_region_crops(
    ccp_dir: Path, ids: Sequence[str]
) -> Iterator[tuple[Mapping[str, str], np.ndarray, Box, np.ndarray]]:
    names = D.read_ccp_labels(ccp_dir)
    for image_id in ids:
        image, label_map = D.ccp_photo(ccp_dir, image_id)
        for _, heads, mask in D.ccp_regions(label_map, names):
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            box = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
            yield heads, image, box, mask


def evaluate_ccp(
    classifier: AttributeClassifier,
    ccp_dir: Path,
    ids: Sequence[str],
    *,
    batch_size: int = 64,
    progress: Progress[Any] = _no_progress,
) -> dict[str, Any]:
    """CCP garment regions (box + mask, the tagger's path) scored on every head CCP labels,
    plus the colour head's agreement with the pixel colour of the region."""
    regions = list(_ccp_region_crops(ccp_dir, ids))
    crops = ((image, box, mask) for _, image, box, mask in regions)
    predictions = list(
        predict_top(classifier, progress(crops, "classify CCP regions", len(regions)), batch_size)
    )
    truth: dict[str, list[str]] = {}
    predicted: dict[str, list[str]] = {}
    for (heads, *_), pred in zip(regions, predictions, strict=True):
        for head, value in heads.items():
            if head in classifier.heads and value in classifier.heads[head]:
                truth.setdefault(head, []).append(value)
                predicted.setdefault(head, []).append(pred[head])
    agree = [
        read_colour(image, mask).name == pred.get("baseColour")
        for (_, image, _, mask), pred in zip(regions, predictions, strict=True)
    ]
    return {
        "heads": {h: head_score(truth[h], predicted[h]) for h in L.HEAD_NAMES if h in truth},
        "regions": len(regions),
        "photos": len(ids),
        "colour_head_vs_pixels": _rate(agree),
    }


def colour_agreement_catalogue(
    classifier: AttributeClassifier,
    products_dir: Path,
    rows: Sequence[Mapping[str, str]],
    *,
    batch_size: int = 64,
    progress: Progress[Any] = _no_progress,
) -> dict[str, Any]:
    """On catalogue photos: how often the colour head (whole photo) and the pixel colour of the
    product mask (non-white pixels) name the same colour, and how often each matches the
    catalogue's baseColour."""
    images = [
        D.catalogue_image(products_dir, r["id"])
        for r in progress(rows, "colour: read products", len(rows))
    ]
    heads = list(predict_top(classifier, ((im, None, None) for im in images), batch_size))
    pixels = [read_colour(im, product_mask(im)).name for im in images]
    truth = [r.get("baseColour", "").strip() for r in rows]
    labelled = [i for i, t in enumerate(truth) if t not in L.MISSING]
    return {
        "n": len(rows),
        "head_vs_pixels": _rate([h["baseColour"] == p for h, p in zip(heads, pixels, strict=True)]),
        "head_vs_catalogue": _rate([heads[i]["baseColour"] == truth[i] for i in labelled]),
        "pixels_vs_catalogue": _rate([pixels[i] == truth[i] for i in labelled]),
    }


def _rate(hits: Sequence[bool]) -> float:
    return round(float(np.mean(hits)), 4) if hits else 0.0


def held_out_metrics(
    classifier: AttributeClassifier,
    layout: D.DataLayout,
    *,
    progress: Progress[Any] = _no_progress,
) -> dict[str, Any]:
    """Every figure the manifest and model card report, on this project's held-out splits."""
    rows = D.read_styles(layout.products)
    held_rows = [r for r in rows if D.is_held_out(r["id"], D.CATALOGUE_HELD_OUT)]
    ccp_ids = [i for i in D.ccp_ids(layout.ccp) if D.is_held_out(i, D.CCP_HELD_OUT)]
    catalogue = evaluate_products(classifier, layout.products, rows=held_rows, progress=progress)
    # the published anchor's definition: the 20 article types with the most training photos
    counts = Counter(
        r["articleType"] for r in rows if not D.is_held_out(r["id"], D.CATALOGUE_HELD_OUT)
    )
    top20 = {t for t, _ in counts.most_common(20)}
    top20_rows = [r for r in held_rows if r["articleType"] in top20]
    top20_report = evaluate_products(classifier, layout.products, rows=top20_rows)
    return {
        "catalogue_held_out": catalogue,
        "catalogue_held_out_articleType_top20_types": top20_report["heads"]["articleType"],
        "clothing_small_validation": evaluate_folders(
            classifier, layout.clothing / "validation", progress=progress
        ),
        "ccp_held_out": evaluate_ccp(classifier, layout.ccp, ccp_ids, progress=progress),
        "colour_catalogue_held_out": colour_agreement_catalogue(
            classifier, layout.products, held_rows, progress=progress
        ),
    }


def products_table(report: Mapping[str, Any]) -> str:
    lines = [f"{'head':<16}{'accuracy':>10}{'macro F1':>10}{'n':>8}"]
    for head, s in report["heads"].items():
        lines.append(f"{head:<16}{s['accuracy']:>10.4f}{s['macro_f1']:>10.4f}{s['n']:>8}")
    lines.append(f"unknown labels (item x head, not scored): {report['unknown']}")
    return "\n".join(lines)


def folders_table(report: Mapping[str, Any]) -> str:
    lines = [f"{'class':<12}{'accuracy':>10}{'n':>8}"]
    for cls, s in report["per_class"].items():
        lines.append(f"{cls:<12}{s['accuracy']:>10.4f}{s['n']:>8}")
    lines.append(f"{'all':<12}{report['accuracy']:>10.4f}{report['n']:>8}")
    return "\n".join(lines)


def held_out_table(report: Mapping[str, Any]) -> str:
    """`held_out_metrics` as readable text."""
    ccp = report["ccp_held_out"]
    colour = report["colour_catalogue_held_out"]
    return "\n".join(
        [
            "catalogue (held-out ids):",
            products_table(report["catalogue_held_out"]),
            "",
            "clothing-small validation/ (clothing head):",
            folders_table(report["clothing_small_validation"]),
            "",
            f"CCP held-out photos ({ccp['photos']} photos, {ccp['regions']} garment regions):",
            products_table({"heads": ccp["heads"], "unknown": 0}).rsplit("\n", 1)[0],
            "",
            f"colour head vs pixel colour: catalogue {colour['head_vs_pixels']:.4f}"
            f" (n={colour['n']}), CCP regions {ccp['colour_head_vs_pixels']:.4f};"
            f" vs the catalogue's baseColour: head {colour['head_vs_catalogue']:.4f},"
            f" pixels {colour['pixels_vs_catalogue']:.4f}",
        ]
    )


def calibrate_on_held_out(
    classifier: AttributeClassifier,
    layout: D.DataLayout,
    *,
    target_precision: float = TARGET_PRECISION,
    batch_size: int = 64,
    seed: int = 0,
    progress: Progress[Any] = _no_progress,
) -> dict[str, Any]:
    """Per-head confidence thresholds (models.attributes.calibration) on the held-out catalogue
    photos, each classified twice: as photographed, and degraded as if the product had been a
    16-80 px garment of a camera person (models.camera_look)."""
    rows = [
        r for r in D.read_styles(layout.products) if D.is_held_out(r["id"], D.CATALOGUE_HELD_OUT)
    ]
    rng = np.random.default_rng(seed)
    tops: dict[str, list[float]] = {}
    correct: dict[str, list[bool]] = {}
    batch: list[tuple[Mapping[str, str], np.ndarray]] = []

    def flush() -> None:
        probabilities = classifier.predict([crop for _, crop in batch])
        for (row, _), probs in zip(batch, probabilities, strict=True):
            for head, truth in _catalogue_truth(row, classifier.heads).items():
                label = classifier.heads[head][int(np.argmax(probs[head]))]
                tops.setdefault(head, []).append(float(np.max(probs[head])))
                correct.setdefault(head, []).append(label == truth)
        batch.clear()

    for row in progress(rows, "calibrate on held-out products", len(rows)):
        image = D.catalogue_image(layout.products, row["id"])
        degraded = camera_look.degrade(image, image.shape[0], rng, heights=(16.0, 80.0))
        for version in (image, degraded):
            batch.append((row, classifier.prepare(version, None, None)))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return {
        "set": f"{len(rows)} held-out catalogue photos, each as photographed and degraded like "
        "a 16-80 px camera garment",
        "target_precision": target_precision,
        "heads": {
            head: calibrate_head(tops[head], correct[head], target_precision).to_json()
            for head in sorted(tops)
        },
    }


def _catalogue_truth(row: Mapping[str, str], heads: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """{head: true label} of a styles.csv row, for the heads whose label the model has."""
    truth = {
        head: row.get(head, "").strip()
        for head in L.CATALOGUE_HEADS
        if head in heads and row.get(head, "").strip() in heads[head]
    }
    category = L.ARTICLE_TO_CATEGORY.get(row.get("articleType", "").strip())
    if "category" in heads and category is not None and category in heads["category"]:
        truth["category"] = category
    return truth
