"""Rate limits: per tenant and per caller, limits per method group, enforced in Redis.

An authenticated call is charged by the authentication stage, in the same
Redis round trip as its token check (storage/rate_limits.py `admit`); this
stage charges the others (login, sign-up, public lookups) and any call the
authentication stage was built without the limiter for. Its refusals:

- over a limit → RESOURCE_EXHAUSTED, reason `RATE_LIMITED`, with a
  `google.rpc.RetryInfo` saying when to retry (HTTP 429 on the JSON face);
- Redis unreachable → UNAVAILABLE, reason `RATE_LIMITER_UNAVAILABLE`, within
  about a second. This fails closed on purpose: Redis also holds the token
  revocation list, so without it the server cannot vouch for any token, and an
  unmetered login endpoint during an outage would be a brute-force window.

Which buckets a call uses: an authenticated call counts against its principal
and its tenant (so one tenant at its limit never slows another); an
unauthenticated call (login, sign-up, public lookups) counts against the
client's network address. Each method belongs to one group (`credentials` for
the password and token endpoints, and `lookups` for finding a person to pay,
much stricter; `default` for everything else); health and reflection are never limited.

Limits can be overridden from one environment variable, `EMONEY_RATE_LIMITS`:
comma-separated `group.scope=count/period[:burst]` entries, where scope is
`address`, `principal` or `tenant`, period is an optional number and a unit
(`ms`, `s`, `m`, `h`), and burst defaults to count. For example
`credentials.address=10/60s:10,default.tenant=2000/s:4000,credentials.principal=5/m`.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from dataclasses import dataclass, field, replace
from typing import Mapping
from urllib.parse import unquote

import redis.exceptions

from interceptors.call_state import CallState, MethodPlan
from domain.errors import ResourceExhausted, ServiceUnavailable
from domain.principal import Principal
from storage.rate_limits import Bucket, Limit, RateLimiter
from storage.redis_keys import address_bucket_key, principal_bucket_key, tenant_bucket_key

logger = logging.getLogger("emoney.rate_limits")

SCOPES = ("address", "principal", "tenant")
CREDENTIALS_GROUP = "credentials"
LOOKUPS_GROUP = "lookups"
DEFAULT_GROUP = "default"
# Never limited: load balancers probe health every second, and reflection is a developer tool.
EXEMPT_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_AUTH_SERVICE = "/emoney.auth.v1.AuthService/"
CREDENTIAL_METHODS = tuple(
    _AUTH_SERVICE + name for name in ("SignUp", "Login", "LoginTerminal", "ChangePassword", "RefreshToken")
)
# Finding a person by e-mail or phone: a payer looks up a few people, never a directory's worth.
LOOKUP_METHODS = ("/emoney.payments.v1.PaymentsService/FindPayee",)
# An address longer than this is not an address; cap it so a key stays small whatever arrives.
MAX_ADDRESS_CHARS = 128
UNKNOWN_ADDRESS = "unknown"
SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

_OVERRIDE_PATTERN = re.compile(
    r"(?P<group>[a-z][a-z0-9_-]*)\.(?P<scope>[a-z]+)"
    r"=(?P<count>\d+(?:\.\d+)?)/(?P<period>\d+(?:\.\d+)?)?(?P<unit>ms|s|m|h)(?::(?P<burst>\d+))?"
)
_OVERRIDE_FORM = "`group.scope=count/period[:burst]`, for example `credentials.address=10/60s:10`"


def _default_group_limits() -> dict[str, dict[str, Limit]]:
    return {
        # Guessing passwords or farming sign-ups: a person needs a handful of tries a minute.
        CREDENTIALS_GROUP: {
            "address": Limit(rate_per_s=10 / 60, burst=10),
            "principal": Limit(rate_per_s=10 / 60, burst=10),
            "tenant": Limit(rate_per_s=100, burst=200),
        },
        LOOKUPS_GROUP: {
            "address": Limit(rate_per_s=10 / 60, burst=10),
            "principal": Limit(rate_per_s=10 / 60, burst=10),
            "tenant": Limit(rate_per_s=50, burst=100),
        },
        # Generous: benchmarks run 1,500 transfers/s on one tenant, which must stay under the tenant limit.
        DEFAULT_GROUP: {
            "address": Limit(rate_per_s=100, burst=200),
            "principal": Limit(rate_per_s=200, burst=400),
            "tenant": Limit(rate_per_s=2000, burst=4000),
        },
    }


@dataclass(frozen=True)
class RateLimitPolicy:
    """Which group each method is in, and each group's limit per scope (address, principal, tenant)."""

    group_limits: Mapping[str, Mapping[str, Limit]]
    method_groups: Mapping[str, str] = field(default_factory=dict)
    default_group: str = DEFAULT_GROUP

    def __post_init__(self) -> None:
        if self.default_group not in self.group_limits:
            raise ValueError(f"the default group `{self.default_group}` has no limits")
        for method, group in self.method_groups.items():
            if group not in self.group_limits:
                raise ValueError(f"method {method} is in group `{group}`, which has no limits")
        for group, limits in self.group_limits.items():
            missing = [scope for scope in SCOPES if scope not in limits]
            if missing:
                raise ValueError(f"group `{group}` lacks limits for {', '.join(missing)}")

    @classmethod
    def default(cls) -> RateLimitPolicy:
        return cls(
            group_limits=_default_group_limits(),
            method_groups={**{method: CREDENTIALS_GROUP for method in CREDENTIAL_METHODS},
                           **{method: LOOKUPS_GROUP for method in LOOKUP_METHODS}},
        )

    def with_overrides(self, text: str) -> RateLimitPolicy:
        """This policy with the limits named in `text` (the `EMONEY_RATE_LIMITS` syntax) replaced."""
        group_limits = {group: dict(limits) for group, limits in self.group_limits.items()}
        for (group, scope), limit in parse_rate_limit_overrides(text).items():
            if group not in group_limits:
                known = ", ".join(sorted(group_limits))
                raise ValueError(f"unknown rate-limit group `{group}` in EMONEY_RATE_LIMITS; groups are {known}")
            group_limits[group][scope] = limit
        return replace(self, group_limits=group_limits)

    def group_for(self, method: str) -> str | None:
        """The method's group, or None when the method is never limited."""
        if method.startswith(EXEMPT_METHOD_PREFIXES):
            return None
        return self.method_groups.get(method, self.default_group)

    def buckets_for(self, group: str, principal: Principal | None, client_address: str) -> list[Bucket]:
        """The buckets one call consumes; a principal's and its tenant's share the tenant's hash tag."""
        limits = self.group_limits[group]
        if principal is None:
            return [Bucket(address_bucket_key(group, address_identity(client_address)), limits["address"])]
        return [
            Bucket(principal_bucket_key(group, principal.tenant_id, principal.subject), limits["principal"]),
            Bucket(tenant_bucket_key(group, principal.tenant_id), limits["tenant"]),
        ]


