"""Rate limits against the real Redis: GCRA semantics, atomicity, expiry, failing closed, and the interceptor."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import AsyncIterator

import grpc
import pytest
import redis.asyncio as redis_asyncio
import redis.exceptions
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from emoney.platform.v1 import platform_pb2, platform_pb2_grpc
from interceptors.call_state import CallState, MethodPlan
from interceptors.pipeline import CallPipeline
from interceptors.rate_limit import RateLimitPolicy, RateLimits
from localstack.processes import free_port
from domain.config import Settings
from domain.principal import Principal
from storage.rate_limits import Admission, Bucket, Limit, RateLimiter
from storage.redis_store import build_redis

# Slow enough that nothing refills while a test runs: only the burst counts.
NO_REFILL_RATE_PER_S = 1 / 60


@pytest.fixture
async def redis_client(stack) -> AsyncIterator[redis_asyncio.Redis]:
    client = build_redis(Settings(redis_url=stack.endpoints.redis_url))
    yield client
    await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    """A fresh key space per test, so tests never share buckets; one hash tag, so a test's buckets may
    be used together (as on a Redis Cluster, where one script's keys must share a slot)."""
    return f"test:rl:{{{uuid.uuid4().hex}}}:"


@pytest.fixture
def limiter(redis_client, key_prefix) -> RateLimiter:
    return RateLimiter(redis_client, key_prefix=key_prefix)


@contextlib.asynccontextmanager
async def unreachable_redis() -> AsyncIterator[redis_asyncio.Redis]:
    """A client configured like the server's, pointed at a port nothing listens on."""
    client = build_redis(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        yield client
    finally:
        await client.aclose()


async def _acquire_many(limiter: RateLimiter, buckets: list[Bucket], times: int) -> list[int]:
    return [await limiter.acquire(buckets) for _ in range(times)]


async def test_a_burst_is_allowed_then_the_caller_is_told_how_long_to_wait(limiter):
    """A fresh bucket admits `burst` calls; the next one gets a wait of about one emission interval."""
    bucket = Bucket("burst", Limit(rate_per_s=2, burst=3))
    assert await _acquire_many(limiter, [bucket], 3) == [0, 0, 0]
    retry_after_ms = await limiter.acquire([bucket])
    # One interval is 500 ms, less the little time the three calls took.
    assert 400 < retry_after_ms <= 500


async def test_after_waiting_the_advised_time_the_call_is_allowed(limiter):
    """retry_after_ms is enough: sleeping that long makes the same call succeed."""
    bucket = Bucket("wait", Limit(rate_per_s=5, burst=1))
    assert await limiter.acquire([bucket]) == 0
    retry_after_ms = await limiter.acquire([bucket])
    assert retry_after_ms > 0
    await asyncio.sleep(retry_after_ms / 1000)
    assert await limiter.acquire([bucket]) == 0


async def test_refused_calls_consume_nothing(limiter):
    """Hammering a full bucket does not push the next allowed moment further away."""
    bucket = Bucket("hammer", Limit(rate_per_s=5, burst=1))
    assert await limiter.acquire([bucket]) == 0
    first_wait_ms = await limiter.acquire([bucket])
    for _ in range(20):
        await limiter.acquire([bucket])
    assert await limiter.acquire([bucket]) <= first_wait_ms


async def test_one_tenant_at_its_limit_does_not_slow_another(limiter):
    """Exhausting tenant A's bucket leaves tenant B's full burst available."""
    limit = Limit(rate_per_s=NO_REFILL_RATE_PER_S, burst=3)
    tenant_a = Bucket(f"default:tenant:{uuid.uuid4()}", limit)
    tenant_b = Bucket(f"default:tenant:{uuid.uuid4()}", limit)
    assert await _acquire_many(limiter, [tenant_a], 3) == [0, 0, 0]
    assert await limiter.acquire([tenant_a]) > 0
    assert await _acquire_many(limiter, [tenant_b], 3) == [0, 0, 0]


async def test_buckets_are_consumed_all_or_nothing(limiter, redis_client, key_prefix):
    """When one bucket of a call is over its limit, no bucket of that call is consumed."""
    principal = Bucket("principal", Limit(rate_per_s=NO_REFILL_RATE_PER_S, burst=1))
    tenant = Bucket("tenant", Limit(rate_per_s=NO_REFILL_RATE_PER_S, burst=5))
    assert await limiter.acquire([principal]) == 0
    assert await limiter.acquire([principal, tenant]) > 0
    assert await redis_client.exists(key_prefix + "tenant") == 0
    assert await _acquire_many(limiter, [tenant], 5) == [0] * 5


async def test_the_longest_wait_of_all_full_buckets_is_returned(limiter):
    """With several buckets over, the answer is the wait after which every one of them admits the call."""
    fast = Bucket("fast", Limit(rate_per_s=10, burst=1))
    slow = Bucket("slow", Limit(rate_per_s=1, burst=1))
    assert await limiter.acquire([fast, slow]) == 0
    assert 900 < await limiter.acquire([fast, slow]) <= 1000


async def test_concurrent_calls_never_exceed_the_burst(limiter):
    """50 simultaneous acquire() on a bucket of burst 10 admit exactly 10: check and consume are atomic."""
    bucket = Bucket("race", Limit(rate_per_s=NO_REFILL_RATE_PER_S, burst=10))
    results = await asyncio.gather(*(limiter.acquire([bucket]) for _ in range(50)))
    assert results.count(0) == 10
    assert all(result > 0 for result in results if result != 0)


async def test_keys_expire_when_the_bucket_would_be_full_again(limiter, redis_client, key_prefix):
    """Each key gets a TTL equal to the time its bucket needs to refill, so idle callers cost no memory."""
    bucket = Bucket("ttl", Limit(rate_per_s=10, burst=10))
    assert await limiter.acquire([bucket], cost=3) == 0
    time_to_live_ms = await redis_client.pttl(key_prefix + "ttl")
    assert 0 < time_to_live_ms <= 300
    await asyncio.sleep(time_to_live_ms / 1000 + 0.05)
    assert await redis_client.exists(key_prefix + "ttl") == 0


async def test_concurrent_calls_share_pipelines_and_each_gets_its_own_answer(limiter):
    """60 calls at once on one bucket of burst 25 and on 60 buckets of their own: they go out in fewer
    pipelines than calls, and each is still checked atomically on its own — exactly 25 of the shared
    bucket's calls are allowed, and every call on its own bucket is."""
    shared = Bucket("shared", Limit(rate_per_s=NO_REFILL_RATE_PER_S, burst=25))
    answers = await asyncio.gather(*(limiter.acquire([shared]) for _ in range(60)))
    own = await asyncio.gather(*(limiter.acquire([Bucket(f"own-{index}", Limit(1, 1))]) for index in range(60)))
    assert sum(answer == 0 for answer in answers) == 25
    assert all(answer > 0 for answer in answers[25:])  # in the order the calls were made
    assert own == [0] * 60
    batches = limiter._batches
    assert batches.calls == 120 and batches.batches < 120


async def test_a_call_that_fails_in_a_pipeline_fails_alone(limiter, redis_client, key_prefix):
    """A bucket key holding something else (a hash) makes its own call fail with Redis's error; the calls
    sent in the same pipeline get their answers."""
    await redis_client.hset(key_prefix + "not-a-counter", "field", "1")
    broken = limiter.acquire([Bucket("not-a-counter", Limit(1, 1))])
    neighbours = [limiter.acquire([Bucket(f"fine-{index}", Limit(1, 1))]) for index in range(5)]
    outcomes = await asyncio.gather(broken, *neighbours, return_exceptions=True)
    assert isinstance(outcomes[0], redis.exceptions.ResponseError) and "WRONGTYPE" in str(outcomes[0])
    assert outcomes[1:] == [0] * 5


async def test_the_script_is_reloaded_after_redis_forgets_it(limiter, redis_client):
    """After SCRIPT FLUSH (a restart or failover), EVALSHA's NOSCRIPT is handled by loading the script again."""
    bucket = Bucket("noscript", Limit(rate_per_s=NO_REFILL_RATE_PER_S, burst=2))
    assert await limiter.acquire([bucket]) == 0
    await redis_client.script_flush()
    assert await limiter.acquire([bucket]) == 0
    assert await limiter.acquire([bucket]) > 0
    await redis_client.script_flush()  # and calls that meet NOSCRIPT together in one pipeline
    others = [Bucket(f"noscript-{index}", Limit(1, 1)) for index in range(8)]
    assert await asyncio.gather(*(limiter.acquire([other]) for other in others)) == [0] * 8


async def test_unreachable_redis_raises_quickly():
    """With nothing listening, acquire() raises a redis error in well under 2 s: callers can fail closed."""
    async with unreachable_redis() as client:
        limiter = RateLimiter(client)
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError):
            await limiter.acquire([Bucket("down", Limit(1, 1))])
        assert time.monotonic() - started < 2.0


async def test_a_redis_that_never_answers_times_out_within_the_limit():
    """A Redis that accepts connections but hangs makes acquire() raise a TimeoutError after about 1 s."""
    hung_connections: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung_connections.append(writer)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = build_redis(Settings(redis_url=f"redis://127.0.0.1:{port}/0"))
    try:
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            await RateLimiter(client).acquire([Bucket("hung", Limit(1, 1))])
        assert time.monotonic() - started < 2.0
    finally:
        await client.aclose()
        for writer in hung_connections:
            writer.close()
        server.close()
        await server.wait_closed()


# --- the rate-limit stage in the call pipeline, in process -------------------------------------------------------------------

TEST_POLICY = RateLimitPolicy.default().with_overrides(
    "default.principal=1/60s:2,default.tenant=1/60s:3,default.address=1/60s:2"
)


class _Platform(platform_pb2_grpc.PlatformServiceServicer):
    async def GetServerInfo(self, request, context):
        return platform_pb2.GetServerInfoResponse(version="test")


class _IdentityFromHeaders:
    """Stands in for authentication and the client-address code: reads x-test-* headers into the call state."""

    async def identify(self, plan: MethodPlan, context: grpc.aio.ServicerContext, state: CallState) -> None:
        headers = dict(context.invocation_metadata() or ())
        state.client_address = headers.get("x-test-address", "")
        if "x-test-tenant" in headers:
            state.principal = Principal(
                subject=headers["x-test-subject"],
                tenant_id=uuid.UUID(headers["x-test-tenant"]),
                roles=frozenset({"customer"}),
                token_id="test",
                expires_at=0,
            )


@contextlib.asynccontextmanager
async def serving(limiter: RateLimiter) -> AsyncIterator[grpc.aio.Channel]:
    """A real grpc.aio server on a free port with the production call pipeline around the limiter."""
    server = grpc.aio.server(
        interceptors=[CallPipeline(identity=_IdentityFromHeaders(), rate_limits=RateLimits(limiter, TEST_POLICY))]
    )
    platform_pb2_grpc.add_PlatformServiceServicer_to_server(_Platform(), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(0)


def _as_user(tenant: uuid.UUID, subject: str | None = None) -> tuple[tuple[str, str], ...]:
    return (("x-test-tenant", str(tenant)), ("x-test-subject", subject or f"users/{uuid.uuid4()}"))


def _from_address(address: str) -> tuple[tuple[str, str], ...]:
    return (("x-test-address", address),)


async def _call(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    try:
        await platform_pb2_grpc.PlatformServiceStub(channel).GetServerInfo(
            platform_pb2.GetServerInfoRequest(), metadata=metadata, timeout=5
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _refusal(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> status_pb2.Status:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform_pb2_grpc.PlatformServiceStub(channel).GetServerInfo(
            platform_pb2.GetServerInfoRequest(), metadata=metadata, timeout=5
        )
    status = rpc_status.from_call(raised.value)
    assert status is not None, "the refusal carries a google.rpc.Status"
    return status


def _detail(status: status_pb2.Status, kind: type):
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            return message
    raise AssertionError(f"no {kind.__name__} in the status details")


async def test_over_the_limit_is_resource_exhausted_with_retry_info(limiter):
    """The call after a principal's burst is RESOURCE_EXHAUSTED, reason RATE_LIMITED, with a RetryInfo delay."""
    user = _as_user(uuid.uuid4(), "users/over-the-limit")
    async with serving(limiter) as channel:
        assert [await _call(channel, user) for _ in range(2)] == [grpc.StatusCode.OK] * 2
        status = await _refusal(channel, user)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert _detail(status, error_details_pb2.ErrorInfo).reason == "RATE_LIMITED"
    retry_delay_ms = _detail(status, error_details_pb2.RetryInfo).retry_delay.ToMilliseconds()
    assert 50_000 < retry_delay_ms <= 60_000


async def test_a_busy_tenant_does_not_limit_another_tenant(limiter):
    """Once tenant A's bucket is empty its users are refused, while a user of tenant B still gets through."""
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    async with serving(limiter) as channel:
        assert [await _call(channel, _as_user(tenant_a)) for _ in range(3)] == [grpc.StatusCode.OK] * 3
        assert await _call(channel, _as_user(tenant_a)) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await _call(channel, _as_user(tenant_b)) == grpc.StatusCode.OK


async def test_unauthenticated_calls_are_limited_per_client_address(limiter):
    """Without a principal, each client address has its own bucket, whatever port it calls from."""
    async with serving(limiter) as channel:
        assert await _call(channel, _from_address("ipv4:198.51.100.1:40001")) == grpc.StatusCode.OK
        assert await _call(channel, _from_address("ipv4:198.51.100.1:40002")) == grpc.StatusCode.OK
        assert await _call(channel, _from_address("ipv4:198.51.100.1:40003")) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await _call(channel, _from_address("ipv4:198.51.100.2:40001")) == grpc.StatusCode.OK


async def test_redis_down_fails_closed_quickly_but_health_still_answers():
    """Without Redis, limited calls are UNAVAILABLE (RATE_LIMITER_UNAVAILABLE) within 2 s; health is exempt."""
    async with unreachable_redis() as client, serving(RateLimiter(client)) as channel:
        started = time.monotonic()
        status = await _refusal(channel, _as_user(uuid.uuid4()))
        assert time.monotonic() - started < 2.0
        health_answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert _detail(status, error_details_pb2.ErrorInfo).reason == "RATE_LIMITER_UNAVAILABLE"
    assert health_answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("leaked", [
    TypeError("'NoneType' object is not callable"),  # asyncio's transport once connection_lost tore it down
    RuntimeError("unable to perform operation on <TCPTransport closed=True reading=False 0x7f780c009340>; "
                 "the handler is closed"),  # uvloop's (the HA soak met it while a Redis master was killed)
])
async def test_a_write_on_a_connection_closed_under_it_is_a_connection_error(stack, leaked):
    """redis-py 8.1 leaks the transport's error when a pooled connection's writer is gone (the peer closed it,
    e.g. a Redis Cluster master killed): the project's client turns it into ConnectionError, so callers fail
    closed (UNAVAILABLE) instead of answering UNKNOWN."""
    client = build_redis(Settings(redis_url=stack.endpoints.redis_url))
    try:
        assert await client.ping()
        connection = await client.connection_pool.get_connection()

        def closed_under_the_write(*_):
            raise leaked

        connection._writer.writelines = closed_under_the_write
        await client.connection_pool.release(connection)
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.execute_command("PING")
        assert await client.ping()  # the next call gets a working connection
    finally:
        await client.aclose()


async def test_a_denied_call_is_told_which_mark_denied_it_and_consumes_nothing(limiter, redis_client, key_prefix):
    """admit(): the first existing denial key (in the order given) wins, before any bucket is touched;
    without one, the buckets are charged as by acquire()."""
    marks = [f"{key_prefix}mark:{{t}}:first", f"{key_prefix}mark:{{t}}:second"]
    bucket = Bucket("admit:{t}", Limit(rate_per_s=1, burst=1))
    await redis_client.set(marks[1], b"1")
    assert await limiter.admit(marks, [bucket]) == Admission(denied=1, retry_after_ms=0)
    await redis_client.set(marks[0], b"1")
    assert await limiter.admit(marks, [bucket]) == Admission(denied=0, retry_after_ms=0)
    assert await redis_client.get(key_prefix + bucket.key) is None  # nothing consumed
    await redis_client.delete(*marks)
    assert await limiter.admit(marks, [bucket]) == Admission(denied=None, retry_after_ms=0)
    refused = await limiter.admit(marks, [bucket])
    assert refused.denied is None and refused.retry_after_ms > 0
