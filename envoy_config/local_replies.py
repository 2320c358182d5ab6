"""Envoy's own replies (local_reply_config): JSON clients get a google.rpc.Status like every API error.

Envoy's own replies (unknown path, bad JSON, no healthy upstream, ...) to JSON and plain-HTTP clients
get the same body shape the transcoder gives gRPC errors: a google.rpc.Status
``{"code": <gRPC code>, "message": "...", "details": [ErrorInfo]}``. gRPC and grpc-web requests are
left alone: Envoy answers them with grpc-status / grpc-message, which is what their clients
understand. The filter looks at the request's content-type and at x-envoy-original-method, which the
transcoder adds when it turns a JSON call into gRPC.
"""

from __future__ import annotations

import base64
from typing import Any

from google.rpc import code_pb2

from domain.errors import ERROR_DOMAIN
from domain.failures import FAILURES
from envoy_config.limits import MAX_REQUEST_BODY_BYTES

# Envoy's own error replies to JSON clients carry the gRPC code a gRPC client would see for the same
# failure: the inverse of google.rpc.Code's HTTP mapping (the one the transcoder uses for upstream errors),
# plus the statuses only Envoy produces; and, like every error of the servers, a google.rpc.ErrorInfo whose
# reason says what Envoy refused. Each reason is a failure of the catalogue (domain/failures.py), which
# gives its code and words. Any other status >= 400 becomes ENVOY_ERROR (UNKNOWN).
LOCAL_REPLY_REASONS: dict[int, str] = {
    400: "MALFORMED_REQUEST",     # malformed request / JSON body / gRPC header
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "METHOD_NOT_FOUND",      # no API method at this path and HTTP method
    408: "REQUEST_TIMEOUT",       # request headers not received in time
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    413: "REQUEST_TOO_LARGE",     # body too large (RESOURCE_EXHAUSTED: what gRPC says for big messages)
    429: "RATE_LIMITED",
    431: "HEADERS_TOO_LARGE",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UPSTREAM_UNAVAILABLE",
    503: "UPSTREAM_UNAVAILABLE",  # no healthy upstream, connection refused
    504: "UPSTREAM_TIMEOUT",
}


def _code_and_reason(reason: str) -> tuple[int, str]:
    return code_pb2.Code.Value(FAILURES[reason].code), reason


LOCAL_REPLY_GRPC_CODES: dict[int, tuple[int, str]] = {
    status: _code_and_reason(reason) for status, reason in LOCAL_REPLY_REASONS.items()
}
LOCAL_REPLY_DEFAULT = _code_and_reason("ENVOY_ERROR")
# Statuses the HTTP/1 codec answers before the request's headers are known (so before anyone can tell
# grpc-web from JSON): their local replies also carry grpc-status and the failure's message as
# grpc-message (printable ASCII without `%`, so already percent-encoded).
CODEC_REPLY_MESSAGES: dict[int, str] = {status: FAILURES[LOCAL_REPLY_REASONS[status]].message for status in (400, 431)}


def local_reply_config() -> dict[str, Any]:
    """The mappers, first match wins: grpc-web's 413, then one per status of LOCAL_REPLY_GRPC_CODES, then
    any other status >= 400."""
    mappers = [_grpc_web_body_too_large_mapper(_status_filter("EQ", 413))]
    mappers.extend(
        {
            "filter": {"and_filter": {"filters": [_status_filter("EQ", status), _not_grpc_request_filter()]}},
            "body_format_override": _json_status_body(code, reason),
            **({"headers_to_add": _codec_reply_grpc_status(status, code)} if status in CODEC_REPLY_MESSAGES else {}),
        }
        for status, (code, reason) in sorted(LOCAL_REPLY_GRPC_CODES.items())
    )
    mappers.append(
        {
            "filter": {"and_filter": {"filters": [_status_filter("GE", 400), _not_grpc_request_filter()]}},
            "body_format_override": _json_status_body(*LOCAL_REPLY_DEFAULT),
        }
    )
    return {"mappers": mappers}


def _status_filter(op: str, value: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": op,
                "value": {"default_value": value, "runtime_key": f"emoney.local_reply.status_{op.lower()}_{value}"},
            }
        }
    }


def _not_grpc_request_filter() -> dict[str, Any]:
    """Filter (access-log filter syntax) for local replies: the request is JSON / plain HTTP.

    gRPC and grpc-web requests keep Envoy's own replies (grpc-status and
    grpc-message). A request counts as JSON when its content-type does not start with
    ``application/grpc`` (which also covers grpc-web), or when the transcoder
    turned it into gRPC (it keeps the client's method in x-envoy-original-method).
    """
    return {
        "or_filter": {
            "filters": [
                {
                    "header_filter": {
                        "header": {
                            "name": "content-type",
                            "string_match": {"prefix": "application/grpc"},
                            "invert_match": True,
                            "treat_missing_header_as_empty": True,
                        }
                    }
                },
                {"header_filter": {"header": {"name": "x-envoy-original-method", "present_match": True}}},
            ]
        }
    }


def _json_status_body(code: int, reason: str) -> dict[str, Any]:
    error_info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": ERROR_DOMAIN}
    return {
        "json_format": {"code": code, "message": "%LOCAL_REPLY_BODY%", "details": [error_info]},
        "content_type": "application/json",
    }


def _grpc_web_trailers_frame(grpc_status: int, message: str) -> bytes:
    trailers = f"grpc-status:{grpc_status}\r\ngrpc-message:{message}\r\n".encode()
    return bytes([0x80]) + len(trailers).to_bytes(4, "big") + trailers


def _grpc_web_body_too_large_mapper(status_413_filter: dict[str, Any]) -> dict[str, Any]:
    """A grpc-web body of unknown length that outgrew Envoy's buffer (413) ends as RESOURCE_EXHAUSTED.

    Envoy's own 413 is plain HTTP, which grpc-web clients would report as a transport failure; this
    makes it HTTP 200 with the gRPC status in a trailers frame, like the HTTP guard's own refusals.
    """
    grpc_web = {"header_filter": {"header": {"name": "content-type", "string_match": {"prefix": "application/grpc-web"}}}}
    frame = _grpc_web_trailers_frame(8, f"the request body is larger than {MAX_REQUEST_BODY_BYTES} bytes")
    return {
        "filter": {"and_filter": {"filters": [status_413_filter, grpc_web]}},
        "status_code": 200,
        "headers_to_add": [
            {"header": {"key": "content-type", "value": "application/grpc-web+proto"},
             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ],
        "body": {"inline_bytes": base64.b64encode(frame).decode()},
    }


def _codec_reply_grpc_status(http_status: int, grpc_status: int) -> list[dict[str, Any]]:
    """grpc-status and grpc-message on the statuses the HTTP/1 codec answers itself, for grpc-web clients.

    Headers past the codec's ceiling (431) or that it cannot parse (400) are answered before any
    request header is known, so these replies cannot tell a grpc-web request from a JSON one: they get
    the JSON body, and a grpc-web client reads the gRPC status from these headers.
    """
    return [
        {"header": {"key": "grpc-status", "value": str(grpc_status)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "grpc-message", "value": CODEC_REPLY_MESSAGES[http_status]},
         "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
    ]
