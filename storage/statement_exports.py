"""Statement export jobs (migration 0020; tenant-scoped): requested by ExportStatement, written by the workers
of server/services/statements.py, read back by GetStatementExport."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.unit_of_work import UnitOfWork

_COLUMNS = """export_id, account_id, requested_by, start_time, end_time, format, language, time_zone, state, entries_total,
              entries_done, object_key, size_bytes, sha256, error, created_at, finished_at"""
# A claim not refreshed for this long belongs to a worker that died: another takes the export over.
STALE_CLAIM = "1 minute"


@dataclass(frozen=True)
class StatementExport:
    export_id: uuid.UUID
    account_id: uuid.UUID
    requested_by: str
    start_time: datetime
    end_time: datetime
    format: str
    language: str
    time_zone: str
    state: str
    entries_total: int
    entries_done: int
    object_key: str | None
    size_bytes: int | None
    sha256: bytes | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


async def insert(unit_of_work: UnitOfWork, tenant_id: uuid.UUID, account_id: uuid.UUID, requested_by: str,
                 start: datetime, end: datetime, document_format: str, language: str, time_zone: str,
                 entries_total: int) -> StatementExport:
    cursor = await unit_of_work.connection.execute(
        f"""insert into statement_exports (tenant_id, account_id, requested_by, start_time, end_time, format, language,
                                           time_zone, entries_total)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning {_COLUMNS}""",
        (tenant_id, account_id, requested_by, start, end, document_format, language, time_zone, entries_total),
    )
    return StatementExport(*await cursor.fetchone())


async def get(unit_of_work: UnitOfWork, export_id: uuid.UUID) -> StatementExport | None:
    cursor = await unit_of_work.connection.execute(f"select {_COLUMNS} from statement_exports where export_id = %s", (export_id,))
    row = await cursor.fetchone()
    return None if row is None else StatementExport(*row)


async def count_entries(unit_of_work: UnitOfWork, account_id: uuid.UUID, start: datetime, end: datetime) -> int:
    cursor = await unit_of_work.connection.execute(
        "select count(*) from ledger_entries where account_id = %s and created_at >= %s and created_at < %s",
        (account_id, start, end),
    )
    return (await cursor.fetchone())[0]


async def tenants_with_pending(unit_of_work: UnitOfWork, limit: int) -> list[uuid.UUID]:
    cursor = await unit_of_work.connection.execute("select * from tenants_with_pending_exports(%s)", (limit,))
    return [row[0] for row in await cursor.fetchall()]


async def claim_next(unit_of_work: UnitOfWork) -> StatementExport | None:
    """Take the tenant's oldest export to write (pending, or abandoned by a dead worker); None when none."""
    cursor = await unit_of_work.connection.execute(
        f"""update statement_exports set state = 'running', claimed_at = now()
             where export_id = (select e.export_id from statement_exports e
                                 where e.state = 'pending' or (e.state = 'running' and e.claimed_at < now() - interval '{STALE_CLAIM}')
                                 order by e.created_at limit 1 for update skip locked)
            returning {_COLUMNS}"""
    )
    row = await cursor.fetchone()
    return None if row is None else StatementExport(*row)


async def progress(unit_of_work: UnitOfWork, export_id: uuid.UUID, entries_done: int) -> None:
    """How far the worker is; also renews its claim."""
    await unit_of_work.connection.execute(
        "update statement_exports set entries_done = %s, claimed_at = now() where export_id = %s and state = 'running'",
        (entries_done, export_id),
    )


async def finish(unit_of_work: UnitOfWork, export_id: uuid.UUID, entries_done: int, object_key: str, size_bytes: int,
                 sha256: bytes) -> None:
    await unit_of_work.connection.execute(
        """update statement_exports set state = 'succeeded', entries_done = %s, object_key = %s, size_bytes = %s, sha256 = %s,
                  finished_at = now()
            where export_id = %s and state = 'running'""",
        (entries_done, object_key, size_bytes, sha256, export_id),
    )


async def fail(unit_of_work: UnitOfWork, export_id: uuid.UUID, error: str) -> None:
    await unit_of_work.connection.execute(
        "update statement_exports set state = 'failed', error = %s, finished_at = now() where export_id = %s and state = 'running'",
        (error[:500], export_id),
    )


async def release(unit_of_work: UnitOfWork, export_id: uuid.UUID) -> None:
    """Give the export back (the object store is away): the next pass tries again."""
    await unit_of_work.connection.execute(
        "update statement_exports set state = 'pending', claimed_at = null where export_id = %s and state = 'running'",
        (export_id,),
    )


async def names(unit_of_work: UnitOfWork, tenant_id: uuid.UUID, owner_user_id: uuid.UUID | None) -> tuple[str, str]:
    """(the tenant's display name, the account holder's) for a statement's heading."""
    cursor = await unit_of_work.connection.execute(
        """select t.display_name, coalesce((select u.display_name from users u where u.user_id = %s), '')
             from tenants t where t.tenant_id = %s""",
        (owner_user_id, tenant_id),
    )
    row = await cursor.fetchone()
    return ("", "") if row is None else (row[0], row[1])


async def balance_before(unit_of_work: UnitOfWork, account_id: uuid.UUID, instant: datetime) -> int:
    """The account's ledger balance just before `instant` (the statement's opening balance)."""
    cursor = await unit_of_work.connection.execute(
        "select coalesce(sum(amount_minor), 0)::bigint from ledger_entries where account_id = %s and created_at < %s",
        (account_id, instant),
    )
    return (await cursor.fetchone())[0]
