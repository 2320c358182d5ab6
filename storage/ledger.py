"""The double-entry ledger: accounts, transfers, holds, refunds, statements and reconciliation.

Every money movement is ONE call of a PL/pgSQL function (migrations/current/) that claims the
idempotency key, locks what it needs in a fixed order, checks the rules, writes the transfer, its
two entries and the balances, and appends the audit event — so no row lock is ever held across a
round trip between Python and the database, and the commit that follows is the only other trip.
The hot paths (CreateTransfer, ChargePaymentCode, AuthorizePayment) go further: one entry-point
function (migrations/current/10_movements.sql, 12_payment_codes.sql) sets the tenant, checks the
caller, moves the money, queues the receipt and announces the event, as ONE autocommit statement —
one round trip in all.
The entry points are SECURITY DEFINER functions of `emoney_ledger`, the only role that writes money
(migration 0012); inside them row-level security still scopes every statement to the caller's tenant.

Balances
    ledger balance = sum of the account's entries;  held = sum of its authorized holds;
    available = ledger balance - held, never below -overdraft_limit_minor (the float has no floor).

Hot accounts
    Merchants and the float (`BALANCE_SHARDS_BY_KIND`) keep their balance in N shard rows: a credit
    adds to one shard nobody else holds, so many payers of one merchant commit in parallel instead of
    queueing on one row. A debit of a merchant sweeps the shards into the account row and checks the
    floor there. So:  cached balance = accounts.balance_minor + sum(account_balance_shards); for an
    unsharded account (customers) accounts.balance_minor alone is the cached balance. Reads here
    (`AccountRecord.balance_minor`) always return the total; reconciliation compares the total.

Failures
    The functions raise SQLSTATEs of class `EM` with a stable identifier as the message;
    `LEDGER_FAILURES` below maps each to a domain error (domain/errors.py), and `translated_failures`
    applies it, so SQL text never leaves this module.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import AsyncIterator, Generic, TypeVar

import psycopg

from domain.errors import ERROR_FOR_CODE, DomainError, NotFound
from domain.failures import by_sqlstate
from domain.ledger_rules import (
    ACCOUNT_KINDS,
    ACCOUNT_STATUSES,
    BALANCE_SHARDS_BY_KIND,
    MAX_EXPIRE_BATCH,
    MAX_ROWS_PER_READ,
    POSTABLE_TRANSFER_KINDS,
)
from storage.audit import RequestContext
from storage.group_commit import GroupCommit, ItemFailure
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

# -- failures ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerFailure:
    reason: str
    error: type[DomainError]
    message: str


# SQLSTATE (class EM, raised by ledger_fail() in SQL) -> the domain error it becomes: the catalogue's
# entries with an EM SQLSTATE (domain/failures.py).
LEDGER_FAILURES: dict[str, LedgerFailure] = {
    sqlstate: LedgerFailure(failure.reason, ERROR_FOR_CODE[failure.code], failure.message)
    for sqlstate, failure in sorted(by_sqlstate("EM").items())
}


def domain_error_for(error: psycopg.Error) -> DomainError | None:
    """The domain error a ledger failure stands for, or None for any other database error."""
    return _ledger_error(error.sqlstate or "", error.diag.message_detail)


def batch_item_error(failure: ItemFailure) -> Exception:
    """The error a refused item of a group-committed batch stands for: the one its entry point on its own
    would have raised — a ledger failure's domain error, else the database error of its SQLSTATE (which
    the pipeline's error mapping translates as it does any other)."""
    ledger_error = _ledger_error(failure.sqlstate, failure.detail)
    if ledger_error is not None:
        return ledger_error
    try:
        return psycopg.errors.lookup(failure.sqlstate)(failure.message)
    except KeyError:
        return psycopg.DatabaseError(failure.message)


def _ledger_error(sqlstate: str, detail_text: str | None) -> DomainError | None:
    failure = LEDGER_FAILURES.get(sqlstate)
    if failure is None:
        return None
    return failure.error(message=failure.message, reason=failure.reason, metadata=_failure_metadata(detail_text))


