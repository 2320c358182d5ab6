"""Session state every call checks, kept in Redis: revoked access tokens, suspended tenants and
disabled terminals.

One round trip per authenticated call (MGET of three keys, all tagged with the
caller's tenant so that they share one hash slot on a Redis Cluster; the names
are in storage/redis_keys.py). PostgreSQL remains the source of truth for
suspensions; servers copy them into Redis at start, so a Redis that lost its
data is repaired by the next server start.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from storage.redis_keys import disabled_subject_key, revoked_token_key, suspended_tenant_key

if TYPE_CHECKING:  # storage.redis_store reads domain.config, which imports this module
    from storage.redis_store import RedisClient


class SessionStore:
    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def revoke_access_token(self, tenant_id: uuid.UUID, token_id: str, expires_at: int) -> None:
        """Deny this `jti` until the token would have expired anyway (then the key expires too)."""
        remaining_s = max(1, int(expires_at - time.time()) + 60)
        await self._client.set(revoked_token_key(tenant_id, token_id), b"1", ex=remaining_s)

    async def set_tenant_suspended(self, tenant_id: uuid.UUID, suspended: bool) -> None:
        key = suspended_tenant_key(tenant_id)
        if suspended:
            await self._client.set(key, b"1")
        else:
            await self._client.delete(key)

    async def disable_subject(self, subject: str, tenant_id: uuid.UUID) -> None:
        """A disabled terminal's (or user's) tokens stop working at once."""
        await self._client.set(disabled_subject_key(tenant_id, subject), b"1")

    async def denial(self, token_id: str, tenant_id: uuid.UUID, subject: str) -> str | None:
        """Why this token may not be used (`TOKEN_REVOKED`, `TENANT_SUSPENDED`, `PRINCIPAL_DISABLED`),
        or None; one round trip."""
        revoked, suspended, disabled = await self._client.mget(
            revoked_token_key(tenant_id, token_id),
            suspended_tenant_key(tenant_id),
            disabled_subject_key(tenant_id, subject),
        )
        if suspended is not None:
            return "TENANT_SUSPENDED"
        if revoked is not None:
            return "TOKEN_REVOKED"
        if disabled is not None:
            return "PRINCIPAL_DISABLED"
        return None
