"""infra.local_stack against real processes: both brokers from a fresh and from an existing
state dir, reuse, clean stop, the CLI, topics sized from settings that carry a 5 MB frame."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from fashionstream.core.records import Topic
from fashionstream.core.settings import BrokerKind, Settings, env_name
from infra.errors import BrokerError
from infra.local_stack import LocalStack
from infra.migrate import discover
from infra.processes import pid_alive, port_open
from tests.support.stack import stack_settings

FIVE_MB = 5 * 1024 * 1024


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fashionstream-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def stopped_at_exit(stack: LocalStack) -> Iterator[LocalStack]:
    try:
        yield stack
    finally:
        stack.stop(timeout_s=60)


def _topics(settings: Settings) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics([*Topic])}
    finally:
        admin.close()


@pytest.mark.parametrize("broker", list(BrokerKind), ids=[b.value for b in BrokerKind])
def test_up_reuse_down_and_up_again_from_the_existing_state_dir(
    broker: BrokerKind, state_dir: Path
) -> None:
    settings = stack_settings(state_dir, broker)
    stack = LocalStack.from_settings(settings)
    assert stack.broker is not None
    assert stack.postgres is not None
    with stopped_at_exit(stack):
        first = stack.start(timeout_s=120)
        assert first.kafka.managed
        assert first.kafka.running
        assert first.kafka.detail == broker.value
        assert first.postgres.managed
        assert first.postgres.running
        assert all(t.created for t in first.topics)
        assert first.migrations_applied == tuple(f"{m.version:04d}_{m.name}" for m in discover())
        assert (state_dir / "logs" / f"broker-{broker.value}.log").is_file()
        assert (state_dir / "logs" / "postgres.log").stat().st_size > 0
        if os.geteuid() == 0:  # Postgres refuses root: the launcher picked another user
            assert (state_dir / "postgres" / "data").stat().st_uid != 0

        # reuse: a second start (another process would do the same) starts nothing new
        again = LocalStack.from_settings(settings).start(timeout_s=60)
        assert (again.kafka.pid, again.postgres.pid) == (first.kafka.pid, first.postgres.pid)
        assert not any(t.created for t in again.topics)
        assert again.migrations_applied == ()

        # a row to find again after the restart
        with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO sources (kind, source_id) VALUES ('camera', 'kept')")
        conn.close()

        down = LocalStack.from_settings(settings).stop(timeout_s=60)
        assert not down.kafka.running
        assert not down.postgres.running
        assert first.kafka.pid is not None
        assert first.postgres.pid is not None
        assert not pid_alive(first.kafka.pid)
        assert not pid_alive(first.postgres.pid)
        assert not port_open("127.0.0.1", int(settings.kafka_bootstrap.rsplit(":", 1)[1]))

        # up again from the existing state dir
        restarted = stack.start(timeout_s=120)
        assert restarted.kafka.running
        assert restarted.postgres.running
        assert restarted.migrations_applied == ()
        # noida persists its topics; Tansu is memory-only and gets them created again
        assert all(t.created for t in restarted.topics) == (broker is BrokerKind.TANSU)
        with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT source_id FROM sources")
            assert cur.fetchall() == [("kept",)]
        conn.close()
    final = stack.status()
    assert not final.kafka.running
    assert not final.postgres.running


def test_topics_have_the_configured_partitions_and_carry_a_5mb_frame(
    local_stack: Settings,
) -> None:
    assert _topics(local_stack) == {t.value: local_stack.topic_partitions for t in Topic}
    payload = os.urandom(FIVE_MB)
    key = uuid.uuid4().bytes
    producer = KafkaProducer(
        bootstrap_servers=local_stack.kafka_bootstrap,
        max_request_size=local_stack.max_message_bytes,
        request_timeout_ms=30_000,
    )
    try:
        sent = producer.send(Topic.FRAMES.value, payload, key=key).get(timeout=30)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(
        bootstrap_servers=local_stack.kafka_bootstrap,
        fetch_max_bytes=local_stack.max_message_bytes * 2,
        max_partition_fetch_bytes=local_stack.max_message_bytes * 2,
        consumer_timeout_ms=30_000,
        enable_auto_commit=False,
    )
    try:
        partition = TopicPartition(Topic.FRAMES.value, sent.partition)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        received = next(iter(consumer))
    finally:
        consumer.close()
    assert received.key == key
    assert received.value == payload


def test_cli_up_prints_where_things_are_and_down_stops_them(state_dir: Path) -> None:
    settings = stack_settings(state_dir, BrokerKind.TANSU)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FASHIONSTREAM_")},
        env_name("state_dir"): str(state_dir),
        env_name("kafka_bootstrap"): settings.kafka_bootstrap,
        env_name("database_url"): settings.database_url,
    }
    command = [sys.executable, "-m", "fashionstream"]
    try:
        up = subprocess.run(
            [*command, "up"], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert up.returncode == 0, up.stderr
        assert settings.kafka_bootstrap in up.stdout
        assert settings.database_url in up.stdout
        assert str(state_dir / "logs") in up.stdout
    finally:
        down = subprocess.run(
            [*command, "down"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("stopped") == 2
    assert not LocalStack.from_settings(settings).status().kafka.running


def test_a_foreign_listener_on_the_kafka_port_is_not_mistaken_for_a_broker(
    state_dir: Path,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = Settings.from_env(
            environ={},
            state_dir=state_dir,
            kafka_bootstrap=f"127.0.0.1:{port}",
            database_url=stack_settings(state_dir, BrokerKind.TANSU).database_url,
        )
        stack = LocalStack.from_settings(settings)
        started = time.monotonic()
        with stopped_at_exit(stack), pytest.raises(BrokerError, match="does not answer"):
            stack.start(timeout_s=5)
        assert time.monotonic() - started < 30
        assert stack.broker is not None
        assert stack.broker.running_record() is None  # nothing of ours was started


def test_external_endpoints_start_nothing(state_dir: Path) -> None:
    settings = Settings.from_env(
        environ={},
        state_dir=state_dir,
        kafka_bootstrap="kafka-1.internal:9092,kafka-2.internal:9092",
        database_url="postgresql://app:secret@db.internal:5432/fashionstream",
    )
    stack = LocalStack.from_settings(settings)
    assert stack.broker is None
    assert stack.postgres is None


def test_external_services_are_checked_given_topics_and_migrated_without_a_state_dir(
    local_stack: Settings, tmp_path: Path
) -> None:
    # the session's services, treated the way a deployment's Kafka and Postgres are
    unwritable = tmp_path / "ro"
    unwritable.mkdir(mode=0o500)
    settings = Settings.from_env(
        environ={},
        state_dir=unwritable / "state",
        kafka_bootstrap=local_stack.kafka_bootstrap,
        database_url=local_stack.database_url,
    )
    stack = LocalStack(settings, broker=None, postgres=None)
    status = stack.start(timeout_s=60)
    assert not status.kafka.managed
    assert status.kafka.running
    assert not status.postgres.managed
    assert status.postgres.running
    assert {t.name for t in status.topics} == {t.value for t in Topic}
    assert not any(t.created for t in status.topics)
    assert status.migrations_applied == ()
    assert not (unwritable / "state").exists()
    stopped = stack.stop(timeout_s=10)  # leaves external services alone
    assert stopped.kafka.running
    assert stopped.postgres.running
