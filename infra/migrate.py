"""Versioned SQL migrations: `infra/migrations/NNNN_name.sql`, each applied once, in order, in
its own transaction, and recorded in `schema_migrations` with a checksum so that an edited
migration is refused instead of silently diverging. Safe to run from several processes at once
(a transaction-scoped advisory lock serialises them)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

from infra.errors import MigrationError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_xact_lock key: any constant shared by every fashionstream migrator
LOCK_KEY = 0x66736D69  # "fsmi"

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in `directory`, by version. A .sql file with a malformed name or a
    repeated version is an error, not something to skip."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        migrations[version] = Migration(version, match.group(2), path.read_text())
    return [migrations[v] for v in sorted(migrations)]


def apply_migrations(
    conn: psycopg2.extensions.connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply the migrations `conn`'s database has not seen yet; returns those applied."""
    migrations = discover() if migrations is None else migrations
    conn.autocommit = False
    applied = []
    try:
        with conn, conn.cursor() as cur:  # `with conn` commits, or rolls back on an exception
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            cur.execute(CREATE_LEDGER)
        for migration in migrations:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                cur.execute(
                    "SELECT checksum FROM schema_migrations WHERE version = %s",
                    (migration.version,),
                )
                row = cur.fetchone()
                if row is not None:
                    if row[0] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was edited after"
                            " it was applied; add a new migration instead"
                        )
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                cur.execute(migration.sql)
                cur.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            applied.append(migration)
    except psycopg2.Error as exc:
        raise MigrationError(f"migration failed: {exc}".strip()) from exc
    return applied


def migrate(database_url: str, timeout_s: float = 10.0) -> list[Migration]:
    """Connect to `database_url` and apply what is missing."""
    try:
        conn = psycopg2.connect(database_url, connect_timeout=max(1, round(timeout_s)))
    except psycopg2.OperationalError as exc:
        raise MigrationError(f"cannot connect to Postgres to migrate: {exc}".strip()) from exc
    with contextlib.closing(conn):
        return apply_migrations(conn)
