"""Asking a server, or Envoy in front of the servers, how it is (grpc.health.v1), with deadlines: the
one place that waits until an address reports SERVING (LocalStack.wait_until_serving, the tests, the
bench and the fault workload); and what Envoy itself thinks of each server (admin `/clusters`), which
is what decides where it routes: a server may answer SERVING a second before Envoy's next health check
marks it healthy."""

from __future__ import annotations

import time
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from envoy_config.routes import GRPC_CLUSTER

SERVING = health_pb2.HealthCheckResponse.SERVING
CHECK_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.2


def health_status(address: str, service: str = "", timeout_s: float = CHECK_TIMEOUT_S) -> int | None:
    """The status of `service` ("" is the server as a whole), or None when the address does not answer."""
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError:
            return None
    return response.status


def wait_for_status(address: str, expected: int, timeout_s: float, service: str = "") -> int | None:
    """Polls until the status is `expected` or timeout_s has passed; returns the last status seen."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = health_status(address, service)
        if last == expected:
            return last
        time.sleep(POLL_INTERVAL_S)
    return last


def wait_for_serving(address: str, timeout_s: float, service: str = "") -> None:
    """Returns once the address reports SERVING; TimeoutError after timeout_s."""
    last = wait_for_status(address, SERVING, timeout_s, service)
    if last != SERVING:
        name = "unreachable" if last is None else health_pb2.HealthCheckResponse.ServingStatus.Name(last)
        raise TimeoutError(f"{address} service {service!r} not SERVING after {timeout_s:g}s (last status {name})")


# The servers' cluster in Envoy's configuration (envoy_config/routes.py).
SERVERS_CLUSTER = GRPC_CLUSTER


def envoy_upstreams(admin_address: str, cluster: str = SERVERS_CLUSTER) -> dict[str, dict]:
    """Envoy admin /clusters for one cluster: host -> {flags, healthy, rq_total}; {} when Envoy does not answer.
    `flags` is Envoy's health_flags (`healthy`, `/failed_active_hc`, ...)."""
    try:
        with urllib.request.urlopen(f"http://{admin_address}/clusters", timeout=CHECK_TIMEOUT_S) as response:
            text = response.read().decode()
    except OSError:
        return {}
    hosts: dict[str, dict] = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) != 4 or parts[0] != cluster:
            continue
        host = hosts.setdefault(parts[1], {})
        if parts[2] == "health_flags":
            host["flags"] = parts[3]
            host["healthy"] = parts[3] == "healthy"
        elif parts[2] == "rq_total":
            host["rq_total"] = int(parts[3])
    # The cluster's own settings (`emoney_grpc::default_priority::max_connections::1024`) look alike: a
    # host is what has health flags.
    return {name: host for name, host in hosts.items() if "flags" in host}


def wait_for_envoy_upstreams_healthy(admin_address: str, hosts: list[str], timeout_s: float) -> None:
    """Returns once Envoy reports every one of `hosts` healthy; TimeoutError (naming their flags) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = envoy_upstreams(admin_address)
        if all(seen.get(host, {}).get("healthy") for host in hosts):
            return
        if time.monotonic() >= deadline:
            flags = {host: seen.get(host, {}).get("flags", "unknown") for host in hosts}
            raise TimeoutError(f"Envoy does not report every server healthy after {timeout_s:g}s: {flags}")
        time.sleep(POLL_INTERVAL_S)
