"""The `fashionstream` command: builds the parser from each command group, reads settings once,
and runs the chosen command. Command modules import their heavy dependencies (torch, faust) only
inside their handlers, so `fashionstream --help` stays fast."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fashionstream.app.commands import (
    Commands,
    api,
    attributes,
    demo,
    detector,
    export,
    imports,
    people,
    pipeline,
    report,
    similar,
    stack,
    tagger,
    video,
)
from fashionstream.app.extras import EXIT_WITHOUT_STACK
from fashionstream.core.settings import Settings
from models.runtime.placement import TrainingStackMissing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashionstream",
        description="Streaming fashion-vision pipeline. Settings come from FASHIONSTREAM_* "
        "environment variables: `fashionstream settings` lists them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # groups whose sub-commands come from several modules
    produce = _group(commands, "produce", "send a catalogue feed or a video to Kafka")
    train = _group(commands, "train", "train a default model on ../shared/data-style data")
    evaluate = _group(commands, "eval", "evaluate the shipped models on labelled data")
    data = _group(commands, "data", "build training sets from pinned public datasets")
    bench = _group(commands, "bench", "benchmarks that print measured figures")

    show = commands.add_parser("settings", help="print every setting, its env var and value")
    show.set_defaults(func=_print_settings)

    stack.register(commands)
    pipeline.register(commands, produce)
    attributes.register(train, evaluate)
    detector.register(train, evaluate)
    people.register(data, train, evaluate)
    tagger.register(commands, bench)
    video.register(commands, bench, evaluate)
    demo.register(commands, bench)
    api.register(commands)
    imports.register(commands)
    export.register(commands)
    report.register(commands)
    similar.register(commands, train, evaluate, bench, data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except (ValueError, TypeError) as exc:
        print(f"fashionstream: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        code: int = args.func(settings, args)
    except TrainingStackMissing as exc:  # e.g. --backend torch in the runtime install
        print(f"fashionstream: {exc}", file=sys.stderr)
        return EXIT_WITHOUT_STACK
    return code


def configure_logging(settings: Settings) -> None:
    """The process's logging, once at its entry point."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python (admin client, producers) logs every connection at INFO: a hundred lines per
    # demo run that bury the progress that matters; its warnings and errors still show
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))


def _group(commands: Commands, name: str, help: str) -> Commands:
    parser = commands.add_parser(name, help=help)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="WHAT")


def _print_settings(settings: Settings, _args: argparse.Namespace) -> int:
    rows = settings.describe(redacted=True)
    width = max(len(name) for name, _, _ in rows)
    for name, value, help_text in rows:
        print(f"{name:<{width}}  {value}\n{'':<{width}}  {help_text}")
    return 0
