"""The Redis client: one Redis, or a Redis Cluster when REDIS_URL says so.

REDIS_URL is a redis-py URL, `redis://[:password@]host:port/db`. A Redis Cluster is asked for with the
query parameter `cluster=true`: `redis://:password@host:port/0?cluster=true`. The host is a *startup node*
from which the client learns every other node and which slots each master serves; more startup nodes may
follow as `node=host:port` (repeated), so that a server starting while the first one is down still finds
the cluster: `redis://:pw@127.0.0.1:47379/0?cluster=true&node=127.0.0.1:47380&node=127.0.0.1:47381`. All
nodes share the password, and a cluster has database 0 only.

Both clients take the same commands, so the code above runs unchanged on either; the keys are named (with
the hash tags that keep each call's keys in one slot) in storage/redis_keys.py.

Failing closed: a Redis that cannot answer makes calls fail fast with a `redis.exceptions.ConnectionError`
or `TimeoutError`, which callers answer with UNAVAILABLE. On a cluster, every way of not serving a command
— no node reachable, a master dead and not yet replaced by its replica (CLUSTERDOWN, a slot without a
master) — arrives as the same ConnectionError (`ClusterUnavailableError`) once the client's retries are
spent, never as a cluster-specific error that would read as a bug (INTERNAL).
"""

from __future__ import annotations

import traceback

from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as redis_asyncio
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from domain.config import Settings

RedisClient: TypeAlias = "redis_asyncio.Redis | RedisCluster"

CLUSTER_PARAMETER = "cluster"
STARTUP_NODE_PARAMETER = "node"
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
# Short timeouts: a Redis outage must make calls fail fast, never hang them.
SOCKET_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 64  # per node on a cluster
HEALTH_CHECK_INTERVAL_S = 10
# redis-py's cluster client retries at once (it waits only 0.25 s after CLUSTERDOWN), re-reading the slot
# map after a connection error. Two retries find a slot that moved or a replica just promoted; while a
# failover is still under way (a few seconds, cluster-node-timeout plus the election), calls fail within
# milliseconds instead of queueing behind the dead master.
CLUSTER_RETRIES = 2


class ClusterUnavailableError(redis.exceptions.ConnectionError):
    """The cluster cannot serve a command now (no reachable node, a master down, a slot not served).

    A ConnectionError, like an unreachable single Redis, so every caller fails closed the same way.
    """


def closed_writer_race(error: BaseException) -> bool:
    """Whether `error` is redis-py's leak of a write on a connection the peer has just closed.

    redis-py 8.1 (redis/redis-py#4287, #3546; normalised upstream by #4217, not released here) lets such a
    write raise AttributeError ('NoneType' object has no attribute 'writelines') or TypeError from the
    asyncio transport — or, under uvloop, RuntimeError ("unable to perform operation on <TCPTransport
    closed=True ...>; the handler is closed") — instead of ConnectionError, which bypasses every retry and would reach callers as an
    unknown error (the HA soak met it while a Redis master was killed). Matched narrowly: the error must
    come out of redis-py's asyncio connection code.
    """
    if isinstance(error, RuntimeError):
        if "handler is closed" not in str(error):
            return False
    elif not isinstance(error, (AttributeError, TypeError)):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return any(frame.filename.endswith("redis/asyncio/connection.py") for frame in frames[-4:])


class FailClosedRedis(redis_asyncio.Redis):
    """redis-py's client, with a write on a just-closed connection coming out as a ConnectionError."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)
        except (AttributeError, TypeError, RuntimeError) as error:
            if closed_writer_race(error):
                raise redis.exceptions.ConnectionError(f"the Redis connection closed under {args[0]!s}") from error
            raise


class FailClosedRedisCluster(RedisCluster):
    """redis-py's cluster client, whose "cannot serve now" errors come out as ClusterUnavailableError.

    A subclass rather than a wrapper: every command (scripts and PING included) goes through
    `execute_command`, and finding the nodes through `initialize`, so these two are the whole surface.
    Cluster errors that are bugs (keys of one command in different slots: CROSSSLOT, or the client's own
    same-slot check) are left as they are.
    """

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except redis.exceptions.RedisClusterException as error:  # no node reachable, or no agreed slot map
            raise ClusterUnavailableError(f"the Redis Cluster's nodes cannot be found: {error}") from error

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (redis.exceptions.ClusterError, redis.exceptions.SlotNotCoveredError) as error:
            raise ClusterUnavailableError(f"the Redis Cluster cannot serve {args[0]!s} now: {error}") from error
        except (AttributeError, TypeError, RuntimeError) as error:
            if closed_writer_race(error):
                raise ClusterUnavailableError(f"a Redis Cluster connection closed under {args[0]!s}") from error
            raise


@dataclass(frozen=True)
class RedisLocation:
    """REDIS_URL taken apart: the URL redis-py reads, whether it names a cluster, and further startup nodes."""

    url: str
    cluster: bool
    startup_nodes: tuple[tuple[str, int], ...] = ()


def parse_redis_url(url: str) -> RedisLocation:
    """Split off this module's own query parameters (`cluster`, `node`); ValueError when they are malformed."""
    parts = urlsplit(url)
    ours = {CLUSTER_PARAMETER, STARTUP_NODE_PARAMETER}
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [value.lower() for name, value in query if name == CLUSTER_PARAMETER]
    if len(flags) > 1 or (flags and flags[0] not in _TRUE + _FALSE):
        raise ValueError(f"REDIS_URL: `{CLUSTER_PARAMETER}` must be given once, as true or false")
    cluster = bool(flags) and flags[0] in _TRUE
    nodes = tuple(_host_and_port(value) for name, value in query if name == STARTUP_NODE_PARAMETER)
    if nodes and not cluster:
        raise ValueError(f"REDIS_URL: `{STARTUP_NODE_PARAMETER}=` names cluster nodes, but `cluster=true` is missing")
    if cluster and parts.path.strip("/") not in ("", "0"):
        raise ValueError("REDIS_URL: a Redis Cluster has database 0 only")
    rest = urlencode([(name, value) for name, value in query if name not in ours])
    return RedisLocation(urlunsplit(parts._replace(query=rest)), cluster, nodes)


