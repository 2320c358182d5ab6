"""Unit of Work against the real database, as the application role."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from storage.unit_of_work import UnitOfWorkFactory


@pytest.fixture
async def units_of_work(app_dsn):
    async with AsyncConnectionPool(app_dsn, min_size=1, max_size=2, kwargs={"autocommit": False}) as pool:
        yield UnitOfWorkFactory(pool)


@pytest.fixture
def tenant_id(owner_dsn) -> uuid.UUID:
    tenant = uuid.uuid4()
    with psycopg.connect(owner_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(tenant),))
        connection.execute(
            "insert into tenants (tenant_id, slug, display_name, default_currency) values (%s, %s, 'UoW', 'EUR')",
            (tenant, f"uow-{tenant.hex[:10]}"),
        )
    return tenant


async def _count_users(units_of_work, tenant_id) -> int:
    async with units_of_work(tenant_id) as unit_of_work:
        cursor = await unit_of_work.connection.execute("select count(*) from users")
        return (await cursor.fetchone())[0]


async def _insert_user(unit_of_work, tenant_id, email):
    await unit_of_work.connection.execute(
        "insert into users (tenant_id, email, display_name) values (%s, %s, 'U')", (tenant_id, email)
    )


async def test_sets_the_tenant_first(units_of_work, tenant_id):
    """Inside a unit of work, app.tenant_id is the tenant it was opened for."""
    async with units_of_work(tenant_id) as unit_of_work:
        cursor = await unit_of_work.connection.execute("select current_setting('app.tenant_id')")
        assert (await cursor.fetchone())[0] == str(tenant_id)


async def test_rolls_back_unless_committed(units_of_work, tenant_id):
    """Work done without commit() is gone after the block, even on a clean exit."""
    async with units_of_work(tenant_id) as unit_of_work:
        await _insert_user(unit_of_work, tenant_id, "ghost@uow.example")
    assert await _count_users(units_of_work, tenant_id) == 0


async def test_rolls_back_on_error(units_of_work, tenant_id):
    """An exception inside the block rolls everything back."""
    with pytest.raises(RuntimeError):
        async with units_of_work(tenant_id) as unit_of_work:
            await _insert_user(unit_of_work, tenant_id, "crash@uow.example")
            raise RuntimeError("boom")
    assert await _count_users(units_of_work, tenant_id) == 0


async def test_commit_persists(units_of_work, tenant_id):
    """commit() makes the work durable and visible to the next unit of work."""
    async with units_of_work(tenant_id) as unit_of_work:
        await _insert_user(unit_of_work, tenant_id, "kept@uow.example")
        await unit_of_work.commit()
    assert await _count_users(units_of_work, tenant_id) == 1


async def test_tenant_setting_does_not_leak_to_the_next_unit_of_work(units_of_work, tenant_id):
    """The tenant is transaction-local: a pooled connection reused without a tenant sees nothing."""
    async with units_of_work(tenant_id) as unit_of_work:
        await _insert_user(unit_of_work, tenant_id, "leak@uow.example")
        await unit_of_work.commit()
    assert await _count_users(units_of_work, None) == 0


async def test_a_read_only_unit_of_work_can_write_nothing(units_of_work, tenant_id):
    """READ and LOOKUP units are READ ONLY transactions: a write fails (SQLSTATE 25006) and nothing is kept."""
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        async with units_of_work(tenant_id, read_only=True) as unit_of_work:
            await _insert_user(unit_of_work, tenant_id, "reader@uow.example")
    async with units_of_work.reader(tenant_id) as unit_of_work:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            await _insert_user(unit_of_work, tenant_id, "reader2@uow.example")
    assert await _count_users(units_of_work, tenant_id) == 0


async def test_a_pooled_connection_is_writable_again_after_a_read_only_unit(app_dsn, tenant_id):
    """The read-only mode is the unit's, not the connection's: on a pool of one connection, a change after a
    clean read and after a failed one both commit."""
    async with AsyncConnectionPool(app_dsn, min_size=1, max_size=1, kwargs={"autocommit": False}) as pool:
        units_of_work = UnitOfWorkFactory(pool)
        async with units_of_work(tenant_id, read_only=True) as unit_of_work:
            await unit_of_work.connection.execute("select 1")
        async with units_of_work(tenant_id) as unit_of_work:
            await _insert_user(unit_of_work, tenant_id, "after-read@uow.example")
            await unit_of_work.commit()
        with pytest.raises(psycopg.errors.DivisionByZero):
            async with units_of_work(tenant_id, read_only=True) as unit_of_work:
                await unit_of_work.connection.execute("select 1 / 0")
        async with units_of_work(tenant_id) as unit_of_work:
            await _insert_user(unit_of_work, tenant_id, "after-failed-read@uow.example")
            await unit_of_work.commit()
        assert await _count_users(units_of_work, tenant_id) == 2


async def test_reads_keep_the_connections_prepared_statements(app_dsn, tenant_id):
    """psycopg prepares a query on its 5th run on a connection and forgets every prepared statement at each
    ROLLBACK: read-only units end with COMMIT, so a query repeated by reads on a pooled connection is
    prepared once and stays prepared; a unit that rolls back (a change not committed) still clears them."""
    query = "select count(*) from users where email <> %s"

    async def prepared() -> list[str]:
        async with units_of_work(tenant_id, read_only=True) as unit_of_work:
            cursor = await unit_of_work.connection.execute("select statement from pg_prepared_statements")
            return [row[0] for row in await cursor.fetchall()]

    async with AsyncConnectionPool(app_dsn, min_size=1, max_size=1, kwargs={"autocommit": False}) as pool:
        units_of_work = UnitOfWorkFactory(pool)
        for _ in range(6):
            async with units_of_work(tenant_id, read_only=True) as unit_of_work:
                await (await unit_of_work.connection.execute(query, ("x",))).fetchone()
        assert "select count(*) from users where email <> $1" in await prepared()
        async with units_of_work(tenant_id) as unit_of_work:  # a change that is not committed rolls back
            await (await unit_of_work.connection.execute(query, ("x",))).fetchone()
        assert "select count(*) from users where email <> $1" not in await prepared()
