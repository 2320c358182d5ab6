"""Outermost interceptor: a request id for every call, and one JSON log line per call.

The request id comes from `x-request-id` (Envoy generates one for every request
it proxies) when it is well-formed, else a new UUID; it is echoed back to the
client in the trailing metadata so a support ticket can quote it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import uuid
from typing import AsyncIterator, Sequence

import grpc

from interceptors.call_state import CallState, current_call
from domain.ledger_rules import MAX_CALL_ID_LENGTH
from interceptors.json_names import transcoded_from_json
from interceptors.wrapping import AroundInterceptor

REQUEST_ID_HEADER = "x-request-id"
# Accept what Envoy and common clients generate; anything else is replaced, not trusted. At most
# MAX_CALL_ID_LENGTH characters: the call's id is recorded as is in audit events and can be searched for
# there (ListAuditEvents' filter takes as many).
_REQUEST_ID_PATTERN = re.compile(rf"^[A-Za-z0-9._:-]{{8,{MAX_CALL_ID_LENGTH}}}$")

access_log = logging.getLogger("emoney.access")
_QUIET_PREFIX = "/grpc.health.v1.Health/"


TrustedNetworks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]


def peer_address(peer: str) -> str:
    """gRPC peer strings (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`) → the bare address."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition("]")[0].lstrip("[")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return peer


def client_address(context: grpc.aio.ServicerContext, trusted_proxies: TrustedNetworks) -> str:
    """The peer, or — only when the peer is a trusted proxy (Envoy) — the address the proxy
    appended last to x-forwarded-for (the one it saw; earlier entries are the client's claims)."""
    address = peer_address(context.peer() or "")
    try:
        trusted = any(ipaddress.ip_address(address) in network for network in trusted_proxies)
    except ValueError:
        return address
    if trusted:
        for key, value in context.invocation_metadata() or ():
            if key == "x-forwarded-for" and isinstance(value, str) and value:
                candidate = value.rsplit(",", 1)[-1].strip()
                try:
                    return str(ipaddress.ip_address(candidate))
                except ValueError:
                    return address
    return address


def _request_id_from(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _REQUEST_ID_PATTERN.match(value):
            return value
    return str(uuid.uuid4())


class RequestContextInterceptor(AroundInterceptor):
    def __init__(self, trusted_proxies: TrustedNetworks = ()) -> None:
        self._trusted_proxies = list(trusted_proxies)

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        state = CallState(method=method, request_id=_request_id_from(context), peer=context.peer() or "")
        state.client_address = client_address(context, self._trusted_proxies)
        state.transcoded_from_json = transcoded_from_json(context.invocation_metadata() or ())
        token = current_call.set(state)
        try:
            # In the trailers, not eager headers: an error before the first message must stay a
            # trailers-only answer, or Envoy could no longer give JSON clients the right HTTP status.
            context.set_trailing_metadata(((REQUEST_ID_HEADER, state.request_id),))
            yield
        except grpc.aio.AbortError:
            if state.code == grpc.StatusCode.OK:
                state.code = grpc.StatusCode.UNKNOWN  # aborted without going through error mapping
            raise
        except BaseException:
            if state.code == grpc.StatusCode.OK:
                state.code = grpc.StatusCode.CANCELLED
            raise
        finally:
            # Envoy probes health every second per server; keep those out of the INFO log.
            level = logging.DEBUG if method.startswith(_QUIET_PREFIX) else logging.INFO
            access_log.log(
                level,
                "call",
                extra={
                    "method": method,
                    "code": state.code.name,
                    "reason": state.error_reason,
                    "duration_ms": round(state.elapsed_ms(), 3),
                    "peer": state.peer,
                    "client": state.client_address,
                    "subject": state.principal.subject if state.principal else "",
                },
            )
            current_call.reset(token)
