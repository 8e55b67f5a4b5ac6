"""`fashionstream train attributes` and `fashionstream eval attributes`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from fashionstream.app.commands import Commands
from fashionstream.app.extras import needs_training_stack
from fashionstream.core.settings import REPO_ROOT, Settings

T = TypeVar("T")
DEFAULT_WEIGHTS = REPO_ROOT / "weights"


def register(train: Commands, evaluate: Commands) -> None:
    """Adds `train attributes` and `eval attributes`."""
    t = train.add_parser(
        "attributes",
        help="train the attribute classifier (catalogue + CCP + clothing-small)",
        description="Fine-tunes the multi-head EfficientNet-Lite0 attribute classifier, "
        "checkpointing every epoch, then writes weights/attributes_effnet_lite0.pt and its "
        "manifest entry with the held-out figures measured on the shipped file.",
    )
    t.add_argument(
        "--data",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data",
        help="a shared/data folder: products/, street/ccp/, street/clothing-small/",
    )
    t.add_argument(
        "--out",
        type=Path,
        default=Path("runs/attributes"),
        help="checkpoints, the decoded-image cache and logs",
    )
    t.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_WEIGHTS,
        help="where the shipped weights and manifest.json go",
    )
    t.add_argument("--epochs", type=int, default=14)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--input-size", type=int, default=160)
    t.add_argument("--lr", type=float, default=1.5e-3)
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    t.add_argument(
        "--limit-steps", type=int, default=None, help="stop each epoch after N steps (smoke runs)"
    )
    t.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    t.set_defaults(func=_train)

    e = evaluate.add_parser(
        "attributes",
        help="score the shipped attribute classifier on labelled photos",
        description="--products DIR: DIR/styles.csv + DIR/images/<id>.jpg, every head scored "
        "(accuracy, macro F1); a label the model has no output for is counted in `unknown` "
        "once per item and head, not scored. --folders DIR: DIR/<class>/*.jpg with the "
        "clothing-small classes, scored by the `clothing` head.",
    )
    source = e.add_mutually_exclusive_group(required=True)
    source.add_argument("--products", type=Path, help="catalogue-format folder")
    source.add_argument("--folders", type=Path, help="clothing-small-format folder")
    source.add_argument(
        "--calibrate",
        action="store_true",
        help="choose each head's confidence threshold (below it the tagger stores `unknown`) "
        "on the held-out catalogue photos of --data, as photographed and camera-degraded; "
        "with --write-manifest, store them in the manifest entry",
    )
    source.add_argument(
        "--held-out",
        action="store_true",
        help="every figure of the model card, on this project's held-out splits of --data",
    )
    e.add_argument(
        "--data",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data",
        help="with --held-out: the shared/data folder the model was trained from",
    )
    e.add_argument(
        "--write-manifest",
        action="store_true",
        help="with --held-out or --calibrate: store the figures in the manifest entry",
    )
    e.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--batch-size", type=int, default=64)
    e.set_defaults(func=_evaluate)


def _progress(items: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, file=sys.stderr, mininterval=5.0)


@needs_training_stack("train attributes")
def _train(settings: Settings, args: argparse.Namespace) -> int:
    from models.attributes.evaluate import held_out_metrics
    from models.attributes.train import TrainConfig, train
    from models.runtime.build import resolve_device

    config = TrainConfig(
        data_root=args.data,
        out_dir=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        input_size=args.input_size,
        lr=args.lr,
        threads=args.threads,
        limit_steps=args.limit_steps,
    )
    command = "fashionstream " + shlex.join(sys.argv[1:])
    entry = train(
        config,
        args.weights,
        device=resolve_device(settings.device.value),
        resume=args.resume,
        command=command,
        progress=_progress,
        evaluate_shipped=lambda classifier, layout: held_out_metrics(
            classifier, layout, progress=_progress
        ),
    )
    print(json.dumps({"file": entry["file"], "metrics": entry["metrics"]}, indent=2))
    return 0


@needs_training_stack("eval attributes")
def _evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from models.attributes.classifier import AttributeClassifier
    from models.attributes.evaluate import (
        evaluate_folders,
        evaluate_products,
        folders_table,
        held_out_metrics,
        held_out_table,
        products_table,
    )

    classifier = AttributeClassifier.from_weights(args.weights)
    report: dict[str, Any]
    if args.calibrate:
        from models import weights as W
        from models.attributes.data import DataLayout
        from models.attributes.evaluate import calibrate_on_held_out

        report = calibrate_on_held_out(
            classifier, DataLayout(args.data), batch_size=args.batch_size, progress=_progress
        )
        text = _calibration_table(report)
        if args.write_manifest:
            entry = W.entry(args.weights, W.ATTRIBUTES_ENTRY)
            metrics = {**entry.metrics, "calibration": report}
            W.write_entry(args.weights, W.WeightsEntry(**{**entry.__dict__, "metrics": metrics}))
    elif args.held_out:
        from models import weights as W
        from models.attributes.data import DataLayout

        report = held_out_metrics(classifier, DataLayout(args.data), progress=_progress)
        text = held_out_table(report)
        if args.write_manifest:
            entry = W.entry(args.weights, W.ATTRIBUTES_ENTRY)
            # calibration is chosen by --calibrate; the held-out figures do not replace it
            metrics = {**report, **{k: v for k, v in entry.metrics.items() if k == "calibration"}}
            W.write_entry(args.weights, W.WeightsEntry(**{**entry.__dict__, "metrics": metrics}))
    elif args.products is not None:
        report = evaluate_products(
            classifier, args.products, batch_size=args.batch_size, progress=_progress
        )
        text = products_table(report)
    else:
        report = evaluate_folders(
            classifier, args.folders, batch_size=args.batch_size, progress=_progress
        )
        text = folders_table(report)
    print(json.dumps(report) if args.json else text)
    return 0


def _calibration_table(report: dict[str, Any]) -> str:
    lines = [
        report["set"],
        f"target precision {report['target_precision']}",
        f"{'head':<16}{'threshold':>10}{'kept':>8}{'precision':>11}{'accuracy':>10}{'n':>7}",
    ]
    for head, row in report["heads"].items():
        lines.append(
            f"{head:<16}{row['threshold']:>10.3f}{row['kept_share']:>8.3f}"
            f"{row['precision_kept']:>11.3f}{row['accuracy_all']:>10.3f}{row['n']:>7}"
        )
    return "\n".join(lines)
