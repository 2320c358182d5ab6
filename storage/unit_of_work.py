"""Unit of Work: one database transaction per business operation.

The transaction sets the caller's tenant first (`app.tenant_id`, transaction
local), so row-level security scopes every statement that follows, and it rolls
back unless `commit()` was called — we never rely on the pool committing on a
clean exit.

A read-only unit of work (`read_only=True`: the service layer's READ and LOOKUP,
server/services/transactions.py) is a READ ONLY transaction, so nothing it does can
ever be committed, and it ends with COMMIT when it ends without an error — not with
ROLLBACK, because psycopg forgets every prepared statement of a connection at each
ROLLBACK (and sends DEALLOCATE ALL): every read re-parsed and re-planned its queries,
and dropped the server-side statements the money paths had prepared on that pooled
connection. A unit that fails still rolls back.

Reads that can go to a replica (statements, listings, balance at a past instant, reconciliation, the
audit listing) take `UnitOfWorkFactory.reader()`: with a read pool (DATABASE_READ_URL, the
high-availability topology's standbys) the read runs on a standby that has replayed everything the
primary had written when the read began — read-your-writes for every caller, whichever server answered
the write — and on the primary when no standby has caught up within a few milliseconds. The check is one
`pg_current_wal_lsn()` on the primary (no lock, no data) and one comparison on the standby; with
`synchronous_commit = remote_apply` the synchronous standby has always caught up already.
"""

from __future__ import annotations

import asyncio
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any, Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from domain.errors import ServiceUnavailable

if TYPE_CHECKING:
    from storage.group_commit import ChargeGroupCommit, CodeGroupCommit, TransferGroupCommit

# How long a read waits for a standby to replay up to the primary's position before it runs on the
# primary instead, and how often it looks.
REPLICA_WAIT_S = 0.05
REPLICA_POLL_S = 0.005


