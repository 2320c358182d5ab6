"""Database provisioning and the demo tenant, for the local stack and the tests.

Production does these steps once, by hand or by its deployment tool: create the
owner and application roles, create the database, run migrations as the owner,
give the application role a password kept in the secrets store.
"""

from __future__ import annotations

import hashlib
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

PLATFORM_TENANT_SLUG = "platform"
PLATFORM_ADMIN_EMAIL = "platform-admin@emoney.example"
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
    tenant: str = DEMO_TENANT_SLUG


@dataclass(frozen=True)
class DemoTerminal:
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class DemoSeed:
    tenant_id: uuid.UUID
    users: list[DemoUser]
    terminal: DemoTerminal


def _hasher() -> argon2.PasswordHasher:
    return argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def _ensure_tenant(connection: psycopg.Connection, slug: str, display_name: str, kind: str) -> uuid.UUID:
    row = connection.execute("select tenant_id from tenant_by_slug_any_status(%s)", (slug,)).fetchone()
    if row is not None:
        return row[0]
    tenant_id = uuid.uuid4()
    with connection.transaction():
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(tenant_id),))
        connection.execute(
            "insert into tenants (tenant_id, slug, display_name, default_currency, kind) values (%s, %s, %s, %s, %s)",
            (tenant_id, slug, display_name, DEMO_CURRENCY, kind),
        )
    return tenant_id


def _upsert_user(connection, tenant_id: uuid.UUID, email: str, display_name: str, roles: list[str], password: str) -> uuid.UUID:
    with connection.transaction():
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(tenant_id),))
        return connection.execute(
            """insert into users (tenant_id, email, display_name, password_hash, roles)
               values (%s, %s, %s, %s, %s)
               on conflict (tenant_id, email) do update set password_hash = excluded.password_hash, status = 'active'
               returning user_id""",
            (tenant_id, email, display_name, _hasher().hash(password), roles),
        ).fetchone()[0]


def _ensure_terminal(connection, tenant_id: uuid.UUID, merchant_id: uuid.UUID) -> DemoTerminal:
    client_id = "term_" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24))
    client_secret = secrets.token_urlsafe(32)
    with connection.transaction():
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(tenant_id),))
        connection.execute(
            """insert into terminals (tenant_id, merchant_user_id, display_name, client_id, secret_hash)
               values (%s, %s, 'Corner Bakery till 1', %s, %s)""",
            (tenant_id, merchant_id, client_id, hashlib.sha256(client_secret.encode()).digest()),
        )
    return DemoTerminal(client_id, client_secret)


def _saved_seed(path: Path) -> tuple[list[DemoUser], DemoTerminal] | None:
    """The saved demo credentials, or None when absent or written by an older version (then re-seeded)."""
    try:
        saved = json.loads(path.read_text())
        return [DemoUser(**user) for user in saved["users"]], DemoTerminal(**saved["terminal"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def seed_demo(owner_dsn: str, credentials_path: Path) -> DemoSeed:
    """The platform tenant with its administrator, and the demo tenant with one user per role and a
    terminal; created once, reused afterwards (credentials kept 0600 in the state folder)."""
    with psycopg.connect(owner_dsn) as connection:
        demo_tenant_id = _ensure_tenant(connection, DEMO_TENANT_SLUG, DEMO_TENANT_NAME, "organisation")
        saved = _saved_seed(credentials_path)
        if saved is not None:
            return DemoSeed(demo_tenant_id, *saved)
        platform_tenant_id = _ensure_tenant(connection, PLATFORM_TENANT_SLUG, "Platform administration", "platform")
        users = [DemoUser("platform_admin", PLATFORM_ADMIN_EMAIL, secrets.token_urlsafe(12), PLATFORM_TENANT_SLUG)]
        _upsert_user(connection, platform_tenant_id, PLATFORM_ADMIN_EMAIL, "Platform Admin", ["platform_admin"], users[0].password)
        merchant_id = None
        for role, email, display_name, roles in DEMO_USERS:
            user = DemoUser(role, email, secrets.token_urlsafe(12))
            user_id = _upsert_user(connection, demo_tenant_id, email, display_name, roles, user.password)
            merchant_id = user_id if role == "merchant" else merchant_id
            users.append(user)
        terminal = _ensure_terminal(connection, demo_tenant_id, merchant_id)
    credentials_path.touch(mode=0o600)
    credentials_path.write_text(json.dumps({"users": [u.__dict__ for u in users], "terminal": terminal.__dict__}, indent=2))
    return DemoSeed(demo_tenant_id, users, terminal)
