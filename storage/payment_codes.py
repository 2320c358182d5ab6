"""Payment-code repository (tenant-scoped)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class PaymentCodeRecord:
    account_id: uuid.UUID
    currency: str
    max_amount_minor: int
    expires_at: datetime
    used_at: datetime | None
    used_by: str | None
    used_request_id: str | None
    used_for: uuid.UUID | None


async def insert(
    unit_of_work: UnitOfWork, tenant_id: uuid.UUID, code_hash: bytes, account_id: uuid.UUID, currency: str,
    max_amount_minor: int, expires_at: datetime, created_by: str,
) -> None:
    await unit_of_work.connection.execute(
        """insert into payment_codes (tenant_id, code_hash, account_id, currency, max_amount_minor, expires_at, created_by)
           values (%s, %s, %s, %s, %s, %s, %s)""",
        (tenant_id, code_hash, account_id, currency, max_amount_minor, expires_at, created_by),
    )


async def lock(unit_of_work: UnitOfWork, code_hash: bytes) -> PaymentCodeRecord | None:
    """Lock the code's row: concurrent redemptions queue here, so a code pays once."""
    cursor = await unit_of_work.connection.execute(
        """select account_id, currency, max_amount_minor, expires_at, used_at, used_by, used_request_id, used_for
             from payment_codes where code_hash = %s for update""",
        (code_hash,),
    )
    row = await cursor.fetchone()
    return None if row is None else PaymentCodeRecord(*row)


async def mark_used(unit_of_work: UnitOfWork, code_hash: bytes, used_by: str, request_id: str, used_for: uuid.UUID) -> None:
    await unit_of_work.connection.execute(
        """update payment_codes set used_at = now(), used_by = %s, used_request_id = %s, used_for = %s
            where code_hash = %s and used_at is null""",
        (used_by, request_id, used_for, code_hash),
    )
