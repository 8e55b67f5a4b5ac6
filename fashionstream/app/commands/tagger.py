"""`fashionstream annotate` and `fashionstream bench tagger`."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fashionstream.app.commands import Commands
from fashionstream.app.extras import EXIT_WITHOUT_STACK, ensure_training_stack
from fashionstream.core.settings import REPO_ROOT, Backend, Device, Settings

log = logging.getLogger("fashionstream.tagger")

DEFAULT_VIDEO = REPO_ROOT.parent / "shared" / "data" / "videos" / "tram_stop_cctv_640x480.mp4"
FIXTURE_FRAMES = REPO_ROOT / "tests" / "fixtures" / "frames"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# a speed counts on frames where the models find what a person sees: fewer people than this per
# frame is a light workload, and the bench says so beside its figures
BUSY_PEOPLE_PER_FRAME = 5.0


def register(commands: Commands, bench: Commands) -> None:
    """Adds `annotate` and `bench tagger`."""
    a = commands.add_parser(
        "annotate",
        help="draw what the models see (masks, boxes, category, attributes, colour, style)",
        description="Tags IMAGE with the shipped models (settings: backend, device, "
        "threshold) and writes it with every garment's mask, box and labels drawn on it. "
        "A video is tracked like `fashionstream track` does and written as a video of its "
        "sampled frames with track ids (OUT.mp4), plus each sighting's best frame as a PNG "
        "with --key-frames DIR.",
    )
    a.add_argument("image", type=Path, help="a photo (jpg/png) or a video (mp4, mkv, ...)")
    a.add_argument(
        "-o", "--out", type=Path, required=True, help="the annotated PNG (or .mp4) to write"
    )
    a.add_argument("--backend", choices=["auto", "torch", "onnx"], help="default: settings")
    a.add_argument("--threshold", type=float, help="detection threshold; default: settings")
    a.add_argument("--camera", help="video: camera id (default: the file's stem)")
    a.add_argument("--fps", type=float, help="video: frames sampled per second of video time")
    a.add_argument(
        "--key-frames", type=Path, help="video: write each sighting's best frame as a PNG here"
    )
    a.add_argument("--json", action="store_true", help="also print what was found as JSON")
    a.set_defaults(func=_annotate)

    b = bench.add_parser(
        "tagger",
        help="frames/s of the whole tagger on real 640x480 frames, per backend and batch size",
        description="Decodes frames from a video (PyAV) at the pipeline's sampling rate "
        "(FASHIONSTREAM_VIDEO_FPS), or reads the committed fixture frames when the video is "
        "missing, then times FashionTagger.tag over them as one camera's frames: a warm-up "
        "batch, then --repeats runs per backend/device/batch size and garments mode; prints "
        "medians and, per frame, people, tracks, person crops through the garment network "
        "and garments.",
    )
    b.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    b.add_argument("--frames", type=int, default=24, help="frames per timed run")
    b.add_argument("--batch-sizes", default="8")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument(
        "--backends",
        default="auto",
        help="comma-separated of onnx, onnx-cuda, torch, torch-cuda; auto = onnx, and the "
        "GPU's when one is here (onnx-cuda with onnxruntime-gpu, torch-cuda with torch)",
    )
    b.add_argument(
        "--garments",
        default="track,frame",
        help="comma-separated of track (once per tracked person, carried between frames: "
        "FASHIONSTREAM_GARMENTS_PER_TRACK=true) and frame (every person in every frame)",
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=_bench)


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _annotate(settings: Settings, args: argparse.Namespace) -> int:
    import cv2

    from fashionstream.app.commands.video import annotate_video, is_video
    from models.drawing import draw_tags, garment_lines, legend
    from models.tagger import FashionTagger

    if is_video(args.image):
        return annotate_video(settings, args)
    if args.image.suffix.lower() not in IMAGE_SUFFIXES:
        print(
            f"annotate: {args.image} is neither a photo ({', '.join(IMAGE_SUFFIXES)}) nor a video",
            file=sys.stderr,
        )
        return 2
    if not args.image.is_file():
        print(f"annotate: no such file {args.image}", file=sys.stderr)
        return 2
    if args.backend:
        settings = dataclasses.replace(settings, backend=Backend(args.backend))
    if args.threshold is not None:
        settings = dataclasses.replace(settings, detection_threshold=args.threshold)
    tagger = FashionTagger.from_settings(settings)
    image = _read_rgb(args.image)
    (tags,) = tagger.tag([image])
    drawn = draw_tags(image, tags)
    drawn = np.concatenate([drawn, legend(drawn.shape[1])], axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
        print(f"annotate: could not write {args.out}", file=sys.stderr)
        return 1
    summary = {
        "image": str(args.image),
        "out": str(args.out),
        "model_version": tags.model_version,
        "people": len(tags.people),
        "garments": [
            {"box": [round(v, 1) for v in g.box], "labels": garment_lines(g)} for g in tags.garments
        ],
        "timings": {k: round(v, 4) for k, v in tags.timings.items()},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.out}: {len(tags.garments)} garments, {len(tags.people)} people")
    return 0


def load_frames(video: Path, count: int, fps: float | None = None) -> tuple[list[np.ndarray], str]:
    """`count` RGB frames decoded from `video` with PyAV, or the committed fixture frames
    repeated when the video is missing. With `fps`: at that many frames per second of video
    time from its start, as the producer samples a camera (a short clip is read again from its
    start); without: spread evenly over its first `3 * count` frames (how the garment
    detector's camera backgrounds were drawn)."""
    if video.is_file():
        import av

        frames: list[np.ndarray] = []
        next_at = 0.0
        with av.open(str(video)) as container:
            for frame in container.decode(video=0):
                if fps is not None and frame.time is not None and frame.time + 1e-6 < next_at:
                    continue
                frames.append(frame.to_ndarray(format="rgb24"))
                next_at += 1.0 / fps if fps else 0.0
                if len(frames) >= (count if fps else count * 3):
                    break
        if fps is None:
            return frames[:: max(1, len(frames) // count)][:count], str(video)
        return [frames[i % len(frames)] for i in range(count)], str(video)
    paths = sorted(FIXTURE_FRAMES.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no video at {video} and no fixture frames in {FIXTURE_FRAMES}")
    fixtures = [_read_rgb(p) for p in paths]
    return [fixtures[i % len(fixtures)] for i in range(count)], str(FIXTURE_FRAMES)


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from models.onnx_models.sessions import cuda_available
    from models.runtime.placement import available_cores, torch_sees_cuda
    from models.tagger import FashionTagger
    from models.tags import FrameSource

    frames, source = load_frames(args.video, args.frames, settings.video_fps)
    # one camera's frames at the sampling rate; each run starts the clock again, so the track
    # gate starts afresh (time going back is a restarted stream)
    sources = [FrameSource("bench", i / settings.video_fps) for i in range(len(frames))]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    wanted = args.backends.split(",")
    if wanted == ["auto"]:
        wanted = ["onnx"] + (["onnx-cuda"] if cuda_available() else [])
        wanted += ["torch-cuda"] if torch_sees_cuda() else []
    if any(n.startswith("torch") for n in wanted) and not ensure_training_stack(
        "bench tagger --backends torch"
    ):
        return EXIT_WITHOUT_STACK
    modes = [m for m in args.garments.split(",") if m.strip()]
    if not set(modes) <= {"track", "frame"}:
        print(f"bench tagger: --garments takes track and frame, got {modes}", file=sys.stderr)
        return 2
    results: list[dict[str, Any]] = []
    for name, batch_size, mode in itertools.product(wanted, batch_sizes, modes):
        backend_name, _, device_name = name.partition("-")
        backend, device = Backend(backend_name), Device(device_name or "cpu")
        configured = dataclasses.replace(
            settings,
            backend=backend,
            device=device,
            batch_size=batch_size,
            garments_per_track=mode == "track",
        )
        tagger = FashionTagger.from_settings(configured)
        # warm-up: allocations, ONNX Runtime's first runs
        tagger.tag(frames[:batch_size], sources=sources[:batch_size])
        runs = []
        stages: dict[str, list[float]] = {}
        found: dict[str, int] = {}
        for _ in range(args.repeats):
            gate = dataclasses.replace(tagger.gate_stats) if tagger.gate_stats else None
            start = time.perf_counter()
            found = {"people": 0, "garments": 0}  # the workload: classify runs per garment
            for i in range(0, len(frames), batch_size):
                tagged = tagger.tag(frames[i : i + batch_size], sources=sources[i : i + batch_size])
                for stage, seconds in tagged[0].timings.items():
                    stages.setdefault(stage, []).append(seconds)
                for tags in tagged:
                    found["people"] += len(tags.people)
                    found["garments"] += len(tags.garments)
            runs.append(len(frames) / (time.perf_counter() - start))
            after = tagger.gate_stats
            if gate is not None and after is not None:
                found["tracks"] = after.tracks - gate.tracks
                found["person_crops_inferred"] = after.inferred - gate.inferred
            else:  # every person, every frame (large people take the whole-image path)
                found["person_crops_inferred"] = found["people"]
        row = {
            "backend": backend.value,
            "device": device.value,
            "batch_size": batch_size,
            "garments": f"per {mode}",
            "threads": min(settings.torch_threads or available_cores(), available_cores()),
            "fps_median": round(statistics.median(runs), 2),
            "fps_runs": [round(r, 2) for r in runs],
            "per_frame": {k: round(n / len(frames), 2) for k, n in found.items()},
            "seconds_per_frame_by_stage": {
                k: round(statistics.median(v), 4) for k, v in stages.items()
            },
        }
        log.info("%s", row)
        results.append(row)
    cpu = [r["fps_median"] for r in results if r["device"] == "cpu"]
    report = {
        "frames_source": source,
        "frame_size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "frames_per_run": len(frames),
        "repeats": args.repeats,
        "cores": available_cores(),
        "model_version": tagger.model_version if results else None,
        "results": results,
        "best_cpu_fps": max(cpu) if cpu else None,
    }
    people = min((r["per_frame"]["people"] for r in results), default=0.0)
    if people < BUSY_PEOPLE_PER_FRAME:
        print(
            f"bench tagger: the models find {people} people per frame in {source}: a light "
            f"workload (busy frames have {BUSY_PEOPLE_PER_FRAME:g}+), the figures flatter the "
            "tagger",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for r in results:
            per = r["per_frame"]
            print(
                f"{r['backend']:>5} {r['device']:>4} batch {r['batch_size']:>2} "
                f"garments {r['garments']:<9}: {r['fps_median']:6.2f} frames/s   per frame: "
                f"{per['people']} people, {per.get('tracks', '-')} new tracks, "
                f"{per['person_crops_inferred']} crops inferred, {per['garments']} garments"
            )
        print(f"best CPU: {report['best_cpu_fps']} frames/s")
    return 0
