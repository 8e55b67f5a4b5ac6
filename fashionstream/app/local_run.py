"""Running the pipeline on one machine from Python: a worker child process, a
local HTTP server for sample images, and waiting until given events are in Postgres or in the
dead-letter topic. Used by `fashionstream demo`, `fashionstream bench pipeline` and the tests."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg2
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from fashionstream.core.records import DeadLetter, Topic
from fashionstream.core.settings import REPO_ROOT, Settings
from sinks.queries import Scope, image_counts


class RunError(Exception):
    """The local run could not finish: the worker died or results did not arrive in time."""


def settings_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """This process's environment with `settings` (+ overrides) as FASHIONSTREAM_* variables:
    the one way settings reach a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASHIONSTREAM_")}
    configured = dataclasses.replace(settings, **overrides)
    env.update({name: value for name, value, _help in configured.describe()})
    return env


# the worker a local run starts: this interpreter's `fashionstream worker`
WORKER_COMMAND = (sys.executable, "-m", "fashionstream", "worker")


class WorkerProcess:
    """A worker as a child process, logging to a file. `command` starts it: `fashionstream
    worker` unless the caller brings another launcher of the same worker (the tests' one runs
    it with a fake tagger)."""

    def __init__(
        self, env: Mapping[str, str], log_file: Path, command: Sequence[str] = WORKER_COMMAND
    ) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_file
        self._log = log_file.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - a worker launcher of this repository
            list(command),
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is committed on the way out."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit status."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()
        return self.process.returncode

    def tail(self, lines: int = 40) -> str:
        text = self.log_file.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@contextlib.contextmanager
def serve_directory(directory: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `directory` over HTTP on `host`:`port` (a free port if `port` is 0 or taken);
    yields the base URL, ending in '/'."""

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(directory))
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError:
        if port == 0:
            raise
        server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="fs-sample-http", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


PIPELINE_TOPICS = (Topic.IMAGES, Topic.FRAMES, Topic.ITEMS)


def start_group_at_end(
    settings: Settings, group: str, topics: tuple[Topic, ...] = PIPELINE_TOPICS
) -> None:
    """Commit, for `group`, the current end of every partition of `topics`, so that a worker of
    that group sees only what is produced next.

    The end is found by reading to it rather than from `end_offsets`: Tansu can report a wrong
    high watermark, and reading works on every broker. The commit goes through a consumer that
    never joins the group.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.max_message_bytes + 65536,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        partitions = [
            TopicPartition(t.value, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t.value) or [])
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        position = {tp: 0 for tp in partitions}
        quiet_since = time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() - quiet_since < 1.5:
            if time.monotonic() > deadline:
                raise RunError("reading to the end of the topics took over 120 s")
            batch = consumer.poll(timeout_ms=300, max_records=5000)
            if batch:
                quiet_since = time.monotonic()
                for tp, records in batch.items():
                    position[tp] = max(position[tp], records[-1].offset + 1)
        try:
            consumer.commit({tp: OffsetAndMetadata(o, None, -1) for tp, o in position.items()})
        except KafkaError as exc:  # a group with live members refuses a commit from outside
            raise RunError(
                f"could not position consumer group {group!r} ({exc}): is a worker of that"
                " group still running?"
            ) from exc
    finally:
        consumer.close()


class DeadLetterWatch:
    """Reads the dead-letter topic from where it ends now: the letters of a run started after."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            enable_auto_commit=False,
            consumer_timeout_ms=200,
        )
        partitions = self._consumer.partitions_for_topic(Topic.DEADLETTER.value) or set()
        self._partitions = [TopicPartition(Topic.DEADLETTER.value, p) for p in sorted(partitions)]
        self._consumer.assign(self._partitions)
        self._consumer.seek_to_end(*self._partitions)
        for tp in self._partitions:  # resolve the lazy seek now, before the run produces
            self._consumer.position(tp)
        self.letters: list[DeadLetter] = []

    def poll(self) -> list[DeadLetter]:
        """Letters that arrived since the last poll (all kept in `self.letters`)."""
        fresh = []
        for batch in self._consumer.poll(timeout_ms=200, max_records=500).values():
            for record in batch:
                fresh.append(DeadLetter.from_json(record.value))
        self.letters.extend(fresh)
        return fresh

    def close(self) -> None:
        self._consumer.close()


@dataclasses.dataclass(frozen=True)
class Progress:
    written: int  # images/frames of the run's sources (re)written since the run began
    dead_letters: int  # dead letters of the run's sources
    expected: int

    @property
    def done(self) -> bool:
        return self.written + self.dead_letters >= self.expected


def wait_for_sources(
    settings: Settings,
    *,
    sources: Collection[str],
    expected: int,
    since: float,
    watch: DeadLetterWatch,
    worker: WorkerProcess | None = None,
    timeout_s: float,
    on_progress: Callable[[Progress], None] | None = None,
) -> Progress:
    """Block until `expected` images or frames of `sources` (feed names, camera ids) are written
    to Postgres at or after `since` (epoch seconds) or dead-lettered. Raises RunError on timeout
    or if the worker dies."""
    deadline = time.monotonic() + timeout_s
    scope = Scope(sources=sources, written_since=dt.datetime.fromtimestamp(since, dt.UTC))
    with contextlib.closing(psycopg2.connect(settings.database_url)) as conn:
        conn.autocommit = True
        while True:
            watch.poll()
            counts = image_counts(conn, scope)
            written = counts["images"] + counts["frames"]
            letters = sum(1 for d in watch.letters if d.source_id in sources)
            progress = Progress(written=written, dead_letters=letters, expected=expected)
            if on_progress is not None:
                on_progress(progress)
            if progress.done:
                return progress
            if worker is not None and not worker.alive():
                code = worker.process.returncode
                raise RunError(f"the worker exited with status {code}:\n{worker.tail()}")
            if time.monotonic() > deadline:
                raise RunError(
                    f"timed out after {timeout_s:.0f} s with {written} of {expected} images"
                    f" written and {letters} dead-lettered"
                )
            time.sleep(0.25)
