"""Bring a database to this release: the numbered schema history, then the SQL as it stands today.

Run as the schema owner: `emoney-migrate` (or `make migrate`) with `MIGRATION_DATABASE_URL` set. A
session-level advisory lock serialises concurrent runs (two server processes starting at once).

Two kinds of SQL file (migrations/README.md):

* `migrations/NNNN_name.sql` — the schema's history (tables, types, indexes, policies, roles, table
  grants), applied in order, each exactly once, each in its own transaction together with its
  bookkeeping row (`schema_migrations`), so a failing file leaves nothing half-applied. An applied file
  is never edited (its checksum is recorded in every deployed database): a file that was applied but has
  since changed is refused. History is append-only.
* `migrations/current/NN_concern.sql` — the definitions as they stand today: every function of the
  schema, one concern per file (rules, audit, movements, holds, ...), each written as `create or replace`
  together with its owner and its grants. They run after the numbered history, in file-name order, and
  unlike numbered files they are meant to change between releases: a release changes a function by
  editing its file. The numbered history must apply on its own on a fresh database (it still defines
  each function as it was then); the current files then replace those definitions.

When definitions are applied: a definition file is applied when its text differs from the one recorded
for it in `schema_definitions`, or when the numbered history moved since it was recorded (a numbered
migration may have replaced or dropped what the file defines), and on request (`--reapply-definitions`,
e.g. to repair a function someone changed by hand). Not on every run: every server start runs the
migrator, and replacing a function invalidates every session's cached plans of it while payments run,
for nothing. Everything this run applies goes in ONE transaction with its bookkeeping rows, so the
database moves from one release's definitions to the next at once, or (one file failing) not at all.
A second run applies nothing and changes nothing.

Because a definition file is `create or replace`, it can change a body, but not a function's arguments
or result type: such a change is a numbered migration that drops the old function, with the new one in
the current file. Likewise a function is removed by a numbered migration and its file entry deleted.

Every run then brings the `currencies` table (migration 0014) up to the ISO 4217 list the servers check
(domain/currencies.py): new currencies are added, none is removed, and a currency whose number of minor
units changed is refused — every amount held in it would silently change meaning.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

from domain.currencies import CURRENCY_MINOR_UNITS

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_FILE_PATTERN = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# The definitions as they stand today, in a folder of the migrations folder; applied in file-name order.
DEFINITIONS_FOLDER = "current"
DEFINITION_FILE_PATTERN = re.compile(r"^(?P<order>\d{2})_(?P<name>[a-z0-9_]+)\.sql$")
# Arbitrary constant identifying "the migrator" among advisory locks.
ADVISORY_LOCK_KEY = 0x656D6F6E6579  # "emoney"

logger = logging.getLogger("emoney.migrate")


class MigrationError(RuntimeError):
    """A migration could not be applied, or the history on disk and in the database disagree."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return _sha256(self.sql)


@dataclass(frozen=True)
class Definition:
    """One file of `migrations/current/`: functions as they stand today, applied after the history."""

    file: str  # e.g. "10_movements.sql"; the files run in the order of their names
    sql: str

    @property
    def checksum(self) -> str:
        return _sha256(self.sql)


