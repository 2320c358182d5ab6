"""Terminal repository (tenant-scoped), plus the pre-login lookup by client id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.unit_of_work import UnitOfWork

_COLUMNS = "terminal_id, merchant_user_id, display_name, client_id, status, created_at, daily_charge_limit_minor"


@dataclass(frozen=True)
class TerminalRecord:
    terminal_id: uuid.UUID
    merchant_user_id: uuid.UUID
    display_name: str
    client_id: str
    status: str
    created_at: datetime
    daily_charge_limit_minor: int | None = None


@dataclass(frozen=True)
class TerminalCredentials:
    tenant_id: uuid.UUID
    terminal_id: uuid.UUID
    secret_hash: bytes
    status: str
    tenant_status: str


async def credentials_by_client_id(unit_of_work: UnitOfWork, client_id: str) -> TerminalCredentials | None:
    cursor = await unit_of_work.connection.execute("select * from terminal_by_client_id(%s)", (client_id,))
    row = await cursor.fetchone()
    return None if row is None else TerminalCredentials(*row)


async def insert(
    unit_of_work: UnitOfWork,
    tenant_id: uuid.UUID,
    merchant_user_id: uuid.UUID,
    display_name: str,
    client_id: str,
    secret_hash: bytes,
) -> TerminalRecord:
    cursor = await unit_of_work.connection.execute(
        f"""insert into terminals (tenant_id, merchant_user_id, display_name, client_id, secret_hash)
            values (%s, %s, %s, %s, %s) returning {_COLUMNS}""",
        (tenant_id, merchant_user_id, display_name, client_id, secret_hash),
    )
    return TerminalRecord(*await cursor.fetchone())


async def get(unit_of_work: UnitOfWork, terminal_id: uuid.UUID) -> TerminalRecord | None:
    cursor = await unit_of_work.connection.execute(
        f"select {_COLUMNS} from terminals where terminal_id = %s", (terminal_id,)
    )
    row = await cursor.fetchone()
    return None if row is None else TerminalRecord(*row)


async def disable(unit_of_work: UnitOfWork, terminal_id: uuid.UUID) -> tuple[TerminalRecord, str] | None:
    """Disable a terminal; the terminal after, and its status before (read by the same UPDATE)."""
    cursor = await unit_of_work.connection.execute(
        f"""update terminals set status = 'disabled', updated_at = now()
            where terminal_id = %s returning {_COLUMNS}, old.status""",
        (terminal_id,),
    )
    row = await cursor.fetchone()
    return None if row is None else (TerminalRecord(*row[:-1]), row[-1])


async def list_page(unit_of_work: UnitOfWork, after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[TerminalRecord]:
    where, parameters = "", []
    if after is not None:
        where, parameters = "where (created_at, terminal_id) > (%s, %s)", list(after)
    cursor = await unit_of_work.connection.execute(
        f"select {_COLUMNS} from terminals {where} order by created_at, terminal_id limit %s", (*parameters, limit)
    )
    return [TerminalRecord(*row) for row in await cursor.fetchall()]


async def set_daily_charge_limit(unit_of_work: UnitOfWork, terminal_id: uuid.UUID, limit_minor: int | None) -> tuple[TerminalRecord, int | None] | None:
    """The terminal after the change and its previous limit, or None when it does not exist."""
    cursor = await unit_of_work.connection.execute(
        f"""update terminals set daily_charge_limit_minor = %s, updated_at = now()
            where terminal_id = %s returning {_COLUMNS}, old.daily_charge_limit_minor""",
        (limit_minor, terminal_id),
    )
    row = await cursor.fetchone()
    return None if row is None else (TerminalRecord(*row[:-1]), row[-1])
