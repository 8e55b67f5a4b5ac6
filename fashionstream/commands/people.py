"""`fashionstream data people`, `train people` and `eval people`: the person detector for
cameras, from the pinned public datasets to measured weights."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from fashionstream.commands import Commands
from fashionstream.settings import Settings

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


def _train(settings: Settings, args: argparse.Namespace) -> int:
    import torch

    from models.people.augment import read_coco_photos
    from models.people.train import PeopleTrainConfig, train_people
    from models.runtime.build import available_cores

    photos = read_coco_photos(args.data / "train.json", args.data / "images")
    if args.ccp is not None:
        photos += ccp_people(args.ccp)
    threads = min(args.threads or available_cores(), available_cores())
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if settings.device.value == "cpu":
        device = torch.device("cpu")
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
    torch.save(
        {"config": result.config.detector.to_json(), "model": result.model.state_dict()},
        args.out / "final.pt",
    )
    print(
        json.dumps(
            {
                "iterations": result.iterations,
                "duration_s": round(result.duration_s),
                "wall_s": round(time.time() - started),
                "final": str(args.out / "final.pt"),
            },
            indent=2,
        )
    )
    return 0
