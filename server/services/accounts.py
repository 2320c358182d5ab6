"""Accounts service layer: opening, reading and changing accounts.

Who may open, see and change which account is server/services/access.py: customers and merchants see
only accounts they own; operators and tenant administrators see all of their tenant's. An account the
caller may not see answers NOT_FOUND, exactly like one that does not exist (no existence oracle).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from domain.errors import NOT_ALLOWED, OUT_OF_RANGE, REQUIRED
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
from server.services import access, commands
from server.services.transactions import Transactions
from storage import ledger, tenants
from storage.audit import RequestContext
from storage.ledger import AccountRecord, EntryRecord

# The kinds CreateAccount opens; float accounts (`system_float`) are the ledger's own (ensure_float_account).
OPENABLE_KINDS = ("customer", "merchant")


def _change_context(principal: Principal, method: str) -> RequestContext:
    return RequestContext(actor=principal.subject, method=method, request_id=str(uuid.uuid4()))


class AccountsService:
    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def create_account(self, principal: Principal, method: str, command: commands.OpenAccount) -> AccountRecord:
        """CHANGE: the ledger function audits the opening."""
        if command.kind not in OPENABLE_KINDS:
            raise invalid("kind", NOT_ALLOWED, "must be a customer or merchant account (the ledger opens float accounts itself)")
        owner_id = parse_resource_id(command.owner, "users", "owner") if command.owner else access.caller_user_id(principal)
        if owner_id is None:
            raise invalid("owner", REQUIRED, "is required when the caller is a terminal")
        access.require_may_open(principal, owner_id, command.kind)
        if command.currency:
            raise_if_violations(currency_violations(command.currency))
        async with self._transactions.change(principal.tenant_id) as unit_of_work:
            currency = command.currency or await tenants.default_currency(unit_of_work, principal.tenant_id)
            account = await ledger.create_account(
                unit_of_work, _change_context(principal, method), owner_user_id=owner_id, kind=command.kind, currency=currency
            )
            await unit_of_work.commit()
        return account

    async def get_account(self, principal: Principal, name: str) -> AccountRecord:
        account_id = parse_resource_id(name, "accounts")
        async with self._transactions.lookup(principal.tenant_id) as unit_of_work:
            return access.visible_account(principal, await ledger.get_account(unit_of_work, account_id))

    async def list_accounts(self, principal: Principal, command: commands.ListAccounts) -> tuple[list[AccountRecord], str]:
        """A page of accounts; `kind` and `status` None for every kind and status."""
        limit = page_size(command.page.size)
        if command.kind and command.kind not in ACCOUNT_KINDS:
            raise invalid("kind", NOT_ALLOWED, f"must be one of {', '.join(ACCOUNT_KINDS)}")
        if command.status and command.status not in ACCOUNT_STATUSES:
            raise invalid("status", NOT_ALLOWED, f"must be one of {', '.join(ACCOUNT_STATUSES)}")
        requested_owner = parse_resource_id(command.owner, "users", "owner") if command.owner else None
        anything_visible, owner_id = access.listed_owner(principal, requested_owner)
        if not anything_visible:
            return [], ""
        after = keyset_after(command.page.token, "id")
        async with self._transactions.read(principal.tenant_id) as unit_of_work:
            rows = await ledger.list_accounts(
                unit_of_work, owner_user_id=owner_id, kind=command.kind or None, status=command.status or None,
                after=after, limit=limit + 1,
            )
        return keyset_page(rows, limit, created_position("id", "account_id"))

    async def list_entries(self, principal: Principal, command: commands.ListEntries) -> tuple[list[EntryRecord], str]:
        account_id = parse_resource_id(command.account, "accounts", "account")
        limit = page_size(command.page.size)
        if command.start is not None and command.end is not None and command.end <= command.start:
            raise invalid("end_time", OUT_OF_RANGE, "must be after start_time")
        after = keyset_position(command.page.token, {"created": datetime.fromisoformat, "entry": int})
        async with self._transactions.read(principal.tenant_id) as unit_of_work:
            account, rows = await ledger.account_and_entries(
                unit_of_work, account_id, start=command.start, end=command.end, after=after, limit=limit + 1
            )
        access.visible_account(principal, account)
        return keyset_page(rows, limit, created_position("entry", "entry_id"))

    async def balance_at(self, principal: Principal, name: str, instant: datetime | None) -> tuple[int, str]:
        account_id = parse_resource_id(name, "accounts", "account")
        if instant is None:
            raise invalid("time", REQUIRED, "is required")
        async with self._transactions.read(principal.tenant_id) as unit_of_work:
            account = access.visible_account(principal, await ledger.get_account(unit_of_work, account_id))
            return await ledger.balance_at(unit_of_work, account_id, instant), account.currency

    async def set_status(self, principal: Principal, method: str, name: str, status: str) -> AccountRecord:
        """CHANGE: the ledger function audits a status that changes."""
        account_id = parse_resource_id(name, "accounts")
        async with self._transactions.change(principal.tenant_id) as unit_of_work:
            access.visible_account(principal, await ledger.get_account(unit_of_work, account_id))
            account = await ledger.set_account_status(unit_of_work, _change_context(principal, method), account_id, status)
            await unit_of_work.commit()
        return account
