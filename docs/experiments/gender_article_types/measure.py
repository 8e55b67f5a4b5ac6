"""What the wearer's gender rule (models.attributes.labels: NOT_SOLD_TO) does to stated article
types, on the two labelled sets here. Run from the repository root with ../shared beside it:

    .venv/bin/python docs/experiments/gender_article_types/measure.py

1. Held-out catalogue photos (1,219), each as photographed and degraded like a 16-80 px camera
   garment (the calibration set), classified once; the article type chosen among the types of
   the photo's true detector category, without and with the gender the same crop states.
2. Held-out CCP photos through the shipped tagger (its person vote decides each garment's gender);
   each labelled region matched to the detected garment overlapping it most (mask IoU >= 0.5),
   whose stored probabilities are read again without and with the rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fashionstream.core.settings import Settings
from models import camera_look
from models.attributes import data as D
from models.attributes import labels as L
from models.attributes.calibration import UNKNOWN, shipped_thresholds, stated
from models.attributes.classifier import AttributeClassifier
from models.tagger import FashionTagger

WEIGHTS = Path("weights")
LAYOUT = D.DataLayout(Path("../shared/data"))


def choose(
    probs: Mapping[str, float], category: str | None, gender: str | None
) -> tuple[str, float]:
    allowed = None if category is None else L.labels_agreeing(category, "articleType", gender)
    among = [t for t in probs if allowed is None or t in allowed] or list(probs)
    best = max(among, key=lambda t: probs[t])
    return best, probs[best]


def tally(rows: list[tuple[str, str, float]], threshold: float) -> str:
    n = len(rows)
    hits = sum(truth == label for truth, label, _ in rows)
    said = [(truth, label) for truth, label, p in rows if p >= threshold]
    right = sum(truth == label for truth, label in said)
    return (
        f"n {n}: right {hits / n:.4f}, stated {len(said) / n:.4f}, "
        f"right when stated {right / max(len(said), 1):.4f}"
    )


def catalogue(thresholds: Mapping[str, float]) -> None:
    classifier = AttributeClassifier.from_weights(WEIGHTS, with_embedding=False)
    rows = [
        r
        for r in D.read_styles(LAYOUT.products)
        if D.is_held_out(r["id"], D.CATALOGUE_HELD_OUT)
        and r["articleType"] in classifier.heads["articleType"]
    ]
    rng = np.random.default_rng(0)
    results: dict[tuple[str, bool], list[tuple[str, str, float]]] = {}
    for start in range(0, len(rows), 32):
        chunk = rows[start : start + 32]
        crops = []
        for row in chunk:
            image = D.catalogue_image(LAYOUT.products, row["id"])
            degraded = camera_look.degrade(image, image.shape[0], rng, heights=(16.0, 80.0))
            crops += [classifier.prepare(v, None, None) for v in (image, degraded)]
        predicted = classifier.predict(crops)
        for k, row in enumerate(chunk):
            for version, probs in zip(
                ("clean", "degraded"), predicted[2 * k : 2 * k + 2], strict=True
            ):
                articles = dict(
                    zip(classifier.heads["articleType"], probs["articleType"].tolist(), strict=True)
                )
                genders = classifier.heads["gender"]
                g = int(np.argmax(probs["gender"]))
                said = stated(genders[g], float(probs["gender"][g]), thresholds["gender"])
                gender = None if said == UNKNOWN else said
                category = L.ARTICLE_TO_CATEGORY.get(row["articleType"])
                for rule in (False, True):
                    label, p = choose(articles, category, gender if rule else None)
                    results.setdefault((version, rule), []).append((row["articleType"], label, p))
    for (version, rule), found in sorted(results.items()):
        name = "gender rule" if rule else "category only"
        print(f"catalogue {version:8s} {name:13s} {tally(found, thresholds['articleType'])}")


def ccp(thresholds: Mapping[str, float]) -> None:
    tagger = FashionTagger.from_settings(Settings())
    names = D.read_ccp_labels(LAYOUT.ccp)
    ids = [i for i in D.ccp_ids(LAYOUT.ccp) if D.is_held_out(i, D.CCP_HELD_OUT)]
    results: dict[bool, list[tuple[str, str, float]]] = {False: [], True: []}
    changed: Counter[tuple[str, str, str, str]] = Counter()
    for image_id in ids:
        image, label_map = D.ccp_photo(LAYOUT.ccp, image_id)
        (tags,) = tagger.tag([image])
        masks = [g.mask.decode() for g in tags.garments]
        for _, heads, region in D.ccp_regions(label_map, names):
            if "articleType" not in heads:
                continue
            overlaps = [(m & region).sum() / max((m | region).sum(), 1) for m in masks]
            if not overlaps or max(overlaps) < 0.5:
                continue
            garment = tags.garments[int(np.argmax(overlaps))]
            gender = garment.attributes["gender"].label
            picks = [
                choose(garment.probabilities["articleType"], garment.category, g)
                for g in (None, None if gender == UNKNOWN else gender)
            ]
            for rule, (label, p) in zip((False, True), picks, strict=True):
                results[rule].append((heads["articleType"], label, p))
            if picks[0][0] != picks[1][0]:
                changed[(heads["articleType"], gender, picks[0][0], picks[1][0])] += 1
    for rule, found in results.items():
        name = "gender rule" if rule else "category only"
        print(f"CCP detected  {name:13s} {tally(found, thresholds['articleType'])}")
    for (truth, gender, before, after), n in changed.items():
        print(f"  changed: {n} x true {truth}, wearer {gender}: {before} -> {after}")


if __name__ == "__main__":
    shipped = shipped_thresholds(WEIGHTS)
    catalogue(shipped)
    ccp(shipped)
