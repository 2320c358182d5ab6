"""Session state every call checks, kept in Redis: revoked access tokens, suspended tenants and
disabled terminals.

One round trip per authenticated call (MGET of three keys). PostgreSQL remains
the source of truth for suspensions; servers copy them into Redis at start, so
a Redis that lost its data is repaired by the next server start.
"""

from __future__ import annotations

import time
import uuid

import redis.asyncio as redis_asyncio

REVOKED_TOKEN_PREFIX = "emoney:revoked-jti:"
SUSPENDED_TENANT_PREFIX = "emoney:suspended-tenant:"
DISABLED_SUBJECT_PREFIX = "emoney:disabled-subject:"


class SessionStore:
    def __init__(self, client: redis_asyncio.Redis) -> None:
        self._client = client

    async def revoke_access_token(self, token_id: str, expires_at: int) -> None:
        """Deny this `jti` until the token would have expired anyway (then the key expires too)."""
        remaining_s = max(1, int(expires_at - time.time()) + 60)
        await self._client.set(REVOKED_TOKEN_PREFIX + token_id, b"1", ex=remaining_s)

    async def set_tenant_suspended(self, tenant_id: uuid.UUID, suspended: bool) -> None:
        key = SUSPENDED_TENANT_PREFIX + str(tenant_id)
        if suspended:
            await self._client.set(key, b"1")
        else:
            await self._client.delete(key)

    async def disable_subject(self, subject: str, tenant_id: uuid.UUID) -> None:
        """A disabled terminal's (or user's) tokens stop working at once. Subjects are UUID-based, so
        the key is unique across tenants; the tenant is kept in the key for operators reading Redis."""
        await self._client.set(f"{DISABLED_SUBJECT_PREFIX}{tenant_id}:{subject}", b"1")

    async def denial(self, token_id: str, tenant_id: uuid.UUID, subject: str) -> str | None:
        """Why this token may not be used (`TOKEN_REVOKED`, `TENANT_SUSPENDED`, `PRINCIPAL_DISABLED`),
        or None; one round trip."""
        revoked, suspended, disabled = await self._client.mget(
            REVOKED_TOKEN_PREFIX + token_id,
            SUSPENDED_TENANT_PREFIX + str(tenant_id),
            f"{DISABLED_SUBJECT_PREFIX}{tenant_id}:{subject}",
        )
        if suspended is not None:
            return "TENANT_SUSPENDED"
        if revoked is not None:
            return "TOKEN_REVOKED"
        if disabled is not None:
            return "PRINCIPAL_DISABLED"
        return None
