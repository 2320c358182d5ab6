"""A request id for every call, and one JSON log line per call (interceptors/pipeline.py runs both).

The request id comes from `x-request-id` (Envoy generates one for every request
it proxies) when it is well-formed, else a new UUID; it is echoed back to the
client in the trailing metadata so a support ticket can quote it.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import uuid
from typing import Sequence

import grpc

from interceptors.call_state import CallState
from domain.ledger_rules import MAX_CALL_ID_LENGTH
from interceptors.json_names import TRANSCODED_FROM_JSON_HEADER

REQUEST_ID_HEADER = "x-request-id"
FORWARDED_FOR_HEADER = "x-forwarded-for"
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


class TrustedProxies:
    """The networks whose peers may say who the client is (x-forwarded-for): Envoy's."""

    MAX_REMEMBERED = 1024

    def __init__(self, networks: TrustedNetworks = ()) -> None:
        self._networks = tuple(networks)
        self._known: dict[str, bool] = {}  # peer address → trusted (a server's peers are few: its proxies)

    def trust(self, address: str) -> bool:
        known = self._known.get(address)
        if known is None:
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(parsed in network for network in self._networks)
            if len(self._known) < self.MAX_REMEMBERED:
                self._known[address] = known
        return known


@functools.lru_cache(maxsize=4096)
def _normalised_address(candidate: str) -> str | None:
    """An address as ipaddress writes it, or None when it is none (bounded: the values come from clients)."""
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: str | None, trusted_proxies: TrustedProxies) -> str:
    """The peer's address, or — only when the peer is a trusted proxy (Envoy) — the address the proxy
    appended last to x-forwarded-for (the one it saw; earlier entries are the client's claims)."""
    address = peer_address(peer)
    if forwarded_for is None or not trusted_proxies.trust(address):
        return address
    return _normalised_address(forwarded_for.rsplit(",", 1)[-1].strip()) or address


def begin_call(method: str, context: grpc.aio.ServicerContext, trusted_proxies: TrustedProxies) -> CallState:
    """The call's state, from its peer and one pass over its metadata: request id (the first well-formed
    `x-request-id`, else a new one), client address (from the first `x-forwarded-for`), whether Envoy
    made it from a JSON request. The request id goes back to the client in the trailers."""
    metadata = context.invocation_metadata() or ()
    request_id = forwarded_for = None
    from_json = False
    for key, value in metadata:
        if key == REQUEST_ID_HEADER:
            if request_id is None and isinstance(value, str) and _REQUEST_ID_PATTERN.match(value):
                request_id = value
        elif key == FORWARDED_FOR_HEADER:
            if forwarded_for is None and isinstance(value, str) and value:
                forwarded_for = value
        elif key == TRANSCODED_FROM_JSON_HEADER:
            from_json = True
    peer = context.peer() or ""
    state = CallState(method=method, request_id=request_id or str(uuid.uuid4()), peer=peer, metadata=metadata)
    state.client_address = client_address(peer, forwarded_for, trusted_proxies)
    state.transcoded_from_json = from_json
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
