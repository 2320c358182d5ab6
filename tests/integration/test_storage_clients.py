"""The server's object-storage and secrets clients against the real SeaweedFS and OpenBao."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
import requests
from minio.error import S3Error

from domain.config import Settings
from storage.object_store import ObjectStore, build_minio, build_object_store
from storage.secrets import build_secrets


@pytest.fixture
def settings(stack) -> Settings:
    endpoints = stack.endpoints
    return Settings(
        vault_address=endpoints.vault_address,
        vault_token=endpoints.vault_token,
        s3_endpoint=endpoints.s3_endpoint,
        s3_access_key=endpoints.s3_access_key,
        s3_secret_key=endpoints.s3_secret_key,
        s3_bucket=endpoints.s3_bucket,
    )


async def test_objects_round_trip_under_the_tenant_prefix(settings):
    """put/get through the async wrapper stores the object under tenants/{id}/ in the bucket."""
    store = ObjectStore(build_minio(settings), settings.s3_bucket)
    tenant = uuid.uuid4()
    key = await store.put(tenant, "receipts/r1.json", b'{"amountMinor": "150"}', "application/json")
    assert key == f"tenants/{tenant}/receipts/r1.json"
    assert await store.get(tenant, "receipts/r1.json") == b'{"amountMinor": "150"}'
    assert await store.reachable()


async def test_presigned_links_are_signed_for_the_public_address(settings):
    """With EMONEY_S3_PUBLIC_URL (here `localhost`, a name the servers do not use for the store), a
    pre-signed link names that address and reads the object there. A link signed for the servers'
    address with its host rewritten afterwards is refused: the signature covers the host."""
    port = settings.s3_endpoint.rsplit(":", 1)[1]
    public = replace(settings, s3_public_url=f"http://localhost:{port}")
    store, tenant = build_object_store(public), uuid.uuid4()
    await store.put(tenant, "receipts/public.json", b'{"amountMinor": "150"}', "application/json")
    url = await store.presigned_get(tenant, "receipts/public.json", 60)
    assert url.startswith(f"http://localhost:{port}/{settings.s3_bucket}/tenants/{tenant}/receipts/public.json?")
    assert requests.get(url, timeout=5).content == b'{"amountMinor": "150"}'
    internal = await build_object_store(settings).presigned_get(tenant, "receipts/public.json", 60)
    assert internal.startswith(f"http://{settings.s3_endpoint}/")
    rewritten = internal.replace(f"http://{settings.s3_endpoint}/", f"http://localhost:{port}/", 1)
    assert requests.get(rewritten, timeout=5).status_code == 403


async def test_another_tenant_cannot_read_the_object_by_relative_key(settings):
    """The same relative key under another tenant is a different, missing object."""
    store = ObjectStore(build_minio(settings), settings.s3_bucket)
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    await store.put(owner, "documents/id.pdf", b"%PDF-1.7", "application/pdf")
    with pytest.raises(S3Error) as raised:
        await store.get(stranger, "documents/id.pdf")
    assert raised.value.code == "NoSuchKey"


async def test_wrong_s3_keys_are_refused(settings):
    """Object storage authenticates: a wrong secret key cannot write."""
    wrong = Settings(**{**settings.__dict__, "s3_secret_key": "not-the-key"})
    store = ObjectStore(build_minio(wrong), settings.s3_bucket)
    with pytest.raises(S3Error):
        await store.put(uuid.uuid4(), "x.txt", b"x", "text/plain")


async def test_secrets_round_trip_with_the_app_token(settings):
    """The server's token can write and read secrets under secret/emoney/ in OpenBao."""
    secrets = build_secrets(settings)
    path = f"test/{uuid.uuid4().hex}"
    await secrets.write(path, {"signing_key": "abc"})
    assert await secrets.read(path) == {"signing_key": "abc"}
    assert await secrets.read(f"test/missing-{uuid.uuid4().hex}") is None
    assert await secrets.reachable()


async def test_the_app_token_cannot_read_outside_its_prefix(stack, settings):
    """The server's token is scoped by policy: secrets outside secret/emoney/ are forbidden."""
    import hvac

    root = hvac.Client(url=settings.vault_address, token=stack.openbao.root_token)
    root.secrets.kv.v2.create_or_update_secret(path="other-team/key", secret={"k": "v"}, mount_point="secret")
    app = hvac.Client(url=settings.vault_address, token=settings.vault_token)
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v2.read_secret_version(path="other-team/key", mount_point="secret", raise_on_deleted_version=True)


async def test_an_unreachable_secrets_store_is_reported_not_raised():
    """reachable() is False (not an exception) when nothing listens at VAULT_ADDR."""
    from localstack.processes import free_port

    secrets = build_secrets(Settings(vault_address=f"http://127.0.0.1:{free_port()}", vault_token="x"))
    assert await secrets.reachable() is False
