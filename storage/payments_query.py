"""Reads over payments: transfers and holds seen as one list (both are `payments/{id}`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.unit_of_work import UnitOfWork

_PAYMENTS = """
    select transfer_id as payment_id, kind, status, debit_account_id, credit_account_id, amount_minor, currency,
           0::bigint as captured_minor, refunded_minor, terminal_id,
           coalesce(related_transfer_id, hold_id) as related_id, request_id, created_at, null::timestamptz as expires_at,
           description
      from transfers
    union all
    select hold_id, 'hold', status, account_id, merchant_account_id, amount_minor, currency,
           captured_minor, 0::bigint, terminal_id,
           (select t.transfer_id from transfers t where t.hold_id = h.hold_id), request_id, created_at, expires_at,
           null::text
      from holds h
"""


@dataclass(frozen=True)
class PaymentRow:
    payment_id: uuid.UUID
    kind: str
    status: str
    from_account_id: uuid.UUID
    to_account_id: uuid.UUID
    amount_minor: int
    currency: str
    captured_minor: int
    refunded_minor: int
    terminal_id: uuid.UUID | None
    related_id: uuid.UUID | None
    request_id: str
    created_at: datetime
    expires_at: datetime | None
    description: str | None = None


async def get(unit_of_work: UnitOfWork, payment_id: uuid.UUID) -> PaymentRow | None:
    cursor = await unit_of_work.connection.execute(f"select * from ({_PAYMENTS}) p where payment_id = %s", (payment_id,))
    row = await cursor.fetchone()
    return None if row is None else PaymentRow(*row)


async def get_many(unit_of_work: UnitOfWork, payment_ids: list[uuid.UUID]) -> dict[uuid.UUID, PaymentRow]:
    """The payments among `payment_ids` this tenant has, in one query."""
    cursor = await unit_of_work.connection.execute(f"select * from ({_PAYMENTS}) p where payment_id = any(%s)", (payment_ids,))
    return {row[0]: PaymentRow(*row) for row in await cursor.fetchall()}


async def list_page(
    unit_of_work: UnitOfWork,
    *,
    account_ids: list[uuid.UUID] | None,
    terminal_id: uuid.UUID | None,
    status: str | None,
    start: datetime | None,
    end: datetime | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[PaymentRow]:
    """Newest first, keyset-paginated on (created_at, payment_id). `account_ids` None means any account."""
    conditions, parameters = [], []
    if account_ids is not None:
        conditions.append("(debit_account_id = any(%s) or credit_account_id = any(%s))")
        parameters += [account_ids, account_ids]
    if terminal_id is not None:
        conditions.append("terminal_id = %s")
        parameters.append(terminal_id)
    if status:
        conditions.append("status = %s")
        parameters.append(status)
    if start is not None:
        conditions.append("created_at >= %s")
        parameters.append(start)
    if end is not None:
        conditions.append("created_at < %s")
        parameters.append(end)
    if before is not None:
        conditions.append("(created_at, payment_id) < (%s, %s)")
        parameters += list(before)
    where = f"where {' and '.join(conditions)}" if conditions else ""
    cursor = await unit_of_work.connection.execute(
        f"select * from ({_PAYMENTS}) p {where} order by created_at desc, payment_id desc limit %s", (*parameters, limit)
    )
    return [PaymentRow(*row) for row in await cursor.fetchall()]


async def owned_account_ids(unit_of_work: UnitOfWork, owner_user_id: uuid.UUID) -> list[uuid.UUID]:
    cursor = await unit_of_work.connection.execute(
        "select account_id from accounts where owner_user_id = %s order by created_at limit 1000", (owner_user_id,)
    )
    return [row[0] for row in await cursor.fetchall()]


@dataclass(frozen=True)
class PartyNames:
    """Who a payment is between, by name, for the back office: the accounts' holders and the terminal."""

    from_name: str
    to_name: str
    terminal_name: str


async def party_names(unit_of_work: UnitOfWork, rows: list[PaymentRow]) -> dict[uuid.UUID, PartyNames]:
    """The names of every row's parties, in one query (a float account, the ledger's own, has none)."""
    if not rows:
        return {}
    account_ids = list({row.from_account_id for row in rows} | {row.to_account_id for row in rows})
    terminal_ids = list({row.terminal_id for row in rows if row.terminal_id is not None})
    cursor = await unit_of_work.connection.execute(
        """select 'a', a.account_id, coalesce(u.display_name, '') from accounts a left join users u on u.user_id = a.owner_user_id
            where a.account_id = any(%s)
           union all
           select 't', t.terminal_id, t.display_name from terminals t where t.terminal_id = any(%s)""",
        (account_ids, terminal_ids),
    )
    accounts, terminals = {}, {}
    for kind, identifier, name in await cursor.fetchall():
        (accounts if kind == "a" else terminals)[identifier] = name
    return {row.payment_id: PartyNames(accounts.get(row.from_account_id, ""), accounts.get(row.to_account_id, ""),
                                       terminals.get(row.terminal_id, "") if row.terminal_id else "")
            for row in rows}
