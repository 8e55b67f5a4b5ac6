"""Integration fixtures: one real stack (Kafka-protocol broker + Postgres) per test session.

- `local_stack` (session): a `Settings` pointing at a broker and Postgres started by
  `infra.local_stack.LocalStack` in a fresh temporary state dir on free loopback ports, so tests
  never collide with a user's `fashionstream up` or with another test session. The four topics
  exist and the schema is migrated. Broker: env FASHIONSTREAM_TEST_BROKER (tansu | noida; default
  tansu). To run against real services instead, set FASHIONSTREAM_TEST_KAFKA_BOOTSTRAP and/or
  FASHIONSTREAM_TEST_DATABASE_URL (nothing is started for them, and nothing stops them).
- `stack` (session): the `LocalStack` itself (status, logs, the Postgres launcher).
- `db` (function): a psycopg2 connection (autocommit) to the stack's database, with every table
  the sink writes truncated before the test.
- `wait_for_rows` (function): `wait_for_rows(table, n, timeout_s=30.0) -> int` polls until `table`
  holds at least `n` rows and returns the count; fails the test with the count seen on timeout.
- `postgres_control` (function): `.stop()`, `.start()`, `.running` for the stack's Postgres,
  for "Postgres stopped and restarted mid-run" tests; Postgres is running again after the test.

The helpers these fixtures are built from (and that tests import) live in tests/support/stack.py.

Every test under tests/integration gets the `integration` marker. Processes started here are
stopped at the end of the session even when tests fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2.extensions
import pytest

from fashionstream.core.settings import Settings
from infra.local_stack import LocalStack
from tests.support.stack import (
    PostgresControl,
    broker_under_test,
    connect,
    running_stack,
    truncate_tables,
    wait_for_row_count,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with running_stack(broker_under_test()) as started:
        yield started


@pytest.fixture(scope="session")
def local_stack(stack: LocalStack) -> Settings:
    return stack.settings


@pytest.fixture
def db(local_stack: Settings) -> Iterator[psycopg2.extensions.connection]:
    conn = connect(local_stack)
    truncate_tables(conn)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def wait_for_rows(db: psycopg2.extensions.connection) -> Callable[..., int]:
    def wait(table: str, n: int, timeout_s: float = 30.0) -> int:
        return wait_for_row_count(db, table, n, timeout_s)

    return wait


@pytest.fixture
def postgres_control(stack: LocalStack) -> Iterator[PostgresControl]:
    control = PostgresControl(stack)
    try:
        yield control
    finally:
        if not control.running:
            control.start()
