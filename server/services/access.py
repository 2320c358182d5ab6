"""Who may touch which account and which payment: the one place these rules are written in Python.

Which role may call which method is the authorization interceptor's table (interceptors/access_policy.py);
this module decides, for a caller allowed to call the method, which accounts and payments it reaches:

- an account is seen by its owner and by the back office (operators, tenant administrators);
- money leaves an account only at its owner's request, and a terminal owns none;
- an account is opened by the back office for anyone, or by a customer or merchant for itself, of a
  kind its role allows;
- a payment is managed (captured, voided, refunded) by the back office, the terminal that took it, or
  the owner of the account it pays into; it is seen by the back office, its terminal, or the owner of
  either of its accounts.

Whatever the caller may not see answers NOT_FOUND, exactly like what does not exist (no existence oracle).

Defence in depth: the CreateTransfer and CreatePaymentCode entry points check the first two rules again in
SQL (`payments_create_transfer`, migrations/current/10_movements.sql; `payments_create_code_in`,
12_payment_codes.sql: ACCOUNT_NOT_FOUND, NOT_ACCOUNT_OWNER) with the caller facts `transfer_caller` gives
them, in their own statement. Python does not read the account first (that would cost each a second round
trip); instead tests/integration/test_ledger.py checks that `may_see_account` and `may_spend_from` give the
entry points' answer for every kind of caller and account. Every other call reads the account or payment and applies
these rules in code before (or in the same transaction as) what it does.
"""

from __future__ import annotations

import uuid
from typing import Iterable

from domain.errors import NotFound, PermissionDenied
from domain.principal import Principal
from storage.ledger import AccountRecord
from storage.movements import PaymentParties
from storage.payments_query import PaymentRow

BACK_OFFICE_ROLES = frozenset({"operator", "tenant_admin"})
# The kinds of account a customer or merchant may open for itself.
SELF_SERVICE_KINDS = {"customer": frozenset({"customer"}), "merchant": frozenset({"customer", "merchant"})}


def is_back_office(principal: Principal) -> bool:
    return bool(principal.roles & BACK_OFFICE_ROLES)


def caller_user_id(principal: Principal) -> uuid.UUID | None:
    """The user calling; None for a terminal."""
    return None if principal.is_terminal else principal.resource_id


# -- accounts -------------------------------------------------------------------------------------


def may_see_account(principal: Principal, owner_user_id: uuid.UUID | None) -> bool:
    return is_back_office(principal) or owner_user_id == caller_user_id(principal)


def may_spend_from(principal: Principal, owner_user_id: uuid.UUID | None) -> bool:
    caller = caller_user_id(principal)
    return caller is not None and owner_user_id == caller


def visible_account(principal: Principal, account: AccountRecord | None) -> AccountRecord:
    """The account if the caller may see it; NOT_FOUND otherwise (whether or not it exists)."""
    if account is None or not may_see_account(principal, account.owner_user_id):
        raise NotFound(message="account not found", reason="ACCOUNT_NOT_FOUND")
    return account


def require_own_account(principal: Principal, account: AccountRecord, message: str) -> None:
    """NOT_ACCOUNT_OWNER unless the caller owns `account` (`message` says what the caller tried)."""
    if not may_spend_from(principal, account.owner_user_id):
        raise PermissionDenied(message=message, reason="NOT_ACCOUNT_OWNER")


def transfer_caller(principal: Principal) -> tuple[uuid.UUID | None, bool]:
    """What the CreateTransfer and CreatePaymentCode entry points check the rules above with: (caller's user
    id, back office?)."""
    return caller_user_id(principal), is_back_office(principal)


def require_may_open(principal: Principal, owner_user_id: uuid.UUID, kind: str) -> None:
    if is_back_office(principal):
        return
    allowed_kinds = frozenset().union(*(SELF_SERVICE_KINDS.get(role, frozenset()) for role in principal.roles))
    if owner_user_id != caller_user_id(principal) or kind not in allowed_kinds:
        raise PermissionDenied(message="you may open only your own accounts of your kind", reason="ACCOUNT_NOT_ALLOWED")


def listed_owner(principal: Principal, requested_owner: uuid.UUID | None) -> tuple[bool, uuid.UUID | None]:
    """Whose accounts a listing shows: (anything visible?, the owner to filter on — None for everyone's)."""
    if is_back_office(principal):
        return True, requested_owner
    own = caller_user_id(principal)
    return requested_owner in (None, own), own


# -- payments -------------------------------------------------------------------------------------


def may_manage_payment(principal: Principal, parties: PaymentParties) -> bool:
    """The back office, the terminal involved, or the merchant who owns the receiving account."""
    if is_back_office(principal):
        return True
    if principal.is_terminal:
        return parties.terminal_id == principal.resource_id
    return parties.merchant_owner_user_id == principal.resource_id


def managed_payment(principal: Principal, parties: PaymentParties | None) -> PaymentParties:
    """The payment's parties if the caller may manage it; NOT_FOUND otherwise (whether or not it exists)."""
    if parties is None or not may_manage_payment(principal, parties):
        raise payment_not_found()
    return parties


def may_see_payment(principal: Principal, payment: PaymentRow, owned_account_ids: Iterable[uuid.UUID]) -> bool:
    """`owned_account_ids`: the caller's accounts (read only when `needs_owned_accounts`)."""
    if is_back_office(principal):
        return True
    if principal.is_terminal:
        return payment.terminal_id == principal.resource_id
    owned = set(owned_account_ids)
    return payment.from_account_id in owned or payment.to_account_id in owned


def needs_owned_accounts(principal: Principal) -> bool:
    """Whether what the caller sees of payments depends on the accounts it owns."""
    return not is_back_office(principal) and not principal.is_terminal


def payment_not_found() -> NotFound:
    return NotFound(message="payment not found", reason="PAYMENT_NOT_FOUND")


def require_terminal(principal: Principal) -> None:
    """Payment codes are redeemed by terminals, paid into their merchant's account."""
    if not principal.is_terminal:
        raise PermissionDenied(message="only terminals redeem payment codes", reason="NOT_A_TERMINAL")