def _failure_metadata(detail_text: str | None) -> dict[str, str]:
    try:
        detail = json.loads(detail_text or "{}")
    except ValueError:
        return {}
    return {str(key): str(value) for key, value in detail.items() if value is not None} if isinstance(detail, dict) else {}


@contextlib.asynccontextmanager
async def translated_failures() -> AsyncIterator[None]:
    """Turn ledger failures raised by SQL into domain errors; anything else passes through."""
    try:
        yield
    except psycopg.Error as error:
        domain_error = domain_error_for(error)
        if domain_error is None:
            raise
        raise domain_error from None


def require_request_hash(context: RequestContext) -> None:
    if context.request_hash is None or len(context.request_hash) != 32:
        raise ValueError("a call that moves money needs context.request_hash (sha256 of the request)")


# -- records ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountRecord:
    account_id: uuid.UUID
    owner_user_id: uuid.UUID | None
    kind: str
    currency: str
    status: str
    overdraft_limit_minor: int
    balance_minor: int  # ledger balance: the account row plus its shards
    held_minor: int
    balance_shards: int
    created_at: datetime
    updated_at: datetime
    owner_display_name: str | None = None  # read by listings and lookups; None from the ledger's own functions

    @property
    def available_minor(self) -> int:
        """What the account can still spend: balance − held + overdraft limit (the API's `available_minor`)."""
        return self.balance_minor - self.held_minor + self.overdraft_limit_minor


@dataclass(frozen=True)
class TransferRecord:
    transfer_id: uuid.UUID
    kind: str
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount_minor: int
    currency: str
    status: str  # completed, partially_refunded, refunded
    refunded_minor: int
    request_id: str
    actor: str
    related_transfer_id: uuid.UUID | None  # refund -> the payment it reverses
    hold_id: uuid.UUID | None  # capture -> the hold it resolves
    terminal_id: uuid.UUID | None
    created_at: datetime
    description: str | None = None  # what the payer wrote (CreateTransfer), on statements and receipts


@dataclass(frozen=True)
class HoldRecord:
    hold_id: uuid.UUID
    account_id: uuid.UUID  # the payer
    merchant_account_id: uuid.UUID
    terminal_id: uuid.UUID | None
    currency: str
    amount_minor: int
    captured_minor: int
    status: str  # authorized, captured, voided, expired
    expires_at: datetime
    request_id: str
    actor: str
    created_at: datetime
    resolved_at: datetime | None
    capture_transfer_id: uuid.UUID | None


@dataclass(frozen=True)
class EntryRecord:
    entry_id: int
    transfer_id: uuid.UUID
    transfer_kind: str
    counterparty_account_id: uuid.UUID
    amount_minor: int  # negative for a debit
    currency: str
    created_at: datetime
    balance_after_minor: int  # running ledger balance after this entry, in (created_at, entry_id) order
    description: str | None = None  # the transfer's


Record = TypeVar("Record", TransferRecord, HoldRecord)


@dataclass(frozen=True)
class Outcome(Generic[Record]):
    """What a money movement produced. On a replay (same caller and request_id, same request) nothing
    moved: `record` is the original result and `stored_response` the reply stored with it, if any."""

    record: Record
    replayed: bool
    stored_response: bytes | None


def _transfer_outcome(row: tuple) -> Outcome[TransferRecord]:
    replayed, stored_response, *fields = row
    return Outcome(TransferRecord(*fields), replayed, None if stored_response is None else bytes(stored_response))


def _hold_outcome(row: tuple) -> Outcome[HoldRecord]:
    replayed, stored_response, *fields = row
    return Outcome(HoldRecord(*fields), replayed, None if stored_response is None else bytes(stored_response))


def _call_arguments(context: RequestContext) -> tuple:
    require_request_hash(context)
    return context.actor, context.method, context.request_id, context.request_hash


# -- accounts ---------------------------------------------------------------------------------------

# The balance of account `a`: its row plus its shards (hot accounts take credits in shards).
_BALANCE_OF_A = """(a.balance_minor + coalesce((select sum(s.balance_minor) from account_balance_shards s
                                               where s.tenant_id = a.tenant_id and s.account_id = a.account_id), 0))"""

