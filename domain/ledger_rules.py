"""Ledger rules and limits: pure data and checks, no I/O.

The database enforces the same rules (the tables' CHECK constraints and domains in
migrations/0004_ledger.sql, the `ledger_*` functions in migrations/current/); these constants let the service layer refuse a bad request before it reaches
the database, naming the field at fault, and keep every limit in one place on the Python side.
Integration tests check that both sides agree (tests/integration/test_ledger_rules_agree.py).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta

from domain.currencies import is_currency
from domain.errors import INVALID_FORMAT, OUT_OF_RANGE, REQUIRED, TOO_LONG, FieldViolation

# -- limits (TigerStyle: a limit on everything) -----------------------------------------------------

# Largest amount one transfer, hold, capture or refund may move: 1,000,000.00 in a two-decimal currency.
# The database has the same figure in ledger_max_transfer_minor().
MAX_TRANSFER_MINOR = 100_000_000
MAX_OVERDRAFT_LIMIT_MINOR = MAX_TRANSFER_MINOR
# A hold expires at most this long after it was authorized (ledger_max_hold_duration()).
MAX_HOLD_DURATION = timedelta(days=30)
# Most rows one ledger read returns (the service layer's page sizes are smaller: domain/validation.py).
MAX_ROWS_PER_READ = 1_000
MAX_EXPIRE_BATCH = 1_000
# The most CreateTransfers one group-committed batch carries (ledger_max_batch_items(); storage/group_commit.py).
MAX_BATCH_ITEMS = 64
# A client's request_id (AIP-155 idempotency key of a money movement): the contract says 64 characters.
MAX_REQUEST_ID_LENGTH = 64
# A transfer's description (migration 0018 says the same in its CHECK).
MAX_DESCRIPTION_LENGTH = 140
# A call's id (x-request-id, from Envoy or the client; interceptors/request_context.py), which audit events
# of changes that move no money record in the same column as a movement's request_id. That column's SQL
# domain (request_id_text, migrations/0004) is 1..100 characters: room for both.
MAX_CALL_ID_LENGTH = 100
MAX_ACTOR_LENGTH = 200
MAX_RESPONSE_BYTES = 65_536
# Hash-chained audit log: this many independent chains per tenant (audit_stripe_count()).
AUDIT_STRIPES = 32

# -- account kinds, statuses and balance shards -----------------------------------------------------

ACCOUNT_KINDS = ("customer", "merchant", "system_float")
ACCOUNT_STATUSES = ("active", "frozen", "closed")
MAX_BALANCE_SHARDS = 64
# Accounts that many payers credit at once keep their balance in shards (see storage/ledger.py):
# merchants and the float. Customer accounts are debited, so they keep one row.
BALANCE_SHARDS_BY_KIND = {"customer": 0, "merchant": 16, "system_float": 16}

# -- transfers --------------------------------------------------------------------------------------

TRANSFER_KINDS = ("p2p", "payment", "top_up", "withdrawal", "capture", "refund")
# The kinds post_transfer moves directly; captures and refunds come from holds and payments.
POSTABLE_TRANSFER_KINDS = ("p2p", "payment", "top_up", "withdrawal")
REFUNDABLE_TRANSFER_KINDS = ("payment", "capture")
TRANSFER_STATUSES = ("completed", "partially_refunded", "refunded")
HOLD_STATUSES = ("authorized", "captured", "voided", "expired")

# -- payments: transfers and holds seen as one list (storage/payments_query.py) ---------------------

HOLD_KIND = "hold"
PAYMENT_KINDS = (*TRANSFER_KINDS, HOLD_KIND)
PAYMENT_STATUSES = (*TRANSFER_STATUSES, *HOLD_STATUSES)
# What a live payment event says happened (server/payment_events.py; migrations 0007 and 0008 send `created`).
PAYMENT_EVENTS = ("created", "captured", "voided", "expired", "refunded")

# Which account kinds each transfer kind may debit and credit (ledger_kinds_allowed() in SQL).
TRANSFER_ACCOUNT_KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "p2p": (frozenset({"customer"}), frozenset({"customer"})),
    "payment": (frozenset({"customer"}), frozenset({"merchant"})),
    "capture": (frozenset({"customer"}), frozenset({"merchant"})),
    "refund": (frozenset({"merchant"}), frozenset({"customer"})),
    "top_up": (frozenset({"system_float"}), frozenset({"customer", "merchant"})),
    "withdrawal": (frozenset({"customer", "merchant"}), frozenset({"system_float"})),
}



def kinds_allowed(transfer_kind: str, debit_kind: str, credit_kind: str) -> bool:
    """May a transfer of this kind debit an account of `debit_kind` and credit one of `credit_kind`?"""
    allowed = TRANSFER_ACCOUNT_KINDS.get(transfer_kind)
    return allowed is not None and debit_kind in allowed[0] and credit_kind in allowed[1]


def amount_violations(amount_minor: int, field: str = "amount_minor") -> list[FieldViolation]:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        return [FieldViolation(field, "must be a whole number of minor units", INVALID_FORMAT)]
    if not 1 <= amount_minor <= MAX_TRANSFER_MINOR:
        return [FieldViolation(field, f"must be between 1 and {MAX_TRANSFER_MINOR} minor units", OUT_OF_RANGE)]
    return []


def overdraft_limit_violations(limit_minor: int, field: str = "overdraft_limit_minor") -> list[FieldViolation]:
    if isinstance(limit_minor, bool) or not isinstance(limit_minor, int):
        return [FieldViolation(field, "must be a whole number of minor units", INVALID_FORMAT)]
    if not 0 <= limit_minor <= MAX_OVERDRAFT_LIMIT_MINOR:
        return [FieldViolation(field, f"must be between 0 and {MAX_OVERDRAFT_LIMIT_MINOR} minor units", OUT_OF_RANGE)]
    return []


def currency_violations(currency: str, field: str = "currency") -> list[FieldViolation]:
    """An ISO 4217 currency with minor units (domain/currencies.py; the `currencies` table agrees)."""
    if not isinstance(currency, str) or not is_currency(currency):
        return [FieldViolation(field, "must be an ISO 4217 currency code with minor units, such as EUR",
                               REQUIRED if currency == "" else INVALID_FORMAT)]
    return []


def request_id_violations(request_id: str, field: str = "request_id") -> list[FieldViolation]:
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH or not request_id.isprintable():
        reason = (REQUIRED if not isinstance(request_id, str) or not request_id
                  else TOO_LONG if len(request_id) > MAX_REQUEST_ID_LENGTH else INVALID_FORMAT)
        return [FieldViolation(field, f"is required: 1 to {MAX_REQUEST_ID_LENGTH} printable characters (a UUID is best)", reason)]
    return []


def hold_expiry_violations(expires_at: datetime, now: datetime, field: str = "expire_time") -> list[FieldViolation]:
    if expires_at.tzinfo is None:
        return [FieldViolation(field, "must carry a time zone", INVALID_FORMAT)]
    if expires_at <= now:
        return [FieldViolation(field, "must be in the future", OUT_OF_RANGE)]
    if expires_at > now + MAX_HOLD_DURATION:
        return [FieldViolation(field, f"must be at most {MAX_HOLD_DURATION.days} days away", OUT_OF_RANGE)]
    return []


def description_violations(description: str, field: str = "description") -> list[FieldViolation]:
    """A transfer's description (already stripped): empty, or 1 to MAX_DESCRIPTION_LENGTH characters without
    control characters (the database's CHECK, migration 0018)."""
    if len(description) > MAX_DESCRIPTION_LENGTH:
        return [FieldViolation(field, f"must be at most {MAX_DESCRIPTION_LENGTH} characters", TOO_LONG)]
    if any(unicodedata.category(character) == "Cc" for character in description):
        return [FieldViolation(field, "must not contain control characters (such as line breaks)", INVALID_FORMAT)]
    return []
