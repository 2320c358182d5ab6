"""S3-compatible object storage (receipts, documents) under a per-tenant prefix.

The `minio` client is synchronous; every call runs in a worker thread so the
event loop never blocks on the network.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import timedelta

import urllib3
from minio import Minio

from server.config import Settings

MAX_OBJECT_BYTES = 10 << 20
MAX_PRESIGNED_EXPIRY_S = 3_600


def build_minio(settings: Settings) -> Minio:
    http_client = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=2.0, read=10.0),
        retries=urllib3.Retry(total=1, backoff_factor=0.2),
        maxsize=16,
    )
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=settings.s3_secure,
        http_client=http_client,
    )


def tenant_object_key(tenant_id: uuid.UUID, relative_key: str) -> str:
    """Every object of a tenant lives under `tenants/{tenant_id}/`; keys cannot climb out of it."""
    parts = relative_key.split("/")
    if not relative_key or any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"invalid object key {relative_key!r}")
    return f"tenants/{tenant_id}/{relative_key}"


class ObjectStore:
    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    async def put(self, tenant_id: uuid.UUID, relative_key: str, data: bytes, content_type: str) -> str:
        if len(data) > MAX_OBJECT_BYTES:
            raise ValueError(f"object larger than {MAX_OBJECT_BYTES} bytes")
        key = tenant_object_key(tenant_id, relative_key)
        await asyncio.to_thread(
            self._client.put_object, self._bucket, key, io.BytesIO(data), len(data), content_type=content_type
        )
        return key

    async def get(self, tenant_id: uuid.UUID, relative_key: str) -> bytes:
        key = tenant_object_key(tenant_id, relative_key)

        def read() -> bytes:
            response = self._client.get_object(self._bucket, key)
            try:
                return response.read(MAX_OBJECT_BYTES + 1)[:MAX_OBJECT_BYTES]
            finally:
                response.close()
                response.release_conn()

        return await asyncio.to_thread(read)

    async def presigned_get(self, tenant_id: uuid.UUID, relative_key: str, expires_s: int) -> str:
        """A URL that reads one object of the tenant without credentials until it expires.

        The signature covers the full key, so the URL cannot be bent to another tenant's object.
        Async because the client may first ask the server for the bucket's region.
        """
        if not 1 <= expires_s <= MAX_PRESIGNED_EXPIRY_S:
            raise ValueError(f"expires_s must be between 1 and {MAX_PRESIGNED_EXPIRY_S}")
        key = tenant_object_key(tenant_id, relative_key)
        return await asyncio.to_thread(
            self._client.presigned_get_object, self._bucket, key, expires=timedelta(seconds=expires_s)
        )

    async def reachable(self) -> bool:
        try:
            return await asyncio.to_thread(self._client.bucket_exists, self._bucket)
        except Exception:  # any failure means "not usable right now"
            return False