_ACCOUNT_SELECT = f"""
    select a.account_id, a.owner_user_id, a.kind, a.currency, a.status, a.overdraft_limit_minor,
           {_BALANCE_OF_A}::bigint,
           a.held_minor, a.balance_shards, a.created_at, a.updated_at,
           (select u.display_name from users u where u.tenant_id = a.tenant_id and u.user_id = a.owner_user_id)
      from accounts a
"""


async def create_account(
    unit_of_work: UnitOfWork,
    context: RequestContext,
    *,
    owner_user_id: uuid.UUID,
    kind: str,
    currency: str,
    overdraft_limit_minor: int = 0,
) -> AccountRecord:
    """Open a customer or merchant account for a user of the current tenant (audited)."""
    if kind not in ("customer", "merchant"):
        raise ValueError("create_account opens customer and merchant accounts; see ensure_float_account")
    async with translated_failures():
        cursor = await unit_of_work.connection.execute(
            "select * from ledger_open_account(%s, %s, %s, %s, %s, %s, %s, %s)",
            (owner_user_id, kind, currency, overdraft_limit_minor, BALANCE_SHARDS_BY_KIND[kind],
             context.actor, context.method, context.request_id),
        )
        return AccountRecord(*await cursor.fetchone())


async def ensure_float_account(unit_of_work: UnitOfWork, context: RequestContext, currency: str) -> AccountRecord:
    """The tenant's float (issuing) account in `currency`, created on first use. Safe to call concurrently."""
    async with translated_failures():
        cursor = await unit_of_work.connection.execute(
            "select * from ledger_open_account(null, 'system_float', %s, 0, %s, %s, %s, %s)",
            (currency, BALANCE_SHARDS_BY_KIND["system_float"], context.actor, context.method, context.request_id),
        )
        return AccountRecord(*await cursor.fetchone())


async def get_account(unit_of_work: UnitOfWork, account_id: uuid.UUID) -> AccountRecord | None:
    cursor = await unit_of_work.connection.execute(f"{_ACCOUNT_SELECT} where a.account_id = %s", (account_id,))
    row = await cursor.fetchone()
    return None if row is None else AccountRecord(*row)


async def list_accounts(
    unit_of_work: UnitOfWork,
    *,
    owner_user_id: uuid.UUID | None = None,
    kind: str | None = None,
    status: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int,
) -> list[AccountRecord]:
    """Oldest first, keyset-paginated on (created_at, account_id); filters are ANDed."""
    _check_limit(limit)
    if kind is not None and kind not in ACCOUNT_KINDS or status is not None and status not in ACCOUNT_STATUSES:
        raise ValueError(f"unknown account kind or status filter: {kind!r}, {status!r}")
    conditions, parameters = [], []
    for column, value in (("owner_user_id", owner_user_id), ("kind", kind), ("status", status)):
        if value is not None:
            conditions.append(f"a.{column} = %s")
            parameters.append(value)
    if after is not None:
        conditions.append("(a.created_at, a.account_id) > (%s, %s)")
        parameters += list(after)
    where = f"where {' and '.join(conditions)}" if conditions else ""
    cursor = await unit_of_work.connection.execute(
        f"{_ACCOUNT_SELECT} {where} order by a.created_at, a.account_id limit %s", (*parameters, limit)
    )
    return [AccountRecord(*row) for row in await cursor.fetchall()]


async def set_account_status(
    unit_of_work: UnitOfWork, context: RequestContext, account_id: uuid.UUID, status: str
) -> AccountRecord:
    """Freeze (`frozen`), unfreeze (`active`) or close (`closed`: final, only at zero with nothing held).

    Setting the status an account already has changes nothing and is not audited.
    """
    if status not in ACCOUNT_STATUSES:
        raise ValueError(f"unknown account status {status!r}")
    async with translated_failures():
        cursor = await unit_of_work.connection.execute(
            "select * from ledger_set_account_status(%s, %s, %s, %s, %s)",
            (account_id, status, context.actor, context.method, context.request_id),
        )
        return AccountRecord(*await cursor.fetchone())


# -- transfers --------------------------------------------------------------------------------------


