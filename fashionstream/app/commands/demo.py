"""`fashionstream demo` (the main job, embedded default), `fashionstream bench pipeline`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fashionstream.app.commands import Commands
from fashionstream.app.commands.tagger import DEFAULT_VIDEO
from fashionstream.core.settings import Settings


def register(commands: Commands, bench: Commands) -> None:
    """Adds `demo` and `bench pipeline`."""
    demo = commands.add_parser(
        "demo",
        help="start the local stack, stream the bundled catalogue and camera clip, summarise",
        description="The main job on the embedded default: starts a local broker and Postgres "
        "(or reuses them), serves the bundled sample catalogue over a local HTTP server, streams "
        "it and the bundled camera clip through a worker, waits until every item is written or "
        "dead-lettered, and prints what was found.",
    )
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for the results"
    )
    demo.set_defaults(func=_demo)

    b = bench.add_parser(
        "pipeline",
        help="frames/s through broker + worker + Postgres vs the bare tagger, in one run",
        description="Times the bare FashionTagger on N real frames, then the same frames as "
        "JPEG records through the embedded broker, a worker process and Postgres (first send "
        "to last row committed). Prints medians over --repeats runs and their ratio.",
    )
    b.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="where the frames come from")
    b.add_argument(
        "--frames",
        type=int,
        default=96,
        help="frames per timed run; the first batch's wait and the last sink flush (~1 s) are"
        " a fixed cost, so short runs measure latency more than throughput",
    )
    b.add_argument("--repeats", type=int, default=3, help="timed runs per side")
    b.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one run")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=_bench_pipeline)


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from fashionstream.app.demo import format_summary, run_demo
    from fashionstream.app.local_run import RunError
    from infra.errors import StackError

    try:
        result = run_demo(settings, timeout_s=args.timeout, progress=not args.json)
    except (RunError, StackError) as exc:
        print(f"fashionstream demo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        print(format_summary(result))
    return 0


def _bench_pipeline(settings: Settings, args: argparse.Namespace) -> int:
    from fashionstream.app.bench_pipeline import run_bench
    from fashionstream.app.commands.tagger import BUSY_PEOPLE_PER_FRAME, load_frames
    from fashionstream.app.local_run import RunError
    from infra.errors import StackError

    frames, source = load_frames(args.video, args.frames, settings.video_fps)
    try:
        result = run_bench(
            settings, frames, frames_source=source, repeats=args.repeats, timeout_s=args.timeout
        )
    except (RunError, StackError) as exc:
        print(f"fashionstream bench pipeline: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        print(
            f"tagger {result.tagger_fps:.2f} frames/s, pipeline {result.pipeline_fps:.2f} "
            f"frames/s, ratio {result.ratio:.3f}; latency p50 {result.latency_p50_s:.2f} s, "
            f"p95 {result.latency_p95_s:.2f} s ({result.frames} frames x {result.repeats} runs); "
            f"per frame {result.people_per_frame:g} people, {result.garments_per_frame:g} garments"
        )
    if result.people_per_frame < BUSY_PEOPLE_PER_FRAME:
        print(
            f"bench pipeline: the models find {result.people_per_frame} people per frame in "
            f"{source}: a light workload (busy frames have {BUSY_PEOPLE_PER_FRAME:g}+)",
            file=sys.stderr,
        )
    return 0
