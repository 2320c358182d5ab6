"""The HTTP filters of both listeners' connection manager: CORS, the HTTP guard (Lua), grpc-web, the
gRPC-JSON transcoder and the router."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy_config.limits import MAX_REQUEST_BODY_BYTES, MAX_REQUEST_HEADER_BYTES, MAX_RESPONSE_BODY_BYTES

ROOT = Path(__file__).resolve().parent.parent
# The guard stays a Lua file; its source, after two lines that define its limits, is loaded into the
# configuration (Envoy reads no file for it).
HTTP_GUARD_PATH = ROOT / "envoy" / "http_guard.lua"
# Native gRPC content types (application/grpc, application/grpc+proto, ...; not grpc-web): requests
# with one skip the HTTP guard.
NATIVE_GRPC_CONTENT_TYPE_REGEX = r"^application/grpc($|[+;])"


def http_filters(*, descriptor_path: Path, services: list[str]) -> list[dict[str, Any]]:
    """The filter chain, in order.

    Order matters. CORS answers pre-flights and decorates responses before anything else looks at the
    request; the HTTP guard checks JSON and grpc-web requests (body size, header size, gRPC headers);
    grpc_web then turns grpc-web into gRPC; the transcoder turns JSON calls into gRPC (it leaves gRPC
    requests alone); the router sends the now-uniform gRPC request upstream.
    """
    return [
        cors_filter(),
        http_guard_filter(),
        grpc_web_filter(),
        grpc_json_transcoder_filter(descriptor_path=descriptor_path, services=services),
        router_filter(),
    ]


def cors_filter() -> dict[str, Any]:
    """CORS; its policy (exact origins) is the virtual host's (route_config.py)."""
    return {
        "name": "envoy.filters.http.cors",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
    }


def http_guard_source() -> str:
    """envoy/http_guard.lua with its two limits defined on the lines above it."""
    constants = (
        f"local MAX_REQUEST_BODY_BYTES = {MAX_REQUEST_BODY_BYTES}\n"
        f"local MAX_REQUEST_HEADER_BYTES = {MAX_REQUEST_HEADER_BYTES}\n"
    )
    return constants + HTTP_GUARD_PATH.read_text(encoding="utf-8")


def http_guard_filter() -> dict[str, Any]:
    """The HTTP guard (envoy/http_guard.lua, a Lua filter), skipped for native gRPC requests.

    For JSON and grpc-web requests: bodies over MAX_REQUEST_BODY_BYTES answer 413 / RESOURCE_EXHAUSTED,
    headers over MAX_REQUEST_HEADER_BYTES 431 / RESOURCE_EXHAUSTED, malformed grpc-timeout and *-bin
    headers 400 / INVALID_ARGUMENT (gRPC core would fail them as INTERNAL), other grpc-* headers are
    dropped, and a grpc-web frame flagged compressed without a grpc-encoding is refused.

    The matcher keeps the Lua filter off the terminals' path: a native gRPC request costs one regular
    expression on its content-type, never a Lua call.
    """
    native_grpc = {
        "single_predicate": {
            "input": {
                "name": "content-type",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                    "header_name": "content-type",
                },
            },
            "value_match": {"safe_regex": {"google_re2": {}, "regex": NATIVE_GRPC_CONTENT_TYPE_REGEX}},
        }
    }
    skip = {
        "name": "skip",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter"},
    }
    return {
        "name": "emoney.http_guard",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {
                "name": "envoy.filters.http.lua",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                    "default_source_code": {"inline_string": http_guard_source()},
                },
            },
            "xds_matcher": {"matcher_list": {"matchers": [{"predicate": native_grpc, "on_match": {"action": skip}}]}},
        },
    }


def grpc_web_filter() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.grpc_web",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"},
    }


def grpc_json_transcoder_filter(*, descriptor_path: Path, services: list[str]) -> dict[str, Any]:
    """JSON calls (google.api.http routes) become gRPC calls; gRPC requests pass untouched."""
    print_options = {
        "add_whitespace": False,
        # Server streams (WatchPayments) reach JSON clients as one JSON object per line (NDJSON),
        # readable line by line on mobile.
        "stream_newline_delimited": True,
        # Zero values ("", 0, false) are printed, so clients never have to guess a missing field's
        # default.
        "always_print_primitive_fields": True,
        # Enums (kinds, statuses, roles, payment events) are printed by name (`ACCOUNT_KIND_CUSTOMER`),
        # never as numbers; requests may send names (query parameters also a known number).
        "always_print_enums_as_ints": False,
        # JSON names are lowerCamelCase (`displayName`), the canonical proto3 JSON mapping used by
        # grpc-gateway, Google APIs and protobuf's own JSON printers. Request bodies are accepted in
        # either spelling.
        "preserve_proto_field_names": False,
    }
    request_validation_options = {
        # A non-gRPC request that matches no google.api.http route is answered 404 here (JSON body via
        # local_reply_config) instead of reaching the gRPC server. gRPC requests (native, and grpc-web
        # after the filter before this one) are never subject to this check.
        "reject_unknown_method": True,
        "reject_unknown_query_parameters": False,
        "reject_binding_body_field_collisions": True,
    }
    return {
        "name": "envoy.filters.http.grpc_json_transcoder",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            # Descriptor set written by `make proto` (includes imports and google.rpc.*, needed to
            # render error details as JSON). Written as given: Envoy resolves a relative path against
            # its working directory.
            "proto_descriptor": str(descriptor_path),
            # Every emoney.* service found in the descriptor set, so a new service is transcoded as
            # soon as it is generated.
            "services": services,
            # Only methods with a google.api.http annotation get a JSON route; no implicit
            # POST /pkg.Service/Method routes.
            "auto_mapping": False,
            # A gRPC error becomes the HTTP status of its code (e.g. NOT_FOUND -> 404) with a
            # google.rpc.Status JSON body, details (ErrorInfo, BadRequest, ...) included.
            "convert_grpc_status": True,
            "print_options": print_options,
            "request_validation_options": request_validation_options,
            # Unknown query parameters (cache busters, tracking) are ignored instead of failing the call.
            "ignore_unknown_query_parameters": True,
            # Bounds on what the transcoder buffers. (Request bodies are bounded before, by the HTTP
            # guard: 413.)
            "max_request_body_size": MAX_REQUEST_BODY_BYTES,
            "max_response_body_size": MAX_RESPONSE_BODY_BYTES,
        },
    }


def router_filter() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            "suppress_envoy_headers": True,
        },
    }