async def post_transfer(
    unit_of_work: UnitOfWork,
    context: RequestContext,
    *,
    kind: str,
    debit_account_id: uuid.UUID,
    credit_account_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    terminal_id: uuid.UUID | None = None,
) -> Outcome[TransferRecord]:
    """Move `amount_minor` from the debit to the credit account: p2p, payment, top_up or withdrawal.

    Idempotent on (context.actor, context.request_id); see storage.idempotency for storing the reply.
    """
    if kind not in POSTABLE_TRANSFER_KINDS:
        raise ValueError(f"post_transfer moves {', '.join(POSTABLE_TRANSFER_KINDS)}; not {kind!r}")
    async with translated_failures():
        cursor = await unit_of_work.connection.execute(
            "select * from ledger_post_transfer(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (kind, debit_account_id, credit_account_id, amount_minor, currency, terminal_id, *_call_arguments(context)),
        )
        return _transfer_outcome(await cursor.fetchone())


async def create_customer_transfer(
    units_of_work: UnitOfWorkFactory,
    tenant_id: uuid.UUID,
    context: RequestContext,
    *,
    caller_user_id: uuid.UUID | None,
    caller_is_back_office: bool,
    from_account_id: uuid.UUID,
    to_account_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    description: str | None = None,
) -> Outcome[TransferRecord]:
    """CreateTransfer in one statement and one round trip (migrations/current/10_movements.sql): the
    caller's checks (ACCOUNT_NOT_FOUND, NOT_ACCOUNT_OWNER), the movement (`payment` to a merchant, else
    `p2p`) and its live event, committed. Idempotent on (context.actor, context.request_id);
    a replay returns the transfer as it was created."""
    arguments = (caller_user_id, caller_is_back_office, from_account_id, to_account_id, amount_minor, currency,
                 *_call_arguments(context), description)
    if units_of_work.group_commit is not None:  # with the concurrent calls of this process (storage/group_commit.py)
        return await _group_committed(units_of_work.group_commit, tenant_id, arguments)
    async with translated_failures():
        row = await units_of_work.one_statement(
            "select * from payments_create_transfer_in(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (tenant_id, *arguments),
        )
    if row is None:
        raise RuntimeError("payments_create_transfer returned no row")
    return _transfer_outcome(row)


async def group_committed_row(group: GroupCommit, tenant_id: uuid.UUID, arguments: tuple) -> tuple:
    """One item through a group commit (transfers, charges or codes): its outcome row, or the error it was
    refused with, raised as its entry point on its own would have raised it."""
    result = await group.submit(tenant_id, arguments)
    if isinstance(result, ItemFailure):
        raise batch_item_error(result)
    return result


async def _group_committed(group: GroupCommit, tenant_id: uuid.UUID, arguments: tuple) -> Outcome[TransferRecord]:
    """A transfer or charge through its group commit: its transfer, or the error it was refused with."""
    return _transfer_outcome(await group_committed_row(group, tenant_id, arguments))


async def redeem_payment_code(
    units_of_work: UnitOfWorkFactory,
    tenant_id: uuid.UUID,
    context: RequestContext,
    *,
    code_hash: bytes,
    terminal_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    hold_expires_at: datetime | None,
) -> Outcome[TransferRecord] | Outcome[HoldRecord]:
    """ChargePaymentCode (`hold_expires_at` None: a payment) or AuthorizePayment (a hold), in one round
    trip and one transaction (migrations/current/12_payment_codes.sql): the code locked and checked,
    the movement, the code marked used and the live event, committed. A retry by the same terminal with
    the same request_id replays the original result as it was created. Charges are group-committed with
    the concurrent charges of this process when group commit is on (storage/group_commit.py)."""
    if hold_expires_at is None and units_of_work.charge_group_commit is not None:
        return await _group_committed(units_of_work.charge_group_commit, tenant_id,
                                      (code_hash, terminal_id, amount_minor, currency, *_call_arguments(context)))
    async with translated_failures():
        if hold_expires_at is None:
            row = await units_of_work.one_statement(
                "select * from payments_charge_code_in(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (tenant_id, code_hash, terminal_id, amount_minor, currency, *_call_arguments(context)),
            )
        else:
            row = await units_of_work.one_statement(
                "select * from payments_authorize_code_in(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (tenant_id, code_hash, terminal_id, amount_minor, currency, hold_expires_at, *_call_arguments(context)),
            )
    if row is None:
        raise RuntimeError("redeeming a payment code returned no row")
    return _transfer_outcome(row) if hold_expires_at is None else _hold_outcome(row)


