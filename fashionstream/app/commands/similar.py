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
        "and CCP garment (resumable), trains the projection head on the catalogue photos "
        "outside the attribute model's held-out split, measures held-out retrieval for the "
        "raw pooled features and the head, and ships the head (weights/embedding_linear.pt "
        "and the manifest entry `embedding`).",
    )
    t.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a shared/data folder")
    t.add_argument(
        "--out", type=Path, default=Path("runs/embedding"), help="feature cache, checkpoint"
    )
    t.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--dim", type=int, default=256, help="embedding size (0: raw features)")
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    t.add_argument("--no-street", action="store_true", help="skip the CCP street figures")
    t.set_defaults(func=_train)


def _train(settings: Settings, args: argparse.Namespace) -> int:
    import logging
    import platform

    import torch

    from models import weights as W
    from models.attributes.classifier import MANIFEST_NAME, AttributeClassifier
    from models.attributes.data import DataLayout
    from models.embedding import features as F
    from models.embedding.evaluate import unit
    from models.embedding.figures import held_out_figures
    from models.embedding.train import TrainConfig, embed, ship, train_head

    logging.getLogger("models.embedding").setLevel(logging.INFO)
    torch.set_num_threads(max(1, args.threads))
    started = time.monotonic()
    attributes = W.entry(args.weights, MANIFEST_NAME)
    # pooled features of the attribute network alone (a shipped head may be stale)
    classifier = AttributeClassifier.from_weights(args.weights, with_embedding=False)
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
    head = train_head(train_set, config, checkpoint=args.out / f"head-{args.dim}d.pt")
    figures = {
        "raw_pooled_features": held_out_figures(catalogue, street, unit),
        "head": held_out_figures(catalogue, street, lambda x: embed(head, x)),
    }
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
            "command": command.strip(),
            "duration_s": round(time.monotonic() - started, 1),
            "machine": f"{platform.machine()} {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}",
        },
    )
    print(json.dumps({"file": entry.file, "version": entry.version, "metrics": figures}, indent=2))
    return 0


def figures_json(figures: dict[str, Any]) -> str:
    return json.dumps(figures, indent=2)
