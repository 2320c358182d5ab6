"""Migrations: applied in order exactly once, atomic per file, history append-only; then the definitions
as they stand today (migrations/current/), which are what the database runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from localstack import provisioning
from storage.migrate import (
    MIGRATIONS_DIR,
    MigrationError,
    apply_migrations,
    load_definitions,
    load_migrations,
    migrate,
)

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


# Functions the numbered history defines and migrations/current/ deliberately does not: none today. A
# function no longer used is dropped by a numbered migration rather than listed here; list one only with
# the reason it must stay (e.g. something outside this repository still calls it).
HISTORY_ONLY_FUNCTIONS: dict[str, str] = {}

# A function with its full definition, owner and privileges: everything `create or replace`, ALTER ... OWNER
# and GRANT decide.
FUNCTIONS = """
    select p.oid::regprocedure::text, pg_get_functiondef(p.oid), pg_get_userbyid(p.proowner),
           coalesce((select array_agg(a::text order by a::text) from unnest(p.proacl) a), '{}')
      from pg_proc p
     where p.pronamespace = 'public'::regnamespace
     order by 1
"""


def _functions(dsn: str) -> dict[str, tuple]:
    with psycopg.connect(dsn) as connection:
        return {row[0]: row[1:] for row in connection.execute(FUNCTIONS)}


def _defined_names() -> dict[str, list[str]]:
    """Function name -> the files of migrations/current/ that create it."""
    defined: dict[str, list[str]] = {}
    for definition in load_definitions():
        for name in re.findall(r"^create or replace function (\w+)\(", definition.sql, flags=re.MULTILINE):
            defined.setdefault(name, []).append(definition.file)
    return defined


def test_the_current_files_define_every_function_there_is(scratch_database):
    """After migrating a fresh database, the functions in the catalogue are exactly the ones
    migrations/current/ defines: each in one file, none only in history (but HISTORY_ONLY_FUNCTIONS), and
    their definitions, owners and privileges are the files' — taking every function from its owner and
    every grant away, then running the files again, gives back the same catalogue."""
    apply_migrations(scratch_database)
    migrated = _functions(scratch_database)
    names = [signature.split("(")[0] for signature in migrated]
    # Names stand for signatures below: an overload would need this test to compare signatures.
    assert len(set(names)) == len(names), "an overloaded function name"
    defined = _defined_names()
    assert {name: files for name, files in defined.items() if len(files) > 1} == {}
    assert set(names) == set(defined) | set(HISTORY_ONLY_FUNCTIONS)
    assert not set(defined) & set(HISTORY_ONLY_FUNCTIONS)
    owners = {owner for _, owner, _ in migrated.values()}
    assert owners == {provisioning.OWNER_ROLE, "emoney_ledger"}

    with psycopg.connect(scratch_database) as connection:
        connection.execute(
            """do $$
               declare
                   function_name regprocedure;
               begin
                   for function_name in select p.oid from pg_proc p where p.pronamespace = 'public'::regnamespace loop
                       execute format('alter function %s owner to current_user', function_name);
                       execute format('revoke all on function %s from public, emoney_app, emoney_ledger', function_name);
                   end loop;
               end
               $$"""
        )
        assert {row[2] for row in connection.execute(FUNCTIONS)} == {provisioning.OWNER_ROLE}
        for definition in load_definitions():
            connection.execute(definition.sql.encode())
    assert _functions(scratch_database) == migrated


def test_a_second_run_changes_nothing(scratch_database):
    """Migrating a migrated database applies no numbered file and no definition file, and leaves every
    function and the bookkeeping exactly as they were."""
    first = migrate(scratch_database)
    assert [definition.file for definition in first.definitions] == [definition.file for definition in load_definitions()]
    functions = _functions(scratch_database)
    with psycopg.connect(scratch_database) as connection:
        bookkeeping = connection.execute("select * from schema_definitions order by file").fetchall()
    second = migrate(scratch_database)
    assert (second.migrations, second.definitions) == ([], [])
    assert _functions(scratch_database) == functions
    with psycopg.connect(scratch_database) as connection:
        assert connection.execute("select * from schema_definitions order by file").fetchall() == bookkeeping


def _value_of_f(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        return connection.execute("select f()").fetchone()[0]


def test_a_definition_file_is_applied_again_when_it_or_the_history_changes(scratch_database, tmp_path):
    """A changed definition file replaces what it defines; an unchanged one is left alone, unless a new
    numbered migration ran (it may have replaced the function) or a re-application is asked for."""
    (tmp_path / "0001_first.sql").write_text("create table first_table (id int);")
    (tmp_path / "current").mkdir()
    definition = tmp_path / "current" / "01_f.sql"
    definition.write_text("create or replace function f() returns integer language sql return 1;")
    assert [d.file for d in migrate(scratch_database, tmp_path).definitions] == ["01_f.sql"]
    assert migrate(scratch_database, tmp_path).definitions == []

    definition.write_text("create or replace function f() returns integer language sql return 2;")
    assert [d.file for d in migrate(scratch_database, tmp_path).definitions] == ["01_f.sql"]
    assert _value_of_f(scratch_database) == 2

    (tmp_path / "0002_replaces_f.sql").write_text("create or replace function f() returns integer language sql return 0;")
    run = migrate(scratch_database, tmp_path)
    assert ([m.version for m in run.migrations], [d.file for d in run.definitions]) == ([2], ["01_f.sql"])
    assert _value_of_f(scratch_database) == 2

    with psycopg.connect(scratch_database) as connection:
        connection.execute("create or replace function f() returns integer language sql return 9")
    assert migrate(scratch_database, tmp_path).definitions == []
    assert [d.file for d in migrate(scratch_database, tmp_path, reapply_definitions=True).definitions] == ["01_f.sql"]
    assert _value_of_f(scratch_database) == 2


def test_a_failing_definition_file_applies_no_definition_of_its_run(scratch_database, tmp_path):
    """The definition files of one run go in one transaction: one failing leaves every function, and the
    bookkeeping, as the previous run left them; the error names the file."""
    (tmp_path / "0001_first.sql").write_text("create table first_table (id int);")
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "01_f.sql").write_text("create or replace function f() returns integer language sql return 1;")
    migrate(scratch_database, tmp_path)
    (tmp_path / "current" / "01_f.sql").write_text("create or replace function f() returns integer language sql return 2;")
    (tmp_path / "current" / "02_bad.sql").write_text("select no_such_function();")
    with pytest.raises(MigrationError, match="current/02_bad.sql failed"):
        migrate(scratch_database, tmp_path)
    assert _value_of_f(scratch_database) == 1
    with psycopg.connect(scratch_database) as connection:
        assert connection.execute("select file from schema_definitions").fetchall() == [("01_f.sql",)]


def test_badly_named_definition_files_are_refused(tmp_path):
    """Only NN_name.sql files are definitions, each with its own order number."""
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "movements.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match="badly named definition file"):
        load_definitions(tmp_path)
    (tmp_path / "current" / "movements.sql").rename(tmp_path / "current" / "01_movements.sql")
    (tmp_path / "current" / "01_holds.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match="share an order number"):
        load_definitions(tmp_path)


def test_the_repository_definitions_are_well_formed():
    """The committed definition files load, and each says `create or replace` (never a bare `create
    function`, which would fail on every database where the function exists)."""
    definitions = load_definitions(MIGRATIONS_DIR)
    assert definitions
    for definition in definitions:
        assert not re.search(r"^create function", definition.sql, flags=re.MULTILINE), definition.file
