"""REDIS_URL: one Redis, or a Redis Cluster (`cluster=true`, more startup nodes as `node=`); and the
session keys' hash tags."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as redis_asyncio
from redis.crc import key_slot

from domain.config import Settings
from storage.redis_keys import (
    disabled_subject_key,
    revoked_token_key,
    share_one_slot,
    suspended_tenant_key,
    tenant_tag,
)
from storage.redis_store import FailClosedRedisCluster, RedisLocation, build_redis, parse_redis_url

TENANT = uuid.UUID("6f1c9a52-0d4e-4c41-9d0e-3f1a2b3c4d5e")


def test_a_plain_url_is_one_redis_and_reaches_redis_py_unchanged():
    """Without `cluster`, the URL is read as before: one Redis."""
    url = "redis://:s3cret@127.0.0.1:56379/0"
    assert parse_redis_url(url) == RedisLocation(url, cluster=False)


def test_cluster_true_names_a_cluster_and_its_startup_nodes():
    """`cluster=true` asks for a cluster; each `node=host:port` is one more startup node; both leave the URL."""
    location = parse_redis_url("redis://:pw@127.0.0.1:47379/0?cluster=true&node=127.0.0.1:47380&node=[::1]:47381")
    assert location == RedisLocation(
        "redis://:pw@127.0.0.1:47379/0", cluster=True, startup_nodes=(("127.0.0.1", 47380), ("::1", 47381))
    )


def test_other_query_parameters_still_reach_redis_py():
    """Only our own parameters are taken out of the URL."""
    location = parse_redis_url("redis://127.0.0.1:7000/0?cluster=TRUE&client_name=emoney")
    assert location.cluster and location.url == "redis://127.0.0.1:7000/0?client_name=emoney"
    assert not parse_redis_url("redis://127.0.0.1:7000/0?cluster=false").cluster


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:7000/0?cluster=maybe", "as true or false"),
        ("redis://127.0.0.1:7000/0?cluster=true&cluster=false", "given once"),
        ("redis://127.0.0.1:7000/0?node=127.0.0.1:7001", "`cluster=true` is missing"),
        ("redis://127.0.0.1:7000/3?cluster=true", "database 0 only"),
        ("redis://127.0.0.1:7000/0?cluster=true&node=127.0.0.1", "is not host:port"),
        ("redis://127.0.0.1:7000/0?cluster=true&node=127.0.0.1:99999", "is not host:port"),
    ],
)
def test_malformed_cluster_urls_are_refused_with_a_clear_message(url, message):
    """A typo in REDIS_URL fails at start-up, naming what is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url)


async def test_build_redis_makes_the_client_the_url_asks_for():
    """A cluster URL gives the fail-closed cluster client with every startup node; a plain one the plain client."""
    cluster = build_redis(Settings(redis_url="redis://:pw@127.0.0.1:47379/0?cluster=true&node=127.0.0.1:47380"))
    single = build_redis(Settings(redis_url="redis://:pw@127.0.0.1:56379/0"))
    try:
        assert isinstance(cluster, FailClosedRedisCluster)
        assert {node.name for node in cluster.startup_nodes} == {"127.0.0.1:47379", "127.0.0.1:47380"}
        assert isinstance(single, redis_asyncio.Redis)
    finally:
        await cluster.aclose()
        await single.aclose()


def test_the_keys_one_authenticated_call_reads_together_share_the_tenants_slot():
    """The deny-list MGET's three keys hash to the tenant tag's slot, whatever the token and subject."""
    keys = [
        revoked_token_key(TENANT, uuid.uuid4().hex),
        suspended_tenant_key(TENANT),
        disabled_subject_key(TENANT, f"terminals/{uuid.uuid4()}"),
    ]
    assert share_one_slot(keys)
    assert key_slot(keys[0].encode()) == key_slot(tenant_tag(TENANT).encode())
    assert not share_one_slot([suspended_tenant_key(TENANT), suspended_tenant_key(uuid.UUID(int=TENANT.int + 1))])
