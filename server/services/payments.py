"""Payments service layer: the rules around moving money, on top of the ledger functions.

Every money-moving call is idempotent (AIP-155): its `request_id` is claimed in
the same transaction as the movement (inside the ledger's SQL functions), the
serialized reply is stored with it at commit, and a retry gets that reply back.
Who may do what:
- transfers and payment codes: the owner of the account debited;
- charges and holds: terminals, paid into their merchant's account;
- captures, voids: the terminal that authorized, the merchant, or the back office;
- refunds: the merchant paid, the terminal that charged, or the back office;
- top-ups and withdrawals: the back office.
Anything the caller may not see answers NOT_FOUND.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable, TypeVar

from google.protobuf.message import Message

from domain.errors import (
    INVALID_FORMAT, MISMATCH, NOT_ALLOWED, OUT_OF_RANGE, REQUIRED, FailedPrecondition, NotFound,
    PermissionDenied,
)
from domain.ledger_rules import PAYMENT_STATUSES, amount_violations, currency_violations, request_id_violations
from server.payment_events import PaymentEvent, PaymentEventHub, notify_payment_event
from domain.principal import Principal
from server.services.accounts import caller_user_id, is_back_office, visible_account
from domain.validation import (
    created_position, invalid, keyset_after, keyset_page, optional_timestamp, page_size, parse_resource_id, raise_if_violations,
)
from storage import idempotency, ledger, payment_codes, payments_query
from storage.audit import RequestContext
from storage.ledger import HoldRecord, TransferRecord
from storage.receipts import enqueue_receipt, get_or_create_receipt, presigned_receipt_url
from storage.payments_query import PaymentRow
from storage.object_store import ObjectStore
from storage.tenants import slug_of
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud or typed without confusion
CODE_LENGTH = 16  # 80 bits
DEFAULT_CODE_TTL_S, MIN_CODE_TTL_S, MAX_CODE_TTL_S = 120, 10, 600
DEFAULT_HOLD_TTL_S, MIN_HOLD_TTL_S, MAX_HOLD_TTL_S = 3600, 60, 7 * 24 * 3600

Reply = TypeVar("Reply", bound=Message)


def validate_money(request_id: str, amount_minor: int, currency: str | None) -> None:
    violations = request_id_violations(request_id) + amount_violations(amount_minor)
    if currency is not None:
        violations += currency_violations(currency)
    raise_if_violations(violations)


def hash_code(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


def money_context(principal: Principal, method: str, request_id: str, request: Message) -> RequestContext:
    return RequestContext(
        actor=principal.subject,
        method=method,
        request_id=request_id,
        request_hash=idempotency.request_hash(method, request.SerializeToString(deterministic=True)),
    )


class PaymentsService:
    def __init__(self, units_of_work: UnitOfWorkFactory, events: PaymentEventHub, objects: ObjectStore) -> None:
        self._units_of_work = units_of_work
        self._events = events
        self._objects = objects

    async def _move(
        self,
        principal: Principal,
        context: RequestContext,
        action: Callable[[UnitOfWork], Awaitable[ledger.Outcome]],
        build_reply: Callable[[object], Reply],
        reply_type: type[Reply],
    ) -> Reply:
        """Run one movement in one transaction and store its reply with the request id."""
        async with self._units_of_work(principal.tenant_id) as unit_of_work:
            outcome = await action(unit_of_work)
            if outcome.replayed:
                if outcome.stored_response is not None:
                    return reply_type.FromString(outcome.stored_response)
                return build_reply(outcome.record)
            await self._announce(unit_of_work, principal, outcome.record)
            reply = build_reply(outcome.record)
            await idempotency.commit_with_response(unit_of_work, context, reply.SerializeToString())
        return reply

    async def _announce(self, unit_of_work: UnitOfWork, principal: Principal, record: TransferRecord | HoldRecord) -> None:
        """In the movement's own transaction: a live event (sent at commit) and a receipt to write."""
        if isinstance(record, HoldRecord):
            event = {"authorized": "created", "captured": "captured", "voided": "voided"}.get(record.status, record.status)
            accounts = (record.account_id, record.merchant_account_id)
            payment_id, terminal_id = record.hold_id, record.terminal_id
            if record.capture_transfer_id is not None:
                await enqueue_receipt(unit_of_work, principal.tenant_id, record.capture_transfer_id)
        else:
            event = "refunded" if record.kind == "refund" else "created"
            accounts = (record.debit_account_id, record.credit_account_id)
            payment_id, terminal_id = record.transfer_id, record.terminal_id
            await enqueue_receipt(unit_of_work, principal.tenant_id, record.transfer_id)
        await notify_payment_event(
            unit_of_work.connection,
            PaymentEvent(tenant_id=principal.tenant_id, payment_id=payment_id, event=event, terminal_id=terminal_id, account_ids=accounts),
        )

    # -- transfers ------------------------------------------------------------------------------

    async def create_transfer(self, principal, method, request, build_reply, reply_type):
        """One round trip: checks, movement, receipt request and live event in one SQL call
        (payments_create_transfer_in, migrations/current/10_movements.sql)."""
        validate_money(request.request_id, request.amount_minor, request.currency)
        from_id = parse_resource_id(request.from_account, "accounts", "from_account")
        to_id = parse_resource_id(request.to_account, "accounts", "to_account")
        context = money_context(principal, method, request.request_id, request)
        outcome = await ledger.create_customer_transfer(
            self._units_of_work, principal.tenant_id, context,
            caller_user_id=caller_user_id(principal), caller_is_back_office=is_back_office(principal),
            from_account_id=from_id, to_account_id=to_id, amount_minor=request.amount_minor, currency=request.currency,
        )
        if outcome.replayed and outcome.stored_response is not None:
            return reply_type.FromString(outcome.stored_response)
        return build_reply(outcome.record)

    async def top_up_or_withdraw(self, principal, method, request, kind, build_reply, reply_type):
        validate_money(request.request_id, request.amount_minor, request.currency)
        account_id = parse_resource_id(request.account, "accounts", "account")
        context = money_context(principal, method, request.request_id, request)

        async def action(unit_of_work: UnitOfWork):
            await visible_account(unit_of_work, principal, account_id)
            float_account = await ledger.ensure_float_account(unit_of_work, context, request.currency)
            debit, credit = (float_account.account_id, account_id) if kind == "top_up" else (account_id, float_account.account_id)
            return await ledger.post_transfer(
                unit_of_work, context, kind=kind, debit_account_id=debit, credit_account_id=credit,
                amount_minor=request.amount_minor, currency=request.currency,
            )

        return await self._move(principal, context, action, build_reply, reply_type)

    # -- payment codes --------------------------------------------------------------------------

    async def create_payment_code(self, principal: Principal, account_name: str, max_amount_minor: int, currency: str, ttl_s: int):
        validate_money("code", max_amount_minor, currency)
        account_id = parse_resource_id(account_name, "accounts", "account")
        ttl_s = ttl_s or DEFAULT_CODE_TTL_S
        if not MIN_CODE_TTL_S <= ttl_s <= MAX_CODE_TTL_S:
            raise invalid("ttl_seconds", OUT_OF_RANGE, f"must be between {MIN_CODE_TTL_S} and {MAX_CODE_TTL_S}")
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        expires_at = datetime.now(timezone.utc) + timedelta(seconds=ttl_s)
        async with self._units_of_work(principal.tenant_id) as unit_of_work:
            account = await visible_account(unit_of_work, principal, account_id)
            if account.owner_user_id != caller_user_id(principal):
                raise PermissionDenied(message="you may make codes only for your own accounts", reason="NOT_ACCOUNT_OWNER")
            if account.currency != currency:
                raise invalid("currency", MISMATCH, "must be the account's currency", "CURRENCY_MISMATCH")
            if account.status != "active":
                raise FailedPrecondition(message=f"the account is {account.status}", reason=f"ACCOUNT_{account.status.upper()}")
            await payment_codes.insert(
                unit_of_work, principal.tenant_id, hash_code(code), account_id, currency, max_amount_minor, expires_at,
                principal.subject,
            )
            await unit_of_work.commit()
        return code, expires_at

    async def redeem_code(self, principal, method, request, *, hold_ttl_s: int | None, build_reply, reply_type):
        """ChargePaymentCode (hold_ttl_s None) or AuthorizePayment: a terminal spends a code once."""
        validate_money(request.request_id, request.amount_minor, request.currency)
        if not principal.is_terminal:
            raise PermissionDenied(message="only terminals redeem payment codes", reason="NOT_A_TERMINAL")
        code = request.code.strip().upper()
        if len(code) != CODE_LENGTH or any(character not in CODE_ALPHABET for character in code):
            raise invalid("code", REQUIRED if not code else INVALID_FORMAT, f"must be the {CODE_LENGTH}-character code the customer shows")
        if hold_ttl_s is not None and not MIN_HOLD_TTL_S <= hold_ttl_s <= MAX_HOLD_TTL_S:
            raise invalid("ttl_seconds", OUT_OF_RANGE, f"must be between {MIN_HOLD_TTL_S} and {MAX_HOLD_TTL_S}")
        context = money_context(principal, method, request.request_id, request)
        hold_expires_at = None if hold_ttl_s is None else datetime.now(timezone.utc) + timedelta(seconds=hold_ttl_s)
        outcome = await ledger.redeem_payment_code(
            self._units_of_work, principal.tenant_id, context, code_hash=hash_code(code), terminal_id=principal.resource_id,
            amount_minor=request.amount_minor, currency=request.currency, hold_expires_at=hold_expires_at,
        )
        if outcome.replayed and outcome.stored_response is not None:
            return reply_type.FromString(outcome.stored_response)
        return build_reply(outcome.record)

    # -- holds ----------------------------------------------------------------------------------

    async def _hold_for_resolution(self, unit_of_work: UnitOfWork, principal: Principal, hold_id: uuid.UUID) -> HoldRecord:
        hold = await ledger.get_hold(unit_of_work, hold_id)
        if hold is None or not await self._may_manage(unit_of_work, principal, hold.merchant_account_id, hold.terminal_id):
            raise NotFound(message="payment not found", reason="PAYMENT_NOT_FOUND")
        return hold

    async def _may_manage(self, unit_of_work, principal: Principal, merchant_account_id, terminal_id) -> bool:
        """The back office, the terminal involved, or the merchant who owns the receiving account."""
        if is_back_office(principal):
            return True
        if principal.is_terminal:
            return terminal_id == principal.resource_id
        merchant = await ledger.get_account(unit_of_work, merchant_account_id)
        return merchant is not None and merchant.owner_user_id == principal.resource_id

    async def capture(self, principal, method, request, build_reply, reply_type):
        validate_money(request.request_id, request.amount_minor, None)
        hold_id = parse_resource_id(request.name, "payments")
        context = money_context(principal, method, request.request_id, request)

        async def action(unit_of_work: UnitOfWork):
            await self._hold_for_resolution(unit_of_work, principal, hold_id)
            return await ledger.capture_hold(unit_of_work, context, hold_id, request.amount_minor)

        return await self._move(principal, context, action, build_reply, reply_type)

    async def void(self, principal, method, request, build_reply, reply_type):
        validate_money(request.request_id, 1, None)
        hold_id = parse_resource_id(request.name, "payments")
        context = money_context(principal, method, request.request_id, request)

        async def action(unit_of_work: UnitOfWork):
            await self._hold_for_resolution(unit_of_work, principal, hold_id)
            return await ledger.void_hold(unit_of_work, context, hold_id)

        return await self._move(principal, context, action, build_reply, reply_type)

    # -- refunds --------------------------------------------------------------------------------

    async def refund(self, principal, method, request, build_reply, reply_type):
        validate_money(request.request_id, request.amount_minor, None)
        payment_id = parse_resource_id(request.name, "payments")
        context = money_context(principal, method, request.request_id, request)

        async def action(unit_of_work: UnitOfWork):
            payment = await ledger.get_transfer(unit_of_work, payment_id)
            if payment is None or not await self._may_manage(unit_of_work, principal, payment.credit_account_id, payment.terminal_id):
                raise NotFound(message="payment not found", reason="PAYMENT_NOT_FOUND")
            return await ledger.refund(unit_of_work, context, payment_id, request.amount_minor)

        return await self._move(principal, context, action, build_reply, reply_type)

    # -- reads ----------------------------------------------------------------------------------

    async def get_payment(self, principal: Principal, name: str) -> PaymentRow:
        payment_id = parse_resource_id(name, "payments")
        async with self._units_of_work(principal.tenant_id) as unit_of_work:
            payment = await payments_query.get(unit_of_work, payment_id)
            if payment is None or not await self._may_see(unit_of_work, principal, payment):
                raise NotFound(message="payment not found", reason="PAYMENT_NOT_FOUND")
        return payment

    async def _may_see(self, unit_of_work: UnitOfWork, principal: Principal, payment: PaymentRow) -> bool:
        if is_back_office(principal):
            return True
        if principal.is_terminal:
            return payment.terminal_id == principal.resource_id
        owned = set(await payments_query.owned_account_ids(unit_of_work, principal.resource_id))
        return payment.from_account_id in owned or payment.to_account_id in owned

    async def list_payments(self, principal: Principal, request, status: str | None) -> tuple[list[PaymentRow], str]:
        """A page of the payments the caller may see, newest first; `status` None for every status (the
        request's other filters are read from it)."""
        limit = page_size(request.page_size)
        if status is not None and status not in PAYMENT_STATUSES:
            raise invalid("status", NOT_ALLOWED, f"must be one of {', '.join(PAYMENT_STATUSES)}")
        account_filter = parse_resource_id(request.account, "accounts", "account") if request.account else None
        terminal_filter = parse_resource_id(request.terminal, "terminals", "terminal") if request.terminal else None
        start = optional_timestamp(request, "start_time")
        end = optional_timestamp(request, "end_time")
        before = keyset_after(request.page_token, "id")
        async with self._units_of_work.reader(principal.tenant_id) as unit_of_work:
            account_ids = [account_filter] if account_filter else None
            if principal.is_terminal:
                terminal_filter = principal.resource_id
            elif not is_back_office(principal):
                owned = await payments_query.owned_account_ids(unit_of_work, principal.resource_id)
                account_ids = [a for a in owned if account_filter in (None, a)]
                if not account_ids:
                    return [], ""
            rows = await payments_query.list_page(
                unit_of_work, account_ids=account_ids, terminal_id=terminal_filter, status=status,
                start=start, end=end, before=before, limit=limit + 1,
            )
        return keyset_page(rows, limit, created_position("id", "payment_id"))


    # -- live events and receipts ---------------------------------------------------------------

    async def watch(self, principal: Principal, account_name: str):
        """A subscription to the payment events the caller may watch: a terminal its own payments, a
        merchant one of its accounts, the back office any account (or, with none named, the whole tenant)."""
        if principal.is_terminal:
            if account_name:
                raise invalid("account", NOT_ALLOWED, "must be empty for a terminal, which watches its own payments")
            return self._events.subscribe(principal.tenant_id, terminal_id=principal.resource_id)
        if not account_name:
            if not is_back_office(principal):
                raise invalid("account", REQUIRED, "is required: the merchant account to watch")
            return self._events.subscribe(principal.tenant_id)
        account_id = parse_resource_id(account_name, "accounts", "account")
        async with self._units_of_work(principal.tenant_id) as unit_of_work:
            await visible_account(unit_of_work, principal, account_id)
        return self._events.subscribe(principal.tenant_id, account_ids=frozenset({account_id}))

    async def receipt(self, principal: Principal, name: str) -> tuple[bytes, str]:
        payment_id = parse_resource_id(name, "payments", "payment")
        async with self._units_of_work(principal.tenant_id) as unit_of_work:
            payment = await payments_query.get(unit_of_work, payment_id)
            if payment is None or not await self._may_see(unit_of_work, principal, payment):
                raise NotFound(message="payment not found", reason="PAYMENT_NOT_FOUND")
            if payment.kind == "hold":
                raise FailedPrecondition(message="holds have no receipt; their capture does", reason="NO_RECEIPT_FOR_HOLD")
            content = await get_or_create_receipt(
                unit_of_work, self._objects, principal.tenant_id, payment, await slug_of(unit_of_work, principal.tenant_id)
            )
            await unit_of_work.commit()
        url = ""
        try:
            url = await presigned_receipt_url(self._objects, principal.tenant_id, payment_id)
        except Exception:  # object storage away: the bytes are still returned
            url = ""
        return content, url
