"""The listeners' route configuration: one virtual host whose routes follow the route map (routes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy_config.limits import MAX_DIRECT_RESPONSE_BODY_BYTES
from envoy_config.routes import (
    API_PREFIX,
    BACK_OFFICE_CSP,
    BACK_OFFICE_FILES,
    DOCS_PAGE_CSP,
    DOCS_ROUTE,
    ENVOY_SERVED_METHODS,
    EXTRA_STREAMING_PATHS,
    GRPC_CLUSTER,
    OPENAPI_ROUTE,
)


def route_config(
    *,
    allowed_origins: list[str],
    streaming_paths: list[str],
    openapi_path: Path,
    docs_page_path: Path,
    web_dist_path: Path,
) -> dict[str, Any]:
    """``streaming_paths``: the descriptor set's streaming methods (EXTRA_STREAMING_PATHS are added)."""
    return {
        "name": "emoney_routes",
        # The API document served at /openapi.json is larger than Envoy's default cap on a direct
        # response body (4 KiB).
        "max_direct_response_body_size_bytes": MAX_DIRECT_RESPONSE_BODY_BYTES,
        # The transcoder records the client's method and path in these headers (access log, local
        # replies, the server may log them); a client must not be able to set them itself.
        "internal_only_headers": ["x-envoy-original-method", "x-envoy-original-path"],
        "virtual_hosts": [
            virtual_host(
                allowed_origins=allowed_origins,
                routes=[
                    *document_routes(openapi_path=openapi_path, docs_page_path=docs_page_path,
                                     web_dist_path=web_dist_path),
                    *streaming_routes([*streaming_paths, *EXTRA_STREAMING_PATHS]),
                    unary_route(),
                ],
            )
        ],
    }


def virtual_host(*, allowed_origins: list[str], routes: list[dict[str, Any]]) -> dict[str, Any]:
    """The one virtual host, any domain.

    Its API routes go to the one cluster; they differ only in timeouts. By the time the router runs,
    every accepted request is gRPC: native gRPC as sent, grpc-web converted by grpc_web, JSON converted
    by the transcoder (which then re-runs route matching on the gRPC path). Everything else was already
    answered: pre-flights by CORS, unknown JSON paths by the transcoder (404). Routes must also match
    the request as it arrives, so that the CORS filter finds this host's policy for JSON calls and
    pre-flights.
    """
    return {
        "name": "emoney_api",
        "domains": ["*"],
        # gRPC's own request header, added whatever the client sent: a raw HTTP/2 request without it
        # was reset by the server, which Envoy counted as a gateway failure — a dozen such
        # unauthenticated requests ejected servers from rotation (outlier detection) for 10 s.
        "request_headers_to_add": [
            {"header": {"key": "te", "value": "trailers"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ],
        "typed_per_filter_config": {"envoy.filters.http.cors": cors_policy(allowed_origins)},
        "retry_policy": retry_policy(),
        "routes": routes,
    }


def cors_policy(allowed_origins: list[str]) -> dict[str, Any]:
    for origin in allowed_origins:
        if "*" in origin:
            raise ValueError(f"CORS origins must be exact, not wildcards: {origin!r}")
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        # Exact origins only, never a wildcard.
        "allow_origin_string_match": [{"exact": origin} for origin in allowed_origins],
        "allow_methods": "GET, PUT, POST, DELETE, PATCH, OPTIONS",
        "allow_headers": "authorization, content-type, x-grpc-web, x-user-agent, grpc-timeout, x-request-id, idempotency-key",
        "expose_headers": "grpc-status, grpc-message, grpc-status-details-bin, x-request-id",
        "max_age": "600",
        # Bearer tokens travel in `authorization`, not cookies.
        "allow_credentials": False,
        # A pre-flight from a foreign origin is answered here, without access-control-allow-origin (so
        # the browser refuses), instead of being passed on.
        "forward_not_matching_preflights": False,
    }


def retry_policy() -> dict[str, Any]:
    """Proxy retries only what never reached a server (connection refused, reset before the request
    went out): safe for every method. A call that reached a server is never retried here; clients
    retry money-moving calls themselves, with the same request_id."""
    return {
        "retry_on": "connect-failure,reset-before-request",
        "num_retries": 2,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 3,
    }


def document_routes(*, openapi_path: Path, docs_page_path: Path, web_dist_path: Path) -> list[dict[str, Any]]:
    """The files Envoy answers with itself, read when the configuration loads.

    The API's own documentation: GET /openapi.json (generated/openapi.json, written by `make proto`)
    and GET /docs (envoy/docs.html, a page that browses it); and the back office, a single page
    (web/dist, built by `make web`): GET /, /app.js and /app.css with a strict Content-Security-Policy
    (its own script and style, connect-src 'self': grpc-web to this origin). Exact paths and GET/HEAD
    only, so they never shadow an API route; the transcoder is disabled on them (it would answer 404:
    not an API method). Other methods on these paths fall through to the routes below and get the
    transcoder's JSON 404. File paths are written as given (Envoy resolves relative ones against its
    working directory).
    """
    common = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}
    back_office_headers = {
        "x-content-type-options": "nosniff",
        "content-security-policy": BACK_OFFICE_CSP,
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
    }
    return [
        file_route("openapi_document", OPENAPI_ROUTE, openapi_path, {"content-type": "application/json", **common}),
        file_route("api_docs_page", DOCS_ROUTE, docs_page_path,
                   {"content-type": "text/html; charset=utf-8", "content-security-policy": DOCS_PAGE_CSP, **common}),
        *(
            file_route(f"back_office:{path}", path, Path(web_dist_path) / name,
                       {"content-type": content_type, "cache-control": cache_control, **back_office_headers})
            for path, name, content_type, cache_control in BACK_OFFICE_FILES
        ),
    ]


