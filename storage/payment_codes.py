"""Payment-code repository (tenant-scoped). Redeeming a code is one SQL call: migrations/current/12_payment_codes.sql
(`payments_charge_code_in`, `payments_authorize_code_in`, through storage.ledger.redeem_payment_code)."""

from __future__ import annotations

import uuid
from datetime import datetime

from storage.unit_of_work import UnitOfWork


async def insert(
    unit_of_work: UnitOfWork, tenant_id: uuid.UUID, code_hash: bytes, account_id: uuid.UUID, currency: str,
    max_amount_minor: int, expires_at: datetime, created_by: str,
) -> None:
    await unit_of_work.connection.execute(
        """insert into payment_codes (tenant_id, code_hash, account_id, currency, max_amount_minor, expires_at, created_by)
           values (%s, %s, %s, %s, %s, %s, %s)""",
        (tenant_id, code_hash, account_id, currency, max_amount_minor, expires_at, created_by),
    )
