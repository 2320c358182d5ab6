"""The money movements that have no SQL entry point: storage owns their one transaction.

CreateTransfer, ChargePaymentCode and AuthorizePayment are one statement each: an entry point of
migrations/current/ (`payments_create_transfer_in`, `payments_charge_code_in`, `payments_authorize_code_in`,
called by storage.ledger) sets the tenant, checks, moves and announces the event.
TopUp, Withdraw, CapturePayment, VoidPayment and RefundPayment have no such entry point — their ledger
functions (`ledger_post_transfer`, `ledger_capture_hold`, `ledger_void_hold`, `ledger_refund`) need the
tenant already set and leave the event to their caller — so each runs here, as ONE
transaction on the primary that the service layer never opens:

    read what the caller's access is decided on  →  `authorize` (the service's rule, server/services/access.py)
    →  the ledger function (it claims the idempotency key first)  →  the live event
    →  the serialized reply stored with the key and COMMIT, in one round trip (storage.idempotency)

A replay (the same caller and request_id) moves nothing and commits nothing: its outcome carries the
reply the original call stored. `serialize` turns the movement's record into the reply's bytes; what
those bytes are is the caller's business (server/servicers/idempotent.py), storage only keeps them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

import psycopg

from domain.ledger_rules import PAYMENT_EVENTS
from storage import idempotency, ledger
from storage.audit import RequestContext
from storage.ledger import AccountRecord, HoldRecord, Outcome, TransferRecord
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

Record = TypeVar("Record", TransferRecord, HoldRecord)
Fact = TypeVar("Fact")
# The service's access rule: it raises the caller's refusal for what was read (None: nothing found).
Authorize = Callable[[Fact | None], object]
Serialize = Callable[[TransferRecord | HoldRecord], bytes]

# The live event a hold's new status announces (transfers announce `created`, refunds `refunded`).
HOLD_EVENTS = {"authorized": "created", "captured": "captured", "voided": "voided"}


@dataclass(frozen=True)
class PaymentParties:
    """Who a payment involves, for deciding who may capture, void or refund it."""

    terminal_id: uuid.UUID | None
    merchant_owner_user_id: uuid.UUID | None  # the owner of the account the payment pays into


# -- the movements ----------------------------------------------------------------------------------


async def top_up_or_withdraw(
    units_of_work: UnitOfWorkFactory, tenant_id: uuid.UUID, context: RequestContext, *, kind: str,
    account_id: uuid.UUID, amount_minor: int, currency: str,
    authorize: Authorize[AccountRecord], serialize: Serialize,
) -> Outcome[TransferRecord]:
    """Credit (`top_up`) or debit (`withdrawal`) an account against the tenant's float in `currency`."""
    if kind not in ("top_up", "withdrawal"):
        raise ValueError(f"top_up_or_withdraw moves top_up or withdrawal, not {kind!r}")

    async def move(unit_of_work: UnitOfWork) -> Outcome[TransferRecord]:
        authorize(await ledger.get_account(unit_of_work, account_id))
        float_id = (await ledger.ensure_float_account(unit_of_work, context, currency)).account_id
        debit, credit = (float_id, account_id) if kind == "top_up" else (account_id, float_id)
        return await ledger.post_transfer(
            unit_of_work, context, kind=kind, debit_account_id=debit, credit_account_id=credit,
            amount_minor=amount_minor, currency=currency,
        )

    return await _in_one_transaction(units_of_work, tenant_id, context, move, serialize)


async def resolve_hold(
    units_of_work: UnitOfWorkFactory, tenant_id: uuid.UUID, context: RequestContext, hold_id: uuid.UUID,
    capture_minor: int | None, *, authorize: Authorize[PaymentParties], serialize: Serialize,
) -> Outcome[HoldRecord]:
    """Capture `capture_minor` of a hold, or void it (None): the hold's parties are checked first."""
    async def move(unit_of_work: UnitOfWork) -> Outcome[HoldRecord]:
        authorize(await hold_parties(unit_of_work, hold_id))
        if capture_minor is None:
            return await ledger.void_hold(unit_of_work, context, hold_id)
        return await ledger.capture_hold(unit_of_work, context, hold_id, capture_minor)

    return await _in_one_transaction(units_of_work, tenant_id, context, move, serialize)