@dataclass(frozen=True)
class MigrationRun:
    migrations: list[Migration]  # numbered migrations this run applied
    definitions: list[Definition]  # definition files this run applied


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_FILE_PATTERN.match(path.name)
        if match is None:
            raise MigrationError(f"badly named migration file: {path.name} (want NNNN_name.sql)")
        migrations.append(Migration(int(match["version"]), match["name"], path.read_text()))
    versions = [migration.version for migration in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


def load_definitions(directory: Path = MIGRATIONS_DIR) -> list[Definition]:
    """The files of `directory/current/` in the order they run; none when there is no such folder."""
    folder = directory / DEFINITIONS_FOLDER
    if not folder.is_dir():
        return []
    definitions = []
    for path in sorted(folder.glob("*.sql")):
        if DEFINITION_FILE_PATTERN.match(path.name) is None:
            raise MigrationError(f"badly named definition file: {DEFINITIONS_FOLDER}/{path.name} (want NN_name.sql)")
        definitions.append(Definition(path.name, path.read_text()))
    orders = [definition.file[:2] for definition in definitions]
    if len(set(orders)) != len(orders):
        raise MigrationError(f"two files of {DEFINITIONS_FOLDER}/ share an order number")
    return definitions


def _ensure_bookkeeping(connection: psycopg.Connection) -> None:
    with connection.transaction():
        connection.execute(
            """
            create table if not exists schema_migrations (
                version    integer     primary key,
                name       text        not null,
                checksum   text        not null,
                applied_at timestamptz not null default now()
            )
            """
        )
        connection.execute(
            """
            create table if not exists schema_definitions (
                file          text        primary key,
                checksum      text        not null,
                -- The last numbered migration of the history this file was applied on top of.
                after_version integer     not null,
                applied_at    timestamptz not null default now()
            )
            """
        )


def _applied(connection: psycopg.Connection) -> dict[int, str]:
    rows = connection.execute("select version, checksum from schema_migrations").fetchall()
    return {version: checksum for version, checksum in rows}


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR, reapply_definitions: bool = False) -> MigrationRun:
    """Apply pending numbered migrations, then the definition files that changed (all with
    `reapply_definitions`); return what this call applied."""
    migrations = load_migrations(directory)
    definitions = load_definitions(directory)
    newly_applied: list[Migration] = []
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("select pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            _ensure_bookkeeping(connection)
            applied = _applied(connection)
            for migration in migrations:
                recorded_checksum = applied.get(migration.version)
                if recorded_checksum is not None:
                    if recorded_checksum != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was edited after it was applied"
                        )
                    continue
                _apply_one(connection, migration)
                newly_applied.append(migration)
            definitions_applied = _apply_definitions(connection, definitions, reapply_definitions)
            _sync_currencies(connection)
        finally:
            connection.execute("select pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return MigrationRun(newly_applied, definitions_applied)


def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Bring the database up to date (see `migrate`); return the numbered migrations applied by this call."""
    return migrate(dsn, directory).migrations


def _apply_one(connection: psycopg.Connection, migration: Migration) -> None:
    label = f"{migration.version:04d}_{migration.name}"
    try:
        with connection.transaction():
            connection.execute(migration.sql.encode())
            connection.execute(
                "insert into schema_migrations (version, name, checksum) values (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
    except psycopg.Error as error:
        raise MigrationError(f"migration {label} failed and was rolled back: {error}") from error
    logger.info("applied migration %s", label)


def _apply_definitions(connection: psycopg.Connection, definitions: list[Definition], everything: bool) -> list[Definition]:
    """Apply, in one transaction, the definition files whose text or underlying history changed since
    they were last applied (every file when `everything`); forget the rows of files that are gone."""
    history = connection.execute("select coalesce(max(version), 0) from schema_migrations").fetchone()[0]
    recorded = {
        file: (checksum, after_version)
        for file, checksum, after_version in connection.execute("select file, checksum, after_version from schema_definitions")
    }
    pending = [
        definition for definition in definitions
        if everything or recorded.get(definition.file) != (definition.checksum, history)
    ]
    removed = sorted(set(recorded) - {definition.file for definition in definitions})
    if not pending and not removed:
        return []
    step = ""
    try:
        with connection.transaction():
            for definition in pending:
                step = f"definition file {DEFINITIONS_FOLDER}/{definition.file}"
                connection.execute(definition.sql.encode())
                connection.execute(
                    """insert into schema_definitions (file, checksum, after_version) values (%s, %s, %s)
                       on conflict (file) do update
                       set checksum = excluded.checksum, after_version = excluded.after_version, applied_at = now()""",
                    (definition.file, definition.checksum, history),
                )
            step = "forgetting removed definition files"
            # A file deleted from current/ leaves its functions in place (dropping one is a numbered migration).
            connection.execute("delete from schema_definitions where file = any(%s)", (removed,))
    except psycopg.Error as error:
        raise MigrationError(f"{step} failed; no definition of this run was applied: {error}") from error
    for definition in pending:
        logger.info("applied %s/%s", DEFINITIONS_FOLDER, definition.file)
    return pending


def _sync_currencies(connection: psycopg.Connection) -> None:
    """Add the ISO 4217 currencies the table lacks; refuse a changed number of minor units."""
    if connection.execute("select to_regclass('public.currencies')").fetchone()[0] is None:
        return  # a history that stops before migration 0014 (the migration tests' own folders)
    codes, digits = list(CURRENCY_MINOR_UNITS), list(CURRENCY_MINOR_UNITS.values())
    with connection.transaction():
        changed = connection.execute(
            """select c.code, c.minor_units, iso.minor_units
                 from currencies c join unnest(%s::text[], %s::smallint[]) as iso (code, minor_units) using (code)
                where c.minor_units <> iso.minor_units""",
            (codes, digits),
        ).fetchall()
        if changed:
            described = ", ".join(f"{code} from {before} to {after}" for code, before, after in changed)
            raise MigrationError(f"ISO 4217 changed the minor units of {described}: convert the amounts held first")
        added = connection.execute(
            """insert into currencies (code, minor_units) select * from unnest(%s::text[], %s::smallint[])
               on conflict (code) do nothing""",
            (codes, digits),
        ).rowcount
    if added:
        logger.info("added %d currencies", added)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Apply pending database migrations as the schema owner.")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("MIGRATION_DATABASE_URL"),
        help="owner connection string (default: $MIGRATION_DATABASE_URL)",
    )
    parser.add_argument(
        "--reapply-definitions",
        action="store_true",
        help=f"apply every file of migrations/{DEFINITIONS_FOLDER}/ even if unchanged (repairs a function edited by hand)",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not arguments.database_url:
        print("MIGRATION_DATABASE_URL is not set (the schema owner's connection string)", file=sys.stderr)
        return 2
    try:
        run = migrate(arguments.database_url, reapply_definitions=arguments.reapply_definitions)
    except (MigrationError, psycopg.OperationalError) as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 1
    print(f"migrate: {len(run.migrations)} applied, {len(run.definitions)} definition files applied, schema up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