async def refund(
    unit_of_work: UnitOfWork, context: RequestContext, payment_transfer_id: uuid.UUID, amount_minor: int
) -> Outcome[TransferRecord]:
    """Give back all or part of a payment or capture; all refunds together never exceed it."""
    async with translated_failures():
        cursor = await unit_of_work.connection.execute(
            "select * from ledger_refund(%s, %s, %s, %s, %s, %s)",
            (payment_transfer_id, amount_minor, *_call_arguments(context)),
        )
        return _transfer_outcome(await cursor.fetchone())


_TRANSFER_SELECT = """
    select transfer_id, kind, debit_account_id, credit_account_id, amount_minor, currency, status, refunded_minor,
           request_id, actor, related_transfer_id, hold_id, terminal_id, created_at
      from transfers
"""


async def get_transfer(unit_of_work: UnitOfWork, transfer_id: uuid.UUID) -> TransferRecord | None:
    cursor = await unit_of_work.connection.execute(f"{_TRANSFER_SELECT} where transfer_id = %s", (transfer_id,))
    row = await cursor.fetchone()
    return None if row is None else TransferRecord(*row)


# -- holds ------------------------------------------------------------------------------------------


async def capture_hold(
    unit_of_work: UnitOfWork, context: RequestContext, hold_id: uuid.UUID, amount_minor: int
) -> Outcome[HoldRecord]:
    """Capture all or part of an authorized hold: a `capture` transfer (its id in
    `record.capture_transfer_id`) for `amount_minor`; the rest of the hold is released."""
    async with translated_failures():
        cursor = await unit_of_work.connection.execute(
            "select * from ledger_capture_hold(%s, %s, %s, %s, %s, %s)",
            (hold_id, amount_minor, *_call_arguments(context)),
        )
        return _hold_outcome(await cursor.fetchone())


async def void_hold(unit_of_work: UnitOfWork, context: RequestContext, hold_id: uuid.UUID) -> Outcome[HoldRecord]:
    """Release an authorized hold without moving money."""
    async with translated_failures():
        cursor = await unit_of_work.connection.execute(
            "select * from ledger_void_hold(%s, %s, %s, %s, %s)", (hold_id, *_call_arguments(context))
        )
        return _hold_outcome(await cursor.fetchone())


async def expire_due_holds(unit_of_work: UnitOfWork, limit: int = 100) -> list[HoldRecord]:
    """Expire up to `limit` of the current tenant's holds past their expiry, releasing their funds.

    For a background task: call it per tenant (`tenants_with_due_holds`) and commit. Holds being
    captured at this moment are skipped, never waited for. Debits and closes also release a payer's
    own expired holds on the spot, so funds are never unavailable because the task is late.
    """
    if not 1 <= limit <= MAX_EXPIRE_BATCH:
        raise ValueError(f"limit must be between 1 and {MAX_EXPIRE_BATCH}")
    async with translated_failures():
        cursor = await unit_of_work.connection.execute("select * from ledger_expire_due_holds(%s)", (limit,))
        return [_hold_outcome(row).record for row in await cursor.fetchall()]


async def tenants_with_due_holds(unit_of_work: UnitOfWork, limit: int = 100) -> list[uuid.UUID]:
    """Tenants with holds past their expiry (works in a unit of work without a tenant)."""
    cursor = await unit_of_work.connection.execute("select * from tenants_with_due_holds(%s)", (limit,))
    return [row[0] for row in await cursor.fetchall()]


async def get_hold(unit_of_work: UnitOfWork, hold_id: uuid.UUID) -> HoldRecord | None:
    cursor = await unit_of_work.connection.execute("select * from ledger_hold_result(false, null, %s)", (hold_id,))
    row = await cursor.fetchone()
    return None if row is None else _hold_outcome(row).record


