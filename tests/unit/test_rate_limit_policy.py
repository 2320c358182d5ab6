"""The rate-limit policy: which buckets a call uses, and the EMONEY_RATE_LIMITS override syntax."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from redis.crc import key_slot

from emoney.auth.v1 import auth_pb2
from interceptors.rate_limit import (
    CREDENTIAL_METHODS,
    RateLimitPolicy,
    address_identity,
    parse_rate_limit_overrides,
)
from domain.principal import Principal
from storage.rate_limits import Bucket, Limit, RateLimiter
from storage.redis_keys import RATE_LIMIT_PREFIX, tenant_tag

TENANT = uuid.UUID("6f1c9a52-0d4e-4c41-9d0e-3f1a2b3c4d5e")
PRINCIPAL = Principal(
    subject="users/0b8f6c1e-5d7a-4a3b-8c9d-1e2f3a4b5c6d",
    tenant_id=TENANT,
    roles=frozenset({"customer"}),
    token_id="jti-1",
    expires_at=2_000_000_000,
)


@pytest.mark.parametrize("method", CREDENTIAL_METHODS)
def test_credential_methods_exist_in_the_contract(method):
    """Each strictly limited name is a real AuthService RPC, so a rename cannot silently relax login limits."""
    service = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
    prefix, name = method.rsplit("/", 1)
    assert prefix == f"/{service.full_name}"
    assert name in service.methods_by_name


@pytest.mark.parametrize("method", CREDENTIAL_METHODS)
def test_login_and_sign_up_methods_are_in_the_credentials_group(method):
    """SignUp, Login, LoginTerminal, ChangePassword and RefreshToken share the strict group."""
    assert RateLimitPolicy.default().group_for(method) == "credentials"


def test_other_methods_fall_into_the_default_group():
    """A method not listed anywhere is limited by the default group, not left unlimited."""
    assert RateLimitPolicy.default().group_for("/emoney.payments.v1.PaymentService/CreateTransfer") == "default"


@pytest.mark.parametrize(
    "method",
    [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ],
)
def test_health_and_reflection_are_never_limited(method):
    """Health probes and reflection have no group, so no bucket and no Redis call."""
    assert RateLimitPolicy.default().group_for(method) is None


def test_login_is_much_stricter_than_the_default():
    """Every credentials limit is at least ten times slower than the default group's for the same scope."""
    limits = RateLimitPolicy.default().group_limits
    for scope in ("address", "principal", "tenant"):
        assert limits["credentials"][scope].rate_per_s * 10 <= limits["default"][scope].rate_per_s


def test_default_tenant_limit_leaves_room_for_the_transfer_benchmark():
    """1,500 transfers/s on one tenant stays under the default tenant limit."""
    assert RateLimitPolicy.default().group_limits["default"]["tenant"].rate_per_s >= 1_500


def test_authenticated_calls_count_against_principal_and_tenant():
    """With a principal, the buckets are the principal's and its tenant's, named by group."""
    policy = RateLimitPolicy.default()
    buckets = policy.buckets_for("default", PRINCIPAL, "203.0.113.7")
    assert [bucket.key for bucket in buckets] == [
        f"default:principal:{{{TENANT}}}:{PRINCIPAL.subject}",
        f"default:tenant:{{{TENANT}}}",
    ]
    assert buckets[0].limit == policy.group_limits["default"]["principal"]
    assert buckets[1].limit == policy.group_limits["default"]["tenant"]


def test_unauthenticated_calls_count_against_the_client_address():
    """Without a principal, the one bucket is the client address's, with the group's address limit."""
    policy = RateLimitPolicy.default()
    assert policy.buckets_for("credentials", None, "ipv4:203.0.113.7:51234") == [
        Bucket("credentials:address:{203.0.113.7}", policy.group_limits["credentials"]["address"])
    ]


