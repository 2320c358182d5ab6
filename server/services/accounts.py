"""Accounts service layer: who may open, see and change which account.

Customers and merchants see only accounts they own; operators and tenant
administrators see all of their tenant's. An account the caller may not see
answers NOT_FOUND, exactly like one that does not exist (no existence oracle).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from domain.errors import NOT_ALLOWED, OUT_OF_RANGE, REQUIRED, NotFound, PermissionDenied
from domain.ledger_rules import ACCOUNT_KINDS, ACCOUNT_STATUSES, currency_violations
from domain.principal import Principal
from domain.validation import (
    created_position,
    invalid,
    keyset_after,
    keyset_page,
    keyset_position,
    page_size,
    parse_resource_id,
    raise_if_violations,
)
from storage import ledger
from storage.audit import RequestContext
from storage.ledger import AccountRecord, EntryRecord
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

BACK_OFFICE_ROLES = frozenset({"operator", "tenant_admin"})
SELF_SERVICE_KINDS = {"customer": frozenset({"customer"}), "merchant": frozenset({"customer", "merchant"})}
# The kinds CreateAccount opens; float accounts (`system_float`) are the ledger's own (ensure_float_account).
OPENABLE_KINDS = ("customer", "merchant")


def is_back_office(principal: Principal) -> bool:
    return bool(principal.roles & BACK_OFFICE_ROLES)


def caller_user_id(principal: Principal) -> uuid.UUID | None:
    return None if principal.is_terminal else principal.resource_id


async def visible_account(unit_of_work: UnitOfWork, principal: Principal, account_id: uuid.UUID) -> AccountRecord:
    """The account if the caller may see it; NOT_FOUND otherwise (whether or not it exists)."""
    account = await ledger.get_account(unit_of_work, account_id)
    if account is None or not (is_back_office(principal) or account.owner_user_id == caller_user_id(principal)):
        raise NotFound(message="account not found", reason="ACCOUNT_NOT_FOUND")
    return account


class AccountsService:
    def __init__(self, units_of_work: UnitOfWorkFactory) -> None:
        self._units_of_work = units_of_work

    async def create_account(self, principal: Principal, kind: str, currency: str, owner: str, method: str) -> AccountRecord:
        if kind not in OPENABLE_KINDS:
            raise invalid("kind", NOT_ALLOWED, "must be a customer or merchant account (the ledger opens float accounts itself)")
        owner_id = parse_resource_id(owner, "users", "owner") if owner else caller_user_id(principal)
        if owner_id is None:
            raise invalid("owner", REQUIRED, "is required when the caller is a terminal")
        if not is_back_office(principal):
            allowed_kinds = frozenset().union(*(SELF_SERVICE_KINDS.get(role, frozenset()) for role in principal.roles))
            if owner_id != caller_user_id(principal) or kind not in allowed_kinds:
                raise PermissionDenied(message="you may open only your own accounts of your kind", reason="ACCOUNT_NOT_ALLOWED")
        if currency:
            raise_if_violations(currency_violations(currency))
        context = RequestContext(actor=principal.subject, method=method, request_id=str(uuid.uuid4()))
        async with self._units_of_work(principal.tenant_id) as unit_of_work:
            if not currency:
                cursor = await unit_of_work.connection.execute(
                    "select default_currency from tenants where tenant_id = %s", (principal.tenant_id,)
                )
                currency = (await cursor.fetchone())[0]
            account = await ledger.create_account(
                unit_of_work, context, owner_user_id=owner_id, kind=kind, currency=currency
            )
            await unit_of_work.commit()
        return account

    async def get_account(self, principal: Principal, name: str) -> AccountRecord:
        account_id = parse_resource_id(name, "accounts")
        async with self._units_of_work(principal.tenant_id) as unit_of_work:
            return await visible_account(unit_of_work, principal, account_id)

    async def list_accounts(
        self, principal: Principal, requested_page_size: int, page_token: str, owner: str, kind: str | None, status: str | None
    ) -> tuple[list[AccountRecord], str]:
        """A page of accounts; `kind` and `status` None for every kind and status."""
        limit = page_size(requested_page_size)
        if kind and kind not in ACCOUNT_KINDS:
            raise invalid("kind", NOT_ALLOWED, f"must be one of {', '.join(ACCOUNT_KINDS)}")
        if status and status not in ACCOUNT_STATUSES:
            raise invalid("status", NOT_ALLOWED, f"must be one of {', '.join(ACCOUNT_STATUSES)}")
        owner_id = parse_resource_id(owner, "users", "owner") if owner else None
        if not is_back_office(principal):
            if owner_id is not None and owner_id != caller_user_id(principal):
                return [], ""
            owner_id = caller_user_id(principal)
        after = keyset_after(page_token, "id")
        async with self._units_of_work.reader(principal.tenant_id) as unit_of_work:
            rows = await ledger.list_accounts(
                unit_of_work, owner_user_id=owner_id, kind=kind or None, status=status or None, after=after, limit=limit + 1
            )
        return keyset_page(rows, limit, created_position("id", "account_id"))

    async def list_entries(
        self, principal: Principal, name: str, requested_page_size: int, page_token: str,
        start: datetime | None, end: datetime | None,
    ) -> tuple[list[EntryRecord], str]:
        account_id = parse_resource_id(name, "accounts", "account")
        limit = page_size(requested_page_size)
        if start is not None and end is not None and end <= start:
            raise invalid("end_time", OUT_OF_RANGE, "must be after start_time")
        after = keyset_position(page_token, {"created": datetime.fromisoformat, "entry": int})
        async with self._units_of_work.reader(principal.tenant_id) as unit_of_work:
            await visible_account(unit_of_work, principal, account_id)
            rows = await ledger.list_entries(unit_of_work, account_id, start=start, end=end, after=after, limit=limit + 1)
        return keyset_page(rows, limit, created_position("entry", "entry_id"))

    async def balance_at(self, principal: Principal, name: str, instant: datetime | None) -> tuple[int, str]:
        account_id = parse_resource_id(name, "accounts", "account")
        if instant is None:
            raise invalid("time", REQUIRED, "is required")
        async with self._units_of_work.reader(principal.tenant_id) as unit_of_work:
            account = await visible_account(unit_of_work, principal, account_id)
            return await ledger.balance_at(unit_of_work, account_id, instant), account.currency

    async def set_status(self, principal: Principal, name: str, status: str, method: str) -> AccountRecord:
        account_id = parse_resource_id(name, "accounts")
        context = RequestContext(actor=principal.subject, method=method, request_id=str(uuid.uuid4()))
        async with self._units_of_work(principal.tenant_id) as unit_of_work:
            await visible_account(unit_of_work, principal, account_id)
            account = await ledger.set_account_status(unit_of_work, context, account_id, status)
            await unit_of_work.commit()
        return account
