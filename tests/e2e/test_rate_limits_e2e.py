"""Rate limits through Envoy: 429 with RetryInfo on the JSON face, RESOURCE_EXHAUSTED natively,
per tenant isolation. On a server and Envoy of their own, so the shared stack keeps its budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import redis
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emoney.auth.v1 import auth_pb2
from localstack.envoy import start_envoy
from localstack.processes import free_ports, wait_for_tcp
from localstack.stack import DESCRIPTOR_PATH
from tests.fixtures.identity import auth_stub, create_tenant, demo_user, json_get, json_post, login
from localstack.health import wait_for_serving

ROOT = Path(__file__).resolve().parents[2]
STRICT_LIMITS = "credentials.address=3/m:3,default.tenant=5/m:5"


@pytest.fixture(scope="module")
def strict_front(stack, tmp_path_factory):
    """One server with strict limits behind its own Envoy; yields (envoy address, server address)."""
    folder = tmp_path_factory.mktemp("strict")
    server_port, envoy_port, admin_port = free_ports(3)
    environment = stack.server_environment(f"127.0.0.1:{server_port}")
    environment["EMONEY_RATE_LIMITS"] = STRICT_LIMITS
    # Its own Redis database: buckets are keyed by address and tenant, and the shared stack's
    # servers (with looser limits) must not spend or see this server's budget.
    environment["REDIS_URL"] = stack.redis.url(1)
    log = (folder / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "server"], env=environment, cwd=ROOT, stdout=log, stderr=log)
    envoy = None
    try:
        wait_for_tcp("127.0.0.1", server_port, 30.0)
        envoy = start_envoy(
            config_dir=folder / "envoy", log_dir=folder, listen_port=envoy_port, admin_port=admin_port,
            upstreams=[("127.0.0.1", server_port)], descriptor_path=DESCRIPTOR_PATH,
            allowed_origins=[f"http://127.0.0.1:{envoy_port}"],
        )
        wait_for_serving(f"127.0.0.1:{envoy_port}", 30.0)
        yield f"127.0.0.1:{envoy_port}", f"127.0.0.1:{server_port}"
    finally:
        if envoy is not None:
            envoy.stop()
        server.terminate()
        server.wait(20)
        log.close()


def test_login_limit_answers_429_with_retry_info_on_json(strict_front):
    """The 4th login attempt in a minute from one address is HTTP 429 with a RetryInfo detail."""
    envoy, _ = strict_front
    statuses = []
    for _ in range(4):
        response = json_post(f"http://{envoy}", "/v1/tenants/demo-city/sessions:login", {"email": "x@example.org", "password": "wrong password"})
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429]
    body = response.json()
    assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    retry = next(d for d in body["details"] if d["@type"].endswith("google.rpc.RetryInfo"))
    assert retry["retryDelay"].endswith("s") and float(retry["retryDelay"][:-1]) > 0


def test_the_limit_follows_the_client_address_seen_by_envoy(strict_front):
    """Calling the server directly (not through Envoy) is another address: a forged x-forwarded-for
    is not believed, so it cannot borrow or dodge Envoy's bucket — and the direct bucket is separate."""
    _, server = strict_front
    with grpc.insecure_channel(server) as channel:
        auth = auth_stub(channel)
        codes = []
        for _ in range(4):
            try:
                auth.Login(
                    auth_pb2.LoginRequest(tenant="tenants/demo-city", email="y@example.org", password="wrong password"),
                    metadata=(("x-forwarded-for", "203.0.113.9"),), timeout=10,
                )
            except grpc.RpcError as error:
                codes.append(error.code())
                last = error
    # The direct peer (127.0.0.1) has its own fresh bucket of 3; the forged header changes nothing.
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in rpc_status.from_call(last).details)
    assert retry.retry_delay.seconds > 0 or retry.retry_delay.nanos > 0


def test_one_tenant_at_its_limit_does_not_affect_another(stack, strict_front):
    """Tenant A exhausting its tenant budget gets 429; tenant B's calls still pass."""
    envoy, _ = strict_front
    customer = demo_user(stack, "customer")
    token_a = login(stack.endpoints.envoy, "tenants/demo-city", customer.email, customer.password).tokens.access_token
    _, token_b = create_tenant(stack, "delta")
    statuses_a = [json_get(f"http://{envoy}", "/v1/currentUser", token_a).status_code for _ in range(7)]
    assert statuses_a[:5] == [200] * 5 and statuses_a[-1] == 429
    assert json_get(f"http://{envoy}", "/v1/currentUser", token_b).status_code == 200


def _command_calls(redis_client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in redis_client.info("commandstats").items()}


def test_an_authenticated_call_costs_one_redis_round_trip(stack, strict_front):
    """The token's revocation check and the call's rate limit are one script (storage/rate_limits.py
    `admit`): one script per call and no MGET of its own."""
    envoy, _ = strict_front
    _, token = create_tenant(stack, "echo")
    redis_client = redis.Redis.from_url(stack.redis.url(1))
    before = _command_calls(redis_client)
    statuses = [json_get(f"http://{envoy}", "/v1/currentUser", token).status_code for _ in range(3)]
    after = _command_calls(redis_client)
    assert statuses == [200] * 3
    scripts = sum(after.get(name, 0) - before.get(name, 0) for name in ("evalsha", "eval"))
    assert scripts == 3 and after.get("mget", 0) == before.get("mget", 0), (before, after)
