"""`fashionstream up` / `down`: the embedded local broker and Postgres (infra/local_stack.py)."""

from __future__ import annotations

import argparse
import sys

from fashionstream.app.commands import Commands
from fashionstream.core.settings import Settings, env_name


def register(commands: Commands) -> None:
    """Adds `up` and `down`."""
    up = commands.add_parser(
        "up",
        help="start (or reuse) the local broker and Postgres, create topics, apply migrations",
        description="Starts a Kafka-protocol broker (FASHIONSTREAM_EMBEDDED_BROKER) and Postgres"
        " from the installed wheels on the loopback addresses of FASHIONSTREAM_KAFKA_BOOTSTRAP and"
        " FASHIONSTREAM_DATABASE_URL, with data and logs in FASHIONSTREAM_STATE_DIR. Addresses"
        " that are not loopback are external: only checked, given topics and migrated.",
    )
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    up.set_defaults(func=_up)
    down = commands.add_parser("down", help="stop the broker and Postgres that `up` started")
    down.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    down.set_defaults(func=_down)


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from infra.errors import StackError
    from infra.local_stack import LocalStack

    try:
        status = LocalStack.from_settings(settings).start(timeout_s=args.timeout)
    except StackError as exc:
        print(f"fashionstream up: {exc}", file=sys.stderr)
        return 1
    kafka, pg = status.kafka, status.postgres
    print(f"Kafka     {kafka.address}  ({_origin(kafka.managed, kafka.detail, kafka.pid)})")
    print(f"Postgres  {pg.address}  ({_origin(pg.managed, pg.detail, pg.pid)})")
    created = [t.name for t in status.topics if t.created]
    print(
        f"Topics    {', '.join(f'{t.name}[{t.partitions}]' for t in status.topics)}"
        + (f"  (created {len(created)})" if created else "")
    )
    print(f"Schema    {', '.join(status.migrations_applied) or 'up to date'}")
    print(f"Logs      {status.logs_dir}")
    print(
        "Processes find the stack through the same settings:"
        f" {env_name('kafka_bootstrap')}, {env_name('database_url')}."
        " `fashionstream down` stops it."
    )
    return 0


def _down(settings: Settings, args: argparse.Namespace) -> int:
    from fashionstream.app.api.background import api_url, stop_api
    from infra.errors import StackError
    from infra.local_stack import LocalStack

    api_stopped = stop_api(settings)
    if api_stopped is not None:
        print(f"{'API':<9} {api_url(settings)}  {'stopped' if api_stopped else 'still running'}")
    try:
        status = LocalStack.from_settings(settings).stop(timeout_s=args.timeout)
    except StackError as exc:
        print(f"fashionstream down: {exc}", file=sys.stderr)
        return 1
    for name, component in (("Kafka", status.kafka), ("Postgres", status.postgres)):
        if component.managed:
            state = "still running" if component.running else "stopped"
        else:
            state = "external, left running" if component.running else "external, not answering"
        print(f"{name:<9} {component.address}  {state}")
    still = [c for c in (status.kafka, status.postgres) if c.managed and c.running]
    return 1 if still or api_stopped is False else 0


def _origin(managed: bool, detail: str, pid: int | None) -> str:
    if not managed:
        return "external"
    return f"{detail}, pid {pid}" if pid else detail
