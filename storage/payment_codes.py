"""Payment-code repository (tenant-scoped). Making a code and redeeming one are one SQL call each:
migrations/current/12_payment_codes.sql (`payments_create_code_in` here; `payments_charge_code_in` and
`payments_authorize_code_in` through storage.ledger.redeem_payment_code)."""

from __future__ import annotations

import uuid
from datetime import datetime

from storage.ledger import group_committed_row, translated_failures
from storage.unit_of_work import UnitOfWorkFactory


async def create(
    units_of_work: UnitOfWorkFactory, tenant_id: uuid.UUID, *, caller_user_id: uuid.UUID | None,
    caller_is_back_office: bool, code_hash: bytes, account_id: uuid.UUID, currency: str, max_amount_minor: int,
    ttl_s: int, created_by: str,
) -> datetime:
    """CreatePaymentCode's whole transaction in one round trip: the caller's right to the account, its
    currency and status checked in SQL (ACCOUNT_NOT_FOUND, NOT_ACCOUNT_OWNER, CURRENCY_MISMATCH,
    ACCOUNT_FROZEN, ACCOUNT_CLOSED as domain errors), the code stored and committed — group-committed with
    the concurrent codes of this process when group commit is on (storage/group_commit.py). Returns its
    expiry, by the database's clock."""
    arguments = (caller_user_id, caller_is_back_office, account_id, currency, max_amount_minor, ttl_s, code_hash,
                 created_by)
    if units_of_work.code_group_commit is not None:
        row = await group_committed_row(units_of_work.code_group_commit, tenant_id, arguments)
    else:
        async with translated_failures():
            row = await units_of_work.one_statement(
                "select payments_create_code_in(%s, %s, %s, %s, %s, %s, %s, %s, %s)", (tenant_id, *arguments)
            )
    if row is None or row[0] is None:
        raise RuntimeError("payments_create_code_in returned no expiry")
    return row[0]

