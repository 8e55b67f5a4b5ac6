"""`fashionstream track VIDEO` (detection + tracking on a file, no Kafka), the video half of
`fashionstream annotate` (dispatched from commands/tagger.py), and `fashionstream bench video`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashionstream.app.commands import Commands
from fashionstream.core.settings import Backend, Settings

if TYPE_CHECKING:  # torch and PyAV load only when a command runs
    from fashionstream.app.video_tracking import TrackingRun

log = logging.getLogger("fashionstream.video")

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m4v", ".mpg", ".mpeg", ".flv")


def register(commands: Commands, bench: Commands, evaluate: Commands) -> None:
    """Adds `track`, `eval association`, `bench video` and `bench live`."""
    t = commands.add_parser(
        "track",
        help="detect and track the people of one video file, without Kafka: one sighting each",
        description="Samples VIDEO like `produce video` does (FASHIONSTREAM_VIDEO_FPS, "
        "VIDEO_MAX_SIDE, JPEG quality), tags the frames with the shipped models and runs the "
        "stream processor's tracker over them. Prints the sightings (one per tracked person, "
        "with the garments voted over the track).",
    )
    t.add_argument("video", type=Path, help="a video file")
    _common_options(t)
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.set_defaults(func=_track)

    a = evaluate.add_parser(
        "association",
        help="how well the trackers follow people between sampled frames, against every frame",
        description="Detects people (the shipped person detector) in every frame of VIDEO; "
        "ByteTrack over every frame, where people move a few pixels between frames, is the "
        "reference. The track gate's tracker and ByteTrack as the sightings tracker runs it "
        "then see only the frames the producer samples (--fps) and are scored by their links "
        "(a track seen in one sampled frame and next in a later one): tracks, link precision "
        "(same reference id; a lower bound), link recall, swaps. No labels needed.",
    )
    a.add_argument("video", type=Path, help="a video file")
    a.add_argument("--fps", type=float, help="sampling rate (default: FASHIONSTREAM_VIDEO_FPS)")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(func=_eval_association)

    b = bench.add_parser(
        "video",
        help="cameras through broker + workers + tracking: decode fps, tagged fps, sightings, lag",
        description="Replays SOURCE (a video file) as 1 and 4 live cameras (paced at the "
        "recording's speed) through the embedded broker, 1 and 2 worker processes and "
        "Postgres; reports decode fps, frames tagged per second, sightings and end-to-end lag "
        "per configuration.",
    )
    b.add_argument("source", type=Path, metavar="SOURCE", help="a video file")
    b.add_argument("--cameras", default="1,4", help="camera counts to run, comma-separated")
    b.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    b.add_argument("--fps", type=float, help="sampling rate (default: FASHIONSTREAM_VIDEO_FPS)")
    b.add_argument(
        "--duration",
        type=float,
        help="seconds of video per camera: SOURCE is replayed as often as needed (default: once)",
    )
    b.add_argument(
        "--no-pace",
        action="store_true",
        help="send frames as fast as they decode instead of at the recording's speed",
    )
    b.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=_bench_video)

    live = bench.add_parser(
        "live",
        help="live RTSP cameras through one worker: capture-to-row latency, frames skipped",
        description="Serves CLIP (a video file, looped) from a real RTSP server (GStreamer's) "
        "as 1, 4 and 8 live cameras at its own frame rate; the live video producer reads each "
        "for DURATION seconds through the embedded broker to one worker and Postgres. Reports "
        "per camera count: frames sent, tagged and skipped per camera, people and garments "
        "per frame, and capture-to-row latency p50/p95/max, first and last tenth of the run.",
    )
    live.add_argument("clip", type=Path, metavar="CLIP", help="an H.264 video file")
    live.add_argument("--cameras", default="1,4,8", help="camera counts, comma-separated")
    live.add_argument("--duration", type=float, default=120.0, help="seconds per camera count")
    live.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for rows")
    live.add_argument("--json", action="store_true", help="print one JSON object")
    live.set_defaults(func=_bench_live)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", help="camera id (default: the file's stem)")
    parser.add_argument("--fps", type=float, help="frames sampled per second of video time")
    parser.add_argument("--backend", choices=["auto", "torch", "onnx"], help="default: settings")
    parser.add_argument("--threshold", type=float, help="detection threshold; default: settings")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _configured(settings: Settings, args: argparse.Namespace) -> Settings | str:
    """Settings with the command's overrides, or an error message."""
    overrides: dict[str, Any] = {}
    if getattr(args, "fps", None) is not None:
        overrides["video_fps"] = args.fps
    if getattr(args, "backend", None):
        overrides["backend"] = Backend(args.backend)
    if getattr(args, "threshold", None) is not None:
        overrides["detection_threshold"] = args.threshold
    try:
        return dataclasses.replace(settings, **overrides)
    except ValueError as exc:
        return str(exc)


