"""A server process whose REDIS_URL names a Redis Cluster: it starts, copies the suspensions from
PostgreSQL into the cluster, reports SERVING (every master answers), and logs users in and out through
it. A server of its own beside the shared stack (same database, secrets and object store)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis.crc import key_slot

from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from localstack.health import wait_for_serving
from localstack.processes import free_port
from localstack.redis_server import free_cluster_ports, start_redis_cluster
from storage.redis_keys import revoked_token_key, tenant_tag
from tests.fixtures.identity import admin_stub, auth_stub, bearer, create_tenant, demo_user, login, login_as

ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def suspended_tenants_token(stack) -> str:
    """The access token of a tenant's admin, taken before the platform administrator suspended the tenant."""
    created, admin_token = create_tenant(stack, "suspended")
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        admin_stub(channel).SuspendTenant(
            admin_pb2.SuspendTenantRequest(name=created.tenant.tenant.name),
            metadata=bearer(login_as(stack, "platform_admin")),
            timeout=10,
        )
    return admin_token


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redis-cluster-server")
    service = start_redis_cluster(folder / "data" / "redis-cluster", free_cluster_ports(), folder / "logs")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def cluster_server(stack, cluster, suspended_tenants_token, tmp_path_factory) -> str:
    """A `python -m server` on the cluster, started after the suspension; yields its address."""
    address = f"127.0.0.1:{free_port()}"
    environment = stack.server_environment(address)
    environment["REDIS_URL"] = cluster.url()
    log = (tmp_path_factory.mktemp("cluster-server") / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "server"], env=environment, cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for_serving(address, SERVER_START_TIMEOUT_S)
        yield address
    finally:
        server.terminate()
        server.wait(20)
        log.close()


def _refusal(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    status = rpc_status.from_call(raised.value)
    info = error_details_pb2.ErrorInfo()
    assert status is not None and status.details[0].Unpack(info)
    return raised.value.code(), info.reason


def test_a_tenant_suspended_before_the_server_started_is_refused_through_the_cluster(cluster_server, suspended_tenants_token):
    """The server copied the suspension from PostgreSQL into the cluster at start: the tenant's live token fails."""
    with grpc.insecure_channel(cluster_server) as channel:
        refused = _refusal(lambda: auth_stub(channel).GetCurrentUser(
            auth_pb2.GetCurrentUserRequest(), metadata=bearer(suspended_tenants_token), timeout=10
        ))
    assert refused == (grpc.StatusCode.UNAUTHENTICATED, "TENANT_SUSPENDED")


def test_login_and_logout_through_the_cluster(cluster_server, cluster, stack):
    """A customer logs in and reads themselves; after Logout the token is refused (TOKEN_REVOKED), and the
    deny-list entry lies on the master of the tenant's slot."""
    user = demo_user(stack, "customer")
    tokens = login(cluster_server, f"tenants/{user.tenant}", user.email, user.password).tokens
    with grpc.insecure_channel(cluster_server) as channel:
        auth = auth_stub(channel)
        me = auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(tokens.access_token), timeout=10)
        assert me.user.email == user.email
        auth.Logout(auth_pb2.LogoutRequest(refresh_token=tokens.refresh_token), metadata=bearer(tokens.access_token), timeout=10)
        refused = _refusal(lambda: auth.GetCurrentUser(
            auth_pb2.GetCurrentUserRequest(), metadata=bearer(tokens.access_token), timeout=10
        ))
    assert refused == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")

    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    master = cluster.master_of_slot(key_slot(tenant_tag(claims["tenant_id"]).encode()))
    with cluster.node_client(master.port) as node:
        assert node.exists(revoked_token_key(claims["tenant_id"], claims["jti"])) == 1
