"""Payments service layer: the rules around moving money, on top of the ledger's storage.

Every money-moving call is idempotent (AIP-155): its `request_id` is claimed in the same transaction as
the movement (inside the ledger's SQL functions), and a retry gets the original result back — the reply
stored with the key, or the record as it was created (server/servicers/idempotent.py decides which).
How each call uses the database is declared in server/services/transactions.py; who may touch which
account or payment in server/services/access.py:
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

from domain.errors import (
    INVALID_FORMAT, MISMATCH, NOT_ALLOWED, OUT_OF_RANGE, REQUIRED, FailedPrecondition, InvalidArgument, NotFound,
)
from domain.ledger_rules import (
    PAYMENT_STATUSES, amount_violations, currency_violations, description_violations, request_id_violations,
)
from domain.phones import e164
from domain.principal import Principal
from domain.validation import (
    created_position, email_violations, invalid, keyset_after, keyset_page, normalize_email, page_size, parse_resource_id,
    raise_if_violations,
)
from server.payment_events import PaymentEventHub
from server.services import access, commands
from server.services.transactions import Transactions
from storage import idempotency, ledger, movements, payment_codes, payments_query, users
from storage.audit import RequestContext
from storage.ledger import HoldRecord, Outcome, TransferRecord
from storage.movements import Serialize
from storage.object_store import ObjectStore
from storage.payments_query import PaymentRow
from storage.receipts import get_or_create_receipt, presigned_receipt_url
from storage.tenants import default_currency, receipt_voice
from storage.unit_of_work import UnitOfWork

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud or typed without confusion
CODE_LENGTH = 16  # 80 bits
DEFAULT_CODE_TTL_S, MIN_CODE_TTL_S, MAX_CODE_TTL_S = 120, 10, 600
DEFAULT_HOLD_TTL_S, MIN_HOLD_TTL_S, MAX_HOLD_TTL_S = 3600, 60, 7 * 24 * 3600

MoneyCommand = commands.CreateTransfer | commands.MoveFloat | commands.RedeemCode | commands.ResolvePayment


def validate_money(request_id: str, amount_minor: int, currency: str | None) -> None:
    violations = request_id_violations(request_id) + amount_violations(amount_minor)
    if currency is not None:
        violations += currency_violations(currency)
    raise_if_violations(violations)


def hash_code(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


def money_context(principal: Principal, method: str, command: MoneyCommand) -> RequestContext:
    return RequestContext(
        actor=principal.subject,
        method=method,
        request_id=command.request_id,
        request_hash=idempotency.request_hash(method, command.canonical_request),
    )


class PaymentsService:
    def __init__(self, transactions: Transactions, events: PaymentEventHub, objects: ObjectStore) -> None:
        self._transactions = transactions
        self._events = events
        self._objects = objects

    # -- transfers ------------------------------------------------------------------------------

    async def create_transfer(
        self, principal: Principal, method: str, command: commands.CreateTransfer
    ) -> Outcome[TransferRecord]:
        """ENTRY_POINT: checks, movement, receipt request and live event in one SQL call
        (payments_create_transfer_in, migrations/current/10_movements.sql), which also checks the access
        rules (access.transfer_caller)."""
        validate_money(command.request_id, command.amount_minor, command.currency)
        description = command.description.strip()
        raise_if_violations(description_violations(description))
        from_id = parse_resource_id(command.from_account, "accounts", "from_account")
        to_id = parse_resource_id(command.to_account, "accounts", "to_account")
        caller_user_id, caller_is_back_office = access.transfer_caller(principal)
        return await ledger.create_customer_transfer(
            self._transactions.units_of_work, principal.tenant_id, money_context(principal, method, command),
            caller_user_id=caller_user_id, caller_is_back_office=caller_is_back_office,
            from_account_id=from_id, to_account_id=to_id, amount_minor=command.amount_minor, currency=command.currency,
            description=description or None,
        )

    async def top_up_or_withdraw(
        self, principal: Principal, method: str, command: commands.MoveFloat, serialize: Serialize
    ) -> Outcome[TransferRecord]:
        """STORAGE_TRANSACTION (storage/movements.py): the account checked, the float moved, the reply stored."""
        validate_money(command.request_id, command.amount_minor, command.currency)
        account_id = parse_resource_id(command.account, "accounts", "account")
        return await movements.top_up_or_withdraw(
            self._transactions.units_of_work, principal.tenant_id, money_context(principal, method, command),
            kind=command.kind, account_id=account_id, amount_minor=command.amount_minor, currency=command.currency,
            authorize=lambda account: access.visible_account(principal, account), serialize=serialize,
        )

    # -- paying a person ---------------------------------------------------------------------------

    async def find_payee(self, principal: Principal, email: str, phone_number: str, currency: str) -> tuple[str, uuid.UUID, str]:
        """(masked name, account id, currency) of the person to pay; PAYEE_NOT_FOUND alike for an unknown
        address and a person who cannot be paid (disabled, or no active customer account in the currency)."""
        email, phone_number = normalize_email(email), phone_number.strip()
        if bool(email) == bool(phone_number):
            raise invalid("email", REQUIRED if not email else NOT_ALLOWED, "give exactly one of email and phone_number")
        phone = None
        if email:
            raise_if_violations(email_violations(email))
        else:
            phone, violations = e164(phone_number)
            raise_if_violations(violations)
        if currency:
            raise_if_violations(currency_violations(currency))
        async with self._transactions.read(principal.tenant_id) as unit_of_work:
            currency = currency or await default_currency(unit_of_work, principal.tenant_id)
            payee = await users.find_payee(unit_of_work, email or None, phone, currency)
        if payee is None:
            raise NotFound(message="nobody of this tenant can be paid at that address or number in that currency",
                           reason="PAYEE_NOT_FOUND")
        return masked_name(payee.display_name), payee.account_id, currency

    # -- payment codes --------------------------------------------------------------------------

    async def create_payment_code(self, principal: Principal, command: commands.CreatePaymentCode) -> tuple[str, datetime]:
        validate_money("code", command.max_amount_minor, command.currency)
        account_id = parse_resource_id(command.account, "accounts", "account")
        ttl_s = command.ttl_s or DEFAULT_CODE_TTL_S
        if not MIN_CODE_TTL_S <= ttl_s <= MAX_CODE_TTL_S:
            raise invalid("ttl_seconds", OUT_OF_RANGE, f"must be between {MIN_CODE_TTL_S} and {MAX_CODE_TTL_S}")
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        caller_user_id, caller_is_back_office = access.transfer_caller(principal)
        try:
            expires_at = await payment_codes.create(
                self._transactions.units_of_work, principal.tenant_id, caller_user_id=caller_user_id,
                caller_is_back_office=caller_is_back_office, code_hash=hash_code(code), account_id=account_id,
                currency=command.currency, max_amount_minor=command.max_amount_minor, ttl_s=ttl_s,
                created_by=principal.subject,
            )
        except InvalidArgument as error:
            if error.reason != "CURRENCY_MISMATCH":
                raise
            raise invalid("currency", MISMATCH, "must be the account's currency", "CURRENCY_MISMATCH") from None
        return code, expires_at

    async def redeem_code(
        self, principal: Principal, method: str, command: commands.RedeemCode
    ) -> Outcome[TransferRecord] | Outcome[HoldRecord]:
        """ENTRY_POINT: ChargePaymentCode (no hold_ttl_s) or AuthorizePayment — a terminal spends a code once."""
        validate_money(command.request_id, command.amount_minor, command.currency)
        access.require_terminal(principal)
        code = _checked_code(command.code)
        hold_ttl_s = command.hold_ttl_s
        if hold_ttl_s is not None and not MIN_HOLD_TTL_S <= hold_ttl_s <= MAX_HOLD_TTL_S:
            raise invalid("ttl_seconds", OUT_OF_RANGE, f"must be between {MIN_HOLD_TTL_S} and {MAX_HOLD_TTL_S}")
        hold_expires_at = None if hold_ttl_s is None else datetime.now(timezone.utc) + timedelta(seconds=hold_ttl_s)
        return await ledger.redeem_payment_code(
            self._transactions.units_of_work, principal.tenant_id, money_context(principal, method, command),
            code_hash=hash_code(code), terminal_id=principal.resource_id, amount_minor=command.amount_minor,
            currency=command.currency, hold_expires_at=hold_expires_at,
        )

    # -- holds and refunds (STORAGE_TRANSACTION: storage/movements.py) ----------------------------

    async def capture(
        self, principal: Principal, method: str, command: commands.ResolvePayment, serialize: Serialize
    ) -> Outcome[HoldRecord]:
        validate_money(command.request_id, command.amount_minor, None)
        return await self._resolve_hold(principal, method, command, command.amount_minor, serialize)

    async def void(
        self, principal: Principal, method: str, command: commands.ResolvePayment, serialize: Serialize
    ) -> Outcome[HoldRecord]:
        validate_money(command.request_id, 1, None)
        return await self._resolve_hold(principal, method, command, None, serialize)

    async def _resolve_hold(
        self, principal: Principal, method: str, command: commands.ResolvePayment, capture_minor: int | None,
        serialize: Serialize,
    ) -> Outcome[HoldRecord]:
        hold_id = parse_resource_id(command.payment, "payments")
        return await movements.resolve_hold(
            self._transactions.units_of_work, principal.tenant_id, money_context(principal, method, command), hold_id,
            capture_minor, authorize=lambda parties: access.managed_payment(principal, parties), serialize=serialize,
        )

    async def refund(
        self, principal: Principal, method: str, command: commands.ResolvePayment, serialize: Serialize
    ) -> Outcome[TransferRecord]:
        validate_money(command.request_id, command.amount_minor, None)
        payment_id = parse_resource_id(command.payment, "payments")
        return await movements.refund(
            self._transactions.units_of_work, principal.tenant_id, money_context(principal, method, command), payment_id,
            command.amount_minor, authorize=lambda parties: access.managed_payment(principal, parties), serialize=serialize,
        )

    # -- reads ----------------------------------------------------------------------------------

    async def get_payment(self, principal: Principal, name: str) -> PaymentRow:
        payment_id = parse_resource_id(name, "payments")
        async with self._transactions.lookup(principal.tenant_id) as unit_of_work:
            return await self._visible_payment(unit_of_work, principal, payment_id)

    async def _visible_payment(self, unit_of_work: UnitOfWork, principal: Principal, payment_id: uuid.UUID) -> PaymentRow:
        payment = await payments_query.get(unit_of_work, payment_id)
        if payment is None:
            raise access.payment_not_found()
        owned = await self._owned_accounts(unit_of_work, principal)
        if not access.may_see_payment(principal, payment, owned):
            raise access.payment_not_found()
        return payment

    async def _owned_accounts(self, unit_of_work: UnitOfWork, principal: Principal) -> list[uuid.UUID]:
        if not access.needs_owned_accounts(principal):
            return []
        return await payments_query.owned_account_ids(unit_of_work, principal.resource_id)

    async def list_payments(self, principal: Principal, command: commands.ListPayments) -> tuple[list[PaymentRow], str]:
        """A page of the payments the caller may see, newest first."""
        limit = page_size(command.page.size)
        if command.status is not None and command.status not in PAYMENT_STATUSES:
            raise invalid("status", NOT_ALLOWED, f"must be one of {', '.join(PAYMENT_STATUSES)}")
        account_filter = parse_resource_id(command.account, "accounts", "account") if command.account else None
        terminal_filter = parse_resource_id(command.terminal, "terminals", "terminal") if command.terminal else None
        before = keyset_after(command.page.token, "id")
        async with self._transactions.read(principal.tenant_id) as unit_of_work:
            account_ids = [account_filter] if account_filter else None
            if principal.is_terminal:
                terminal_filter = principal.resource_id
            elif access.needs_owned_accounts(principal):
                owned = await self._owned_accounts(unit_of_work, principal)
                account_ids = [a for a in owned if account_filter in (None, a)]
                if not account_ids:
                    return [], ""
            rows = await payments_query.list_page(
                unit_of_work, account_ids=account_ids, terminal_id=terminal_filter, status=command.status,
                start=command.start, end=command.end, before=before, limit=limit + 1,
            )
        return keyset_page(rows, limit, created_position("id", "payment_id"))

    async def party_names(self, principal: Principal, rows: list[PaymentRow]) -> dict[uuid.UUID, payments_query.PartyNames]:
        """Who each payment is between, by name — for the back office only (a citizen sees account names
        and the masked names FindPayee gives, never another person's full name)."""
        if not access.is_back_office(principal) or not rows:
            return {}
        async with self._transactions.read(principal.tenant_id) as unit_of_work:
            return await payments_query.party_names(unit_of_work, rows)

    # -- live events and receipts ---------------------------------------------------------------

    async def watch(self, principal: Principal, account_name: str):
        """A subscription to the payment events the caller may watch: a terminal its own payments, a
        merchant one of its accounts, the back office any account (or, with none named, the whole tenant)."""
        if principal.is_terminal:
            if account_name:
                raise invalid("account", NOT_ALLOWED, "must be empty for a terminal, which watches its own payments")
            return self._events.subscribe(principal.tenant_id, terminal_id=principal.resource_id)
        if not account_name:
            if not access.is_back_office(principal):
                raise invalid("account", REQUIRED, "is required: the merchant account to watch")
            return self._events.subscribe(principal.tenant_id)
        account_id = parse_resource_id(account_name, "accounts", "account")
        async with self._transactions.lookup(principal.tenant_id) as unit_of_work:
            access.visible_account(principal, await ledger.get_account(unit_of_work, account_id))
        return self._events.subscribe(principal.tenant_id, account_ids=frozenset({account_id}))

    async def receipt(self, principal: Principal, name: str) -> tuple[bytes, str]:
        payment_id = parse_resource_id(name, "payments", "payment")
        async with self._transactions.lookup(principal.tenant_id) as unit_of_work:
            payment = await self._visible_payment(unit_of_work, principal, payment_id)
            if payment.kind == "hold":
                raise FailedPrecondition(message="holds have no receipt; their capture does", reason="NO_RECEIPT_FOR_HOLD")
            slug, language, time_zone = await receipt_voice(unit_of_work, principal.tenant_id)
        content = await get_or_create_receipt(self._objects, principal.tenant_id, payment, slug, language, time_zone)
        url = ""
        try:
            url = await presigned_receipt_url(self._objects, principal.tenant_id, payment_id)
        except Exception:  # object storage away: the bytes are still returned
            url = ""
        return content, url


def _checked_code(code: str) -> str:
    """The code as the customer shows it, upper-cased; INVALID_ARGUMENT unless it is one we could have made."""
    code = code.strip().upper()
    if len(code) != CODE_LENGTH or any(character not in CODE_ALPHABET for character in code):
        raise invalid(
            "code", REQUIRED if not code else INVALID_FORMAT, f"must be the {CODE_LENGTH}-character code the customer shows"
        )
    return code


def masked_name(display_name: str) -> str:
    """What a payer sees before paying: the first name and the initial of the last ("Ana Carolina Souza" →
    "Ana S."), enough to confirm the right person without revealing their full name."""
    words = display_name.split()
    if len(words) <= 1:
        return display_name.strip()
    return f"{words[0]} {words[-1][0].upper()}."