def _run_tracking(settings: Settings, video: Path, camera: str) -> TrackingRun:
    from fashionstream.app.video_tracking import track_recording
    from models.tagger import FashionTagger
    from models.tracking import TrackingConfig
    from producers.decoding import VideoOptions

    return track_recording(
        video,
        FashionTagger.from_settings(settings),
        camera=camera,
        config=TrackingConfig.from_settings(settings),
        options=VideoOptions.from_settings(settings),
        batch_size=settings.batch_size,
    )


def _check_video(command: str, video: Path) -> int | None:
    if not video.is_file():
        print(f"{command}: no such file {video}", file=sys.stderr)
        return 2
    return None


def _eval_association(settings: Settings, args: argparse.Namespace) -> int:
    from fashionstream.app.association import evaluate_association
    from models.tagger import FashionTagger
    from models.tracking import TrackingConfig

    bad = _check_video("eval association", args.video)
    if bad is not None:
        return bad
    configured = _configured(settings, args)
    if isinstance(configured, str):
        print(f"eval association: {configured}", file=sys.stderr)
        return 2
    report = evaluate_association(
        args.video,
        FashionTagger.from_settings(configured),
        TrackingConfig.from_settings(configured),
        configured.video_fps,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{report['video']}: {report['sampled_frames']} of {report['frames']} frames sampled at "
        f"{report['sampled_fps']:g} fps, {report['people_per_sampled_frame']} people a frame, "
        f"{report['reference_tracks']} reference tracks"
    )
    for name, s in report["trackers"].items():
        print(
            f"  {name:<30} tracks {s['tracks']:>4}  links {s['links']:>4}  precision "
            f"{s['link_precision']:.3f}  recall {s['link_recall']:.3f}  swaps {s['swaps']}"
        )
    return 0


