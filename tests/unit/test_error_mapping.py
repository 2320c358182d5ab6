"""The one table from domain and database errors to gRPC statuses."""

from __future__ import annotations

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2

from interceptors.error_mapping import _status_for_unexpected, classify_database_error, status_for_domain_error
from server.errors import FieldViolation, InvalidArgument, NotFound


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


def test_invalid_argument_adds_field_violations():
    """INVALID_ARGUMENT also carries a BadRequest listing each bad field."""
    status = status_for_domain_error(
        InvalidArgument(message="bad", violations=[FieldViolation("name", "too short"), FieldViolation("page_size", "too big")])
    )
    bad_request = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad_request)
    assert [violation.field for violation in bad_request.field_violations] == ["name", "page_size"]


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
