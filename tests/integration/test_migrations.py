"""Migrations: applied in order exactly once, atomic per file, history append-only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from storage.migrate import MIGRATIONS_DIR, MigrationError, apply_migrations, load_migrations

ROOT = Path(__file__).resolve().parents[2]


def _applied_versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as connection:
        return [row[0] for row in connection.execute("select version from schema_migrations order by version")]


def test_all_migrations_apply_and_a_second_run_is_a_no_op(scratch_database):
    """A fresh database gets every migration once; running again applies nothing."""
    first = apply_migrations(scratch_database)
    assert [migration.version for migration in first] == [migration.version for migration in load_migrations()]
    assert apply_migrations(scratch_database) == []
    assert _applied_versions(scratch_database) == [migration.version for migration in load_migrations()]


def test_migrate_command_is_idempotent(scratch_database):
    """`python -m storage.migrate` (what `make migrate` runs) succeeds twice; the second run applies 0."""
    environment = {**os.environ, "MIGRATION_DATABASE_URL": scratch_database}
    for expected in (f"{len(load_migrations())} applied", "0 applied"):
        completed = subprocess.run(
            [sys.executable, "-m", "storage.migrate"], env=environment, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert completed.returncode == 0, completed.stderr
        assert expected in completed.stdout


def test_a_failing_migration_leaves_nothing_half_applied(scratch_database, tmp_path):
    """When a file fails midway, none of its statements stay and it is not recorded; earlier files stay."""
    (tmp_path / "0001_good.sql").write_text("create table good_one (id int primary key);")
    (tmp_path / "0002_bad.sql").write_text("create table half_done (id int); select no_such_function();")
    with pytest.raises(MigrationError, match="0002_bad failed and was rolled back"):
        apply_migrations(scratch_database, tmp_path)
    with psycopg.connect(scratch_database) as connection:
        assert connection.execute("select to_regclass('good_one') is not null").fetchone()[0]
        assert connection.execute("select to_regclass('half_done') is null").fetchone()[0]
    assert _applied_versions(scratch_database) == [1]


def test_an_edited_applied_migration_is_refused(scratch_database, tmp_path):
    """Changing a file that was already applied is an error, not a silent skip."""
    migration = tmp_path / "0001_first.sql"
    migration.write_text("create table first_table (id int);")
    apply_migrations(scratch_database, tmp_path)
    migration.write_text("create table first_table (id bigint);")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        apply_migrations(scratch_database, tmp_path)


def test_badly_named_files_are_refused(tmp_path):
    """Only NNNN_name.sql files are migrations; anything else is reported, not ignored."""
    (tmp_path / "1_missing_padding.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match="badly named"):
        load_migrations(tmp_path)


def test_the_repository_migrations_are_well_formed():
    """The committed migrations load, in strictly increasing order starting at 1."""
    versions = [migration.version for migration in load_migrations(MIGRATIONS_DIR)]
    assert versions == list(range(1, len(versions) + 1))
