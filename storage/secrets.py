"""The secrets store (OpenBao / Vault KV v2) via hvac.

Signing keys and other secrets are read from here, never from the repository
or the environment of a production process (the token excepted). hvac is
synchronous; calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import hvac
import requests

from domain.config import Settings

KV_MOUNT = "secret"
SECRET_PREFIX = "emoney/"
# What OpenBao/Vault answers (HTTP 400) when a check-and-set write loses.
_CAS_MISMATCH = "check-and-set parameter did not match"


class SecretVersionConflict(Exception):
    """A check-and-set write lost: the secret changed after it was read."""


@dataclass(frozen=True)
class VersionedSecret:
    # None when the secret was never written or its latest version is deleted.
    values: dict[str, Any] | None
    # The KV v2 version to pass to `write_if_version`; 0 when the secret was never written.
    version: int


class SecretsStore:
    def __init__(self, client: hvac.Client) -> None:
        self._client = client

    async def read(self, path: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            try:
                response = self._client.secrets.kv.v2.read_secret_version(
                    path=SECRET_PREFIX + path, mount_point=KV_MOUNT, raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                return None
            return response["data"]["data"]

        return await asyncio.to_thread(read)

    async def write(self, path: str, values: dict[str, Any]) -> None:
        await asyncio.to_thread(
            self._client.secrets.kv.v2.create_or_update_secret,
            path=SECRET_PREFIX + path,
            secret=values,
            mount_point=KV_MOUNT,
        )

    async def read_versioned(self, path: str) -> VersionedSecret:
        def read() -> VersionedSecret:
            try:
                response = self._client.secrets.kv.v2.read_secret_version(
                    path=SECRET_PREFIX + path, mount_point=KV_MOUNT, raise_on_deleted_version=False
                )
            except hvac.exceptions.InvalidPath:
                return VersionedSecret(values=None, version=0)
            return VersionedSecret(values=response["data"]["data"], version=response["data"]["metadata"]["version"])

        return await asyncio.to_thread(read)

    async def write_if_version(self, path: str, values: dict[str, Any], version: int) -> None:
        """KV v2 check-and-set: write only while the secret is still at `version` (0: not yet written),
        so two processes updating it at once cannot overwrite each other."""

        def write() -> None:
            try:
                self._client.secrets.kv.v2.create_or_update_secret(
                    path=SECRET_PREFIX + path, secret=values, cas=version, mount_point=KV_MOUNT
                )
            except hvac.exceptions.InvalidRequest as error:
                if _CAS_MISMATCH in str(error):
                    raise SecretVersionConflict(f"secret {path} changed after version {version}") from None
                raise

        await asyncio.to_thread(write)

    async def reachable(self) -> bool:
        def probe() -> bool:
            try:
                health = self._client.sys.read_health_status(method="GET")
            except (requests.RequestException, hvac.exceptions.VaultError):
                return False
            # hvac gives the JSON body for 200 (active, unsealed) and the raw response otherwise
            # (sealed 503, standby 429, uninitialised 501).
            if isinstance(health, dict):
                return bool(health.get("initialized")) and not health.get("sealed", True)
            return getattr(health, "status_code", 0) == 200

        return await asyncio.to_thread(probe)


def build_secrets(settings: Settings) -> SecretsStore:
    session = requests.Session()
    client = hvac.Client(url=settings.vault_address, token=settings.vault_token or None, timeout=5, session=session)
    return SecretsStore(client)
