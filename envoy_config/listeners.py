"""The listeners: the API on cleartext (three faces), and optionally the same API over TLS for terminals.

Both run the same HTTP connection manager (filters, routes, local replies, access log: one object each,
which the YAML dump writes once, with an anchor, and refers to from the second listener); only its stat
prefix and codec differ. A test compares the two in Envoy's config dump.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy_config.limits import MAX_REQUEST_BODY_BYTES, MAX_REQUEST_HEADERS_KB

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


@dataclass(frozen=True)
class SharedHttpSettings:
    """What both listeners' connection managers share, object for object."""

    access_log: list[dict[str, Any]]
    http_filters: list[dict[str, Any]]
    local_reply_config: dict[str, Any]
    route_config: dict[str, Any]
    common_http_protocol_options: dict[str, Any]
    http_protocol_options: dict[str, Any]
    http2_protocol_options: dict[str, Any]


def shared_http_settings(
    *,
    access_log: list[dict[str, Any]],
    http_filters: list[dict[str, Any]],
    local_reply_config: dict[str, Any],
    route_config: dict[str, Any],
) -> SharedHttpSettings:
    return SharedHttpSettings(
        access_log=access_log,
        http_filters=http_filters,
        local_reply_config=local_reply_config,
        route_config=route_config,
        common_http_protocol_options={"idle_timeout": "300s", "max_headers_count": 100},
        # A request with malformed headers (a control character in a value, a bad name, ...) fails
        # alone: on HTTP/2 the codec resets that stream instead of the whole connection (everyone's
        # calls on it); on HTTP/1 a request Envoy could parse and answered 400 (the HTTP guard's
        # refusals) keeps its connection. One the HTTP/1 codec could not parse is answered 400 and the
        # connection closed: what follows on it can no longer be trusted to be the next request.
        http_protocol_options={"override_stream_error_on_invalid_http_message": True},
        http2_protocol_options={
            "override_stream_error_on_invalid_http_message": True,
            "max_concurrent_streams": 128,
            "initial_stream_window_size": 1048576,
            "initial_connection_window_size": 4194304,
        },
    )


def http_connection_manager(*, stat_prefix: str, codec_type: str, shared: SharedHttpSettings) -> dict[str, Any]:
    """The HTTP connection manager, as a listener's network filter."""
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "codec_type": codec_type,
            "server_name": "emoney",
            # The peer address is the client: Envoy sets x-forwarded-for itself and trusts no
            # x-forwarded-for sent by the client.
            "use_remote_address": True,
            "xff_num_trusted_hops": 0,
            # Every request gets a fresh x-request-id (a UUID) that is sent upstream and echoed to the
            # client, so a call can be followed through access log and server log. An id sent by the
            # client is NOT kept (preserve_external_request_id: false): clients are untrusted and could
            # otherwise collide or forge ids in our logs. Money-moving calls carry their own idempotency
            # `request_id` in the message body; that one is the client's and is untouched.
            "generate_request_id": True,
            "preserve_external_request_id": False,
            "always_set_request_id_in_response": True,
            # Limits. The codec's ceiling on request headers sits well above what the HTTP guard and
            # the servers allow (MAX_REQUEST_HEADER_BYTES, domain/config.py), so that those answer
            # oversized headers in-band with a status and the connection stays usable; only past this
            # ceiling does the codec answer (HTTP/1: 431 and close; HTTP/2: reset).
            "max_request_headers_kb": MAX_REQUEST_HEADERS_KB,
            "request_headers_timeout": "10s",
            # Streams with no bytes in either direction for this long are reset. Routes raise it for
            # long-lived server streams.
            "stream_idle_timeout": "300s",
            "drain_timeout": "5s",
            "normalize_path": True,
            "merge_slashes": True,
            "common_http_protocol_options": shared.common_http_protocol_options,
            "http_protocol_options": shared.http_protocol_options,
            "http2_protocol_options": shared.http2_protocol_options,
            "access_log": shared.access_log,
            "http_filters": shared.http_filters,
            "local_reply_config": shared.local_reply_config,
            "route_config": shared.route_config,
        },
    }