# -- statements -------------------------------------------------------------------------------------


# The balance before the page's oldest entry, for list_entries, counted from the nearer end of the
# account's life (by time, a fair proxy for the number of entries): from its opening, the sum of the
# entries before the page; from now, the balance (row plus shards) minus the entries from the page on.
# PostgreSQL evaluates only the CASE branch taken.
_OPENING_BALANCE = f"""
            select case
                   when f.created_at < a.created_at + (statement_timestamp() - a.created_at) / 2 then
                       coalesce((select sum(e.amount_minor) from ledger_entries e
                                  where e.tenant_id = a.tenant_id and e.account_id = a.account_id
                                    and (e.created_at, e.entry_id) < (f.created_at, f.entry_id)), 0)
                   else
                       {_BALANCE_OF_A}
                       - coalesce((select sum(e.amount_minor) from ledger_entries e
                                    where e.tenant_id = a.tenant_id and e.account_id = a.account_id
                                      and (e.created_at, e.entry_id) >= (f.created_at, f.entry_id)), 0)
                   end as balance_minor
              from first_of_page f
              join accounts a on a.account_id = %s
"""


async def list_entries(
    unit_of_work: UnitOfWork,
    account_id: uuid.UUID,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    after: tuple[datetime, int] | None = None,
    newest_first: bool = False,
    limit: int,
) -> list[EntryRecord]:
    """The statement: the account's entries with start <= created_at < end, each with the running
    balance after it, keyset-paginated on (created_at, entry_id) — pass the last row's pair as `after`.
    ACCOUNT_NOT_FOUND for an account this tenant does not have.

    The running balance is counted from the nearer end of the account's life (_OPENING_BALANCE): in
    its older half, the sum of every entry before the page; in its newer half, the balance now (row
    plus shards) minus every entry from the page's oldest on. Either is an index-only scan (the
    statement index includes the amount) of the entries between the page and that end, so a recent
    period of a merchant with millions of entries does not sum its whole history. Both are read in the
    statement's one snapshot and the balance is the sum of the entries (the ledger's invariant, checked
    by reconciliation), so they agree to the minor unit.
    `created_at` is its transaction's start time: an entry of a transaction still running may
    commit with a time just before the newest one shown (for a hot merchant, whose payers do not
    queue on one row), so the newest few milliseconds of a statement can still gain entries.
    """
    query, parameters = _entries_query(account_id, start, end, after, newest_first, limit)
    await _require_account(unit_of_work, account_id)
    cursor = await unit_of_work.connection.execute(query, parameters)
    return [EntryRecord(*row) for row in await cursor.fetchall()]


async def account_and_entries(
    unit_of_work: UnitOfWork,
    account_id: uuid.UUID,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int,
) -> tuple[AccountRecord | None, list[EntryRecord]]:
    """The account (None when this tenant has none by that id) and a page of its statement, as
    `list_entries` reads it, in ONE round trip: both queries go out together in a pipeline. For a caller
    who must see the account first (ListAccountEntries): the page of an account the caller may not see is
    read and thrown away with the NOT_FOUND the caller gets — no more than the tenant's own rows, and no
    answer tells it apart from an account that does not exist."""
    query, parameters = _entries_query(account_id, start, end, after, False, limit)
    connection = unit_of_work.connection
    async with connection.pipeline():
        account_cursor = await connection.execute(f"{_ACCOUNT_SELECT} where a.account_id = %s", (account_id,))
        entries_cursor = await connection.execute(query, parameters)
    account_row = await account_cursor.fetchone()
    if account_row is None:
        return None, []
    return AccountRecord(*account_row), [EntryRecord(*row) for row in await entries_cursor.fetchall()]


