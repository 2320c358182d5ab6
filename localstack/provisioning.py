"""Database provisioning and the demo tenant, for the local stack and the tests.

Production does these steps once, by hand or by its deployment tool: create the
owner and application roles, create the database, run migrations as the owner,
give the application role a password kept in the secrets store.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import argon2
import psycopg
from psycopg import sql

from storage.migrate import apply_migrations

DATABASE_NAME = "emoney"
OWNER_ROLE = "emoney_owner"
APP_ROLE = "emoney_app"

DEMO_TENANT_SLUG = "demo-city"
DEMO_TENANT_NAME = "Demo City"
DEMO_CURRENCY = "EUR"
DEMO_USERS = (
    ("customer", "ana.citizen@demo-city.example", "Ana Citizen", ["customer"]),
    ("merchant", "bakery@demo-city.example", "Corner Bakery", ["merchant"]),
    ("operator", "operator@demo-city.example", "Olga Operator", ["operator"]),
    ("tenant_admin", "admin@demo-city.example", "Tomas Admin", ["tenant_admin", "operator"]),
)


@dataclass(frozen=True)
class DatabaseCredentials:
    owner_password: str
    app_password: str


def load_or_create_credentials(path: Path) -> DatabaseCredentials:
    if path.exists():
        return DatabaseCredentials(**json.loads(path.read_text()))
    credentials = DatabaseCredentials(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    path.touch(mode=0o600)
    path.write_text(json.dumps(credentials.__dict__))
    return credentials


def provision_database(superuser_dsn: str, credentials: DatabaseCredentials) -> None:
    """Idempotently create the owner role, the database, and the application role's login."""
    with psycopg.connect(superuser_dsn, autocommit=True) as connection:
        exists = connection.execute("select 1 from pg_roles where rolname = %s", (OWNER_ROLE,)).fetchone()
        verb = "alter" if exists else "create"
        connection.execute(
            sql.SQL("{} role {} with login createrole nosuperuser nobypassrls password {}").format(
                sql.SQL(verb), sql.Identifier(OWNER_ROLE), sql.Literal(credentials.owner_password)
            )
        )
        if not connection.execute("select 1 from pg_database where datname = %s", (DATABASE_NAME,)).fetchone():
            connection.execute(
                sql.SQL("create database {} owner {}").format(sql.Identifier(DATABASE_NAME), sql.Identifier(OWNER_ROLE))
            )


def enable_app_login(owner_dsn: str, credentials: DatabaseCredentials) -> None:
    """After migrations created `emoney_app` (as NOLOGIN), let it log in with its secret password."""
    with psycopg.connect(owner_dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("alter role {} with login password {}").format(
                sql.Identifier(APP_ROLE), sql.Literal(credentials.app_password)
            )
        )


def migrate(owner_dsn: str) -> int:
    return len(apply_migrations(owner_dsn))


@dataclass(frozen=True)
class DemoUser:
    role: str
    email: str
    password: str


def seed_demo_tenant(owner_dsn: str, credentials_path: Path) -> tuple[uuid.UUID, list[DemoUser]]:
    """Create the demo tenant and its users once; later runs reuse them."""
    with psycopg.connect(owner_dsn) as connection:
        row = connection.execute("select tenant_id from public_tenant_by_slug(%s)", (DEMO_TENANT_SLUG,)).fetchone()
        if row is not None and credentials_path.exists():
            saved = json.loads(credentials_path.read_text())
            return row[0], [DemoUser(**user) for user in saved]
        tenant_id = row[0] if row is not None else uuid.uuid4()
        hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
        users = [DemoUser(role, email, secrets.token_urlsafe(12)) for role, email, _, _ in DEMO_USERS]
        with connection.transaction():
            connection.execute("select set_config('app.tenant_id', %s, true)", (str(tenant_id),))
            connection.execute(
                """insert into tenants (tenant_id, slug, display_name, default_currency)
                   values (%s, %s, %s, %s) on conflict (tenant_id) do nothing""",
                (tenant_id, DEMO_TENANT_SLUG, DEMO_TENANT_NAME, DEMO_CURRENCY),
            )
            for (_, email, display_name, roles), user in zip(DEMO_USERS, users):
                connection.execute(
                    """insert into users (tenant_id, email, display_name, password_hash, roles)
                       values (%s, %s, %s, %s, %s)
                       on conflict (tenant_id, email) do update set password_hash = excluded.password_hash""",
                    (tenant_id, email, display_name, hasher.hash(user.password), roles),
                )
    credentials_path.touch(mode=0o600)
    credentials_path.write_text(json.dumps([user.__dict__ for user in users], indent=2))
    return tenant_id, users
