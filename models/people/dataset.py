"""Builds the person detector's training and validation sets from the pinned public datasets:
images re-encoded at most 640 px wide, person boxes in COCO format (`train.json`, `val.json`),
and a SOURCES.md with each dataset's commit, licence and attribution. The split is by recording
(or by source photo), never by augmented copy, so no validation photo was seen in training."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.people.sources import DATASETS, LabelledImage, PeopleDataset, read_dataset

MAX_WIDTH = 640
VAL_SHARE = 0.1
# a recording with more images than this is split by source photo instead: one lottery draw
# would otherwise move a third of a dataset into validation or none of it
LARGEST_GROUP = 300
PERSON_CATEGORY = {"id": 1, "name": "person"}


@dataclass(frozen=True)
class BuildSummary:
    images: Mapping[str, int]  # split -> images
    people: Mapping[str, int]  # split -> boxes
    skipped: Mapping[str, int]  # reason -> images


def is_validation(key: str, share: float = VAL_SHARE) -> bool:
    """A stable draw per key: sha256 of the key mapped to [0, 1)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def split_key(image: LabelledImage, group_sizes: Mapping[tuple[str, str], int]) -> str:
    """What decides an image's split: its recording, or its source photo in a large one."""
    if group_sizes[(image.dataset, image.group)] > LARGEST_GROUP:
        return f"{image.dataset}/{image.source}"
    return f"{image.dataset}/{image.group}"


def _decode(data: bytes) -> np.ndarray | None:
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return array if array is not None and array.size else None


def build_people_set(
    snapshots: Mapping[str, Path],
    out_dir: Path,
    *,
    datasets: Iterable[PeopleDataset] = DATASETS,
    report: Callable[[str], None] = print,
) -> BuildSummary:
    """Reads each dataset from its snapshot (`snapshots[dataset.name]`, a git dir) and writes
    out_dir/images/<dataset>/..., out_dir/train.json, out_dir/val.json, out_dir/SOURCES.md."""
    chosen = [d for d in datasets if d.name in snapshots]
    missing = sorted({d.name for d in datasets} - set(snapshots))
    if missing:
        report(f"no snapshot given for {', '.join(missing)}: left out")
    if not chosen:
        raise ValueError("no dataset to build: give at least one snapshot")
    images_dir = out_dir / "images"
    coco: dict[str, dict[str, Any]] = {
        split: {"images": [], "annotations": [], "categories": [PERSON_CATEGORY]}
        for split in ("train", "val")
    }
    skipped: Counter[str] = Counter()
    next_image, next_box = 1, 1
    for dataset in chosen:
        report(f"{dataset.name}: reading {dataset.repo} @ {dataset.commit[:12]}")
        # two passes over the labels would read every image twice: hold the dataset's images
        # (a few hundred MB at most) to count recordings first
        items = list(read_dataset(dataset, snapshots[dataset.name]))
        group_sizes = Counter((i.dataset, i.group) for i in items)
        target = images_dir / dataset.name
        target.mkdir(parents=True, exist_ok=True)
        for count, item in enumerate(items, 1):
            image = _decode(item.data)
            if image is None:
                skipped["undecodable"] += 1
                continue
            h, w = image.shape[:2]
            if w > MAX_WIDTH:
                scale = MAX_WIDTH / w
                image = cv2.resize(
                    image, (MAX_WIDTH, round(h * scale)), interpolation=cv2.INTER_AREA
                )
                h, w = image.shape[:2]
            file_name = f"{dataset.name}/{Path(item.path).stem}.jpg"
            cv2.imwrite(str(images_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            split = "val" if is_validation(split_key(item, group_sizes)) else "train"
            coco[split]["images"].append(
                {
                    "id": next_image,
                    "file_name": file_name,
                    "width": w,
                    "height": h,
                    "dataset": dataset.name,
                    "source": item.source,
                }
            )
            for x0, y0, x1, y1 in item.boxes * np.array([w, h, w, h], np.float32):
                bw, bh = float(x1 - x0), float(y1 - y0)
                coco[split]["annotations"].append(
                    {
                        "id": next_box,
                        "image_id": next_image,
                        "category_id": 1,
                        "bbox": [
                            round(float(x0), 2),
                            round(float(y0), 2),
                            round(bw, 2),
                            round(bh, 2),
                        ],
                        "area": round(bw * bh, 2),
                        "iscrowd": 0,
                    }
                )
                next_box += 1
            next_image += 1
            if count % 1000 == 0:
                report(f"{dataset.name}: {count}/{len(items)} images")
        report(f"{dataset.name}: {len(items)} images")
    for split, content in coco.items():
        (out_dir / f"{split}.json").write_text(json.dumps(content))
    (out_dir / "SOURCES.md").write_text(sources_markdown(chosen))
    return BuildSummary(
        images={s: len(c["images"]) for s, c in coco.items()},
        people={s: len(c["annotations"]) for s, c in coco.items()},
        skipped=dict(skipped),
    )


def sources_markdown(datasets: Iterable[PeopleDataset]) -> str:
    rows = [
        "# Person boxes: sources",
        "",
        "Built by `fashionstream data people`. Each dataset is a Roboflow YOLO export read from",
        "its public repository at the pinned commit; split by recording (or source photo), never",
        "by augmented copy.",
        "",
        "| dataset | repository @ commit | folder | licence | attribution | what it is |",
        "|---|---|---|---|---|---|",
    ]
    for d in datasets:
        rows.append(
            f"| {d.name} | {d.repo} @ {d.commit} | {d.folder or '/'} | {d.licence} | "
            f"{d.attribution} | {d.what} |"
        )
    return "\n".join(rows) + "\n"