def _entries_query(
    account_id: uuid.UUID, start: datetime | None, end: datetime | None, after: tuple[datetime, int] | None,
    newest_first: bool, limit: int,
) -> tuple[str, tuple]:
    """The statement page's query and its parameters (list_entries says what it reads)."""
    _check_limit(limit)
    direction, comparison = ("desc", "<") if newest_first else ("asc", ">")
    conditions, parameters = ["e.account_id = %s"], [account_id]
    if start is not None:
        conditions.append("e.created_at >= %s")
        parameters.append(start)
    if end is not None:
        conditions.append("e.created_at < %s")
        parameters.append(end)
    if after is not None:
        conditions.append(f"(e.created_at, e.entry_id) {comparison} (%s, %s)")
        parameters += list(after)
    query = f"""
        with page as (
            select e.entry_id, e.transfer_id, e.amount_minor, e.currency, e.created_at
              from ledger_entries e
             where {' and '.join(conditions)}
             order by e.created_at {direction}, e.entry_id {direction}
             limit %s
        ),
        first_of_page as (
            select p.created_at, p.entry_id from page p order by p.created_at, p.entry_id limit 1
        ),
        opening as ({_OPENING_BALANCE})
        select p.entry_id, p.transfer_id, t.kind,
               case when t.debit_account_id = %s then t.credit_account_id else t.debit_account_id end,
               p.amount_minor, p.currency, p.created_at,
               (o.balance_minor + sum(p.amount_minor) over (order by p.created_at, p.entry_id))::bigint,
               t.description
          from page p
         cross join opening o
          join transfers t on t.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid
                          and t.transfer_id = p.transfer_id
         order by p.created_at {direction}, p.entry_id {direction}
        """
    return query, (*parameters, limit, account_id, account_id)


async def balance_at(unit_of_work: UnitOfWork, account_id: uuid.UUID, instant: datetime) -> int:
    """The account's ledger balance at `instant`: the sum of its entries created at or before it."""
    cursor = await unit_of_work.connection.execute(
        """select coalesce((select sum(e.amount_minor) from ledger_entries e
                             where e.account_id = a.account_id and e.created_at <= %s), 0)::bigint
             from accounts a where a.account_id = %s""",
        (instant, account_id),
    )
    row = await cursor.fetchone()
    if row is None:
        raise _not_found_account(account_id)
    return row[0]


# -- reconciliation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Discrepancy:
    """One broken ledger invariant: `check` names it, `subject` is a currency, account, transfer or hold id.

    For TRANSFER_ENTRIES_MISMATCH the figures are counts: 2 matching entries expected, `actual` found.
    """

    check: str
    subject: str
    expected_minor: int
    actual_minor: int


@dataclass(frozen=True)
class ReconciliationReport:
    checked_at: datetime
    accounts_checked: int
    transfers_checked: int
    entries_checked: int
    entries_sum_by_currency: dict[str, int]  # every value 0 on a sound ledger
    discrepancies: list[Discrepancy]
    truncated: bool  # some check found more than `max_per_check` problems

    @property
    def ok(self) -> bool:
        return not self.discrepancies


