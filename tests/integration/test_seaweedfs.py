"""The object store keeps what it acknowledged: earlier versions of overwritten or deleted receipts,
and (as a cluster) every object through the loss of a volume server. Real weed processes, no mocks."""

from __future__ import annotations

import asyncio
import io
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from minio import Minio
from minio.error import S3Error

from localstack.processes import free_port, port_is_free
from localstack.seaweedfs import CLUSTER_VOLUME_SERVERS, SeaweedFSCluster, start_seaweedfs, start_seaweedfs_cluster
from domain.config import Settings
from storage.object_store import ObjectStore, build_minio

OBJECTS_PER_PHASE = 12
OBJECT_BYTES = 8 << 10
# A write right after a volume server dies may need the master to grow a volume on the two servers
# left (the old ones lost a copy and turned read-only); measured well under a second.
WRITE_REROUTE_S = 10.0
MASTER_NOTICE_S = 5.0  # the master drops a killed volume server when its heartbeat stream breaks
SEAWEEDFS_DEFAULT_PORTS = {9333, 19333, 8080, 18080, 8888, 18888, 8333, 18333, 7333, 8181, 9101, 6060}


def assert_deleted_receipt_recoverable(client: Minio, bucket: str) -> None:
    """A receipt overwritten and then deleted is gone from plain reads, but both versions read back by id."""
    key = f"tenants/{uuid.uuid4()}/receipts/{uuid.uuid4()}.json"
    first = client.put_object(bucket, key, io.BytesIO(b'{"amountMinor": 100}'), 20)
    second = client.put_object(bucket, key, io.BytesIO(b'{"amountMinor": 999}'), 20)
    client.remove_object(bucket, key)
    with pytest.raises(S3Error, match="NoSuchKey"):
        client.get_object(bucket, key)
    versions = {item.version_id: item for item in client.list_objects(bucket, prefix=key, include_version=True)}
    assert {first.version_id, second.version_id} < set(versions)
    assert [item.is_delete_marker for item in versions.values()].count(True) == 1
    assert client.get_object(bucket, key, version_id=first.version_id).read() == b'{"amountMinor": 100}'
    assert client.get_object(bucket, key, version_id=second.version_id).read() == b'{"amountMinor": 999}'


def test_mini_versions_the_application_bucket_only(tmp_path: Path) -> None:
    """`weed mini` turns versioning on for the application's bucket (a deleted receipt reads back by
    version id) and leaves the backup bucket unversioned, also after a restart."""
    data_dir, logs = tmp_path / "state" / "seaweedfs", tmp_path / "logs"
    weed = start_seaweedfs(data_dir, free_port(), logs)
    try:
        client = weed.client()
        assert client.get_bucket_versioning(weed.bucket).status == "Enabled"
        assert client.get_bucket_versioning(weed.backup_bucket).status is None  # never set
        assert_deleted_receipt_recoverable(client, weed.bucket)
    finally:
        weed.stop()
    weed = start_seaweedfs(data_dir, free_port(), logs)
    try:
        assert weed.client().get_bucket_versioning(weed.bucket).status == "Enabled"
    finally:
        weed.stop()


