"""Domain errors: small, named, transport-free.

The service layer raises these; only the error mapping (interceptors/pipeline.py) turns them
into gRPC statuses (with a `google.rpc.ErrorInfo` reason in UPPER_SNAKE and,
for bad fields, a `google.rpc.BadRequest`). Messages are written for the person
reading them and never contain SQL, stack traces or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import grpc

from domain.failures import FAILURES

ERROR_DOMAIN = "emoney.dev"

# Why a field was refused: the `reason` of each google.rpc.BadRequest field violation, a stable code a
# client may switch on (the description is for people and may change). Listed in the README's JSON
# conventions; an InvalidArgument without a reason of its own takes its first violation's reason.
REQUIRED = "REQUIRED"  # missing or empty
TOO_LONG = "TOO_LONG"  # more characters (or items) than allowed
TOO_SHORT = "TOO_SHORT"  # fewer characters than allowed
TOO_WEAK = "TOO_WEAK"  # a password that is common, too simple or contains the e-mail address
INVALID_FORMAT = "INVALID_FORMAT"  # not of the required form (e-mail, slug, currency code, resource name, token)
OUT_OF_RANGE = "OUT_OF_RANGE"  # a number or time outside its bounds
NOT_ALLOWED = "NOT_ALLOWED"  # a value outside the allowed set, or a field that must stay empty here
MISMATCH = "MISMATCH"  # does not match what it must equal (the current password, the account's currency)
VIOLATION_REASONS = (REQUIRED, TOO_LONG, TOO_SHORT, TOO_WEAK, INVALID_FORMAT, OUT_OF_RANGE, NOT_ALLOWED, MISMATCH)


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in proto spelling (`display_name`; the error mapping gives JSON clients
    `displayName`), a sentence for people, and one of VIOLATION_REASONS for programs."""

    field: str
    description: str
    reason: str

    def __post_init__(self) -> None:
        if self.reason not in VIOLATION_REASONS:
            raise ValueError(f"field violation reason {self.reason!r} is not one of {VIOLATION_REASONS}")


@dataclass
class DomainError(Exception):
    """A failure the caller is told about. Its reason is one of domain/failures.py's catalogue: a reason
    that is not there is a bug, refused here as FieldViolation refuses an unknown violation reason.
    Without a reason, a kind's `default_reason` is taken, else its gRPC code's name (NOT_FOUND, ...)."""

    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    default_reason: ClassVar[str] = "INTERNAL"

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if not self.reason:
            self.reason = self.default_reason or self.code.name
        _check_catalogued(self)


def _check_catalogued(error: DomainError) -> None:
    if error.reason and error.reason not in FAILURES:
        raise ValueError(f"{type(error).__name__} reason {error.reason!r} is not in domain/failures.py's catalogue")


@dataclass
class InvalidArgument(DomainError):
    """Bad input. Without a reason of its own (a domain reason such as INVALID_PAGE_TOKEN), the ErrorInfo
    reason is the first violation's (REQUIRED, TOO_LONG, ...), else INVALID_ARGUMENT."""

    violations: list[FieldViolation] = field(default_factory=list)

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = self.violations[0].reason if self.violations else "INVALID_ARGUMENT"
        super().__post_init__()


# The kinds below add no field: each is its gRPC code, and its default reason is the code's name.
class NotFound(DomainError):
    code, default_reason = grpc.StatusCode.NOT_FOUND, ""


class AlreadyExists(DomainError):
    code, default_reason = grpc.StatusCode.ALREADY_EXISTS, ""


class FailedPrecondition(DomainError):
    code, default_reason = grpc.StatusCode.FAILED_PRECONDITION, ""


class ServiceUnavailable(DomainError):
    code, default_reason = grpc.StatusCode.UNAVAILABLE, "SERVICE_UNAVAILABLE"


class Unauthenticated(DomainError):
    code, default_reason = grpc.StatusCode.UNAUTHENTICATED, ""


class PermissionDenied(DomainError):
    code, default_reason = grpc.StatusCode.PERMISSION_DENIED, ""


@dataclass
class ResourceExhausted(DomainError):
    """Over a limit; `retry_after_ms` becomes a google.rpc.RetryInfo (HTTP 429 on the JSON face). None:
    retrying the same request cannot help (it is too large), so no RetryInfo."""

    retry_after_ms: int | None = 1_000

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RATE_LIMITED"


# The domain error for each google.rpc.Code a catalogued failure can carry (storage/ledger.py builds the
# ledger's failures with it).
ERROR_FOR_CODE: dict[str, type[DomainError]] = {
    cls.code.name: cls
    for cls in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, ServiceUnavailable, Unauthenticated,
                PermissionDenied, ResourceExhausted)
}
