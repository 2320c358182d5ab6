"""S3-compatible object storage (receipts, documents) under a per-tenant prefix.

The `minio` client is synchronous; every call runs in a worker thread so the
event loop never blocks on the network.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import urllib3
from minio import Minio

from domain.config import Settings

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


def build_public_signer(settings: Settings) -> Minio | None:
    """A client that only signs links for the address apps use (EMONEY_S3_PUBLIC_URL), or None when that
    is S3_ENDPOINT. A V4 signature covers the host, so a link signed for the servers' address and
    rewritten afterwards would be refused; this client signs for the public host itself. Its region is
    given, so signing never sends a request (to an address the servers may not even reach)."""
    if not settings.s3_public_url:
        return None
    public = urlsplit(settings.s3_public_url)
    return Minio(
        public.netloc,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=public.scheme == "https",
        region=settings.s3_region,
    )


def build_object_store(settings: Settings) -> ObjectStore:
    return ObjectStore(build_minio(settings), settings.s3_bucket, signer=build_public_signer(settings))


def tenant_object_key(tenant_id: uuid.UUID, relative_key: str) -> str:
    """Every object of a tenant lives under `tenants/{tenant_id}/`; keys cannot climb out of it."""
    parts = relative_key.split("/")
    if not relative_key or any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"invalid object key {relative_key!r}")
    return f"tenants/{tenant_id}/{relative_key}"


class ObjectStore:
    def __init__(self, client: Minio, bucket: str, signer: Minio | None = None) -> None:
        self._client = client
        self._bucket = bucket
        # Signs pre-signed links for the address apps use (build_public_signer); default: the client.
        self._signer = signer or client

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
        """A URL that reads one object of the tenant without credentials until it expires, on the
        address apps use (EMONEY_S3_PUBLIC_URL, else S3_ENDPOINT).

        The signature covers the full key, so the URL cannot be bent to another tenant's object.
        Async because the internal client may first ask the server for the bucket's region.
        """
        if not 1 <= expires_s <= MAX_PRESIGNED_EXPIRY_S:
            raise ValueError(f"expires_s must be between 1 and {MAX_PRESIGNED_EXPIRY_S}")
        key = tenant_object_key(tenant_id, relative_key)
        return await asyncio.to_thread(
            self._signer.presigned_get_object, self._bucket, key, expires=timedelta(seconds=expires_s)
        )

    async def reachable(self) -> bool:
        try:
            return await asyncio.to_thread(self._client.bucket_exists, self._bucket)
        except Exception:  # any failure means "not usable right now"
            return False