@pytest.mark.parametrize(
    ("client_address", "identity"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:443", "203.0.113.7"),
        ("ipv4:203.0.113.7:51234", "203.0.113.7"),
        ("ipv6:[2001:db8:1:2:3:4:5:6]:51234", "2001:db8:1:2::/64"),
        ("ipv6:%5B2001:db8:1:2::9%5D:51234", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("[::ffff:198.51.100.4]:80", "198.51.100.4"),
        ("", "unknown"),
        ("unix:/tmp/socket", "unix:/tmp/socket"),
    ],
)
def test_client_addresses_are_counted_per_host(client_address, identity):
    """Ports and gRPC schemes are dropped, so a new connection is no new bucket; IPv6 counts per /64."""
    assert address_identity(client_address) == identity


def test_overrides_parse_count_period_and_burst():
    """`count/period:burst` becomes a rate per second and a burst; period and burst are optional."""
    text = "credentials.address=10/60s:5, default.tenant=2000/s:4000,default.principal=5/m"
    assert parse_rate_limit_overrides(text) == {
        ("credentials", "address"): Limit(rate_per_s=10 / 60, burst=5),
        ("default", "tenant"): Limit(rate_per_s=2000, burst=4000),
        ("default", "principal"): Limit(rate_per_s=5 / 60, burst=5),
    }
    assert parse_rate_limit_overrides("default.address=1/500ms")[("default", "address")] == Limit(2.0, 1)
    assert parse_rate_limit_overrides("default.address=100/1h:3")[("default", "address")] == Limit(100 / 3600, 3)


def test_empty_overrides_change_nothing():
    """An empty or blank variable means the defaults."""
    assert parse_rate_limit_overrides("") == {}
    assert parse_rate_limit_overrides("  ") == {}
    assert RateLimitPolicy.default().with_overrides("") == RateLimitPolicy.default()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("credentials.address", "is not `group.scope=count/period"),
        ("credentials.address=10", "is not `group.scope=count/period"),
        ("credentials.address=10/60x", "is not `group.scope=count/period"),
        ("credentials.address=ten/60s", "is not `group.scope=count/period"),
        ("credentials=10/s", "is not `group.scope=count/period"),
        ("credentials.address=10/60s:-1", "is not `group.scope=count/period"),
        ("credentials.ip=10/60s", "unknown scope `ip`"),
        ("credentials.address=0/s", "positive count and period"),
        ("credentials.address=10/0s", "positive count and period"),
        ("credentials.address=10/s:0", "burst must be between"),
        ("credentials.address=10000000/s", "rate must be between"),
        ("default.tenant=1/s,default.tenant=2/s", "set twice"),
    ],
)
def test_bad_overrides_are_refused_with_a_clear_message(text, message):
    """Each malformed entry is a ValueError that quotes it and says what was expected."""
    with pytest.raises(ValueError, match=message):
        parse_rate_limit_overrides(text)


def test_overrides_replace_only_the_named_limits():
    """with_overrides changes the named group and scope and keeps every other limit."""
    default = RateLimitPolicy.default()
    changed = default.with_overrides("credentials.address=3/s:3")
    assert changed.group_limits["credentials"]["address"] == Limit(rate_per_s=3, burst=3)
    assert changed.group_limits["credentials"]["tenant"] == default.group_limits["credentials"]["tenant"]
    assert changed.group_limits["default"] == default.group_limits["default"]
    assert default.group_limits["credentials"]["address"] == Limit(rate_per_s=10 / 60, burst=10)


def test_an_override_for_an_unknown_group_is_refused():
    """A typo in the group name fails at start-up instead of silently limiting nothing."""
    with pytest.raises(ValueError, match="unknown rate-limit group `credentails`.*groups are credentials, default"):
        RateLimitPolicy.default().with_overrides("credentails.address=1/s")


def test_a_policy_must_cover_every_scope_and_group():
    """A group without all three scopes, or a method in an undefined group, is refused when built."""
    with pytest.raises(ValueError, match="lacks limits for tenant"):
        RateLimitPolicy(group_limits={"default": {"address": Limit(1, 1), "principal": Limit(1, 1)}})
    full = {"address": Limit(1, 1), "principal": Limit(1, 1), "tenant": Limit(1, 1)}
    with pytest.raises(ValueError, match="group `strict`, which has no limits"):
        RateLimitPolicy(group_limits={"default": full}, method_groups={"/a.B/C": "strict"})


def test_limit_intervals_are_whole_microseconds():
    """The script works in µs: 2000/s is 500 µs per request, and the tolerance is interval × burst."""
    limit = Limit(rate_per_s=2000, burst=4000)
    assert limit.emission_interval_us == 500
    assert limit.tolerance_us == 2_000_000


async def test_impossible_requests_are_refused_before_reaching_redis():
    """A cost above a bucket's burst, no buckets, or a repeated bucket is a ValueError, not a silent refusal."""
    limiter = RateLimiter(client=_NoRedis())
    bucket = Bucket("k", Limit(1, 2))
    with pytest.raises(ValueError, match="exceeds the burst"):
        await limiter.acquire([bucket], cost=3)
    with pytest.raises(ValueError, match="between 1 and 8 buckets"):
        await limiter.acquire([])
    with pytest.raises(ValueError, match="only once"):
        await limiter.acquire([bucket, bucket])


async def test_buckets_in_different_hash_slots_are_refused_before_reaching_redis():
    """One script's keys must share a hash slot (a Redis Cluster refuses them otherwise): refused on any Redis."""
    limiter = RateLimiter(client=_NoRedis())
    other_tenant = uuid.UUID(int=TENANT.int + 1)
    buckets = [Bucket(f"default:tenant:{{{tenant}}}", Limit(1, 2)) for tenant in (TENANT, other_tenant)]
    with pytest.raises(ValueError, match="share a hash slot"):
        await limiter.acquire(buckets)


@pytest.mark.parametrize("principal", [PRINCIPAL, replace(PRINCIPAL, subject="terminals/5f0c1e2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f")])
def test_the_buckets_of_a_logged_in_call_lie_in_its_tenants_slot(principal):
    """Principal and tenant buckets, under the limiter's own prefix, hash to the slot of the tenant's tag."""
    for group in ("default", "credentials"):
        keys = [RATE_LIMIT_PREFIX + bucket.key for bucket in RateLimitPolicy.default().buckets_for(group, principal, "")]
        assert {key_slot(key.encode()) for key in keys} == {key_slot(tenant_tag(TENANT).encode())}


class _NoRedis:
    """Stands in for a client; any use of it would fail the test."""

    def register_script(self, script: str) -> object:
        return object()