def api_listener(*, host: str, port: int, shared: SharedHttpSettings) -> dict[str, Any]:
    """The API's three faces on one cleartext port.

    native gRPC (terminals, grpcurl)   HTTP/2 + application/grpc      -> proxied as is
    grpc-web    (back office)          application/grpc-web[-text]    -> envoy.filters.http.grpc_web
    JSON        (mobile, curl)         google.api.http routes         -> envoy.filters.http.grpc_json_transcoder

    All three end up as plain gRPC on the one upstream cluster (routes.GRPC_CLUSTER).
    """
    return {
        "name": "emoney_api",
        "address": _socket_address(host, port),
        # Bytes buffered per connection before flow control pushes back; also what answers 413 to a body
        # of unknown length past the HTTP guard's limit (MAX_REQUEST_BODY_BYTES, envoy_config/limits.py).
        "per_connection_buffer_limit_bytes": MAX_REQUEST_BODY_BYTES,
        "filter_chains": [
            {
                "filters": [
                    # HTTP/1.1 (curl, browsers) and cleartext HTTP/2 (gRPC, prior knowledge) on the same
                    # port.
                    http_connection_manager(stat_prefix="emoney_api", codec_type="AUTO", shared=shared),
                ]
            }
        ],
    }


def tls_listener(
    *,
    host: str,
    port: int,
    cert_path: Path,
    key_path: Path,
    ca_path: Path | None,
    require_client_certificate: bool,
    shared: SharedHttpSettings,
) -> dict[str, Any]:
    """Payment terminals over TLS.

    The same API as `emoney_api` (the HTTP connection manager differs only in its stat prefix and
    codec), behind TLS 1.2+ (1.3 preferred) with HTTP/2 as the only protocol (ALPN h2): gRPC clients,
    grpcurl and `curl --http2` work; HTTP/1.1 does not.
    """
    return {
        "name": "emoney_api_tls",
        "address": _socket_address(host, port),
        "per_connection_buffer_limit_bytes": MAX_REQUEST_BODY_BYTES,
        "filter_chains": [
            {
                "transport_socket": downstream_tls(
                    cert_path=cert_path,
                    key_path=key_path,
                    ca_path=ca_path,
                    require_client_certificate=require_client_certificate,
                ),
                "filters": [
                    # HTTP/2 only: a client that speaks HTTP/1.1 over TLS gets a protocol error rather
                    # than an answer.
                    http_connection_manager(stat_prefix="emoney_api_tls", codec_type="HTTP2", shared=shared),
                ],
            }
        ],
    }


def downstream_tls(
    *, cert_path: Path, key_path: Path, ca_path: Path | None, require_client_certificate: bool
) -> dict[str, Any]:
    """TLS towards clients. Certificate files are written as given and read by Envoy when it loads the
    configuration (a missing one is Envoy's error at validation)."""
    common_tls_context: dict[str, Any] = {
        "alpn_protocols": ["h2"],
        "tls_params": {
            "tls_minimum_protocol_version": "TLSv1_2",
            "tls_maximum_protocol_version": "TLSv1_3",
            # TLS 1.2 only: forward-secret AEAD suites. (TLS 1.3 suites are fixed by BoringSSL, and all
            # of them are fine.)
            "cipher_suites": [
                "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]",
                "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384",
            ],
        },
        "tls_certificates": [
            {"certificate_chain": {"filename": str(cert_path)}, "private_key": {"filename": str(key_path)}}
        ],
    }
    # Without a client CA there is no validation_context: client certificates are not asked for.
    if ca_path is not None:
        common_tls_context["validation_context"] = {"trusted_ca": {"filename": str(ca_path)}}
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            # Mutual TLS. With a validation_context Envoy asks every client for a certificate and
            # refuses the handshake when one is presented that the trusted CA did not sign. true: a
            # client without a certificate is refused too; false: it is let in.
            "require_client_certificate": bool(require_client_certificate),
            "common_tls_context": common_tls_context,
        },
    }


def access_log(access_log_path: Path | None) -> list[dict[str, Any]]:
    """JSON lines (ACCESS_LOG_FORMAT) to ``access_log_path``, or to Envoy's stdout when None."""
    log_format = {"json_format": dict(ACCESS_LOG_FORMAT)}
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


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": int(port)}}
