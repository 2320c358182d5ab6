"""The Redis client (sessions, token deny-list and rate limits come with the identity work)."""

from __future__ import annotations

import redis.asyncio as redis_asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from server.config import Settings


def build_redis(settings: Settings) -> redis_asyncio.Redis:
    # Short timeouts: a Redis outage must make calls fail fast, never hang them.
    return redis_asyncio.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        health_check_interval=10,
        max_connections=64,
        decode_responses=False,
        # One immediate retry on a broken connection, on a fresh one: after Redis restarts, every pooled
        # connection is dead and would otherwise fail one call each (SESSION_STORE_UNAVAILABLE) although
        # Redis is back (found by tools/faults). Not on timeouts: a hung Redis still fails within a second.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
    )