def _host_and_port(text: str) -> tuple[str, int]:
    host, separator, port = text.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"REDIS_URL: `{STARTUP_NODE_PARAMETER}={text}` is not host:port")
    return host.strip("[]"), int(port)


def build_redis(settings: Settings) -> RedisClient:
    location = parse_redis_url(settings.redis_url)
    if location.cluster:
        return _build_cluster(location)
    return FailClosedRedis.from_url(
        location.url,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        max_connections=MAX_CONNECTIONS,
        decode_responses=False,
        # One immediate retry on a broken connection, on a fresh one: after Redis restarts, every pooled
        # connection is dead and would otherwise fail one call each (SESSION_STORE_UNAVAILABLE) although
        # Redis is back (found by tools/faults). Not on timeouts: a hung Redis still fails within a second.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
    )


def _build_cluster(location: RedisLocation) -> FailClosedRedisCluster:
    return FailClosedRedisCluster.from_url(
        location.url,
        startup_nodes=[ClusterNode(host, port) for host, port in location.startup_nodes],
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        max_connections=MAX_CONNECTIONS,
        decode_responses=False,
        retry=Retry(NoBackoff(), CLUSTER_RETRIES),
        # Serve the slots whose master answers even while another master is being replaced; a command for
        # a slot without a master fails on its own (ClusterUnavailableError). The nodes agree:
        # localstack/redis_server.py sets cluster-require-full-coverage no.
        require_full_coverage=False,
    )


# A deny-list entry on a cluster counts as written once a replica has it too (see `set_replicated`).
REPLICA_WAIT_MS = 500


async def set_replicated(client: RedisClient, key: str, value: bytes, ex: int | None = None) -> None:
    """SET `key`; on a cluster, return only once a replica of its master has it, else raise
    ClusterUnavailableError (the caller answers UNAVAILABLE, and its retry is harmless).

    Why: a cluster replicates asynchronously, so a master killed right after a logout could be replaced by a
    replica that never saw the revocation, and the logged-out token would work again until it expires.
    `WAIT 1` makes the write survive the failover (Redis promotes the replica with the most data). WAIT
    counts the writes of its own connection, so after the ordinary SET (which finds the slot's master,
    following moves) the same SET is repeated and WAITed for on one connection to that master, taken from
    redis-py's node pool. A single Redis has no replica: the SET alone, as AOF keeps it across restarts.
    """
    await client.set(key, value, ex=ex)
    if not isinstance(client, RedisCluster):
        return
    try:
        node = client.get_node_from_key(key)
    except redis.exceptions.SlotNotCoveredError as error:
        raise ClusterUnavailableError(f"no master serves {key!r} now") from error
    connection = node.acquire_connection()
    try:
        await connection.send_command("SET", key, value, *(("EX", ex) if ex is not None else ()))
        await connection.read_response()
        await connection.send_command("WAIT", 1, REPLICA_WAIT_MS)
        acknowledged = await connection.read_response()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as error:
        await connection.disconnect()
        raise ClusterUnavailableError(f"the master of {key!r} went away: {error}") from error
    except redis.exceptions.ResponseError as error:  # MOVED/ASK/CLUSTERDOWN: the slot changes hands now
        raise ClusterUnavailableError(f"the slot of {key!r} is moving: {error}") from error
    finally:
        node.release(connection)
    if acknowledged < 1:
        raise ClusterUnavailableError(f"no replica acknowledged {key!r} within {REPLICA_WAIT_MS} ms")


async def ping(client: RedisClient) -> bool:
    """Whether every key can be served now: PING the Redis, or every master of the cluster."""
    if isinstance(client, RedisCluster):
        return bool(await client.ping(target_nodes=RedisCluster.PRIMARIES))
    return bool(await client.ping())