# Each check is one statement, so each sees one consistent snapshot even while money moves.
# Rows: (subject, expected, actual).
_RECONCILIATION_CHECKS: dict[str, str] = {
    # Per currency, debits and credits cancel out.
    "CURRENCY_UNBALANCED": """
        select currency, 0, sum(amount_minor)::bigint from ledger_entries group by currency
        having sum(amount_minor) <> 0""",
    # Cached balance (row + shards) equals the sum of the account's entries.
    "BALANCE_MISMATCH": """
        select a.account_id::text, coalesce(e.total, 0)::bigint, (a.balance_minor + coalesce(s.total, 0))::bigint
          from accounts a
          left join (select account_id, sum(amount_minor) as total from ledger_entries group by account_id) e
                 on e.account_id = a.account_id
          left join (select account_id, sum(balance_minor) as total from account_balance_shards group by account_id) s
                 on s.account_id = a.account_id
         where a.balance_minor + coalesce(s.total, 0) <> coalesce(e.total, 0)""",
    # Held equals the sum of the account's authorized holds.
    "HELD_MISMATCH": """
        select a.account_id::text, coalesce(h.total, 0)::bigint, a.held_minor
          from accounts a
          left join (select account_id, sum(amount_minor) as total from holds where status = 'authorized'
                      group by account_id) h on h.account_id = a.account_id
         where a.held_minor <> coalesce(h.total, 0)""",
    # Every transfer has exactly two entries: -amount on its debit account, +amount on its credit account.
    "TRANSFER_ENTRIES_MISMATCH": """
        select t.transfer_id::text, 2, count(e.entry_id) filter (where e.account_id = t.debit_account_id
                                                                  and e.amount_minor = -t.amount_minor
                                                                   or e.account_id = t.credit_account_id
                                                                  and e.amount_minor = t.amount_minor)
          from transfers t
          left join ledger_entries e on e.tenant_id = t.tenant_id and e.transfer_id = t.transfer_id
         group by t.transfer_id, t.debit_account_id, t.credit_account_id, t.amount_minor
        having count(e.entry_id) <> 2
            or count(distinct e.account_id) <> 2
            or count(e.entry_id) filter (where e.account_id = t.debit_account_id and e.amount_minor = -t.amount_minor
                                            or e.account_id = t.credit_account_id and e.amount_minor = t.amount_minor) <> 2""",
    # A payment's refunded total equals the sum of its refunds.
    "REFUNDED_MISMATCH": """
        select p.transfer_id::text, coalesce(r.total, 0)::bigint, p.refunded_minor
          from transfers p
          left join (select related_transfer_id, sum(amount_minor) as total from transfers where kind = 'refund'
                      group by related_transfer_id) r on r.related_transfer_id = p.transfer_id
         where p.kind in ('payment', 'capture') and p.refunded_minor <> coalesce(r.total, 0)""",
    # A captured hold has one capture transfer of the captured amount; others have none.
    "CAPTURE_MISMATCH": """
        select h.hold_id::text, h.captured_minor, coalesce(t.amount_minor, 0)
          from holds h
          left join transfers t on t.tenant_id = h.tenant_id and t.hold_id = h.hold_id
         where h.captured_minor <> coalesce(t.amount_minor, 0)""",
    # No account other than the float is below its floor.
    "OVERDRAWN": f"""
        select a.account_id::text, -a.overdraft_limit_minor, ({_BALANCE_OF_A} - a.held_minor)::bigint as available
          from accounts a
         where a.kind <> 'system_float'
           and {_BALANCE_OF_A} - a.held_minor < -a.overdraft_limit_minor""",
}


async def reconcile(unit_of_work: UnitOfWork, max_per_check: int = 100) -> ReconciliationReport:
    """Check the current tenant's ledger invariants and list what is broken (nothing, normally)."""
    _check_limit(max_per_check)
    connection = unit_of_work.connection
    cursor = await connection.execute(
        """select now(), (select count(*) from accounts), (select count(*) from transfers),
                  (select count(*) from ledger_entries)"""
    )
    checked_at, accounts_checked, transfers_checked, entries_checked = await cursor.fetchone()
    cursor = await connection.execute(
        "select currency, sum(amount_minor)::bigint from ledger_entries group by currency order by currency"
    )
    sums = {currency: total for currency, total in await cursor.fetchall()}
    discrepancies: list[Discrepancy] = []
    truncated = False
    for check, query in _RECONCILIATION_CHECKS.items():
        cursor = await connection.execute(f"{query} limit %s", (max_per_check + 1,))
        rows = await cursor.fetchall()
        truncated = truncated or len(rows) > max_per_check
        discrepancies += [Discrepancy(check, str(subject), expected, actual) for subject, expected, actual in rows[:max_per_check]]
    return ReconciliationReport(
        checked_at, accounts_checked, transfers_checked, entries_checked, sums, discrepancies, truncated
    )


# -- helpers ----------------------------------------------------------------------------------------


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_ROWS_PER_READ:
        raise ValueError(f"limit must be between 1 and {MAX_ROWS_PER_READ}")


def _not_found_account(account_id: uuid.UUID) -> NotFound:
    failure = LEDGER_FAILURES["EM004"]
    return NotFound(message=failure.message, reason=failure.reason, metadata={"accountId": str(account_id)})


async def _require_account(unit_of_work: UnitOfWork, account_id: uuid.UUID) -> None:
    cursor = await unit_of_work.connection.execute("select 1 from accounts where account_id = %s", (account_id,))
    if await cursor.fetchone() is None:
        raise _not_found_account(account_id)
