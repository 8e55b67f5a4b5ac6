"""The integration tests' stack and database helpers: settings for a private broker + Postgres on
free loopback ports (or the services named by FASHIONSTREAM_TEST_*), connections, row counts,
and stopping/starting the stack's Postgres. tests/integration/conftest.py builds its fixtures
from these."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from fashionstream.core.settings import BrokerKind, Settings
from infra.local_stack import LocalStack
from infra.processes import free_port, wait_until
from sinks.postgres import TABLES

BROKER_ENV = "FASHIONSTREAM_TEST_BROKER"
KAFKA_ENV = "FASHIONSTREAM_TEST_KAFKA_BOOTSTRAP"
DATABASE_ENV = "FASHIONSTREAM_TEST_DATABASE_URL"
START_TIMEOUT_S = 180.0  # 2 shared cores under a training job: generous, still bounded

log = logging.getLogger(__name__)


def broker_under_test() -> BrokerKind:
    raw = os.environ.get(BROKER_ENV, BrokerKind.TANSU.value).strip().lower()
    try:
        return BrokerKind(raw)
    except ValueError:
        allowed = ", ".join(k.value for k in BrokerKind)
        raise pytest.UsageError(f"{BROKER_ENV}={raw!r}: expected one of {allowed}") from None


def stack_settings(state_dir: Path, broker: BrokerKind) -> Settings:
    """Settings for a private stack in `state_dir` on free loopback ports (or the external
    services named by the FASHIONSTREAM_TEST_* variables)."""
    kafka_port = free_port()
    pg_port = free_port()
    while pg_port == kafka_port:
        pg_port = free_port()
    kafka = os.environ.get(KAFKA_ENV) or f"127.0.0.1:{kafka_port}"
    database = (
        os.environ.get(DATABASE_ENV)
        or f"postgresql://postgres@127.0.0.1:{pg_port}/fashionstream_test"
    )
    return Settings.from_env(
        environ={},
        state_dir=state_dir,
        kafka_bootstrap=kafka,
        database_url=database,
        embedded_broker=broker,
        worker_metrics_port=0,
        producer_metrics_port=0,
    )


@contextlib.contextmanager
def running_stack(broker: BrokerKind, timeout_s: float = START_TIMEOUT_S) -> Iterator[LocalStack]:
    """A started stack in a new temporary state dir; stopped and deleted on exit."""
    state_dir = Path(tempfile.mkdtemp(prefix="fashionstream-test-"))
    stack = LocalStack.from_settings(stack_settings(state_dir, broker))
    try:
        started = time.monotonic()
        stack.start(timeout_s=timeout_s)
        log.info("test stack (%s) up in %.1f s", broker.value, time.monotonic() - started)
        yield stack
    finally:
        try:
            stack.stop(timeout_s=60.0)
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)


def connect(settings: Settings) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(settings.database_url, connect_timeout=10)
    conn.autocommit = True
    return conn


def truncate_tables(conn: psycopg2.extensions.connection) -> None:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in TABLES)
            )
        )


def count_rows(conn: psycopg2.extensions.connection, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        row = cur.fetchone()
    return int(row[0])


def wait_for_row_count(
    conn: psycopg2.extensions.connection, table: str, n: int, timeout_s: float = 30.0
) -> int:
    """Poll until `table` has at least `n` rows; returns the count, fails the test on timeout."""
    seen = [0]

    def enough() -> bool:
        seen[0] = count_rows(conn, table)
        return seen[0] >= n

    if not wait_until(enough, timeout_s, interval_s=0.2):
        pytest.fail(f"{table}: {seen[0]} rows after {timeout_s:.0f} s, expected at least {n}")
    return seen[0]


class PostgresControl:
    """Stop and restart the session stack's Postgres (same port, same data)."""

    def __init__(self, stack: LocalStack) -> None:
        if stack.postgres is None:
            pytest.skip("Postgres is external (FASHIONSTREAM_TEST_DATABASE_URL): cannot stop it")
        self._postgres = stack.postgres

    @property
    def running(self) -> bool:
        return self._postgres.is_running()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._postgres.stop(timeout_s)

    def start(self, timeout_s: float = 60.0) -> None:
        self._postgres.start(timeout_s)
