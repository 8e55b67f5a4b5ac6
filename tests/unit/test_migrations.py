"""infra.migrate: discovering migration files (naming, order, duplicates). A changed file being
refused by its checksum is tested on a real database: tests/integration/test_stack_migrations.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import MigrationError
from infra.migrate import MIGRATIONS_DIR, discover


def test_the_shipped_migrations_are_found_in_order() -> None:
    migrations = discover()
    assert migrations[0].version == 1
    assert migrations[0].name == "initial_schema"
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert all(p.suffix == ".sql" for p in MIGRATIONS_DIR.iterdir() if p.is_file())


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"0001_a.sql": "", "0001_b.sql": ""}, "used twice"),
        ({"1_a.sql": ""}, "NNNN_name.sql"),
        ({"0002_Bad-Name.sql": ""}, "NNNN_name.sql"),
    ],
    ids=["duplicate-version", "short-version", "bad-name"],
)
def test_malformed_migration_files_are_errors(
    tmp_path: Path, files: dict[str, str], error: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(MigrationError, match=error):
        discover(tmp_path)


def test_order_is_by_version_and_other_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "0010_later.sql").write_text("SELECT 10")
    (tmp_path / "0002_earlier.sql").write_text("SELECT 2")
    (tmp_path / "README.md").write_text("not a migration")
    assert [(m.version, m.name) for m in discover(tmp_path)] == [(2, "earlier"), (10, "later")]
