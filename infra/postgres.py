"""The embedded Postgres: initdb, pg_ctl start/stop and readiness on the loopback port of
`settings.database_url`, from pgserver's wheel (PostgreSQL 16) or Debian's postgresql binaries.

Postgres refuses to run as root. As root the launcher runs initdb/pg_ctl as an unprivileged OS
user (a system user `fashionstream`, created with useradd when missing; `nobody` where it cannot
be created) that owns `<state_dir>/postgres`, and grants that user search (never read) permission
on the directories above it that lack one, logging each change. As a normal user it runs as that
user. The server listens on TCP loopback only (no Unix socket, so path length never matters) and
trusts loopback connections: it is a local development and test database.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from infra.errors import PostgresError
from infra.processes import is_loopback, pid_alive, pid_cmdline, tail, terminate

log = logging.getLogger(__name__)

OS_USER = "fashionstream"
FALLBACK_OS_USER = "nobody"
DEBIAN_ROOT = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class Endpoint:
    """Where a libpq URL points. `local` when the launcher may run a server for it."""

    host: str
    port: int
    user: str
    dbname: str

    @classmethod
    def parse(cls, database_url: str) -> Endpoint:
        try:
            parts = psycopg2.extensions.parse_dsn(database_url)
        except psycopg2.ProgrammingError as exc:
            raise PostgresError(f"database_url is not a libpq URL: {exc}") from exc
        host = parts.get("host", "")
        return cls(
            host=host,
            port=int(parts.get("port", 5432)),
            user=parts.get("user", "postgres"),
            dbname=parts.get("dbname", parts.get("user", "postgres")),
        )

    @property
    def local(self) -> bool:
        # a socket directory (host starting with /) or several hosts: not ours to run
        return bool(self.host) and "," not in self.host and is_loopback(self.host)


@dataclass(frozen=True)
class PostgresBinaries:
    bin_dir: Path
    major: int
    origin: str  # "pgserver" or "system"

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def find_binaries(required_major: int | None = None) -> PostgresBinaries:
    """pgserver's PostgreSQL (a declared dependency) first, then Debian's; `required_major`
    (an existing cluster's PG_VERSION) picks the one that can open that cluster."""
    candidates: list[PostgresBinaries] = []
    spec = importlib.util.find_spec("pgserver")  # not imported: its import has side effects
    if spec is not None and spec.submodule_search_locations:
        bin_dir = Path(next(iter(spec.submodule_search_locations)), "pginstall", "bin")
        major = _major_version(bin_dir)
        if major is not None:
            candidates.append(PostgresBinaries(bin_dir, major, "pgserver"))
    if DEBIAN_ROOT.is_dir():
        for version_dir in sorted(DEBIAN_ROOT.iterdir(), reverse=True):
            major = _major_version(version_dir / "bin")
            if major is not None:
                candidates.append(PostgresBinaries(version_dir / "bin", major, "system"))
    for candidate in candidates:
        if required_major is None or candidate.major == required_major:
            return candidate
    found = ", ".join(f"{c.major} ({c.bin_dir})" for c in candidates) or "none"
    wanted = f" {required_major}" if required_major else ""
    raise PostgresError(
        f"no PostgreSQL{wanted} binaries found (found: {found}); pip install pgserver"
        + (" or use a fresh state dir" if required_major else "")
    )


def _major_version(bin_dir: Path) -> int | None:
    postgres = bin_dir / "postgres"
    if not (postgres.is_file() and (bin_dir / "pg_ctl").is_file()):
        return None
    try:
        out = subprocess.run(  # noqa: S603 - our own binary, fixed arguments
            [str(postgres), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------
# who runs Postgres


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int

    @classmethod
    def from_pwd(cls, entry: pwd.struct_passwd) -> OsUser:
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @property
    def groups(self) -> set[int]:
        try:
            return set(os.getgrouplist(self.name, self.gid))
        except OSError:
            return {self.gid}


def server_os_user(
    euid: int | None = None,
    lookup: Callable[[str], pwd.struct_passwd] = pwd.getpwnam,
    create: Callable[[str], None] | None = None,
) -> OsUser | None:
    """The OS user Postgres runs as: None (this process's user) unless we are root."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return None
    create = _useradd if create is None else create
    with contextlib.suppress(KeyError):
        return OsUser.from_pwd(lookup(OS_USER))
    try:
        create(OS_USER)
        return OsUser.from_pwd(lookup(OS_USER))
    except (OSError, subprocess.SubprocessError, KeyError) as exc:
        log.warning(
            "cannot create system user %r (%s); running Postgres as %r",
            OS_USER,
            exc,
            FALLBACK_OS_USER,
        )
    try:
        return OsUser.from_pwd(lookup(FALLBACK_OS_USER))
    except KeyError:
        raise PostgresError(
            f"running as root, Postgres needs a non-root user: neither {OS_USER!r} could be"
            f" created nor {FALLBACK_OS_USER!r} exists"
        ) from None


def _useradd(name: str) -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(  # noqa: S603 - useradd with a fixed name
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--comment", "fashionstream embedded Postgres", name],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if result.returncode not in (0, 9):  # 9: the name exists (another launcher won the race)
        raise subprocess.SubprocessError(result.stderr.strip() or f"useradd: {result.returncode}")
    log.info("created system user %r to run Postgres (Postgres refuses root)", name)


def grant_search(path: Path, user: OsUser) -> list[Path]:
    """Make every directory from / down to `path` searchable by `user`, adding only the
    others-execute bit where it lacks search permission. Returns the directories changed."""
    changed = []
    groups = user.groups
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if st.st_uid == user.uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            changed.append(directory)
            log.warning(
                "granted others search (o+x) on %s so that %r can reach the Postgres data",
                directory,
                user.name,
            )
    return changed


# ---------------------------------------------------------------------------------------------
# the server


class LocalPostgres:
    """A Postgres cluster in `root` (`<state_dir>/postgres`) serving `endpoint` on loopback."""

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        root: Path,
        log_file: Path,
        binaries: PostgresBinaries | None = None,
        os_user: OsUser | None = None,
        run_as_self: bool = False,
    ) -> None:
        if not endpoint.local:
            raise PostgresError(f"{endpoint.host}:{endpoint.port} is not a loopback address")
        self.endpoint = endpoint
        self.root = root
        self.data_dir = root / "data"
        self.log_file = log_file
        self._binaries = binaries
        self._os_user = os_user
        self._run_as_self = run_as_self

    # --- facts

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def pid(self) -> int | None:
        """The postmaster's pid when it is running for this data dir."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (OSError, IndexError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        cmdline = pid_cmdline(pid)
        if cmdline is not None and not any("postgres" in part for part in cmdline):
            return None  # a stale pid file whose pid now belongs to something else
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def is_ready(self, timeout_s: float = 2.0) -> bool:
        try:
            with (
                contextlib.closing(self.connect("postgres", timeout_s)) as conn,
                conn.cursor() as cur,
            ):
                cur.execute("SELECT 1")
            return True
        except psycopg2.OperationalError:
            return False

    def connect(self, dbname: str, timeout_s: float) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.endpoint.host,
            port=self.endpoint.port,
            user=self.endpoint.user,
            dbname=dbname,
            connect_timeout=max(1, round(timeout_s)),
        )

    def binaries(self) -> PostgresBinaries:
        if self._binaries is None:
            major = None
            if self.initialised:
                major = int((self.data_dir / "PG_VERSION").read_text().strip().split(".")[0])
            self._binaries = find_binaries(major)
        return self._binaries

    # --- lifecycle

    def start(self, timeout_s: float) -> int:
        """initdb when needed, then pg_ctl start; returns the postmaster pid once it accepts
        connections. A server already running for this data dir is reused."""
        started = time.monotonic()
        user = self._prepare()
        if not self.initialised:
            self._initdb(user, timeout_s)
        pid = self.pid()
        if pid is None:
            options = (
                f"-p {self.endpoint.port} -c listen_addresses={self.endpoint.host}"
                " -c unix_socket_directories="
            )
            self._run(
                user,
                ["-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                 "-t", str(max(1, round(timeout_s))), "-o", options, "start"],
                timeout_s + 5, "pg_ctl",
            )  # fmt: skip
            pid = self.pid()
            if pid is None:
                raise PostgresError(
                    f"pg_ctl reported a start but no postmaster runs:\n{self._log()}"
                )
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if time.monotonic() > deadline or not self.is_running():
                raise PostgresError(
                    f"Postgres (pid {pid}) does not accept connections on"
                    f" {self.endpoint.host}:{self.endpoint.port}:\n{self._log()}"
                )
            time.sleep(0.1)
        self.ensure_database(timeout_s)
        log.info(
            "postgres %d ready on %s:%d in %.2f s (pid %d)",
            self.binaries().major,
            self.endpoint.host,
            self.endpoint.port,
            time.monotonic() - started,
            pid,
        )
        return pid

    def stop(self, timeout_s: float) -> bool:
        """Fast shutdown (sessions are disconnected). Returns False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        user = self._owner()
        try:
            self._run(
                user,
                ["-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(max(1, round(timeout_s))),
                 "stop"],
                timeout_s + 5, "pg_ctl",
            )  # fmt: skip
        except PostgresError as exc:
            log.warning("pg_ctl stop failed (%s); terminating pid %d", exc, pid)
            if not terminate(pid, 5.0):
                raise PostgresError(f"Postgres (pid {pid}) did not stop") from exc
        return True

    def ensure_database(self, timeout_s: float) -> bool:
        """Create the URL's database when missing. Returns True when it was created."""
        dbname = self.endpoint.dbname
        with contextlib.closing(self.connect("postgres", timeout_s)) as conn:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
                if cur.fetchone() is not None:
                    return False
                try:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                except psycopg2.errors.DuplicateDatabase:
                    return False  # another launcher created it meanwhile
        log.info("created database %s", dbname)
        return True

    # --- helpers

    def _prepare(self) -> OsUser | None:
        """Directories and ownership so the server user can write its data and log."""
        user = None if self._run_as_self else (self._os_user or server_os_user())
        if self.initialised and user is not None:
            user = self._owner()  # keep running a cluster as the user that owns it
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.touch(exist_ok=True)
        if user is not None:
            os.chown(self.root, user.uid, user.gid)
            os.chown(self.log_file, user.uid, user.gid)
            grant_search(self.root, user)
            grant_search(self.log_file.parent, user)
            grant_search(self.binaries().bin_dir, user)
        self.root.chmod(0o700)
        return user

    def _owner(self) -> OsUser | None:
        """The data dir's owner when it is not us (we are root), else None."""
        target = self.data_dir if self.data_dir.exists() else self.root
        uid = target.stat().st_uid
        if uid == os.geteuid():
            return None
        try:
            return OsUser.from_pwd(pwd.getpwuid(uid))
        except KeyError:
            return OsUser(str(uid), uid, target.stat().st_gid)

    def _initdb(self, user: OsUser | None, timeout_s: float) -> None:
        log.info("initialising a Postgres cluster in %s", self.data_dir)
        self._run(
            user,
            ["-D", str(self.data_dir), "-U", self.endpoint.user, "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-instructions"],
            max(timeout_s, 60.0), "initdb",
        )  # fmt: skip

    def _run(self, user: OsUser | None, args: Sequence[str], timeout_s: float, tool: str) -> None:
        command = [self.binaries().tool(tool), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        # output to a file, not a pipe: the postmaster pg_ctl forks must not hold our pipe open
        with tempfile.TemporaryFile() as output:
            try:
                result = subprocess.run(  # noqa: S603 - Postgres tools, our arguments
                    command,
                    cwd=self.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    timeout=timeout_s,
                    check=False,  # a failure is reported below with the server log attached
                    user=None if user is None else user.uid,
                    group=None if user is None else user.gid,
                    extra_groups=None if user is None else [],
                )
            except subprocess.TimeoutExpired as exc:
                raise PostgresError(
                    f"{tool} timed out after {timeout_s:.0f} s:\n{self._log()}"
                ) from exc
            except OSError as exc:
                raise PostgresError(f"{tool} could not run: {exc}") from exc
            output.seek(0)
            text = output.read().decode(errors="replace").strip()
        if result.returncode != 0:
            raise PostgresError(f"{tool} failed ({result.returncode}): {text}\n{self._log()}")

    def _log(self) -> str:
        return f"last lines of {self.log_file}:\n{tail(self.log_file)}"
