"""Database fixtures: connection strings for the owner, the application role and scratch databases."""

from __future__ import annotations

import uuid
from typing import Iterator

import psycopg
import pytest
from psycopg import sql

from localstack import provisioning


@pytest.fixture(scope="session")
def owner_dsn(stack) -> str:
    return stack.endpoints.owner_database_url


@pytest.fixture(scope="session")
def app_dsn(stack) -> str:
    """The application role's DSN, with the password the stack put in the secrets store."""
    credentials = provisioning.load_or_create_credentials(stack.state_dir / "database-credentials.json")
    return stack.postgres.dsn(provisioning.DATABASE_NAME, provisioning.APP_ROLE, credentials.app_password)


@pytest.fixture
def scratch_database(stack) -> Iterator[str]:
    """A new empty database owned by the schema owner; dropped afterwards. Yields the owner's DSN to it."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    credentials = provisioning.load_or_create_credentials(stack.state_dir / "database-credentials.json")
    with psycopg.connect(stack.postgres.dsn(), autocommit=True) as connection:
        connection.execute(
            sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(provisioning.OWNER_ROLE))
        )
    try:
        yield stack.postgres.dsn(name, provisioning.OWNER_ROLE, credentials.owner_password)
    finally:
        with psycopg.connect(stack.postgres.dsn(), autocommit=True) as connection:
            connection.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