def eventually(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until condition() held; fails after timeout_s."""
    started_s = time.monotonic()
    while not condition():
        assert time.monotonic() - started_s < timeout_s, f"not within {timeout_s} s: {what}"
        time.sleep(0.1)
    return time.monotonic() - started_s


def application_store(cluster: SeaweedFSCluster) -> ObjectStore:
    """The object store as the servers build it (storage/object_store.py: short timeouts, one retry)."""
    settings = Settings(s3_endpoint=cluster.endpoint, s3_access_key=cluster.access_key,
                        s3_secret_key=cluster.secret_key, s3_bucket=cluster.bucket)
    return ObjectStore(build_minio(settings), settings.s3_bucket)


async def write_objects(store: ObjectStore, tenant_id: uuid.UUID, phase: str) -> dict[str, bytes]:
    objects = {f"documents/{phase}-{index}.bin": os.urandom(OBJECT_BYTES + index) for index in range(OBJECTS_PER_PHASE)}
    for key, data in objects.items():
        await store.put(tenant_id, key, data, "application/octet-stream")
    return objects


async def assert_all_readable(store: ObjectStore, tenant_id: uuid.UUID, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        assert await store.get(tenant_id, key) == data, key


async def first_write_after_kill(store: ObjectStore, tenant_id: uuid.UUID) -> float:
    """Seconds until a write succeeds again (each attempt bounded by the application's client settings)."""
    started_s = time.monotonic()
    while True:
        try:
            await store.put(tenant_id, "documents/first-after-kill.bin", b"x" * OBJECT_BYTES, "application/octet-stream")
            return time.monotonic() - started_s
        except Exception:  # noqa: BLE001 - any failure means "not re-routed yet"
            assert time.monotonic() - started_s < WRITE_REROUTE_S, "writes did not resume after a volume server died"
            await asyncio.sleep(0.2)


def assert_separate_processes_on_chosen_ports(cluster: SeaweedFSCluster) -> None:
    """Master, three volume servers, filer and S3 gateway: six processes, each on its own chosen loopback ports."""
    pids = {node.name: node.process.pid for node in cluster.nodes if node.process is not None}
    assert len(set(pids.values())) == len(cluster.nodes) == CLUSTER_VOLUME_SERVERS + 3
    for node in cluster.nodes:
        listeners = [c.laddr for c in psutil.Process(pids[node.name]).net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert {address.port for address in listeners} <= set(node.ports.values()), node.name
        assert {address.ip for address in listeners} == {"127.0.0.1"}, node.name
    assert not set(cluster.ports.values()) & SEAWEEDFS_DEFAULT_PORTS


def fully_replicated(cluster: SeaweedFSCluster) -> bool:
    copies = cluster.volume_copies(cluster.bucket)
    return bool(copies) and all(len(servers) == 2 for servers in copies.values())


def assert_buckets_as_in_mini(cluster: SeaweedFSCluster) -> None:
    """The application bucket is versioned; the backup identity reaches its own bucket only."""
    assert cluster.client().get_bucket_versioning(cluster.bucket).status == "Enabled"
    backup = cluster.backup_client()
    backup.put_object(cluster.backup_bucket, "base/full.tar", io.BytesIO(b"backup"), 6)
    with pytest.raises(S3Error, match="AccessDenied"):
        backup.put_object(cluster.bucket, "tenants/x/receipts/forged.json", io.BytesIO(b"{}"), 2)


async def test_cluster_keeps_every_object_and_takes_writes_while_a_volume_server_is_dead(tmp_path: Path) -> None:
    """With one volume server kill -9ed, every object reads back, writes resume within a bound and a deleted
    receipt's versions read back; once it is back, every volume has its two copies again, so losing
    another server still loses nothing; after every process is SIGKILLed, the cluster comes back on its
    ports with every object. (One test: each graceful cluster stop costs the filer's 15 s.)"""
    data_dir, logs = tmp_path / "state" / "seaweedfs", tmp_path / "logs"
    cluster = start_seaweedfs_cluster(data_dir, free_port(), logs)
    try:
        assert_separate_processes_on_chosen_ports(cluster)
        assert_buckets_as_in_mini(cluster)
        assert all(" up " in line for line in cluster.topology_lines())
        store, tenant_id = application_store(cluster), uuid.uuid4()
        before = await write_objects(store, tenant_id, "before")
        assert fully_replicated(cluster)

        copies = cluster.volume_copies(cluster.bucket)
        busiest = max(range(CLUSTER_VOLUME_SERVERS),
                      key=lambda index: sum(cluster.volume_servers[index].address in servers for servers in copies.values()))
        victim = cluster.kill_volume_server(busiest)
        eventually(lambda: victim.address not in cluster.registered_volume_servers(), MASTER_NOTICE_S, "master drops it")
        await assert_all_readable(store, tenant_id, before)
        assert await first_write_after_kill(store, tenant_id) < WRITE_REROUTE_S
        during = await write_objects(store, tenant_id, "during")
        await assert_all_readable(store, tenant_id, during)
        assert_deleted_receipt_recoverable(cluster.client(), cluster.bucket)
        assert f"{victim.name:<14} {victim.address:<16} down" in "\n".join(cluster.topology_lines())
        assert not fully_replicated(cluster)  # the victim's volumes are down to one copy

        cluster.restart_volume_server(busiest)
        eventually(lambda: fully_replicated(cluster), MASTER_NOTICE_S, "every volume has two copies again")
        await assert_all_readable(store, tenant_id, {**before, **during})

        # What was written while the victim was down went to volumes on the two others: kill one of those.
        without_victim = [servers for servers in cluster.volume_copies(cluster.bucket).values() if victim.address not in servers]
        second = next(index for index, node in enumerate(cluster.volume_servers) if node.address in without_victim[0])
        cluster.kill_volume_server(second)
        eventually(lambda: len(cluster.registered_volume_servers()) == CLUSTER_VOLUME_SERVERS - 1, MASTER_NOTICE_S,
                   "master drops the second server")
        await assert_all_readable(store, tenant_id, {**before, **during})

        cluster.kill()
        keys = (cluster.access_key, cluster.secret_key)
        cluster = start_seaweedfs_cluster(data_dir, cluster.ports["s3.port"], logs, ports=cluster.ports)
        assert (cluster.access_key, cluster.secret_key) == keys
        await assert_all_readable(application_store(cluster), tenant_id, {**before, **during})
        assert cluster.client().get_bucket_versioning(cluster.bucket).status == "Enabled"
    finally:
        cluster.stop()
    assert not any(node.alive() for node in cluster.nodes)
    assert all(port_is_free(port) for port in cluster.ports.values())
