"""The embedded local stack behind `fashionstream up/down`, the demo and the integration tests:
a Kafka-protocol broker and Postgres from pip-installed wheels on the loopback ports of the
settings, with data, logs and pid files in `settings.state_dir`.

`start()` reuses whatever already runs (ours, from the pid files; or anything answering on the
configured address, which is then treated as external and never stopped), waits until both
answer, creates the topics and applies the migrations. Settings that point at non-loopback
Kafka or Postgres make those components external: nothing is started for them, they are only
checked, given their topics and migrated.

Layout of the state dir:
    logs/broker-<kind>.log, logs/postgres.log
    run/broker.json            pid file of the broker (kind, pid, port, binary)
    broker/<kind>/             broker data (noida persists; Tansu is memory-only)
    postgres/data/             the Postgres cluster (owned by the server's OS user)
    stack.lock                 serialises concurrent up/down on this state dir
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from fashionstream.core.settings import BrokerKind, Settings
from infra.brokers import Broker, make_broker
from infra.errors import BrokerError, PostgresError, StackError
from infra.migrate import Migration, migrate
from infra.postgres import Endpoint, LocalPostgres
from infra.processes import is_loopback, port_open, wait_until
from infra.topics import TopicState, ensure_topics, kafka_ready, topic_specs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComponentStatus:
    address: str  # Kafka bootstrap or Postgres URL
    managed: bool  # started (and stopped) through this state dir
    running: bool  # our process is alive (managed) or the address answers (external)
    pid: int | None
    log_file: Path | None
    detail: str  # e.g. "tansu", "postgres 16 (pgserver)", "external"


@dataclass(frozen=True)
class StackStatus:
    state_dir: Path
    kafka: ComponentStatus
    postgres: ComponentStatus
    topics: tuple[TopicState, ...] = ()
    migrations_applied: tuple[str, ...] = ()

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"


def _split_bootstrap(bootstrap: str) -> tuple[str, int] | None:
    """(host, port) when `bootstrap` is one loopback address we could run a broker on."""
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    if len(servers) != 1:
        return None
    host, sep, port = servers[0].rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not is_loopback(host):
        return None
    return host, int(port)


class LocalStack:
    """Start, stop and inspect the local broker and Postgres of one state dir."""

    def __init__(
        self, settings: Settings, *, broker: Broker | None, postgres: LocalPostgres | None
    ) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir
        self.broker = broker  # None: Kafka is external
        self.postgres = postgres  # None: Postgres is external

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalStack:
        state_dir = settings.state_dir
        broker = None
        address = _split_bootstrap(settings.kafka_bootstrap)
        if address is not None:
            host, port = address
            broker = make_broker(
                BrokerKind(settings.embedded_broker), host=host, port=port, state_dir=state_dir
            )
        postgres = None
        endpoint = Endpoint.parse(settings.database_url)
        if endpoint.local:
            postgres = LocalPostgres(
                endpoint=endpoint,
                root=state_dir / "postgres",
                log_file=state_dir / "logs" / "postgres.log",
            )
        return cls(settings, broker=broker, postgres=postgres)

    # --- lifecycle

    def start(self, timeout_s: float = 120.0) -> StackStatus:
        """Bring the stack up (or reuse it), then topics and migrations. Idempotent."""
        deadline = time.monotonic() + timeout_s

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        with self._locked(timeout_s):
            self._start_kafka(left())
            self._start_postgres(left())
            topics = ensure_topics(
                self.settings.kafka_bootstrap, topic_specs(self.settings), min(30.0, left())
            )
            applied: list[Migration] = migrate(self.settings.database_url, min(30.0, left()))
        status = self.status()
        return StackStatus(
            state_dir=status.state_dir,
            kafka=status.kafka,
            postgres=status.postgres,
            topics=tuple(topics),
            migrations_applied=tuple(f"{m.version:04d}_{m.name}" for m in applied),
        )

    def stop(self, timeout_s: float = 60.0) -> StackStatus:
        """Stop what this state dir started; external services are left alone."""
        with self._locked(timeout_s):
            if self.broker is not None and self.broker.stop(timeout_s / 2):
                log.info("stopped the broker")
            if self.postgres is not None and self.postgres.stop(timeout_s / 2):
                log.info("stopped Postgres")
        return self.status()

    def status(self) -> StackStatus:
        return StackStatus(
            state_dir=self.state_dir, kafka=self._kafka_status(), postgres=self._postgres_status()
        )

    # --- Kafka

    def _start_kafka(self, timeout_s: float) -> None:
        bootstrap = self.settings.kafka_bootstrap
        broker = self.broker
        if broker is not None:
            record = broker.running_record()
            if record is not None:
                if record.kind != broker.kind.value:
                    log.warning(
                        "a %s broker of this state dir already runs on %s:%d; reusing it"
                        " (`fashionstream down` first to switch to %s)",
                        record.kind,
                        record.host,
                        record.port,
                        broker.kind.value,
                    )
                log.info("reusing the %s broker (pid %d)", record.kind, record.pid)
            elif port_open(broker.host, broker.port):
                log.warning(
                    "something not started by %s already listens on %s: using it as an"
                    " external Kafka",
                    self.state_dir,
                    broker.bootstrap,
                )
            else:
                broker.start(timeout_s)
                return
        if not wait_until(lambda: kafka_ready(bootstrap, 2.0), timeout_s, interval_s=0.5):
            raise BrokerError(f"Kafka at {bootstrap} does not answer metadata requests")

    def _kafka_status(self) -> ComponentStatus:
        bootstrap = self.settings.kafka_bootstrap
        broker = self.broker
        if broker is not None:
            record = broker.running_record()
            if record is not None:
                return ComponentStatus(
                    bootstrap, True, True, record.pid, broker.paths.log_file, record.kind
                )
            if not port_open(broker.host, broker.port):
                return ComponentStatus(
                    bootstrap, True, False, None, broker.paths.log_file, broker.kind.value
                )
        answering = kafka_ready(bootstrap, 2.0)
        return ComponentStatus(bootstrap, False, answering, None, None, "external")

    # --- Postgres

    def _start_postgres(self, timeout_s: float) -> None:
        pg = self.postgres
        url = self.settings.database_url
        if pg is not None:
            if pg.is_running() or not port_open(pg.endpoint.host, pg.endpoint.port):
                pg.start(timeout_s)
                return
            log.warning(
                "a Postgres not started by %s already listens on %s:%d: using it as external",
                self.state_dir,
                pg.endpoint.host,
                pg.endpoint.port,
            )
        if not wait_until(lambda: _postgres_answers(url), timeout_s, interval_s=0.5):
            raise PostgresError(f"Postgres at {_redact(url)} does not accept connections")

    def _postgres_status(self) -> ComponentStatus:
        url = _redact(self.settings.database_url)
        pg = self.postgres
        if pg is not None:
            pid = pg.pid()
            if pid is not None or not port_open(pg.endpoint.host, pg.endpoint.port):
                detail = "postgres"
                with contextlib.suppress(PostgresError):
                    binaries = pg.binaries()
                    detail = f"postgres {binaries.major} from {binaries.origin}"
                return ComponentStatus(url, True, pid is not None, pid, pg.log_file, detail)
        answering = _postgres_answers(self.settings.database_url)
        return ComponentStatus(url, False, answering, None, None, "external")

    # --- helpers

    @contextlib.contextmanager
    def _locked(self, timeout_s: float) -> Iterator[None]:
        if self.broker is None and self.postgres is None:
            yield  # all external: nothing local to guard, and the state dir may be read-only
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "stack.lock").open("a") as lock:
            acquired = wait_until(lambda: _try_lock(lock.fileno()), timeout_s, interval_s=0.2)
            if not acquired:
                raise StackError(f"another `fashionstream up/down` holds {self.state_dir}")
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _postgres_answers(url: str) -> bool:
    try:
        with (
            contextlib.closing(psycopg2.connect(url, connect_timeout=2)) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT 1")
        return True
    except psycopg2.OperationalError:
        return False


def _redact(url: str) -> str:
    """The URL without its password, for printing."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)
