"""Shared fixtures: one real local stack per test session, on free ports.

Every test that needs a server talks to the real thing (PostgreSQL, Redis,
OpenBao, SeaweedFS, the gRPC servers, Envoy) started here in a temporary folder;
the stack is stopped at the end of the session, also when tests fail. The
stack's logs are copied to `test-artifacts/` for CI.
"""

from __future__ import annotations

# First: importing localstack turns gRPC's fork support off before anything imports grpc (tests start
# and restart servers while gRPC clients of this process are busy; see localstack/__init__.py).
import localstack  # noqa: F401, I001

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from localstack.processes import free_ports
from localstack.stack import LocalStack, StackOptions, StackPorts

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def free_stack_ports() -> tuple[StackPorts, list[int]]:
    """Distinct free ports for every service, and two for the gRPC servers."""
    envoy, admin, postgres, redis, openbao, s3, first_server, second_server = free_ports(8)
    ports = StackPorts(
        envoy=envoy, envoy_admin=admin, first_grpc=first_server, postgres=postgres, redis=redis, openbao=openbao, s3=s3
    )
    return ports, [first_server, second_server]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    ports, server_ports = free_stack_ports()
    options = StackOptions(
        state_dir=tmp_path_factory.mktemp("stack"),
        ports=ports,
        server_processes=2,
        grpc_ports=server_ports,
        # Every test calls from 127.0.0.1: loosen the per-address login limit for the shared stack.
        # The limits themselves are tested on a stack of their own (tests/e2e/test_rate_limits_e2e.py).
        server_environment={"EMONEY_RATE_LIMITS": "credentials.address=100/s:1000"},
    )
    with running_stack(options, "stack-logs") as local_stack:
        yield local_stack


@contextlib.contextmanager
def running_stack(options: StackOptions, logs_name: str, serving_within_s: float = 30.0) -> Iterator[LocalStack]:
    """A stack started, SERVING, and stopped afterwards (also on failure), its logs copied to
    test-artifacts/<logs_name> for CI."""
    local_stack = LocalStack(options)
    try:
        local_stack.start()
        local_stack.wait_until_serving(timeout_s=serving_within_s)
        yield local_stack
    finally:
        local_stack.stop()
        if local_stack.log_dir.exists():
            shutil.copytree(local_stack.log_dir, ARTIFACTS / logs_name, dirs_exist_ok=True)


@pytest.fixture(scope="session")
def envoy_address(stack: LocalStack) -> str:
    return stack.endpoints.envoy


@pytest.fixture(scope="session")
def envoy_url(envoy_address: str) -> str:
    return f"http://{envoy_address}"


@pytest.fixture
async def envoy_channel(envoy_address: str):
    async with grpc.aio.insecure_channel(envoy_address) as channel:
        yield channel


@pytest.fixture
async def direct_channel(stack: LocalStack):
    async with grpc.aio.insecure_channel(stack.endpoints.grpc_servers[0]) as channel:
        yield channel
