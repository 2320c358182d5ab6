"""Pure ledger rules: limits, account kinds per transfer kind, field validation, failure mapping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
import pytest

from domain import currencies, ledger_rules
from domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from storage.idempotency import request_hash
from storage.ledger import LEDGER_FAILURES

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("amount", [1, 500, ledger_rules.MAX_TRANSFER_MINOR])
def test_amounts_in_range_pass(amount):
    """Any whole number of minor units from 1 to the maximum is a valid amount."""
    assert ledger_rules.amount_violations(amount) == []


@pytest.mark.parametrize("amount", [0, -1, ledger_rules.MAX_TRANSFER_MINOR + 1, 1.5, True, "100"])
def test_amounts_out_of_range_or_not_integers_fail(amount):
    """Zero, negatives, more than the maximum, floats, booleans and strings are refused, naming the field."""
    violations = ledger_rules.amount_violations(amount, "amount")
    assert [violation.field for violation in violations] == ["amount"]


def test_overdraft_limits_are_bounded():
    """An overdraft limit is 0..MAX_OVERDRAFT_LIMIT_MINOR."""
    assert ledger_rules.overdraft_limit_violations(0) == []
    assert ledger_rules.overdraft_limit_violations(-1) and ledger_rules.overdraft_limit_violations(
        ledger_rules.MAX_OVERDRAFT_LIMIT_MINOR + 1)


@pytest.mark.parametrize(
    ("currency", "ok"),
    [("EUR", True), ("JPY", True), ("BHD", True), ("CLF", True), ("eur", False), ("EURO", False), ("E1R", False),
     ("", False), ("EUR\n", False), ("ABC", False), ("XAU", False), ("XTS", False), ("XXX", False), ("XDR", False)],
)
def test_currencies_are_iso_4217_currencies_with_minor_units(currency, ok):
    """Existing ISO 4217 codes only, and only those with a minor-unit exponent (no metals, XTS, XXX)."""
    assert (ledger_rules.currency_violations(currency) == []) is ok


def test_minor_units_come_from_iso_4217():
    """JPY has no decimals, EUR two, BHD three; a code that is no currency has none to give."""
    assert [currencies.minor_units(code) for code in ("JPY", "EUR", "BHD", "ABC")] == [0, 2, 3, None]


@pytest.mark.parametrize(("request_id", "ok"), [("a", True), ("x" * 64, True), ("", False), ("x" * 65, False), ("a\nb", False)])
def test_request_ids_are_required_and_bounded(request_id, ok):
    """A request_id is 1..64 printable characters, as the contract says."""
    assert (ledger_rules.request_id_violations(request_id) == []) is ok


def test_hold_expiry_is_future_and_bounded():
    """A hold expires after now and at most MAX_HOLD_DURATION from now, with a time zone."""
    assert ledger_rules.hold_expiry_violations(NOW + timedelta(minutes=5), NOW) == []
    assert ledger_rules.hold_expiry_violations(NOW, NOW)
    assert ledger_rules.hold_expiry_violations(NOW + ledger_rules.MAX_HOLD_DURATION + timedelta(seconds=1), NOW)
    assert ledger_rules.hold_expiry_violations(datetime(2026, 1, 2), NOW)


@pytest.mark.parametrize(
    ("kind", "debit", "credit", "allowed"),
    [
        ("p2p", "customer", "customer", True),
        ("p2p", "customer", "merchant", False),
        ("payment", "customer", "merchant", True),
        ("payment", "merchant", "merchant", False),
        ("top_up", "system_float", "customer", True),
        ("top_up", "customer", "customer", False),
        ("withdrawal", "merchant", "system_float", True),
        ("refund", "merchant", "customer", True),
        ("refund", "customer", "merchant", False),
        ("nonsense", "customer", "customer", False),
    ],
)
def test_each_transfer_kind_moves_between_its_account_kinds(kind, debit, credit, allowed):
    """The account-kind matrix: who may pay whom for each kind of transfer."""
    assert ledger_rules.kinds_allowed(kind, debit, credit) is allowed


def test_every_postable_kind_is_a_transfer_kind_and_hot_kinds_are_sharded():
    """post_transfer kinds are a subset of all kinds; merchants and the float have balance shards."""
    assert set(ledger_rules.POSTABLE_TRANSFER_KINDS) <= set(ledger_rules.TRANSFER_KINDS)
    assert ledger_rules.BALANCE_SHARDS_BY_KIND["customer"] == 0
    assert 1 < ledger_rules.BALANCE_SHARDS_BY_KIND["merchant"] <= ledger_rules.MAX_BALANCE_SHARDS


@pytest.mark.parametrize(
    ("reason", "error", "code"),
    [
        ("INSUFFICIENT_FUNDS", FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        ("ACCOUNT_FROZEN", FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        ("ACCOUNT_CLOSED", FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        ("ACCOUNT_NOT_EMPTY", FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        ("ACCOUNT_NOT_FOUND", NotFound, grpc.StatusCode.NOT_FOUND),
        ("HOLD_NOT_FOUND", NotFound, grpc.StatusCode.NOT_FOUND),
        ("AMOUNT_OUT_OF_RANGE", InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        ("CURRENCY_MISMATCH", InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        ("REQUEST_ID_REUSED", AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    ],
)
def test_failures_map_to_the_right_domain_errors(reason, error, code):
    """Each ledger failure identifier becomes the domain error (and so the gRPC code) the contract promises."""
    failure = next(failure for failure in LEDGER_FAILURES.values() if failure.reason == reason)
    assert failure.error is error and error.code == code


def test_failure_identifiers_and_sqlstates_are_unique():
    """One SQLSTATE per identifier, all in the EM class."""
    reasons = [failure.reason for failure in LEDGER_FAILURES.values()]
    assert len(set(reasons)) == len(reasons)
    assert all(sqlstate.startswith("EM") and len(sqlstate) == 5 for sqlstate in LEDGER_FAILURES)


def test_request_hash_is_canonical():
    """Key order does not change the hash; a different value or method does."""
    assert request_hash("m", {"a": 1, "b": "x"}) == request_hash("m", {"b": "x", "a": 1})
    assert request_hash("m", {"a": 1}) != request_hash("m", {"a": 2})
    assert request_hash("m", {"a": 1}) != request_hash("n", {"a": 1})
    assert len(request_hash("m", b"serialized")) == 32
