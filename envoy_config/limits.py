"""Sizes several parts of the configuration agree on: the listeners, the HTTP guard, the transcoder and
the local replies."""

from __future__ import annotations

from domain.config import MAX_REQUEST_HEADER_BYTES

__all__ = [
    "MAX_DIRECT_RESPONSE_BODY_BYTES",
    "MAX_REQUEST_BODY_BYTES",
    "MAX_REQUEST_HEADERS_KB",
    "MAX_REQUEST_HEADER_BYTES",
    "MAX_RESPONSE_BODY_BYTES",
]

# Largest request body from an HTTP client (JSON, grpc-web; as sent, so base64 for grpc-web-text),
# refused by envoy/http_guard.lua past it: 413 (JSON) / RESOURCE_EXHAUSTED (grpc-web). Also the
# listeners' per-connection buffer limit, which answers a body of unknown length once it grows past it,
# and the most the transcoder buffers of a request.
MAX_REQUEST_BODY_BYTES = 1024 * 1024
# Request headers from HTTP clients (names + values, pseudo-headers included) past
# MAX_REQUEST_HEADER_BYTES (domain/config.py) are refused by the HTTP guard: 431 (JSON) /
# RESOURCE_EXHAUSTED (grpc-web), with the connection kept. The codec's own ceiling (both listeners) is
# far above it and above the servers' limit, so native calls reach a server that answers
# RESOURCE_EXHAUSTED; 63 KiB, the most a single header field may have on HTTP/2 (64 KiB) with room to
# spare. Past it the codec answers itself: HTTP/1 431 and the connection closed, HTTP/2 a reset stream.
MAX_REQUEST_HEADERS_KB = 63
# The most the transcoder buffers of a response.
MAX_RESPONSE_BODY_BYTES = 4 * 1024 * 1024
# Cap on a direct response body (Envoy's default is 4 KiB): the API document served at /openapi.json
# is larger than the default, and far below this.
MAX_DIRECT_RESPONSE_BODY_BYTES = 4 * 1024 * 1024
