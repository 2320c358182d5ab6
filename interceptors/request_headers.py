"""Request headers: a call whose metadata (names + values) is larger than the limit is refused with
RESOURCE_EXHAUSTED / REQUEST_HEADERS_TOO_LARGE, before it waits for admission or anything else runs.

Why here, when gRPC core has such a limit itself (grpc.max_metadata_size, server/bootstrap.py): core
applies its hard limit only once the client has acknowledged the server's HTTP/2 settings, so the first
calls on a new connection — and Envoy opens its connections to the servers on demand — pass unchecked,
and between its soft and hard limits it refuses at random. This check answers every call the same way.
Core's limit stays, a little higher (it also counts HPACK's overhead), against clients that call a server
directly.
"""

from __future__ import annotations

from domain.errors import ResourceExhausted

REASON = "REQUEST_HEADERS_TOO_LARGE"


def metadata_bytes(metadata: tuple | None) -> int:
    """Names plus values of a call's metadata, in bytes (a `-bin` value counts as received)."""
    total = 0
    for key, value in metadata or ():
        total += len(key) + (len(value) if isinstance(value, bytes) else len(value.encode()))
    return total


def check_request_headers(metadata: tuple | None, max_metadata_bytes: int) -> None:
    """Raise RESOURCE_EXHAUSTED / REQUEST_HEADERS_TOO_LARGE when the call's metadata is over the limit."""
    if metadata_bytes(metadata) > max_metadata_bytes:
        raise ResourceExhausted(
            message=f"the request headers are larger than {max_metadata_bytes} bytes",
            reason=REASON,
            metadata={"limitBytes": str(max_metadata_bytes)},
            retry_after_ms=None,
        )
