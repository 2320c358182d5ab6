"""Redis-backed rate limits: GCRA buckets checked and consumed atomically in one round trip.

GCRA (the generic cell rate algorithm) keeps one number per bucket: the
*theoretical arrival time* (TAT), the moment the bucket would be full again. A
limit of `rate_per_s` with `burst` means each request pushes the TAT forward by
the emission interval `1 / rate_per_s`, and a request is allowed while the TAT
it would leave behind is at most `burst` intervals in the future. So a fresh
bucket admits exactly `burst` requests at once, then one per interval.

One Lua script checks every bucket a call touches (for example the caller's own
bucket and its tenant's) and consumes from all of them or from none: a call
refused by its tenant's bucket does not also use up its principal's allowance.
The clock is Redis's (`TIME`), so every server process measures the same time.
Each key expires by itself when its bucket would be full again, so idle callers
cost no memory.

Fail closed: when Redis is down or slow, `acquire` raises a `redis` error within
`timeout_s` and the caller refuses the request. Redis also holds the token
revocation list, so a server that cannot reach Redis cannot tell a revoked
token from a good one either; letting calls through unlimited would turn a
Redis outage into an unmetered brute-force window.

The keys of one call are used in one script, so on a Redis Cluster they must
share a hash slot: the keys are tagged so that they do (storage/redis_keys.py),
and `acquire` refuses keys that do not, on a single Redis too, so that a key
layout that would fail on a cluster fails in every test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import redis.exceptions

from storage.redis_keys import RATE_LIMIT_PREFIX, share_one_slot

if TYPE_CHECKING:  # storage.redis_store reads domain.config, which imports this module
    from storage.redis_store import RedisClient

MICROSECONDS_PER_SECOND = 1_000_000
# Limits on the limits: an interval below 1 µs cannot be represented, and one above a day is a
# misconfiguration (a bucket that refills once a week is a ban, not a rate limit).
MAX_RATE_PER_S = 1_000_000.0
MIN_RATE_PER_S = 1 / 86_400
MAX_BURST = 1_000_000
MAX_BUCKETS_PER_CALL = 8
DEFAULT_TIMEOUT_S = 1.0

# KEYS: first ARGV[1] denial keys (an authenticated call's revocation, suspension and disabling marks, in
# order of precedence), then one per bucket. ARGV[2]: cost. Then, per bucket j, ARGV[2j+1]: emission
# interval in µs and ARGV[2j+2]: tolerance in µs (interval × burst). Returns -i when denial key i exists
# (nothing consumed), 0 when allowed (all buckets consumed), else the longest wait in ms after which the
# same call would be allowed (nothing consumed). All arithmetic is on whole microseconds, exact in Lua's
# doubles (below 2^53).
ADMIT_SCRIPT = """
redis.replicate_commands()  -- replicate the SETs, not the script, since TIME differs per replica
local denials = tonumber(ARGV[1])
for i = 1, denials do
  if redis.call('EXISTS', KEYS[i]) == 1 then return -i end
end
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local cost = tonumber(ARGV[2])
local new_tats_us = {}
local retry_after_us = 0
for j = 1, #KEYS - denials do
  local key = KEYS[denials + j]
  local interval_us = tonumber(ARGV[2 * j + 1])
  local tolerance_us = tonumber(ARGV[2 * j + 2])
  local tat_us = tonumber(redis.call('GET', key) or '0')
  if tat_us < now_us then tat_us = now_us end
  -- A TAT left by a slower, older limit is capped, so a changed limit takes effect at once.
  if tat_us > now_us + tolerance_us then tat_us = now_us + tolerance_us end
  local new_tat_us = tat_us + interval_us * cost
  local allowed_at_us = new_tat_us - tolerance_us
  if allowed_at_us > now_us then
    retry_after_us = math.max(retry_after_us, allowed_at_us - now_us)
  end
  new_tats_us[j] = new_tat_us
end
if retry_after_us > 0 then
  return math.ceil(retry_after_us / 1000)
