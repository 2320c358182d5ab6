"""The object store keeps what it acknowledged: earlier versions of overwritten or deleted receipts,
and (as a cluster) every object through the loss of a volume server. Real weed processes, no mocks."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from minio import Minio
from minio.error import S3Error

from localstack.processes import free_port
from localstack.seaweedfs import start_seaweedfs


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
