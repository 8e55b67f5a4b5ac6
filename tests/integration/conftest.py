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

Every test under tests/integration gets the `integration` marker. Processes started here are
stopped at the end of the session even when tests fail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from fashionstream.records import (
    SourceKind,
    TaggedImage,
    WireColour,
    WireGarment,
    WireLabel,
    WireMask,
    WirePerson,
    event_id_for_frame,
    event_id_for_item,
)
from fashionstream.settings import BrokerKind, Settings
from infra.local_stack import LocalStack
from infra.processes import free_port, wait_until
from sinks.postgres import TABLES

BROKER_ENV = "FASHIONSTREAM_TEST_BROKER"
KAFKA_ENV = "FASHIONSTREAM_TEST_KAFKA_BOOTSTRAP"
DATABASE_ENV = "FASHIONSTREAM_TEST_DATABASE_URL"
START_TIMEOUT_S = 180.0  # 2 shared cores under a training job: generous, still bounded

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


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


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with running_stack(broker_under_test()) as started:
        yield started


@pytest.fixture(scope="session")
def local_stack(stack: LocalStack) -> Settings:
    return stack.settings


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


@pytest.fixture
def db(local_stack: Settings) -> Iterator[psycopg2.extensions.connection]:
    conn = connect(local_stack)
    truncate_tables(conn)
    try:
        yield conn
    finally:
        conn.close()


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


@pytest.fixture
def wait_for_rows(db: psycopg2.extensions.connection) -> Callable[..., int]:
    def wait(table: str, n: int, timeout_s: float = 30.0) -> int:
        return wait_for_row_count(db, table, n, timeout_s)

    return wait


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


@pytest.fixture
def postgres_control(stack: LocalStack) -> Iterator[PostgresControl]:
    control = PostgresControl(stack)
    try:
        yield control
    finally:
        if not control.running:
            control.start()


# ---------------------------------------------------------------------------------------------
# sample records


def tagged_image(
    *,
    index: int = 0,
    source_kind: SourceKind = SourceKind.CAMERA,
    source_id: str = "cam-1",
    garments: int = 2,
    people: int = 1,
    model_version: str = "test-v1",
    attributes: dict[str, str | int | float | bool | None] | None = None,
    **overrides: Any,
) -> TaggedImage:
    """A plausible `TaggedImage` (a camera frame, or a catalogue image with source_kind=FEED)
    with `garments` garments worn by the first of `people` people. `index` makes the event id,
    frame number or item id distinct; `overrides` replace any field."""
    width, height = 640, 480
    mask = WireMask(size=(height, width), counts="PPYo1k0O2N1O1N2")
    person_list = tuple(
        WirePerson(index=i, score=0.9, box=(10.0 + i, 20.0, 200.0 + i, 470.0), mask=mask)
        for i in range(people)
    )
    garment_list = tuple(
        WireGarment(
            index=i,
            category=("top", "trousers", "footwear")[i % 3],
            score=0.8 - 0.1 * (i % 3),
            box=(30.0, 40.0 + i, 180.0, 240.0 + i),
            mask=mask,
            attributes={
                "gender": WireLabel("Women", 0.91),
                "masterCategory": WireLabel("Apparel", 0.97),
                "articleType": WireLabel("Tshirts", 0.66),
                "season": WireLabel("Summer", 0.55),
            },
            probabilities={
                "gender": {"Women": 0.91, "Men": 0.07, "Unisex": 0.02},
                "articleType": {"Tshirts": 0.66, "Shirts": 0.34},
            },
            colour=WireColour("Navy Blue", (20, 30, 90), 0.62),
            style=WireLabel("Casual", 0.8),
            person_index=0 if people else None,
        )
        for i in range(garments)
    )
    now = time.time()
    if source_kind is SourceKind.CAMERA:
        identity: dict[str, Any] = {
            "event_id": event_id_for_frame(source_id, "test.mp4", index),
            "frame_number": index,
        }
    else:
        item_id = f"sku-{index}"
        url = f"https://shop.example/img/{index}.jpg"
        identity = {
            "event_id": event_id_for_item(source_id, item_id, url),
            "item_id": item_id,
            "image_url": url,
        }
    fields: dict[str, Any] = {
        "source_kind": source_kind,
        "source_id": source_id,
        "captured_at": now - 2.0,
        "submitted_at": now - 1.5,
        "width": width,
        "height": height,
        "model_version": model_version,
        "timings": {"decode": 0.004, "infer": 0.7, "queue": 0.2},
        "garments": garment_list,
        "people": person_list,
        "attributes": attributes or {},
        **identity,
    }
    fields.update(overrides)
    return TaggedImage(**fields)
