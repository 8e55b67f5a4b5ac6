"""`fashionstream data people`, `train people` and `eval people`: the person detector for
cameras, from the pinned public datasets to measured weights."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from fashionstream.app.commands import Commands
from fashionstream.app.extras import needs_training_stack
from fashionstream.core.settings import Settings

log = logging.getLogger("fashionstream.people")


def register(data: Commands, train: Commands, evaluate: Commands) -> None:
    """Adds `data people`, `train people` and `eval people`."""
    from models.people.sources import DATASETS

    d = data.add_parser(
        "people",
        help="build the person detector's training/validation set from pinned public datasets",
        description="Reads each dataset's YOLO export from a snapshot of its public repository "
        "(a git directory: a bare mirror or a clone's .git) at the pinned commit and writes "
        "OUT/images/, OUT/train.json and OUT/val.json (COCO person boxes, split by recording "
        "or source photo, never by augmented copy) and OUT/SOURCES.md (commits, licences, "
        "attributions). Datasets: "
        + "; ".join(f"{x.name} = {x.repo} @ {x.commit[:8]}" for x in DATASETS),
    )
    d.add_argument(
        "--snapshot",
        action="append",
        default=[],
        metavar="NAME=GIT_DIR",
        help="a dataset's repository snapshot, e.g. capston2=/path/Person-Tracker/.git "
        "(repeat per dataset)",
    )
    d.add_argument("--out", type=Path, default=Path("data/people"))
    d.set_defaults(func=_build)

    t = train.add_parser(
        "people",
        help="train the person detector (Faster R-CNN, Lite0 FPN) on `data people`'s output",
        description="Trains on square camera-like views of the built set (zoom, mosaic, cut "
        "people, night, backlight, blur, noise, JPEG), optionally with CCP's people, with "
        "checkpoints in --out that --resume continues; then scores the validation set and "
        "writes the weights and manifest entry (FASHIONSTREAM_WEIGHTS_DIR). GPU when present.",
    )
    t.add_argument("--data", type=Path, required=True, help="`data people` output folder")
    t.add_argument("--ccp", type=Path, help="also CCP's people (train split)")
    t.add_argument("--out", type=Path, default=Path("runs/people"), help="checkpoints")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument(
        "--views-per-epoch",
        type=int,
        default=8000,
        help="training views per epoch, each from a photo drawn anew per epoch (0 = all)",
    )
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--lr", type=float, default=4e-4)
    t.add_argument("--workers", type=int, default=1, help="data-loading processes")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = all cores")
    t.add_argument("--resume", action="store_true", help="continue from --out/last.pt")
    t.add_argument("--max-iterations", type=int, default=0, help="stop after N steps")
    t.add_argument("--no-ship", action="store_true", help="train and score, write no weights")
    t.add_argument("--name", default="people", help="manifest entry to write")
    t.set_defaults(func=_train)

    e = evaluate.add_parser(
        "people",
        help="person-box AP on COCO-format annotations, frames resized as the pipeline does",
        description="Runs a person detector over --images (each resized so its long side is at "
        "most FASHIONSTREAM_VIDEO_MAX_SIDE) and prints pycocotools' person_ap50, person_ap, "
        "recall, and AP50 per person height in the resized frame (<50, 50-100, 100-200, "
        ">=200 px). iscrowd=1 boxes are ignore regions. Default detector: the manifest's "
        "person detector.",
    )
    e.add_argument("--coco", type=Path, required=True, help="COCO-format annotations JSON")
    e.add_argument("--images", type=Path, required=True, help="folder the file_names are in")
    which = e.add_mutually_exclusive_group()
    which.add_argument(
        "--weights-file", type=Path, help="a person-detector weights file or training checkpoint"
    )
    which.add_argument(
        "--spec",
        type=Path,
        help="an ONNX detector's model spec (weights/README.md, 'Model specs'), its file beside it",
    )
    which.add_argument(
        "--garment-detector",
        action="store_true",
        help="score the people of the shipped garment + person detector instead (the "
        "single-stage path, for a side-by-side figure)",
    )
    e.add_argument(
        "--input-sizes",
        help="an imported detector's input squares in pixels, comma-separated, one run each "
        "(e.g. 416,960); default: FASHIONSTREAM_PERSON_INPUT_SIZES (empty: its spec's)",
    )
    e.add_argument("--backend", choices=["auto", "torch", "onnx"], help="default: settings")
    e.add_argument("--weights", type=Path, help="weights folder; default: settings")
    e.add_argument("--limit", type=int, default=0, help="only the first N images")
    e.add_argument(
        "--record",
        metavar="KEY",
        help="write the figures into the manifest's people entry as metrics[KEY] (the shipped "
        "detector only): how the model card's figures are made",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=_evaluate)


def _snapshots(values: list[str]) -> dict[str, Path]:
    from models.people.sources import DATASETS

    known = {d.name for d in DATASETS}
    out: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or name not in known:
            raise ValueError(f"--snapshot {value!r}: expected NAME=GIT_DIR with NAME in {known}")
        out[name] = Path(path)
    return out


def _build(settings: Settings, args: argparse.Namespace) -> int:
    from models.people.dataset import build_people_set

    try:
        snapshots = _snapshots(args.snapshot)
        summary = build_people_set(snapshots, args.out, report=log.info)
    except ValueError as exc:
        print(f"data people: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary.__dict__ | {"out": str(args.out)}, indent=2))
    return 0


def ccp_people(ccp_dir: Path) -> list[Any]:
    """CCP's train-split photos as PersonPhotos: each person's box from its pixel labels."""
    import numpy as np

    from models.detection import ccp
    from models.people.augment import PersonPhoto
    from models.taxonomy import DETECTOR_CLASSES, PERSON

    labels = ccp.read_labels(ccp_dir)
    person = DETECTOR_CLASSES.index(PERSON)
    photos = []
    for image_id in ccp.image_ids(ccp_dir, "train"):
        sample = ccp.load_sample(ccp_dir, image_id, labels)
        boxes = sample.boxes[sample.class_ids == person]
        path = ccp_dir / "images" / f"{image_id}.jpg"
        photos.append(PersonPhoto(path, np.asarray(boxes, np.float32).reshape(-1, 4)))
    return photos


@needs_training_stack("train people")
def _train(settings: Settings, args: argparse.Namespace) -> int:
    import torch

    from models.detection.checkpoint import save_detector
    from models.people.augment import read_coco_photos
    from models.people.train import PeopleTrainConfig, train_people
    from models.runtime.build import resolve_device
    from models.runtime.placement import available_cores

    photos = read_coco_photos(args.data / "train.json", args.data / "images")
    if args.ccp is not None:
        photos += ccp_people(args.ccp)
    threads = min(args.threads or available_cores(), available_cores())
    torch.set_num_threads(threads)
    device = resolve_device(settings.device.value)
    config = PeopleTrainConfig(
        epochs=args.epochs,
        views_per_epoch=args.views_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        workers=args.workers,
        max_iterations=args.max_iterations,
    )
    started = time.time()
    result = train_people(photos, config, args.out, device=device, resume=args.resume)
    log.info("trained %d steps in %.0f s", result.iterations, result.duration_s)
    save_detector(result.model, result.config.detector, args.out / "final.pt", half=False)
    metrics: dict[str, Any] = {}
    if not args.no_ship:
        metrics = _ship(result, args, settings, started=started)
    print(
        json.dumps(
            {
                "iterations": result.iterations,
                "duration_s": round(result.duration_s),
                "wall_s": round(time.time() - started),
                "final": str(args.out / "final.pt"),
                "metrics": metrics,
            },
            indent=2,
        )
    )
    return 0


def _ship(
    result: Any, args: argparse.Namespace, settings: Settings, started: float
) -> dict[str, Any]:
    """Scores the built validation set, writes fp16 weights and the manifest entry."""
    import shlex

    import torch

    from models import weights as W
    from models.detection.checkpoint import save_detector
    from models.detection.runner import input_normalisation
    from models.people.evaluate import evaluate_people
    from models.people.runner import TorchPeopleDetector

    config = result.config.detector
    runner = TorchPeopleDetector(result.model, config, torch.device("cpu"), threshold=0.0)
    scores = evaluate_people(
        runner,
        args.data / "val.json",
        args.data / "images",
        max_side=settings.video_max_side,
        report=log.info,
    )
    metrics = {"people_val": scores.to_json()}
    weights_dir: Path = settings.weights_dir
    weights_dir.mkdir(parents=True, exist_ok=True)
    file = f"{args.name}-effnet-lite0.pt"
    save_detector(result.model, config, weights_dir / file, half=True)
    sha = W.sha256_of(weights_dir / file)
    mean, std = input_normalisation(config)
    data = [f"`fashionstream data people` output ({args.data}), train split; see SOURCES.md"]
    if args.ccp is not None:
        data.append(f"Clothing Co-Parsing people ({args.ccp}), train split")
    W.write_entry(
        weights_dir,
        W.WeightsEntry(
            name=args.name,
            file=file,
            sha256=sha,
            architecture=config.arch,
            version=f"people-effnet-lite0-{sha[:8]}",
            classes={"detector": list(config.classes)},
            preprocessing={
                "input": "RGB uint8 scaled to [0, 1]",
                "mean": [float(v) for v in mean],
                "std": [float(v) for v in std],
                "resize": "shorter side to min_size, longer side at most max_size",
                "min_size": config.min_size,
                "max_size": config.max_size,
                "pad_to_multiple": 32,
                "storage": "float16 state dict + PeopleConfig",
            },
            metrics=metrics,
            training={
                "data": data,
                "command": "fashionstream " + shlex.join(sys.argv[1:]),
                "duration_s": round(result.duration_s, 1),
                "wall_s_with_scoring": round(time.time() - started, 1),
                "machine": result.machine,
                "epochs": result.epochs,
                "iterations": result.iterations,
                "config": result.config.to_json(),
                "final_losses": {k: round(v, 4) for k, v in result.final_losses.items()},
            },
        ),
    )
    log.info("wrote %s (%s) and its manifest entry %r", weights_dir / file, sha[:12], args.name)
    return metrics


@needs_training_stack("eval people")
def _evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from models import weights as W
    from models.onnx_models.detector import OnnxSpecDetector
    from models.people.boxes import PeopleDetector
    from models.people.evaluate import evaluate_people
    from models.people.runner import PeopleFromDetections, load_people
    from models.people.train import load_checkpoint_model
    from models.registry import default_registry
    from models.runtime.build import detector_runner, people_runner
    from models.runtime.placement import resolve_runtime
    from models.runtime.shipped import people_detector

    weights_dir = args.weights or settings.weights_dir
    runtime = resolve_runtime(
        args.backend or settings.backend.value,
        settings.device.value,
        settings.torch_threads,
        settings.state_dir / "onnx",
    )
    if args.record and (args.spec or args.weights_file or args.garment_detector):
        print("eval people: --record is for the shipped person detector only", file=sys.stderr)
        return 2
    input_sizes = settings.person_input_sizes
    if args.input_sizes is not None:
        input_sizes = tuple(int(v) for v in args.input_sizes.split(",") if v.strip())
    # AP needs the low-score detections too; `detections_per_image` counts those >= 0.5
    detector: PeopleDetector
    if args.spec is not None:
        detector = OnnxSpecDetector.from_spec_file(
            args.spec, threads=runtime.threads, threshold=0.0, input_sizes=input_sizes
        )
        name = f"{detector.spec.name} at {detector.input_sizes} ({args.spec})"
    elif args.garment_detector:
        garments, entry, _ = detector_runner(weights_dir, default_registry(), runtime, 0.0)
        detector, name = PeopleFromDetections(garments), f"garment detector {entry.version}"
    elif args.weights_file is not None:
        try:
            model, config = load_people(args.weights_file)
        except ValueError:
            model, config = load_checkpoint_model(args.weights_file)
        sha = W.sha256_of(args.weights_file)
        detector = people_runner(model, config, runtime, 0.0, sha256=sha)
        name = str(args.weights_file)
    else:
        detector, entry = people_detector(weights_dir, runtime, 0.0, input_sizes=input_sizes)
        name = f"person detector {entry.version}"
        if isinstance(detector, OnnxSpecDetector):
            name += f" at {detector.input_sizes}"
    scores = evaluate_people(
        detector,
        args.coco,
        args.images,
        max_side=settings.video_max_side,
        limit=args.limit,
        report=log.info,
    )
    result = {"detector": name, "backend": runtime.backend, **scores.to_json()}
    if args.record:
        entry = W.entry(weights_dir, W.PEOPLE_ENTRY)
        W.write_entry(
            weights_dir,
            dataclasses.replace(
                entry,
                metrics={
                    **entry.metrics,
                    args.record: {**result, "annotations": str(args.coco.name)},
                },
            ),
        )
        log.info("recorded as metrics[%r] of the manifest's people entry", args.record)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:<22} {value}")
    return 0
