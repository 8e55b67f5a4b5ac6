"""`fashionstream demo` (the main job, embedded default), `fashionstream bench pipeline`."""

from __future__ import annotations

import argparse
import json
import sys

from fashionstream.commands import Commands
from fashionstream.settings import Settings


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


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from fashionstream.demo import format_summary, run_demo
    from fashionstream.local_run import RunError
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
