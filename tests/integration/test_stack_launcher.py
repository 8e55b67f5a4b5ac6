"""The launcher's decisions: which OS user runs Postgres, which directories it may need to
search, which addresses are ours to run, recognising our own pid, and running as a normal user."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fashionstream.core.settings import BrokerKind, env_name
from infra.brokers import BrokerRecord, make_broker
from infra.errors import PostgresError
from infra.local_stack import _split_bootstrap
from infra.postgres import (
    FALLBACK_OS_USER,
    OS_USER,
    Endpoint,
    OsUser,
    find_binaries,
    grant_search,
    server_os_user,
)
from infra.processes import free_port
from tests.support.stack import stack_settings

REPO = Path(__file__).resolve().parents[2]


def _entry(name: str, uid: int) -> pwd.struct_passwd:
    return pwd.struct_passwd((name, "x", uid, uid, "", "/nonexistent", "/usr/sbin/nologin"))


def test_a_normal_user_runs_postgres_itself() -> None:
    assert server_os_user(euid=1000) is None


def test_root_uses_the_existing_service_user() -> None:
    created: list[str] = []
    user = server_os_user(euid=0, lookup=lambda name: _entry(name, 990), create=created.append)
    assert user == OsUser(OS_USER, 990, 990)
    assert created == []


def test_root_creates_the_service_user_when_missing() -> None:
    users: dict[str, pwd.struct_passwd] = {}

    def lookup(name: str) -> pwd.struct_passwd:
        return users[name]

    def create(name: str) -> None:
        users[name] = _entry(name, 991)

    assert server_os_user(euid=0, lookup=lookup, create=create) == OsUser(OS_USER, 991, 991)


def test_root_falls_back_to_nobody_when_no_user_can_be_created() -> None:
    def lookup(name: str) -> pwd.struct_passwd:
        if name == FALLBACK_OS_USER:
            return _entry(name, 65534)
        raise KeyError(name)

    def create(name: str) -> None:
        raise FileNotFoundError("useradd")

    assert server_os_user(euid=0, lookup=lookup, create=create) == OsUser("nobody", 65534, 65534)


def test_root_without_any_usable_user_is_a_clear_error() -> None:
    def lookup(name: str) -> pwd.struct_passwd:
        raise KeyError(name)

    def create(name: str) -> None:
        raise FileNotFoundError("useradd")

    with pytest.raises(PostgresError, match="non-root user"):
        server_os_user(euid=0, lookup=lookup, create=create)


@pytest.fixture
def private_tree() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="fashionstream-test-"))  # 0700, like a home directory
    try:
        yield top
    finally:
        shutil.rmtree(top)


def test_grant_search_adds_only_the_execute_bit_where_missing(private_tree: Path) -> None:
    target = private_tree / "a" / "b"
    target.mkdir(parents=True)
    (private_tree / "a").chmod(0o750)
    stranger = OsUser("stranger", 54321, 54321)
    changed = grant_search(target, stranger)
    assert changed == [private_tree, private_tree / "a"]  # b (0755) was searchable already
    assert stat.S_IMODE(private_tree.stat().st_mode) == 0o701  # search, never read
    assert stat.S_IMODE((private_tree / "a").stat().st_mode) == 0o751
    assert grant_search(target, stranger) == []  # idempotent


def test_grant_search_leaves_the_owners_own_directories_alone(private_tree: Path) -> None:
    st = private_tree.stat()
    owner = OsUser("owner", st.st_uid, st.st_gid)
    assert grant_search(private_tree, owner) == []
    assert stat.S_IMODE(private_tree.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("url", "local", "port", "dbname"),
    [
        ("postgresql://postgres@127.0.0.1:15432/fashionstream", True, 15432, "fashionstream"),
        ("postgresql://u:pw@localhost/db", True, 5432, "db"),
        ("postgresql://u@db.internal:5432/db", False, 5432, "db"),
        ("postgresql:///db?host=/var/run/postgresql", False, 5432, "db"),
        ("host=127.0.0.2 port=6000 dbname=x user=y", True, 6000, "x"),
    ],
)
def test_endpoint_parse(url: str, local: bool, port: int, dbname: str) -> None:
    endpoint = Endpoint.parse(url)
    assert (endpoint.local, endpoint.port, endpoint.dbname) == (local, port, dbname)


def test_endpoint_parse_refuses_garbage() -> None:
    with pytest.raises(PostgresError, match="libpq"):
        Endpoint.parse("postgresql://[bad")


@pytest.mark.parametrize(
    ("bootstrap", "expected"),
    [
        ("127.0.0.1:19092", ("127.0.0.1", 19092)),
        ("localhost:9092", ("localhost", 9092)),
        ("[::1]:9092", ("::1", 9092)),
        ("kafka:9092", None),
        ("127.0.0.1:9092,127.0.0.1:9093", None),
        ("127.0.0.1", None),
    ],
)
def test_only_one_loopback_bootstrap_is_ours_to_run(
    bootstrap: str, expected: tuple[str, int] | None
) -> None:
    assert _split_bootstrap(bootstrap) == expected


def test_binaries_for_an_existing_cluster_match_its_version() -> None:
    newest = find_binaries()
    assert find_binaries(newest.major).major == newest.major
    with pytest.raises(PostgresError, match="no PostgreSQL 7 binaries"):
        find_binaries(7)


def test_a_pid_file_naming_another_process_is_not_our_broker(tmp_path: Path) -> None:
    broker = make_broker(BrokerKind.TANSU, host="127.0.0.1", port=free_port(), state_dir=tmp_path)
    broker.paths.pid_file.parent.mkdir(parents=True)
    # this test process is alive, but it is not tansu on that port (a recycled pid)
    record = BrokerRecord("tansu", os.getpid(), "127.0.0.1", broker.port, "/x/tansu", 0.0)
    broker.paths.pid_file.write_text(record.to_json())
    assert broker.running_record() is None
    assert broker.stop(timeout_s=1) is False  # and so it is never signalled
    assert not broker.paths.pid_file.exists()


def _interpreter_for(user: pwd.struct_passwd) -> str | None:
    """A Python of this ABI that `user` can execute, or None."""
    for candidate in (
        os.path.realpath(sys.executable),
        f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}",
    ):
        try:
            result = subprocess.run(
                [candidate, "-c", "import sys; print(tuple(sys.version_info[:2]))"],
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=[],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:  # missing, or not executable by `user`
            continue
        if result.stdout.strip() == str(tuple(sys.version_info[:2])):
            return candidate
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="as a normal user every other test covers this")
def test_up_and_down_as_a_normal_user(private_tree: Path) -> None:
    """Root can impersonate `nobody` to check the non-root path end to end."""
    nobody = pwd.getpwnam("nobody")
    python = _interpreter_for(nobody)
    if python is None:
        pytest.skip("no Python interpreter of this version is executable by nobody")
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    state_dir = private_tree / "state"
    state_dir.mkdir()
    os.chown(state_dir, nobody.pw_uid, nobody.pw_gid)
    private_tree.chmod(0o711)
    settings = stack_settings(state_dir, BrokerKind.NOIDA)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(state_dir),
        "PYTHONPATH": os.pathsep.join([str(REPO), *paths]),
        env_name("state_dir"): str(state_dir),
        env_name("kafka_bootstrap"): settings.kafka_bootstrap,
        env_name("database_url"): settings.database_url,
        env_name("embedded_broker"): "noida",
    }

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-m", "fashionstream", command],
            env=env,
            cwd=state_dir,
            user=nobody.pw_uid,
            group=nobody.pw_gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    reachable = subprocess.run(
        [python, "-c", "import fashionstream.app.cli, infra.local_stack"],
        env=env,
        cwd=state_dir,
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if reachable.returncode != 0:
        pytest.skip("the checkout or its packages are not readable by nobody")
    try:
        up = run("up")
        assert up.returncode == 0, up.stderr
        data = state_dir / "postgres" / "data"
        assert data.stat().st_uid == nobody.pw_uid  # nobody ran initdb itself
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    with socket.socket() as probe:
        port = int(settings.kafka_bootstrap.rsplit(":", 1)[1])
        probe.bind(("127.0.0.1", port))  # free again: the broker is gone