def file_route(name: str, path: str, filename: Path, headers: dict[str, str]) -> dict[str, Any]:
    """GET/HEAD on exactly ``path`` answers the file ``filename`` with ``headers``."""
    return {
        "name": name,
        "match": {
            "path": path,
            "headers": [
                {"name": ":method", "string_match": {"safe_regex": {"regex": f"^({'|'.join(ENVOY_SERVED_METHODS)})$"}}}
            ],
        },
        "direct_response": {"status": 200, "body": {"filename": str(filename)}},
        "response_headers_to_add": [
            {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for key, value in headers.items()
        ],
        # Not an API method: the transcoder (reject_unknown_method) must not answer 404 here.
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "disabled": True,
            }
        },
    }


def streaming_routes(paths: list[str]) -> list[dict[str, Any]]:
    """One route per streaming method (exact gRPC path).

    No overall timeout (timeout: 0s), so that streams such as WatchPayments are not cut, and
    idle_timeout: 3600s: a stream silent that long is reset, so streaming servers should send
    something more often. The client's gRPC deadline (grpc-timeout header) is honoured, uncapped.
    """
    return [
        {
            "name": f"grpc_streaming:{path}",
            "match": {"path": path},
            "route": {
                "cluster": GRPC_CLUSTER,
                "timeout": "0s",
                "idle_timeout": "3600s",
                "max_stream_duration": {"grpc_timeout_header_max": "0s"},
            },
        }
        for path in paths
    ]


def unary_route() -> dict[str, Any]:
    """Unary calls: everything else. JSON clients send no deadline, so the route sets one; gRPC
    clients' shorter deadlines win (grpc-timeout is honoured, uncapped)."""
    return {
        "name": "grpc_unary",
        "match": {"prefix": API_PREFIX},
        "route": {
            "cluster": GRPC_CLUSTER,
            "timeout": "30s",
            "max_stream_duration": {"grpc_timeout_header_max": "0s"},
        },
    }
