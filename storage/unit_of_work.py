"""Unit of Work: one database transaction per business operation.

The transaction sets the caller's tenant first (`app.tenant_id`, transaction
local), so row-level security scopes every statement that follows, and it rolls
back unless `commit()` was called — we never rely on the pool committing on a
clean exit.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any, Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from server.errors import ServiceUnavailable


class UnitOfWork:
    def __init__(self, pool: AsyncConnectionPool, tenant_id: uuid.UUID | None) -> None:
        self._pool = pool
        self._tenant_id = tenant_id
        self._connection: psycopg.AsyncConnection | None = None
        self._committed = False

    @property
    def connection(self) -> psycopg.AsyncConnection:
        if self._connection is None:
            raise RuntimeError("unit of work used outside `async with`")
        return self._connection

    async def __aenter__(self) -> "UnitOfWork":
        try:
            self._connection = await self._pool.getconn()
        except PoolTimeout as error:
            raise ServiceUnavailable(message="the database is not reachable right now", reason="DATABASE_UNAVAILABLE") from error
        try:
            tenant_setting = "" if self._tenant_id is None else str(self._tenant_id)
            # In a pipeline, the implicit BEGIN and the set_config travel together: one round trip, not two.
            async with self._connection.pipeline():
                await self._connection.execute("select set_config('app.tenant_id', %s, true)", (tenant_setting,))
        except BaseException:
            await self._release()
            raise
        return self

    async def commit(self) -> None:
        await self.connection.commit()
        self._committed = True

    async def __aexit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._release()

    async def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if not self._committed and not connection.closed:
                await connection.rollback()
        except psycopg.Error:
            # A connection that cannot even roll back is broken; the pool discards it on return.
            pass
        finally:
            await self._pool.putconn(connection)


class UnitOfWorkFactory:
    """Makes units of work bound to one pool; the service layer depends on this, not on the pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    def __call__(self, tenant_id: uuid.UUID | None = None) -> UnitOfWork:
        return UnitOfWork(self._pool, tenant_id)

    async def one_statement(self, query: str, params: Sequence[Any]) -> tuple | None:
        """A whole transaction that is ONE statement, in one network round trip: run `query` on an
        autocommit connection, so PostgreSQL commits it when it returns (or rolls it back when it
        fails). For an entry-point function that sets the tenant itself and does the whole business
        operation (migrations/0011): nothing is locked while Python waits, and nothing is left open.
        Returns the first row; a failure is raised as psycopg.Error, for the caller to translate.
        """
        try:
            connection = await self._pool.getconn()
        except PoolTimeout as error:
            raise ServiceUnavailable(message="the database is not reachable right now", reason="DATABASE_UNAVAILABLE") from error
        try:
            await connection.set_autocommit(True)
            try:
                cursor = await connection.execute(query, params)
                return await cursor.fetchone()
            finally:
                if not connection.closed:
                    await connection.set_autocommit(False)
        finally:
            await self._pool.putconn(connection)
