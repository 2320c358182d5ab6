"""A server process's life: health follows its dependencies, pools reconnect, SIGTERM drains."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import requests
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from localstack import provisioning
from localstack.processes import free_port, free_ports, wait_for_tcp
from tests.fixtures.tcp_proxy import TcpProxy
from tests.fixtures.tools import grpcurl_binary
from localstack.health import health_status, wait_for_status

ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def database_proxy(stack):
    proxy = TcpProxy(stack.postgres.host, stack.postgres.port)
    yield proxy
    proxy.disable()


@pytest.fixture
def server_through_proxy(stack, database_proxy, tmp_path):
    """One extra server process whose database traffic goes through `database_proxy`."""
    address = f"127.0.0.1:{free_port()}"
    environment = stack.server_environment(address)
    credentials = provisioning.load_or_create_credentials(stack.state_dir / "database-credentials.json")
    environment.update(
        {
            "DATABASE_URL": f"postgresql://{provisioning.APP_ROLE}:{credentials.app_password}"
            f"@127.0.0.1:{database_proxy.port}/{provisioning.DATABASE_NAME}",
            "EMONEY_DB_ACQUIRE_TIMEOUT_S": "1",
            "EMONEY_DB_CONNECT_TIMEOUT_S": "1",
            "EMONEY_HEALTH_PROBE_INTERVAL_S": "0.3",
            "EMONEY_SHUTDOWN_GRACE_S": "10",
        }
    )
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "server"], env=environment, cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for_tcp("127.0.0.1", int(address.rsplit(":", 1)[1]), 30.0)
        yield address, process, tmp_path / "server.log"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


def test_health_is_not_serving_until_the_database_is_reachable_then_recovers(server_through_proxy, database_proxy):
    """No database: overall and AuthService NOT_SERVING (PlatformService, needing none, SERVING); it turns
    SERVING once the database answers, and NOT_SERVING again when it goes — without a restart."""
    address, _, _ = server_through_proxy
    # Once the first probe round is published, PlatformService is SERVING; the rest is not.
    assert wait_for_status(address, SERVING, 10.0, service="emoney.platform.v1.PlatformService") == SERVING
    assert health_status(address) == NOT_SERVING
    assert health_status(address, "emoney.auth.v1.AuthService") == NOT_SERVING

    database_proxy.enable()
    assert wait_for_status(address, SERVING, 20.0) == SERVING
    assert health_status(address, "emoney.auth.v1.AuthService") == SERVING

    database_proxy.disable()
    assert wait_for_status(address, NOT_SERVING, 10.0) == NOT_SERVING
    database_proxy.enable()
    assert wait_for_status(address, SERVING, 20.0) == SERVING


def test_a_call_without_a_database_is_unavailable_not_internal(server_through_proxy):
    """With the database gone, a call that needs it answers UNAVAILABLE (retryable) with a reason, fast."""
    address, _, _ = server_through_proxy
    with grpc.insecure_channel(address) as channel:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            auth_pb2_grpc.AuthServiceStub(channel).GetTenant(auth_pb2.GetTenantRequest(name="tenants/demo-city"), timeout=10)
        elapsed_s = time.monotonic() - started
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    info = error_details_pb2.ErrorInfo()
    assert rpc_status.from_call(raised.value).details[0].Unpack(info)
    assert info.reason == "DATABASE_UNAVAILABLE"
    assert elapsed_s < 8, "the call must fail within the pool's acquire timeout, not hang"


def test_sigterm_drains_in_flight_calls_then_exits_cleanly(server_through_proxy, database_proxy):
    """SIGTERM during a slow call: the call still completes, new calls are refused, the process exits 0."""
    address, process, log_path = server_through_proxy
    database_proxy.enable()
    assert wait_for_status(address, SERVING, 20.0) == SERVING
    database_proxy.delay_s = 1.0  # every database round trip now takes a second
    with grpc.insecure_channel(address) as channel:
        in_flight = auth_pb2_grpc.AuthServiceStub(channel).GetTenant.future(
            auth_pb2.GetTenantRequest(name="tenants/demo-city"), timeout=20
        )
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert in_flight.result().tenant.slug == "demo-city"
    assert process.wait(timeout=20) == 0
    log = log_path.read_text()
    assert '"message": "shutting down"' in log and '"message": "server stopped"' in log


def test_metrics_endpoint_counts_real_calls(stack, tmp_path):
    """With EMONEY_METRICS_ADDRESS set, /metrics shows the calls this server answered, by code."""
    grpc_port, metrics_port = free_ports(2)
    environment = stack.server_environment(f"127.0.0.1:{grpc_port}")
    environment["EMONEY_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_port}"
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "server"], env=environment, cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for_tcp("127.0.0.1", metrics_port, 30.0)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            with pytest.raises(grpc.RpcError):
                auth_pb2_grpc.AuthServiceStub(channel).GetTenant(auth_pb2.GetTenantRequest(name="bad"), timeout=10)
        # The client sees the status a moment before the server has finished recording the call.
        expected = 'emoney_grpc_calls_total{method="/emoney.auth.v1.AuthService/GetTenant",code="INVALID_ARGUMENT"} 1'
        deadline = time.monotonic() + 5
        text = ""
        while expected not in text and time.monotonic() < deadline:
            text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    assert expected in text


def test_a_start_and_a_stop_without_faults_log_no_alarm(stack, tmp_path):
    """A server started against healthy dependencies, then stopped, logs no WARNING or ERROR: no PoolClosed
    from background passes begun before the pool opened, no listener 'disconnected', no dependency 'down'."""
    (grpc_port,) = free_ports(1)
    environment = stack.server_environment(f"127.0.0.1:{grpc_port}")
    log_path = tmp_path / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen([sys.executable, "-m", "server"], env=environment, cwd=ROOT, stdout=log, stderr=log)
    try:
        assert wait_for_status(f"127.0.0.1:{grpc_port}", SERVING, 30.0) == SERVING
        time.sleep(2)  # a few rounds of every background pass
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    lines = log_path.read_text().splitlines()
    assert any('"message": "server stopped"' in line for line in lines)
    alarms = [line for line in lines if '"level": "WARNING"' in line or '"level": "ERROR"' in line]
    assert alarms == []


def test_configuration_errors_stop_the_server_with_a_message(tmp_path):
    """A bad environment variable stops start-up with exit code 2 and names the variable."""
    completed = subprocess.run(
        [sys.executable, "-m", "server"],
        env={**os.environ, "EMONEY_DB_POOL_MAX_SIZE": "lots"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 2
    assert "EMONEY_DB_POOL_MAX_SIZE" in completed.stderr


def test_reflection_can_be_turned_off(stack, tmp_path):
    """With EMONEY_REFLECTION unset (the production default), grpcurl cannot list the services."""
    (grpc_port,) = free_ports(1)
    environment = stack.server_environment(f"127.0.0.1:{grpc_port}")
    environment.pop("EMONEY_REFLECTION")
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "server"], env=environment, cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for_tcp("127.0.0.1", grpc_port, 30.0)
        listing = subprocess.run(
            [grpcurl_binary(), "-plaintext", f"127.0.0.1:{grpc_port}", "list"], capture_output=True, text=True, timeout=30
        )
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    assert listing.returncode != 0
    assert "emoney.auth.v1.AuthService" not in listing.stdout
