"""Per-call state shared by the stages of one call (request id, outcome), and each method's plan.

The pipeline (interceptors/pipeline.py) creates the state when the call starts; error mapping records
the final status code on it, so logging and metrics see exactly what the client saw.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

import grpc

from domain.principal import Principal


@dataclass(frozen=True, slots=True)
class MethodPlan:
    """What the interceptors need to know of a method, worked out once per method (interceptors/pipeline.py)."""

    method: str
    public: bool  # no token needed (interceptors/access_policy.py)
    roles: frozenset[str]  # the roles that may call it when it is not public (empty: nobody)
    rate_group: str | None  # its rate-limit group; None: never limited (interceptors/rate_limit.py)
    admitted: bool  # waits for a place at the admission gate (interceptors/admission.py)
    log_level: int  # of its access-log line


@dataclass
class CallState:
    method: str
    request_id: str
    peer: str
    started_ns: int = field(default_factory=time.monotonic_ns)
    code: grpc.StatusCode = grpc.StatusCode.OK
    error_reason: str = ""
    # Set by the authentication interceptor; None for public methods.
    principal: Principal | None = None
    # The caller's network address: the peer, or the one Envoy saw when the call came through Envoy.
    client_address: str = ""
    # The call's rate limit was checked and consumed with its token check (interceptors/authentication.py).
    rate_limit_charged: bool = False
    # Envoy made this call from a JSON request: errors name fields in JSON spelling (interceptors/json_names.py).
    transcoded_from_json: bool = False
    # The call's metadata, as gRPC gave it when the call began (read once: interceptors/request_context.py).
    metadata: tuple = ()

    def elapsed_ms(self) -> float:
        return (time.monotonic_ns() - self.started_ns) / 1e6


current_call: contextvars.ContextVar[CallState | None] = contextvars.ContextVar("emoney_current_call", default=None)


def current_request_id() -> str:
    state = current_call.get()
    return "" if state is None else state.request_id


def current_method() -> str:
    """The full gRPC method name of the current call ("" outside a call): the idempotency key's scope."""
    state = current_call.get()
    return "" if state is None else state.method


def current_principal() -> Principal | None:
    state = current_call.get()
    return None if state is None else state.principal


def require_principal() -> Principal:
    """The caller of an authenticated method; the authentication interceptor guarantees one."""
    principal = current_principal()
    if principal is None:
        raise RuntimeError("authenticated method reached without a principal")
    return principal
