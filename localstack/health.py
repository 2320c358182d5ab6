"""Asking a server, or Envoy in front of the servers, how it is (grpc.health.v1), with deadlines: the
one place that waits until an address reports SERVING (LocalStack.wait_until_serving, the tests, the
bench and the fault workload)."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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
