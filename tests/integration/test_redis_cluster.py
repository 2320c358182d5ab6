"""The platform on a real Redis Cluster (three masters, three replicas): rate limits, revocations and
suspensions behave as on one Redis, every key lies in the slot its hash tag promises, and a master's
crash costs its tenants a few seconds of UNAVAILABLE, after which its replica serves them."""

from __future__ import annotations

import asyncio
import contextlib
import re
import stat
import time
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import grpc
import psutil
import pytest
import redis
import redis.exceptions
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from emoney.platform.v1 import platform_pb2, platform_pb2_grpc
from interceptors.authentication import TokenAuthentication
from interceptors.pipeline import CallPipeline
from interceptors.rate_limit import RateLimitPolicy, RateLimits
from domain.config import parse_trusted_proxies
from localstack.processes import ServiceStartError, free_port
from localstack.redis_server import (
    CLUSTER_MASTERS,
    CLUSTER_NODE_TIMEOUT_MS,
    RedisClusterService,
    free_cluster_ports,
    start_redis_cluster,
)
from domain.config import Settings
from server.health import redis_probe
from domain.principal import TERMINAL_ROLE
from domain.tokens import KeyRing, KeyRingRefresher, SigningKey, TokenService
from storage.rate_limits import RateLimiter
from storage.redis_keys import tenant_tag
from storage.redis_store import FailClosedRedisCluster, RedisClient, build_redis
from storage.sessions import SessionStore