end
for j = 1, #KEYS - denials do
  local full_again_ms = math.ceil((new_tats_us[j] - now_us) / 1000)
  redis.call('SET', KEYS[denials + j], string.format('%d', new_tats_us[j]), 'PX', full_again_ms)
end
return 0
"""


@dataclass(frozen=True)
class Admission:
    """One call's answer: `denied` (the index of the first denial key that exists) or `retry_after_ms`
    (0: allowed and consumed)."""

    denied: int | None
    retry_after_ms: int


@dataclass(frozen=True)
class Limit:
    """GCRA parameters: a sustained `rate_per_s`, and up to `burst` requests at once."""

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not MIN_RATE_PER_S <= self.rate_per_s <= MAX_RATE_PER_S:
            raise ValueError(f"rate must be between one a day and {MAX_RATE_PER_S:g}/s, not {self.rate_per_s:g}/s")
        if not 1 <= self.burst <= MAX_BURST:
            raise ValueError(f"burst must be between 1 and {MAX_BURST}, not {self.burst}")

    @property
    def emission_interval_us(self) -> int:
        return max(1, round(MICROSECONDS_PER_SECOND / self.rate_per_s))

    @property
    def tolerance_us(self) -> int:
        return self.emission_interval_us * self.burst


@dataclass(frozen=True)
class Bucket:
    """One counter: `key` (below the limiter's prefix) names who is counted, `limit` how strictly."""

    key: str
    limit: Limit


class RateLimiter:
    def __init__(
        self, client: RedisClient, key_prefix: str = RATE_LIMIT_PREFIX, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._client = client
        self._key_prefix = key_prefix
        # The client's socket timeouts bound each attempt; this bounds the whole call, retries included.
        self._timeout_s = timeout_s
        # register_script sends EVALSHA and falls back to loading the script on NOSCRIPT.
        self._script = client.register_script(ADMIT_SCRIPT)

    async def acquire(self, buckets: Sequence[Bucket], cost: int = 1) -> int:
        """0 if the call is allowed (every bucket consumed); else the wait in ms (> 0), nothing consumed.

        Raises a `redis.exceptions.RedisError` when Redis cannot answer within the timeout, and a ValueError
        for a call no Redis should see (no buckets, a repeated one, a cost above a burst, keys in two slots).
        """
        return (await self.admit([], buckets, cost)).retry_after_ms

    async def admit(self, denial_keys: Sequence[str], buckets: Sequence[Bucket], cost: int = 1) -> Admission:
        """`acquire`, first checking that none of `denial_keys` exists (an authenticated call's revocation
        marks, storage/sessions.py), in the same round trip: a denied call consumes nothing."""
        _check_request(buckets, cost)
        keys = [*denial_keys, *(self._key_prefix + bucket.key for bucket in buckets)]
        if not share_one_slot(keys):
            raise ValueError(f"the keys of one call must share a hash slot (one hash tag), not {keys}")
        arguments: list[int] = [len(denial_keys), cost]
        for bucket in buckets:
            arguments += [bucket.limit.emission_interval_us, bucket.limit.tolerance_us]
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = int(await self._script(keys=keys, args=arguments))
        except TimeoutError as error:
            raise redis.exceptions.TimeoutError(f"rate limiter: no answer within {self._timeout_s:g} s") from error
        return Admission(-answer - 1, 0) if answer < 0 else Admission(None, answer)


def _check_request(buckets: Sequence[Bucket], cost: int) -> None:
    if not 1 <= len(buckets) <= MAX_BUCKETS_PER_CALL:
        raise ValueError(f"between 1 and {MAX_BUCKETS_PER_CALL} buckets per call, not {len(buckets)}")
    if len({bucket.key for bucket in buckets}) != len(buckets):
        raise ValueError("each bucket may appear only once per call")
    if cost < 1:
        raise ValueError(f"cost must be at least 1, not {cost}")
    for bucket in buckets:
        # A cost above the burst could never be allowed; refusing it forever would hide the bug.
        if cost > bucket.limit.burst:
            raise ValueError(f"cost {cost} exceeds the burst {bucket.limit.burst} of bucket {bucket.key!r}")