async def refund(
    units_of_work: UnitOfWorkFactory, tenant_id: uuid.UUID, context: RequestContext, payment_id: uuid.UUID,
    amount_minor: int, *, authorize: Authorize[PaymentParties], serialize: Serialize,
) -> Outcome[TransferRecord]:
    async def move(unit_of_work: UnitOfWork) -> Outcome[TransferRecord]:
        authorize(await transfer_parties(unit_of_work, payment_id))
        return await ledger.refund(unit_of_work, context, payment_id, amount_minor)

    return await _in_one_transaction(units_of_work, tenant_id, context, move, serialize)


async def _in_one_transaction(
    units_of_work: UnitOfWorkFactory, tenant_id: uuid.UUID, context: RequestContext,
    move: Callable[[UnitOfWork], Awaitable[Outcome[Record]]], serialize: Serialize,
) -> Outcome[Record]:
    async with units_of_work(tenant_id) as unit_of_work:
        outcome = await move(unit_of_work)
        if outcome.replayed:
            return outcome  # rolled back: the claim found the original's key, nothing else was written
        await _announce(unit_of_work, tenant_id, outcome.record)
        await idempotency.commit_with_response(unit_of_work, context, serialize(outcome.record))
    return outcome


# -- who a payment involves -------------------------------------------------------------------------


async def hold_parties(unit_of_work: UnitOfWork, hold_id: uuid.UUID) -> PaymentParties | None:
    cursor = await unit_of_work.connection.execute(
        """select h.terminal_id, a.owner_user_id
             from holds h
             left join accounts a on a.tenant_id = h.tenant_id and a.account_id = h.merchant_account_id
            where h.hold_id = %s""",
        (hold_id,),
    )
    row = await cursor.fetchone()
    return None if row is None else PaymentParties(*row)


async def transfer_parties(unit_of_work: UnitOfWork, transfer_id: uuid.UUID) -> PaymentParties | None:
    cursor = await unit_of_work.connection.execute(
        """select t.terminal_id, a.owner_user_id
             from transfers t
             left join accounts a on a.tenant_id = t.tenant_id and a.account_id = t.credit_account_id
            where t.transfer_id = %s""",
        (transfer_id,),
    )
    row = await cursor.fetchone()
    return None if row is None else PaymentParties(*row)


# -- the receipt and the live event -----------------------------------------------------------------


async def _announce(unit_of_work: UnitOfWork, tenant_id: uuid.UUID, record: TransferRecord | HoldRecord) -> None:
    """In the movement's own transaction: the live event (sent at commit). The receipt needs nothing here:
    the writer reads it from the transfer row (storage/receipts.py)."""
    if isinstance(record, HoldRecord):
        event = HOLD_EVENTS.get(record.status, record.status)
        accounts = (record.account_id, record.merchant_account_id)
        payment_id, terminal_id = record.hold_id, record.terminal_id
    else:
        event = "refunded" if record.kind == "refund" else "created"
        accounts = (record.debit_account_id, record.credit_account_id)
        payment_id, terminal_id = record.transfer_id, record.terminal_id
    await notify_payment(unit_of_work.connection, tenant_id, payment_id, event, terminal_id, accounts)


async def notify_payment(
    connection: psycopg.AsyncConnection, tenant_id: uuid.UUID, payment_id: uuid.UUID, event: str,
    terminal_id: uuid.UUID | None, account_ids: tuple[uuid.UUID, ...],
) -> None:
    """Queue a live payment event in the caller's transaction: PostgreSQL sends it at commit, never on
    rollback. The database builds the payload (payments_notify, migrations/current/06_events.sql), as it
    does for the movements made in one SQL statement; server/payment_events.py decodes it."""
    if event not in PAYMENT_EVENTS:
        raise ValueError(f"unknown payment event {event!r}")
    if connection.autocommit:
        raise ValueError("payment events are sent at commit: call this inside the payment's transaction")
    await connection.execute(
        "select payments_notify(%s::uuid, %s::uuid, %s::text, %s::uuid, %s::uuid[])",
        (tenant_id, payment_id, event, terminal_id, list(account_ids)),
    )