def parse_rate_limit_overrides(text: str) -> dict[tuple[str, str], Limit]:
    """Parse `group.scope=count/period[:burst],...` into {(group, scope): Limit}; ValueError on anything else."""
    overrides: dict[tuple[str, str], Limit] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        (group, scope), limit = _parse_override(entry)
        if (group, scope) in overrides:
            raise ValueError(f"`{group}.{scope}` is set twice in EMONEY_RATE_LIMITS")
        overrides[(group, scope)] = limit
    return overrides


def _parse_override(entry: str) -> tuple[tuple[str, str], Limit]:
    match = _OVERRIDE_PATTERN.fullmatch(entry.replace(" ", ""))
    if match is None:
        raise ValueError(f"rate limit `{entry}` is not {_OVERRIDE_FORM}")
    scope = match["scope"]
    if scope not in SCOPES:
        raise ValueError(f"unknown scope `{scope}` in rate limit `{entry}`; scopes are {', '.join(SCOPES)}")
    count = float(match["count"])
    period_s = float(match["period"] or 1) * SECONDS_PER_UNIT[match["unit"]]
    if count <= 0 or period_s <= 0:
        raise ValueError(f"rate limit `{entry}` needs a positive count and period")
    burst = int(match["burst"]) if match["burst"] else max(1, math.ceil(count))
    try:
        limit = Limit(rate_per_s=count / period_s, burst=burst)
    except ValueError as error:
        raise ValueError(f"rate limit `{entry}`: {error}") from None
    return (match["group"], scope), limit


def address_identity(client_address: str) -> str:
    """The part of a client address that identifies the client: the host, without port or gRPC scheme.

    IPv6 clients are counted per /64, the block one subscriber usually gets: counting per
    address would let one client rotate through 2^64 fresh buckets.
    """
    host = _host_of(unquote(client_address.strip()))[:MAX_ADDRESS_CHARS]
    if not host:
        return UNKNOWN_ADDRESS
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _host_of(address: str) -> str:
    if address.startswith("unix:"):  # local callers have no port to drop
        return address
    for scheme in ("ipv4:", "ipv6:"):
        if address.startswith(scheme):
            address = address[len(scheme):]
    if address.startswith("["):  # [v6]:port
        return address[1:].split("]", 1)[0]
    if address.count(":") == 1:  # v4:port or name:port; a bare v6 address has several colons
        return address.split(":", 1)[0]
    return address


def client_address_of(state: CallState | None) -> str:
    if state is None:
        return ""
    return state.client_address or state.peer


def rate_limited(group: str, retry_after_ms: int) -> ResourceExhausted:
    return ResourceExhausted(
        message=f"too many requests; retry in {retry_after_ms / 1000:.3g} s",
        reason="RATE_LIMITED",
        metadata={"group": group},
        retry_after_ms=retry_after_ms,
    )


class RateLimits:
    """The rate-limit stage of the pipeline, for the calls authentication has not charged already."""

    def __init__(self, limiter: RateLimiter, policy: RateLimitPolicy) -> None:
        self._limiter = limiter
        self.policy = policy

    async def enforce(self, plan: MethodPlan, state: CallState) -> None:
        """Charge the call's buckets; raise RESOURCE_EXHAUSTED over the limit, UNAVAILABLE without Redis."""
        group = plan.rate_group
        if group is None or state.rate_limit_charged:
            return
        buckets = self.policy.buckets_for(group, state.principal, client_address_of(state))
        try:
            retry_after_ms = await self._limiter.acquire(buckets)
        except redis.exceptions.RedisError as error:
            logger.warning("rate limiter unavailable in %s: %s", plan.method, type(error).__name__)
            raise ServiceUnavailable(
                message="the rate limiter is not reachable right now; retry shortly",
                reason="RATE_LIMITER_UNAVAILABLE",
            ) from None
        if retry_after_ms > 0:
            raise rate_limited(group, retry_after_ms)
