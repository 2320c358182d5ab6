"""The one table from domain and database errors to gRPC statuses."""

from __future__ import annotations

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2

from emoney.admin.v1 import admin_pb2  # noqa: F401  (the request types json_names looks up)
from emoney.payments.v1 import payments_pb2  # noqa: F401
from interceptors.error_mapping import _status_for_unexpected, classify_database_error, status_for_domain_error
from interceptors.json_names import spelled_for_json
from domain.errors import INVALID_FORMAT, OUT_OF_RANGE, REQUIRED, FieldViolation, InvalidArgument, NotFound


def _database_error(sqlstate: str, kind: type[psycopg.Error] = psycopg.errors.DatabaseError) -> psycopg.Error:
    error = psycopg.errors.lookup(sqlstate)("boom") if sqlstate else kind("boom")
    return error


@pytest.mark.parametrize(
    ("sqlstate", "code"),
    [
        ("23505", grpc.StatusCode.ALREADY_EXISTS),
        ("23514", grpc.StatusCode.INVALID_ARGUMENT),
        ("40001", grpc.StatusCode.ABORTED),
        ("40P01", grpc.StatusCode.ABORTED),
        ("57014", grpc.StatusCode.DEADLINE_EXCEEDED),
        ("42501", grpc.StatusCode.PERMISSION_DENIED),
        ("22003", grpc.StatusCode.INVALID_ARGUMENT),
        ("08006", grpc.StatusCode.UNAVAILABLE),
        ("57P01", grpc.StatusCode.UNAVAILABLE),
        ("53300", grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_sqlstates_map_to_deliberate_codes(sqlstate, code):
    """Each SQLSTATE (exact or by class) maps to the documented gRPC code."""
    assert classify_database_error(psycopg.errors.lookup(sqlstate)("boom"))[0] == code


def test_connection_loss_without_sqlstate_is_unavailable():
    """A dropped connection (OperationalError, no SQLSTATE) is UNAVAILABLE, so clients retry."""
    assert classify_database_error(psycopg.OperationalError("server closed the connection"))[0] == grpc.StatusCode.UNAVAILABLE


def test_unknown_programming_errors_are_not_classified():
    """A bug (e.g. undefined column) is not disguised as a client error; it stays INTERNAL."""
    assert classify_database_error(psycopg.errors.lookup("42703")("no such column")) is None


def test_domain_error_carries_error_info():
    """A domain error becomes a Status with an ErrorInfo (reason, domain, metadata)."""
    status = status_for_domain_error(NotFound(message="tenant `x` not found", reason="TENANT_NOT_FOUND", metadata={"slug": "x"}))
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == ("TENANT_NOT_FOUND", "emoney.dev", {"slug": "x"})


def test_invalid_argument_adds_field_violations_with_their_reasons():
    """INVALID_ARGUMENT also carries a BadRequest listing each bad field with a machine-readable reason,
    and without a reason of its own the ErrorInfo reason is the first violation's."""
    status = status_for_domain_error(
        InvalidArgument(
            message="bad",
            violations=[FieldViolation("name", "is required", REQUIRED), FieldViolation("page_size", "too big", OUT_OF_RANGE)],
        )
    )
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(bad_request)
    assert [(violation.field, violation.reason) for violation in bad_request.field_violations] == [
        ("name", "REQUIRED"), ("page_size", "OUT_OF_RANGE"),
    ]
    assert info.reason == "REQUIRED"


def test_a_domain_reason_wins_over_the_violation_reason():
    """An InvalidArgument with a reason of its own (INVALID_PAGE_TOKEN) keeps it in ErrorInfo."""
    error = InvalidArgument(
        message="page_token is bad", reason="INVALID_PAGE_TOKEN", violations=[FieldViolation("page_token", "bad", INVALID_FORMAT)]
    )
    assert error.reason == "INVALID_PAGE_TOKEN"
    assert InvalidArgument(message="no fields").reason == "INVALID_ARGUMENT"


def test_a_field_violation_needs_a_known_reason():
    """Every violation carries one of the documented reasons; anything else is a programming error."""
    with pytest.raises(ValueError):
        FieldViolation("name", "is bad", "SOMETHING_ELSE")


def test_json_calls_get_json_field_names():
    """For a call transcoded from JSON, fields are named as the JSON request named them: in the
    violations, their descriptions and the message; names that are no field of the request stay."""
    error = InvalidArgument(
        message="from_account is required; amount_minor must be between 1 and 100; system_float stays",
        violations=[
            FieldViolation("from_account", "is required", REQUIRED),
            FieldViolation("amount_minor", "must be at most the request_id's limit", OUT_OF_RANGE),
        ],
    )
    spelled = spelled_for_json(status_for_domain_error(error), "/emoney.payments.v1.PaymentsService/CreateTransfer")
    bad_request = error_details_pb2.BadRequest()
    assert spelled.details[1].Unpack(bad_request)
    assert [(violation.field, violation.description, violation.reason) for violation in bad_request.field_violations] == [
        ("fromAccount", "is required", "REQUIRED"),
        ("amountMinor", "must be at most the requestId's limit", "OUT_OF_RANGE"),
    ]
    assert spelled.message == "fromAccount is required; amountMinor must be between 1 and 100; system_float stays"


def test_json_spelling_finds_whole_field_names_only():
    """`display_name` inside `admin_display_name` is not respelled on its own: each is its own field."""
    error = InvalidArgument(
        message="admin_display_name is required; display_name is required",
        violations=[FieldViolation("admin_display_name", "is required", REQUIRED)],
    )
    spelled = spelled_for_json(status_for_domain_error(error), "/emoney.admin.v1.AdminService/CreateTenant")
    assert spelled.message == "adminDisplayName is required; displayName is required"


def test_ledger_sqlstates_become_their_domain_errors_even_outside_the_ledger_module():
    """A ledger rule raised by SQL (class EM) maps to its code and reason, never INTERNAL."""
    status = _status_for_unexpected(_FakeLedgerError())
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "INSUFFICIENT_FUNDS"


class _FakeLedgerError(psycopg.errors.RaiseException):
    """A psycopg error carrying the ledger's SQLSTATE EM001, as the server would receive it."""

    @property
    def sqlstate(self) -> str:
        return "EM001"
