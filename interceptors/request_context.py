"""A request id for every call, and one JSON log line per call (interceptors/pipeline.py runs both).

The request id comes from `x-request-id` (Envoy generates one for every request
it proxies) when it is well-formed, else a new UUID; it is echoed back to the
client in the trailing metadata so a support ticket can quote it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid
from typing import Sequence

import grpc

from interceptors.call_state import CallState
from domain.ledger_rules import MAX_CALL_ID_LENGTH
from interceptors.json_names import transcoded_from_json

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


def begin_call(method: str, context: grpc.aio.ServicerContext, trusted_proxies: TrustedNetworks) -> CallState:
    """The call's state, from its peer and metadata: request id, client address, whether Envoy made it
    from a JSON request. The request id goes back to the client in the trailers."""
    metadata = context.invocation_metadata() or ()
    state = CallState(method=method, request_id=_request_id_from(context), peer=context.peer() or "")
    state.client_address = client_address(context, trusted_proxies)
    state.transcoded_from_json = transcoded_from_json(metadata)
    # In the trailers, not eager headers: an error before the first message must stay a trailers-only
    # answer, or Envoy could no longer give JSON clients the right HTTP status.
    context.set_trailing_metadata(((REQUEST_ID_HEADER, state.request_id),))
    return state


def log_call(state: CallState, level: int) -> None:
    """The call's one access-log line (logged at `level`: health probes at DEBUG, everything else INFO)."""
    if not access_log.isEnabledFor(level):
        return
    access_log.log(
        level,
        "call",
        extra={
            "method": state.method,
            "code": state.code.name,
            "reason": state.error_reason,
            "duration_ms": round(state.elapsed_ms(), 3),
            "peer": state.peer,
            "client": state.client_address,
            "subject": state.principal.subject if state.principal else "",
        },
    )


def log_level_of(method: str) -> int:
    # Envoy probes health every second per server; keep those out of the INFO log.
    return logging.DEBUG if method.startswith(_QUIET_PREFIX) else logging.INFO
