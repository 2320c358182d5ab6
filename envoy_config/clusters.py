"""The upstream cluster: the gRPC servers, health-checked, with outlier detection."""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from envoy_config.routes import GRPC_CLUSTER

# Envoy talks to the servers from this loopback address (the whole 127/8 is
# loopback on Linux); the servers' EMONEY_TRUSTED_PROXIES default matches it.
DEFAULT_UPSTREAM_SOURCE_ADDRESS = "127.0.0.2"


def grpc_cluster(*, upstreams: list[tuple[str, int]], source_address: str) -> dict[str, Any]:
    """The servers as one cluster. Hosts may be IP addresses (STATIC) or names (STRICT_DNS)."""
    endpoints = lb_endpoints(upstreams)
    return {
        "name": GRPC_CLUSTER,
        # STATIC when every upstream is an IP address, else STRICT_DNS.
        "type": "STATIC" if all(_is_ip_address(host) for host, _ in upstreams) else "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "lb_policy": "ROUND_ROBIN",
        "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": 1048576,
        # Envoy connects from its own address, and the servers trust x-forwarded-for only from it
        # (EMONEY_TRUSTED_PROXIES), so a client calling a server directly cannot forge its address.
        "upstream_bind_config": {"source_address": {"address": source_address, "port_value": 0}},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": upstream_http_protocol_options(),
        },
        "circuit_breakers": circuit_breakers(),
        "load_assignment": {"cluster_name": GRPC_CLUSTER, "endpoints": [{"lb_endpoints": endpoints}]},
        "health_checks": health_checks(),
        "outlier_detection": outlier_detection(),
    }


def lb_endpoints(upstreams: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}
        for host, port in upstreams
    ]
    if not endpoints:
        raise ValueError("at least one upstream gRPC server is needed")
    return endpoints


def upstream_http_protocol_options() -> dict[str, Any]:
    """HTTP/2 (gRPC) to the servers."""
    return {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {
            "http2_protocol_options": {
                "max_concurrent_streams": 1000,
                "initial_stream_window_size": 1048576,
                "initial_connection_window_size": 4194304,
                # Notice dead upstream connections (e.g. a crashed server).
                "connection_keepalive": {"interval": "30s", "timeout": "5s"},
            }
        },
    }


def circuit_breakers() -> dict[str, Any]:
    return {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": 1024,
                "max_pending_requests": 1024,
                "max_requests": 10000,
                "max_retries": 16,
            }
        ]
    }


def health_checks() -> list[dict[str, Any]]:
    """Standard gRPC health checking (grpc.health.v1.Health/Check) with an empty service name: the
    health of the whole server process."""
    return [
        {
            "timeout": "1s",
            "interval": "1s",
            "no_traffic_interval": "2s",
            "unhealthy_threshold": 2,
            "healthy_threshold": 1,
            "grpc_health_check": {},
        }
    ]


def outlier_detection() -> dict[str, Any]:
    """A server that keeps failing is taken out of rotation for a while.

    gRPC status codes count as their HTTP equivalent; only gateway failures eject: 5 in a row of
    UNAVAILABLE (503), connection failures, 502/504. INTERNAL / UNKNOWN (500) are application errors:
    counted, never enforced.

    The healthy-panic threshold keeps its default (50%): when too few servers look healthy, Envoy
    spreads load over all of them rather than failing every call, so a single-server setup degrades
    gracefully.
    """
    return {
        "consecutive_5xx": 5,
        "enforcing_consecutive_5xx": 0,
        "consecutive_gateway_failure": 5,
        "enforcing_consecutive_gateway_failure": 100,
        "interval": "5s",
        "base_ejection_time": "10s",
        "max_ejection_percent": 50,
    }


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
