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
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import redis.asyncio as redis_asyncio
import redis.exceptions
from redis.exceptions import NoScriptError

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


class ScriptBatches:
    """Calls of one Lua script made at about the same time, sent to Redis together: while one pipeline is
    out, the calls that come wait for it to return and then go out together in the next one — one write,
    one read, one wake-up of the event loop for all of them. Each call still gets its own answer (or its own error), and the
    script runs once per call, atomically, exactly as with EVALSHA alone.

    Why: measured in a gRPC server pinned to one core, one EVALSHA through redis-py cost about 250 µs of
    CPU per call (the same round trip through a bare asyncio stream cost 48 µs); a server makes one per
    call (interceptors/authentication.py). Written here because redis-py has pipelines but does not
    gather concurrent callers into one (no auto-pipelining).

    A single Redis only: on a Redis Cluster each call's keys may live on another node, and redis-py's
    cluster pipeline has error paths of its own, so RateLimiter sends each call alone there."""

    def __init__(self, client: redis_asyncio.Redis, script: str) -> None:
        self._client = client
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._waiting: list[tuple[Sequence[str], Sequence[int], asyncio.Future[Any]]] = []
        # One batch out at a time: the calls that come meanwhile go together in the next, as soon as it
        # is back (a call that finds none out goes at the next pass of the event loop, alone if need be).
        self._sending: set[asyncio.Task[None]] = set()  # referenced until done (asyncio keeps weak ones)
        self._scheduled = False
        self.batches = 0  # pipelines sent, and the calls in them (tests, and a measure of the batching)
        self.calls = 0

    async def run(self, keys: Sequence[str], args: Sequence[int]) -> Any:
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((keys, args, answer))
        if not self._sending and not self._scheduled:
            self._schedule()
        return await answer

    def _schedule(self) -> None:
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._send_waiting)

    def _send_waiting(self) -> None:
        self._scheduled = False
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if self._waiting and not self._scheduled:  # the calls that came while this batch was out
            self._schedule()

    async def _send(self, batch: list[tuple[Sequence[str], Sequence[int], asyncio.Future[Any]]]) -> None:
        calls = [(keys, args, answer) for keys, args, answer in batch if not answer.done()]  # not given up
        try:
            results = await self._evalsha(calls)
            forgotten = [index for index, result in enumerate(results) if isinstance(result, NoScriptError)]
            if forgotten:  # Redis restarted or failed over and lost its scripts: load it again, resend those
                await self._client.script_load(self._script)
                again = await self._evalsha([calls[index] for index in forgotten])
                for index, result in zip(forgotten, again):
                    results[index] = result
        except Exception as error:
            for _, _, answer in calls:
                if not answer.done():
                    answer.set_exception(error)
            return
        for (_, _, answer), result in zip(calls, results):
            if answer.done():
                continue
            if isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set_result(result)

    async def _evalsha(self, calls: list[tuple[Sequence[str], Sequence[int], asyncio.Future[Any]]]) -> list[Any]:
        self.batches += 1
        self.calls += len(calls)
        pipeline = self._client.pipeline(transaction=False)
        for keys, args, _ in calls:
            pipeline.evalsha(self._sha, len(keys), *keys, *args)
        try:
            return await pipeline.execute(raise_on_error=False)
        except (AttributeError, TypeError, RuntimeError) as error:
            from storage.redis_store import closed_writer_race  # here: redis_store imports this module's users

            if closed_writer_race(error):
                raise redis.exceptions.ConnectionError("the Redis connection closed under a pipeline") from error
            raise


class RateLimiter:
    def __init__(
        self, client: RedisClient, key_prefix: str = RATE_LIMIT_PREFIX, timeout_s: float = DEFAULT_TIMEOUT_S,
        batch: bool = True,
    ) -> None:
        self._client = client
        self._key_prefix = key_prefix
        # The client's socket timeouts bound each attempt; this bounds the whole call, retries included.
        self._timeout_s = timeout_s
        # On a single Redis, concurrent calls share a pipeline (ScriptBatches); on a cluster (and with any
        # other client) register_script sends EVALSHA and falls back to loading the script on NOSCRIPT.
        # `batch=False` sends each call alone (tools/bench/per_call.py measures the difference).
        batches = batch and isinstance(client, redis_asyncio.Redis)
        self._batches = ScriptBatches(client, ADMIT_SCRIPT) if batches else None
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
                if self._batches is not None:
                    answer = int(await self._batches.run(keys, arguments))
                else:
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

