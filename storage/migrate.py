"""Apply the numbered SQL files in `migrations/` in order, each exactly once.

Run as the schema owner: `emoney-migrate` (or `make migrate`) with
`MIGRATION_DATABASE_URL` set. Each file runs in its own transaction together
with its bookkeeping row, so a failing file leaves nothing half-applied and a
second run is a no-op. A session-level advisory lock serialises concurrent
runs (two server processes starting at once). A file that was already applied
but has since been edited is refused: history is append-only.

Every run then brings the `currencies` table (migration 0014) up to the ISO 4217
list the servers check (domain/currencies.py): new currencies are added, none
is removed, and a currency whose number of minor units changed is refused —
every amount held in it would silently change meaning.
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
# Arbitrary constant identifying "the migrator" among advisory locks.
ADVISORY_LOCK_KEY = 0x656D6F6E6579  # "emoney"

logger = logging.getLogger("emoney.migrate")


class MigrationError(RuntimeError):
    """A migration could not be applied, or the history on disk and in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


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


def _applied(connection: psycopg.Connection) -> dict[int, str]:
    rows = connection.execute("select version, checksum from schema_migrations").fetchall()
    return {version: checksum for version, checksum in rows}


def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations; return the ones applied by this call."""
    migrations = load_migrations(directory)
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
            _sync_currencies(connection)
        finally:
            connection.execute("select pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return newly_applied


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
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not arguments.database_url:
        print("MIGRATION_DATABASE_URL is not set (the schema owner's connection string)", file=sys.stderr)
        return 2
    try:
        applied = apply_migrations(arguments.database_url)
    except (MigrationError, psycopg.OperationalError) as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 1
    print(f"migrate: {len(applied)} applied, schema up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
