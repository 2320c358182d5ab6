"""Domain errors: small, named, transport-free.

The service layer raises these; only the error-mapping interceptor turns them
into gRPC statuses (with a `google.rpc.ErrorInfo` reason in UPPER_SNAKE and,
for bad fields, a `google.rpc.BadRequest`). Messages are written for the person
reading them and never contain SQL, stack traces or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

ERROR_DOMAIN = "emoney.dev"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class DomainError(Exception):
    message: str
    reason: str = "UNSPECIFIED"
    metadata: dict[str, str] = field(default_factory=dict)

    code = grpc.StatusCode.UNKNOWN

    def __post_init__(self) -> None:
        super().__init__(self.message)


@dataclass
class InvalidArgument(DomainError):
    reason: str = "INVALID_ARGUMENT"
    violations: list[FieldViolation] = field(default_factory=list)

    code = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class NotFound(DomainError):
    reason: str = "NOT_FOUND"

    code = grpc.StatusCode.NOT_FOUND


@dataclass
class AlreadyExists(DomainError):
    reason: str = "ALREADY_EXISTS"

    code = grpc.StatusCode.ALREADY_EXISTS


@dataclass
class FailedPrecondition(DomainError):
    reason: str = "FAILED_PRECONDITION"

    code = grpc.StatusCode.FAILED_PRECONDITION


@dataclass
class ServiceUnavailable(DomainError):
    reason: str = "SERVICE_UNAVAILABLE"

    code = grpc.StatusCode.UNAVAILABLE


@dataclass
class Unauthenticated(DomainError):
    reason: str = "UNAUTHENTICATED"

    code = grpc.StatusCode.UNAUTHENTICATED


@dataclass
class PermissionDenied(DomainError):
    reason: str = "PERMISSION_DENIED"

    code = grpc.StatusCode.PERMISSION_DENIED


@dataclass
class ResourceExhausted(DomainError):
    """Over a limit; `retry_after_ms` becomes a google.rpc.RetryInfo (HTTP 429 on the JSON face). None:
    retrying the same request cannot help (it is too large), so no RetryInfo."""

    reason: str = "RATE_LIMITED"
    retry_after_ms: int | None = 1_000

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
