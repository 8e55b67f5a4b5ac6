"""A `fashionstream worker` whose tagger is the fake one, for integration tests about Kafka and
Postgres semantics: it builds the same worker (`run_worker`) with `FakeTagger` injected through
its `tagger` parameter. Settings come from the FASHIONSTREAM_* environment, as for the real one.

Started as a child process by `tests.support.pipeline.running_worker` (or any `WorkerProcess`)
with `command(...)`; the production CLI knows nothing of it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fashionstream.app.cli import configure_logging
from fashionstream.core.settings import Settings
from stream_processors.worker import run_worker
from tests.support.fake_tagger import FakeTagger


def command(*, seconds_per_image: float = 0.0) -> tuple[str, ...]:
    """The argv that starts this worker (run from the repository root, as WorkerProcess does).
    `seconds_per_image` > 0 makes it slow enough for a test to act in the middle of a run."""
    return (
        sys.executable,
        "-m",
        "tests.support.fake_worker",
        "--seconds-per-image",
        str(seconds_per_image),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds-per-image", type=float, default=0.0)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings)
    return run_worker(settings, tagger=lambda: FakeTagger(seconds_per_image=args.seconds_per_image))


if __name__ == "__main__":
    sys.exit(main())