STRICT_POLICY = RateLimitPolicy.default().with_overrides(
    "default.principal=1/60s:2,default.tenant=1/60s:3,default.address=1/60s:2"
)
GENEROUS_POLICY = RateLimitPolicy.default()
# Slow to refill, so the buckets' keys (which expire once full again) are still there to be inspected.
LASTING_POLICY = RateLimitPolicy.default().with_overrides(
    "default.principal=1/60s:100,default.tenant=1/60s:100,default.address=1/60s:100"
)
OK, UNAVAILABLE = grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE
# cluster-node-timeout (2 s), then the replica's election (0.5–1.5 s), then the clients' next slot-map
# read: measured 3.5–4.5 s on a 2-core machine. The bound leaves room for a loaded one.
FAILOVER_BOUND_S = 15.0
# Each refused call must still be answered quickly: failing closed, not hanging on the dead master.
REFUSAL_BOUND_S = 2.0
RETRY_PAUSE_S = 0.05
# Every key the platform writes, as storage/redis_keys.py documents it; group 1 is the hash tag's content.
KEY_PATTERNS = [
    re.compile(r"emoney:revoked-jti:\{([^}]+)\}:[^:]+"),
    re.compile(r"emoney:suspended-tenant:\{([^}]+)\}"),
    re.compile(r"emoney:disabled-subject:\{([^}]+)\}:(users|terminals)/[0-9a-f-]+"),
    re.compile(r"emoney:rl:[a-z]+:principal:\{([^}]+)\}:(users|terminals)/[0-9a-f-]+"),
    re.compile(r"emoney:rl:[a-z]+:tenant:\{([^}]+)\}"),
    re.compile(r"emoney:rl:[a-z]+:address:\{([^}]+)\}"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterService]:
    folder = tmp_path_factory.mktemp("redis-cluster")
    service = start_redis_cluster(folder / "data" / "redis-cluster", free_cluster_ports(), folder / "logs")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
async def client(cluster: RedisClusterService) -> AsyncIterator[RedisClient]:
    """The servers' own client, built from the URL the cluster hands out."""
    redis_client = build_redis(Settings(redis_url=cluster.url()))
    assert isinstance(redis_client, FailClosedRedisCluster)
    yield redis_client
    await redis_client.aclose()


@pytest.fixture(scope="module")
def tokens() -> TokenService:
    private_key = Ed25519PrivateKey.generate()
    key = SigningKey(kid="cluster-test", private_key=private_key, public_key=private_key.public_key(), created_at=0)
    return TokenService(KeyRing(current_kid=key.kid, keys={key.kid: key}), issuer="emoney.test", audience="emoney-api")


class _Platform(platform_pb2_grpc.PlatformServiceServicer):
    async def GetServerInfo(self, request, context):
        return platform_pb2.GetServerInfoResponse(version="test")


class _Auth(auth_pb2_grpc.AuthServiceServicer):
    async def GetCurrentUser(self, request, context):
        return auth_pb2.GetCurrentUserResponse()


class _NoNewKeys:
    """The key ring never changes here: nothing new to load."""

    async def load(self) -> KeyRing | None:
        return None


@contextlib.asynccontextmanager
async def serving(client: RedisClient, tokens: TokenService, policy: RateLimitPolicy) -> AsyncIterator[grpc.aio.Channel]:
    """A real grpc.aio server with the production interceptors that use Redis, in production order."""
    server = grpc.aio.server(
        interceptors=[
            CallPipeline(
                identity=TokenAuthentication(KeyRingRefresher(_NoNewKeys(), tokens), SessionStore(client)),
                rate_limits=RateLimits(RateLimiter(client), policy),
                # The test calls from loopback and says which client it plays in x-forwarded-for.
                trusted_proxies=parse_trusted_proxies("127.0.0.1"),
            )
        ]
    )
    platform_pb2_grpc.add_PlatformServiceServicer_to_server(_Platform(), server)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(_Auth(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(0)


def _user_token(tokens: TokenService, tenant: uuid.UUID) -> tuple[str, str]:
    """(token, jti) of a new customer of `tenant`."""
    token, principal = tokens.issue(subject=f"users/{uuid.uuid4()}", tenant_id=tenant, roles=["customer"])
    return token, principal.token_id


def _fresh_address() -> str:
    """A client address no other test uses (a /64 of the documentation range: one rate-limit bucket)."""
    return f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"


async def _current_user(channel: grpc.aio.Channel, token: str) -> tuple[grpc.StatusCode, str]:
    """The status code and ErrorInfo reason of one authenticated, rate-limited call."""
    return await _outcome(auth_pb2_grpc.AuthServiceStub(channel).GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=5
    ))


async def _server_info(channel: grpc.aio.Channel, address: str) -> tuple[grpc.StatusCode, str]:
    """The same for a call without a login, from `address`."""
    return await _outcome(platform_pb2_grpc.PlatformServiceStub(channel).GetServerInfo(
        platform_pb2.GetServerInfoRequest(), metadata=(("x-forwarded-for", address),), timeout=5
    ))


async def _outcome(call) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        status = rpc_status.from_call(error)
        reasons = [] if status is None else [
            info.reason for detail in status.details if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)
            for info in [_unpacked(detail)]
        ]
        return error.code(), (reasons[0] if reasons else "")
    return OK, ""


def _unpacked(detail) -> error_details_pb2.ErrorInfo:
    info = error_details_pb2.ErrorInfo()
    detail.Unpack(info)
    return info


def _tenant_on_another_master(cluster: RedisClusterService, tenant: uuid.UUID) -> uuid.UUID:
    master = cluster.master_of_slot(key_slot(tenant_tag(tenant).encode())).port
    while True:
        other = uuid.uuid4()
        if cluster.master_of_slot(key_slot(tenant_tag(other).encode())).port != master:
            return other


def test_the_cluster_requires_its_password_keeps_its_data_and_re_forms_on_restart(tmp_path: Path) -> None:
    """Six nodes on loopback, three of them masters; each refuses a missing password, which is in no argv and
    in 0600 files only. Stopped and started on the same ports, the cluster re-forms from its nodes.conf files
    (no second `--cluster create`) with its data (AOF); started on other ports, it is refused."""
    data_dir, logs = tmp_path / "state" / "redis-cluster", tmp_path / "logs"
    ports = free_cluster_ports()
    cluster = start_redis_cluster(data_dir, ports, logs)
    try:
        assert len(cluster.masters()) == CLUSTER_MASTERS
        writer = RedisCluster(host=cluster.host, port=ports[0], password=cluster.password)
        for index in range(30):  # spread over every master
            writer.set(f"kept:{index}", index)
        writer.close()
        for node in cluster.nodes:
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(host=cluster.host, port=node.port, retry=Retry(NoBackoff(), 0)).ping()
            assert cluster.password not in " ".join(psutil.Process(node.process.pid).cmdline())
            assert _file_mode(node.config_path) == 0o600 and (node.data_dir / "appendonly.aof").exists()
        assert _file_mode(data_dir.parent / "redis-cluster-password.json") == 0o600
        formed_at_ns = (logs / "redis-cluster-create.log").stat().st_mtime_ns
    finally:
        cluster.stop()

    cluster = start_redis_cluster(data_dir, ports, logs)
    try:
        assert (logs / "redis-cluster-create.log").stat().st_mtime_ns == formed_at_ns, "formed a second time"
        reader = RedisCluster(host=cluster.host, port=ports[-1], password=cluster.password)
        assert [reader.get(f"kept:{index}") for index in range(30)] == [str(index).encode() for index in range(30)]
        reader.close()
    finally:
        cluster.stop()
    with pytest.raises(ServiceStartError, match="was formed on ports"):
        start_redis_cluster(data_dir, list(reversed(ports)), logs)


def _file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_rate_limits_are_enforced_on_the_cluster_as_on_one_redis(cluster, client, tokens):
    """Principal, tenant and address buckets run out exactly as on one Redis; another tenant is untouched."""
    tenant = uuid.uuid4()
    first, _ = _user_token(tokens, tenant)
    second, _ = _user_token(tokens, tenant)
    other_tenants_user, _ = _user_token(tokens, _tenant_on_another_master(cluster, tenant))
    address = _fresh_address()
    async with serving(client, tokens, STRICT_POLICY) as channel:
        # The principal's burst is 2; a refused call consumes nothing, so the tenant has used 2 of its 3.
        assert [await _current_user(channel, first) for _ in range(3)] == [(OK, "")] * 2 + [
            (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        ]
        assert [await _current_user(channel, second) for _ in range(2)] == [
            (OK, ""), (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        ]
        assert await _current_user(channel, other_tenants_user) == (OK, "")
        assert [await _server_info(channel, address) for _ in range(3)] == [(OK, "")] * 2 + [
            (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        ]


async def test_revocations_suspensions_and_disabled_terminals_are_seen_on_the_cluster(client, tokens):
    """Logout's deny-list entry, a suspension (and its lifting) and a disabled terminal stop the next call."""
    sessions = SessionStore(client)
    tenant = uuid.uuid4()
    revoked, revoked_jti = _user_token(tokens, tenant)
    kept, _ = _user_token(tokens, tenant)
    terminal_token, terminal = tokens.issue(subject=f"terminals/{uuid.uuid4()}", tenant_id=tenant, roles=[TERMINAL_ROLE])
    async with serving(client, tokens, GENEROUS_POLICY) as channel:
        assert await _current_user(channel, revoked) == (OK, "")
        await sessions.revoke_access_token(tenant, revoked_jti, int(time.time()) + 600)
        assert await _current_user(channel, revoked) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
        assert await _current_user(channel, kept) == (OK, "")

        await sessions.set_tenant_suspended(tenant, True)
        assert await _current_user(channel, kept) == (grpc.StatusCode.UNAUTHENTICATED, "TENANT_SUSPENDED")
        await sessions.set_tenant_suspended(tenant, False)
        assert await _current_user(channel, kept) == (OK, "")

        assert await _current_user(channel, terminal_token) == (OK, "")
        await sessions.disable_subject(terminal.subject, tenant)
        assert await _current_user(channel, terminal_token) == (grpc.StatusCode.UNAUTHENTICATED, "PRINCIPAL_DISABLED")


async def test_every_key_lies_in_the_slot_its_hash_tag_promises(cluster, client, tokens):
    """After every kind of write, each key on each master has a documented name, and CLUSTER KEYSLOT puts it
    in its tag's slot, which that master serves: a call's keys can never be split (CROSSSLOT)."""
    sessions = SessionStore(client)
    tenant = uuid.uuid4()
    token, jti = _user_token(tokens, tenant)
    async with serving(client, tokens, LASTING_POLICY) as channel:
        assert await _current_user(channel, token) == (OK, "")
        assert await _server_info(channel, _fresh_address()) == (OK, "")
    await sessions.revoke_access_token(tenant, jti, int(time.time()) + 600)
    await sessions.set_tenant_suspended(tenant, True)
    await sessions.disable_subject(f"terminals/{uuid.uuid4()}", tenant)

    tenant_keys = []
    for port, ranges in cluster.masters().items():
        with cluster.node_client(port) as node:
            for key in node.scan_iter(count=1000):
                match = next((found for pattern in KEY_PATTERNS if (found := pattern.fullmatch(key))), None)
                assert match is not None, f"{key!r} is not a documented key (storage/redis_keys.py)"
                slot = node.execute_command("CLUSTER", "KEYSLOT", key)
                assert slot == key_slot(("{" + match[1] + "}").encode()), key
                assert any(first <= slot <= last for first, last in ranges), f"{key!r} is on a master not serving it"
                if match[1] == str(tenant):
                    tenant_keys.append(key)
    # The user's two buckets, and the deny-list's three entries.
    assert len(tenant_keys) == 5, tenant_keys


async def test_a_cluster_with_no_node_answering_fails_closed_quickly(tokens):
    """No startup node reachable: calls are UNAVAILABLE (not INTERNAL) within REFUSAL_BOUND_S, health is
    down, and a write raises the ConnectionError that the error mapping answers with UNAVAILABLE."""
    client = build_redis(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0?cluster=true"))
    try:
        token, _ = _user_token(tokens, uuid.uuid4())
        async with serving(client, tokens, GENEROUS_POLICY) as channel:
            result, duration_s = await _timed_call(channel, token)
            assert result == (UNAVAILABLE, "SESSION_STORE_UNAVAILABLE") and duration_s < REFUSAL_BOUND_S
            assert await _server_info(channel, _fresh_address()) == (UNAVAILABLE, "RATE_LIMITER_UNAVAILABLE")
        assert await redis_probe(client, timeout_s=1.0)() is False
        with pytest.raises(redis.exceptions.ConnectionError):
            await SessionStore(client).set_tenant_suspended(uuid.uuid4(), True)
    finally:
        await client.aclose()


async def test_a_master_crash_costs_its_tenants_seconds_of_unavailable_then_its_replica_serves(cluster, client, tokens):
    """kill -9 of the master of a tenant's slot: that tenant's calls answer UNAVAILABLE, each quickly, for a
    bounded time, then succeed on the promoted replica, which kept the deny-list; other tenants never notice.
    The old master, restarted, comes back as a replica."""
    sessions = SessionStore(client)
    tenant = uuid.uuid4()
    slot = key_slot(tenant_tag(tenant).encode())
    token, _ = _user_token(tokens, tenant)
    logged_out, logged_out_jti = _user_token(tokens, tenant)
    bystander, _ = _user_token(tokens, _tenant_on_another_master(cluster, tenant))
    healthy = redis_probe(client, timeout_s=1.0)
    async with serving(client, tokens, GENEROUS_POLICY) as channel:
        await sessions.revoke_access_token(tenant, logged_out_jti, int(time.time()) + 600)
        assert await _current_user(channel, token) == (OK, "")
        cluster.wait_replicas_in_sync(timeout_s=10)
        masters_before = cluster.masters()

        victim = cluster.kill_master_of_slot(slot)
        killed_at = time.monotonic()
        assert await healthy() is False, "health must report the dead master"
        refusals = []
        while (outcome := await _timed_call(channel, token))[0] != (OK, ""):
            refusals.append(outcome)
            assert time.monotonic() - killed_at < FAILOVER_BOUND_S, f"still refused after {FAILOVER_BOUND_S} s"
            assert await _current_user(channel, bystander) == (OK, ""), "another master's tenant was refused"
            await asyncio.sleep(RETRY_PAUSE_S)
        # Not before the master was judged dead: the refusals were the failover, not a hiccup.
        assert time.monotonic() - killed_at >= CLUSTER_NODE_TIMEOUT_MS / 1000

        assert refusals, "the first call after the crash cannot have found a promoted replica already"
        assert {result for result, _ in refusals} <= {
            (UNAVAILABLE, "SESSION_STORE_UNAVAILABLE"), (UNAVAILABLE, "RATE_LIMITER_UNAVAILABLE")
        }, refusals
        assert max(duration_s for _, duration_s in refusals) < REFUSAL_BOUND_S
        assert await _current_user(channel, logged_out) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
        assert await healthy() is True

    masters_after = cluster.masters()
    assert victim.port in masters_before and victim.port not in masters_after
    promoted = cluster.master_of_slot(slot)
    assert promoted.port not in masters_before and masters_after[promoted.port] == masters_before[victim.port]

    cluster.restart_node(victim)
    cluster.wait_ready(timeout_s=30)
    assert victim.port not in cluster.masters() and cluster.master_of_slot(slot).port == promoted.port


async def _timed_call(channel: grpc.aio.Channel, token: str) -> tuple[tuple[grpc.StatusCode, str], float]:
    started = time.monotonic()
    result = await _current_user(channel, token)
    return result, time.monotonic() - started


async def test_a_logout_counts_only_once_a_replica_has_it_so_a_master_crash_cannot_undo_it(cluster, client, tokens):
    """With the slot's replica frozen, a revocation cannot be acknowledged (UNAVAILABLE, quickly: the client
    retries); once the replica answers again, the retried logout is acknowledged, and a kill -9 of the master
    straight after it — no waiting for replication — leaves the token refused on the promoted replica."""
    cluster.wait_ready(timeout_s=30)
    sessions = SessionStore(client)
    tenant = uuid.uuid4()
    slot = key_slot(tenant_tag(tenant).encode())
    _, jti = _user_token(tokens, tenant)
    subject = f"users/{uuid.uuid4()}"
    master = cluster.master_of_slot(slot)
    (replica,) = cluster.replicas_of(master)
    frozen = psutil.Process(replica.process.pid)
    frozen.suspend()
    try:
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError, match="no replica acknowledged"):
            await sessions.revoke_access_token(tenant, jti, int(time.time()) + 600)
        assert time.monotonic() - started < REFUSAL_BOUND_S
    finally:
        frozen.resume()

    await sessions.revoke_access_token(tenant, jti, int(time.time()) + 600)
    victim = cluster.kill_master_of_slot(slot)
    killed_at = time.monotonic()
    while True:
        try:
            denial = await sessions.denial(jti, tenant, subject)
            break
        except redis.exceptions.ConnectionError:
            assert time.monotonic() - killed_at < FAILOVER_BOUND_S, f"still no master after {FAILOVER_BOUND_S} s"
            await asyncio.sleep(RETRY_PAUSE_S)
    assert cluster.master_of_slot(slot).port == replica.port
    assert denial == "TOKEN_REVOKED"
    cluster.restart_node(victim)
    cluster.wait_ready(timeout_s=30)
