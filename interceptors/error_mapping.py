"""Error mapping: every exception becomes a deliberate gRPC status (interceptors/pipeline.py applies it).

One table maps domain errors and PostgreSQL SQLSTATEs to status codes. Domain
errors carry a `google.rpc.ErrorInfo` (and a `google.rpc.BadRequest` for bad
fields, each with a REQUIRED/TOO_LONG/... reason) in `grpc-status-details-bin`,
which Envoy renders into the JSON body; for a call Envoy made from JSON, fields are
named in JSON spelling (`displayName`, interceptors/json_names.py), else in proto
spelling (`display_name`), as native and grpc-web clients' generated code names them.
Anything unexpected is logged with its traceback and answered as INTERNAL with
only the request id: no stack trace, SQL text or secret reaches a client.
"""

from __future__ import annotations

import logging

import grpc
import psycopg
import redis.exceptions
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from psycopg_pool import PoolTimeout

from interceptors.call_state import current_call, current_request_id
from interceptors.json_names import spelled_for_json
from google.protobuf import duration_pb2

from domain.errors import ERROR_DOMAIN, DomainError, InvalidArgument, ResourceExhausted
from domain.failures import by_sqlstate
from storage.ledger import domain_error_for

logger = logging.getLogger("emoney.errors")

# SQLSTATE (exact, then two-character class) → (code, reason, message shown to the client): PostgreSQL's
# own SQLSTATEs in the catalogue (domain/failures.py; the ledger's EM class is storage/ledger.py's).
SQLSTATE_TABLE: dict[str, tuple[grpc.StatusCode, str, str]] = {
    sqlstate: (grpc.StatusCode[failure.code], failure.reason, failure.message)
    for sqlstate, failure in by_sqlstate().items() if not sqlstate.startswith("EM")
}
_UNAVAILABLE_DATABASE = SQLSTATE_TABLE["08"]


# psycopg refuses some values itself, before PostgreSQL sees them (no SQLSTATE): a text value with a
# NUL character, which PostgreSQL cannot store. That is the caller's input, not a bug.
_CLIENT_SIDE_DATA_ERROR = (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_VALUE", "a text value contains a NUL character, or a value is malformed")


def classify_database_error(error: psycopg.Error) -> tuple[grpc.StatusCode, str, str] | None:
    sqlstate = error.sqlstate or ""
    if sqlstate in SQLSTATE_TABLE:
        return SQLSTATE_TABLE[sqlstate]
    if sqlstate[:2] in SQLSTATE_TABLE:
        return SQLSTATE_TABLE[sqlstate[:2]]
    if not sqlstate and isinstance(error, psycopg.DataError):
        return _CLIENT_SIDE_DATA_ERROR
    if isinstance(error, psycopg.OperationalError):
        return _UNAVAILABLE_DATABASE
    return None


# Error texts may quote what the caller sent. The whole status travels in the trailers (grpc-message,
# percent-encoded, and grpc-status-details-bin, base64), and clients refuse trailers above 8 KiB by
# default: bounded here, an error about a huge input stays readable instead of becoming one itself.
MAX_MESSAGE_BYTES = 512
MAX_DETAIL_TEXT_BYTES = 200
MAX_FIELD_VIOLATIONS = 8
MAX_METADATA_ENTRIES = 8


def _clip(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode("utf-8", "ignore") + "..."


def status_for_domain_error(error: DomainError) -> status_pb2.Status:
    metadata = {
        _clip(key, 64): _clip(value, MAX_DETAIL_TEXT_BYTES)
        for key, value in list(error.metadata.items())[:MAX_METADATA_ENTRIES]
    }
    details = [error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)]
    if isinstance(error, InvalidArgument) and error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_clip(violation.field, 64),
                        description=_clip(violation.description, MAX_DETAIL_TEXT_BYTES),
                        reason=violation.reason,
                    )
                    for violation in error.violations[:MAX_FIELD_VIOLATIONS]
                ]
            )
        )
    if isinstance(error, ResourceExhausted) and error.retry_after_ms is not None:
        retry_delay = duration_pb2.Duration()
        retry_delay.FromMilliseconds(max(1, error.retry_after_ms))
        details.append(error_details_pb2.RetryInfo(retry_delay=retry_delay))
    return _status(error.code, _clip(error.message, MAX_MESSAGE_BYTES), details)


def _status(code: grpc.StatusCode, message: str, details: list) -> status_pb2.Status:
    packed = []
    for detail in details:
        container = any_pb2.Any()
        container.Pack(detail)
        packed.append(container)
    return status_pb2.Status(code=code.value[0], message=message, details=packed)


def _status_for_unexpected(error: BaseException) -> status_pb2.Status:
    if isinstance(error, psycopg.Error) and (error.sqlstate or "").startswith("EM"):
        # A ledger rule refused it in SQL (class EM, see storage/ledger.py) outside translated_failures().
        ledger_error = domain_error_for(error)
        if ledger_error is not None:
            return status_for_domain_error(ledger_error)
    if isinstance(error, psycopg.Error):
        classified = classify_database_error(error)
        if classified is not None:
            code, reason, message = classified
            return _status(code, message, [error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)])
    if isinstance(error, PoolTimeout):
        code, reason, message = _UNAVAILABLE_DATABASE
        return _status(code, message, [error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)])
    if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return _status(
            grpc.StatusCode.UNAVAILABLE,
            "a backing service is not reachable right now",
            [error_details_pb2.ErrorInfo(reason="CACHE_UNAVAILABLE", domain=ERROR_DOMAIN)],
        )
    request_id = current_request_id()
    return _status(
        grpc.StatusCode.INTERNAL,
        f"internal error; quote request id {request_id} to support",
        [error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"requestId": request_id})],
    )


async def abort_with(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> None:
    state = current_call.get()
    if state is not None and state.transcoded_from_json:
        status = spelled_for_json(status, state.method)
    code = grpc.StatusCode(next(code for code in grpc.StatusCode if code.value[0] == status.code))
    if state is not None:
        state.code = code
        info = _first_error_info(status)
        state.error_reason = info.reason if info is not None else ""
    grpc_status = rpc_status.to_status(status)
    trailing = tuple(grpc_status.trailing_metadata)
    if state is not None:
        trailing += (("x-request-id", state.request_id),)
    await context.abort(grpc_status.code, grpc_status.details, trailing)


def _first_error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def status_for_error(error: Exception, method: str) -> status_pb2.Status:
    """The status a call that raised `error` answers with; what is not a refusal is logged here."""
    if isinstance(error, DomainError):
        return status_for_domain_error(error)
    expected = isinstance(error, (PoolTimeout, redis.exceptions.RedisError)) or (
        isinstance(error, psycopg.Error)
        and (classify_database_error(error) is not None or domain_error_for(error) is not None)
    )
    if expected:
        logger.warning("backing service error in %s: %s", method, type(error).__name__)
    else:
        # A bug (ours, or SQL that does not fit its data): the full story goes to the log only.
        logger.exception("unexpected error in %s", method, exc_info=error)
    return _status_for_unexpected(error)


assert code_pb2.NOT_FOUND == grpc.StatusCode.NOT_FOUND.value[0]
