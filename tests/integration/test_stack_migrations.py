"""infra.migrate against the real Postgres: idempotent, transactional, edits refused, safe to
run from two processes at once."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from fashionstream.core.settings import Settings
from infra.errors import MigrationError
from infra.migrate import Migration, apply_migrations, discover


@pytest.fixture
def scratch_db(local_stack: Settings) -> Iterator[str]:
    """A new empty database on the stack's server; its libpq URL."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(local_stack.database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg2.extensions.make_dsn(local_stack.database_url, dbname=name)
    try:
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def _tables(conn: psycopg2.extensions.connection) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in cur.fetchall()}


def test_applying_twice_applies_once(scratch_db: str) -> None:
    with contextlib.closing(psycopg2.connect(scratch_db)) as conn:
        first = apply_migrations(conn)
        assert [m.version for m in first] == [m.version for m in discover()]
        second = apply_migrations(conn)
        assert second == []
        assert {"sources", "catalogue_items", "images", "people", "garments"} <= _tables(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT version FROM schema_migrations ORDER BY version")
            assert [r[0] for r in cur.fetchall()] == [m.version for m in first]


def test_a_failing_migration_leaves_nothing_behind(scratch_db: str) -> None:
    broken = [
        Migration(1, "good", "CREATE TABLE a (x int)"),
        Migration(2, "broken", "CREATE TABLE b (x int); SELECT * FROM missing_table"),
    ]
    with contextlib.closing(psycopg2.connect(scratch_db)) as conn:
        with pytest.raises(MigrationError, match="missing_table"):
            apply_migrations(conn, broken)
        assert "a" in _tables(conn)
        assert "b" not in _tables(conn)  # 0002 rolled back as a whole
        with conn.cursor() as cur:
            cur.execute("SELECT version FROM schema_migrations")
            assert cur.fetchall() == [(1,)]


def test_an_edited_migration_is_refused(scratch_db: str) -> None:
    with contextlib.closing(psycopg2.connect(scratch_db)) as conn:
        apply_migrations(conn, [Migration(1, "t", "CREATE TABLE t (x int)")])
        with pytest.raises(MigrationError, match="edited"):
            apply_migrations(conn, [Migration(1, "t", "CREATE TABLE t (x bigint)")])


def test_concurrent_migrators_apply_each_migration_once(scratch_db: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with contextlib.closing(psycopg2.connect(scratch_db)) as conn:
                results.append(len(apply_migrations(conn)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    # each migration is its own transaction, so the three may share the work (with two
    # migrations, two of them can apply one each): together they applied each exactly once
    assert sum(results) == len(discover())
    with contextlib.closing(psycopg2.connect(scratch_db)) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [v for (v,) in cur.fetchall()] == [m.version for m in discover()]