def _track(settings: Settings, args: argparse.Namespace) -> int:
    from producers.decoding import VideoDecodeError

    bad = _check_video("track", args.video)
    if bad is not None:
        return bad
    configured = _configured(settings, args)
    if isinstance(configured, str):
        print(f"track: {configured}", file=sys.stderr)
        return 2
    camera = args.camera or args.video.stem
    try:
        run = _run_tracking(configured, args.video, camera)
    except VideoDecodeError as exc:
        print(f"track: {exc.detail}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(run.to_json(), indent=2))
        return 0
    print(
        f"{args.video}: {run.frames} frames at {configured.video_fps:g} fps, "
        f"{len(run.sightings)} sightings ({run.model_version})"
    )
    for s in run.sightings:
        garments = ", ".join(
            f"{g.category} ({g.colour.label}, {g.frames} frames)" for g in s.garments
        )
        print(
            f"  {s.first_seen - s.stream_started_at:7.1f}s - "
            f"{s.last_seen - s.stream_started_at:7.1f}s  {s.frames:4d} frames  track "
            f"{s.tracker_id}: {garments or 'no garments'}"
        )
    return 0


def annotate_video(settings: Settings, args: argparse.Namespace) -> int:
    """`fashionstream annotate VIDEO -o OUT.mp4 [--key-frames DIR]`: every sampled frame with
    masks, boxes, track ids and labels, encoded at the sampling rate; `--key-frames` also
    writes each sighting's best frame as a PNG."""
    from fashionstream.app.video_annotation import annotate_recording
    from models.tagger import FashionTagger
    from producers.decoding import VideoDecodeError

    bad = _check_video("annotate", args.image)
    if bad is not None:
        return bad
    if args.out.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        print(f"annotate: write a video to a .mp4 file, not {args.out}", file=sys.stderr)
        return 2
    configured = _configured(settings, args)
    if isinstance(configured, str):
        print(f"annotate: {configured}", file=sys.stderr)
        return 2
    camera = args.camera or args.image.stem
    try:
        report = annotate_recording(
            configured,
            args.image,
            args.out,
            camera=camera,
            tagger=FashionTagger.from_settings(configured),
            key_frames=args.key_frames,
        )
    except VideoDecodeError as exc:
        print(f"annotate: {exc.detail}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{args.out}: {report['frames']} frames, {len(report['sightings'])} sightings"
            + (f"; key frames in {report['key_frames_dir']}" if report["key_frames"] else "")
        )
    return 0


def _bench_video(settings: Settings, args: argparse.Namespace) -> int:
    from fashionstream.app.bench_video import BenchError, run_bench_video

    bad = _check_video("bench video", args.source)
    if bad is not None:
        return bad
    try:
        cameras = [int(c) for c in args.cameras.split(",") if c.strip()]
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        print("bench video: --cameras and --workers take comma-separated numbers", file=sys.stderr)
        return 2
    if not cameras or not workers or min(cameras) < 1 or min(workers) < 1:
        print("bench video: camera and worker counts must be >= 1", file=sys.stderr)
        return 2
    configured = _configured(settings, args)
    if isinstance(configured, str):
        print(f"bench video: {configured}", file=sys.stderr)
        return 2
    try:
        report = run_bench_video(
            configured,
            args.source,
            cameras=cameras,
            workers=workers,
            duration_s=args.duration,
            pace=not args.no_pace,
            timeout_s=args.timeout,
            progress=not args.json,
        )
    except BenchError as exc:
        print(f"bench video: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for row in report["runs"]:
            print(
                f"{row['cameras']} camera(s), {row['workers']} worker(s): decode "
                f"{row['decode_fps']} fps, tagged {row['tagged_fps']} frames/s (needed "
                f"{row['needed_fps']}), {row['sightings']} sightings, lag p50 "
                f"{row['lag_p50_s']} s / p95 {row['lag_p95_s']} s / max {row['lag_max_s']} s, "
                f"real time: {row['real_time']}"
            )
    return 0


def _bench_live(settings: Settings, args: argparse.Namespace) -> int:
    from fashionstream.app.bench_live import run_bench_live
    from fashionstream.app.bench_video import BenchError

    bad = _check_video("bench live", args.clip)
    if bad is not None:
        return bad
    try:
        cameras = [int(c) for c in args.cameras.split(",") if c.strip()]
    except ValueError:
        print("bench live: --cameras takes comma-separated numbers", file=sys.stderr)
        return 2
    if not cameras or min(cameras) < 1 or args.duration <= 0:
        print("bench live: camera counts must be >= 1 and --duration > 0", file=sys.stderr)
        return 2
    try:
        report = run_bench_live(
            settings,
            args.clip,
            cameras=cameras,
            duration_s=args.duration,
            timeout_s=args.timeout,
            progress=not args.json,
        )
    except BenchError as exc:
        print(f"bench live: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{report['clip']} served live at its own rate, sampled at {report['sampling_fps']} "
        f"fps, live_max_age_s {report['live_max_age_s']}, one worker ({report['backend']})"
    )
    for row in report["runs"]:
        print(
            f"{row['cameras']} camera(s): {row['frames_tagged']} of {row['frames_sent']} frames "
            f"tagged ({row['tagged_fps']}/s, cameras send {row['needed_fps']}/s), tagged per "
            f"camera {row['tagged_per_camera']}; {row['people_per_frame']} people and "
            f"{row['garments_per_frame']} garments per frame; capture-to-row latency p50 "
            f"{row['latency_p50_s']} s / p95 {row['latency_p95_s']} s / max "
            f"{row['latency_max_s']} s (first tenth {row['latency_first_tenth_s']} s, last "
            f"{row['latency_last_tenth_s']} s): bounded {row['bounded']}"
        )
    return 0