class UnitOfWork:
    def __init__(self, pool: AsyncConnectionPool, tenant_id: uuid.UUID | None, read_only: bool = False) -> None:
        self._pool = pool
        self._tenant_id = tenant_id
        self._read_only = read_only
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
            await self._connection.set_read_only(self._read_only)  # the BEGIN psycopg sends: no round trip here
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
        await self._release(cleanly=exception_type is None)

    async def _release(self, cleanly: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if not self._committed and not connection.closed:
                if cleanly and self._read_only and connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
                    await connection.commit()  # READ ONLY: nothing to keep; keeps the prepared statements (module)
                else:
                    await connection.rollback()
        except psycopg.Error:
            # A connection that cannot even roll back is broken; the pool discards it on return.
            pass
        finally:
            if self._read_only and not connection.closed:
                try:
                    await connection.set_read_only(False)
                except psycopg.Error:
                    pass  # still in a transaction: the pool discards a connection returned in one
            await self._pool.putconn(connection)


class ReplicaUnitOfWork(UnitOfWork):
    """A read on a standby that has caught up with the primary's WAL position at the start of the read;
    on the primary when none has (or the standbys are away)."""

    def __init__(self, factory: "UnitOfWorkFactory", tenant_id: uuid.UUID | None) -> None:
        super().__init__(factory.pool, tenant_id, read_only=True)
        self._factory = factory
        self.served_by = "primary"

    async def __aenter__(self) -> "UnitOfWork":
        factory = self._factory
        assert factory.read_pool is not None
        primary_lsn = await factory.one_statement("select pg_current_wal_lsn()::text", ())
        try:
            connection = await factory.read_pool.getconn(timeout=factory.replica_wait_s)
        except (PoolTimeout, psycopg.Error):
            return await self._on_primary()
        try:
            caught_up = await self._caught_up(connection, primary_lsn[0] if primary_lsn else "0/0")
        except psycopg.Error:
            caught_up = False
        if not caught_up:
            await self._give_back(connection)
            return await self._on_primary()
        self._pool, self._connection, self.served_by = factory.read_pool, connection, "replica"
        factory.count_read("replica")
        return self

    async def _caught_up(self, connection: psycopg.AsyncConnection, lsn: str) -> bool:
        """Set the tenant and wait (briefly) until this standby has replayed up to `lsn`. Read committed:
        every later statement takes a new snapshot, so it sees what was replayed by then."""
        tenant_setting = "" if self._tenant_id is None else str(self._tenant_id)
        deadline = asyncio.get_running_loop().time() + self._factory.replica_wait_s
        await connection.set_read_only(True)
        await connection.execute("select set_config('app.tenant_id', %s, true)", (tenant_setting,))
        while True:
            # NULL on a primary (prefer-standby found no standby): it has everything.
            cursor = await connection.execute("select coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, true)", (lsn,))
            if (await cursor.fetchone())[0]:
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(REPLICA_POLL_S)

    async def _give_back(self, connection: psycopg.AsyncConnection) -> None:
        try:
            if not connection.closed:
                await connection.rollback()
                await connection.set_read_only(False)
        except psycopg.Error:
            pass  # broken, or still in a transaction: the pool discards it
        finally:
            assert self._factory.read_pool is not None
            await self._factory.read_pool.putconn(connection)

    async def _on_primary(self) -> "UnitOfWork":
        self._factory.count_read("primary")
        return await super().__aenter__()


class UnitOfWorkFactory:
    """Makes units of work bound to one pool (and an optional read pool of standbys); the service layer
    depends on this, not on the pools."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        read_pool: AsyncConnectionPool | None = None,
        replica_wait_s: float = REPLICA_WAIT_S,
        group_commit: "TransferGroupCommit | None" = None,
        charge_group_commit: "ChargeGroupCommit | None" = None,
        code_group_commit: "CodeGroupCommit | None" = None,
    ) -> None:
        self._pool = pool
        # CreateTransfers, ChargePaymentCodes and CreatePaymentCodes of this process committed in batches
        # (storage/group_commit.py); None: one by one.
        self.group_commit = group_commit
        self.charge_group_commit = charge_group_commit
        self.code_group_commit = code_group_commit
        self.read_pool = read_pool
        self.replica_wait_s = replica_wait_s
        # Reads by where they ran ("replica", "primary"): shown by the metrics endpoint.
        self.reads: dict[str, int] = {"replica": 0, "primary": 0}

    @property
    def pool(self) -> AsyncConnectionPool:
        return self._pool

    def __call__(self, tenant_id: uuid.UUID | None = None, read_only: bool = False) -> UnitOfWork:
        return UnitOfWork(self._pool, tenant_id, read_only)

    def reader(self, tenant_id: uuid.UUID | None = None) -> UnitOfWork:
        """A read-only unit of work that may run on a standby (read-your-writes kept; see the module)."""
        if self.read_pool is None:
            return UnitOfWork(self._pool, tenant_id, read_only=True)
        return ReplicaUnitOfWork(self, tenant_id)

    def count_read(self, served_by: str) -> None:
        self.reads[served_by] += 1

    async def one_statement(self, query: str, params: Sequence[Any]) -> tuple | None:
        """A whole transaction that is ONE statement, in one network round trip: run `query` on an
        autocommit connection, so PostgreSQL commits it when it returns (or rolls it back when it
        fails). For an entry-point function that sets the tenant itself and does the whole business
        operation (the `*_in` functions of migrations/current/): nothing is locked while Python waits,
        and nothing is left open.
        Returns the first row; a failure is raised as psycopg.Error, for the caller to translate.
        """
        rows = await one_statement_rows(self._pool, query, params)
        return rows[0] if rows else None


async def one_statement_rows(pool: AsyncConnectionPool, query: str, params: Sequence[Any]) -> list[tuple]:
    """Every row of `query` run as its own transaction on an autocommit connection of `pool`
    (UnitOfWorkFactory.one_statement; the group commit's batch, storage/group_commit.py)."""
    try:
        connection = await pool.getconn()
    except PoolTimeout as error:
        raise ServiceUnavailable(message="the database is not reachable right now", reason="DATABASE_UNAVAILABLE") from error
    try:
        await connection.set_autocommit(True)
        try:
            cursor = await connection.execute(query, params)
            return await cursor.fetchall()
        finally:
            if not connection.closed:
                await connection.set_autocommit(False)
    finally:
        await pool.putconn(connection)
