"""Session state every call checks, kept in Redis: revoked access tokens, suspended tenants and
disabled terminals.

Checked once per authenticated call, in the same round trip as its rate limit (three keys, all tagged with the
caller's tenant so that they share one hash slot on a Redis Cluster; the names
are in storage/redis_keys.py). PostgreSQL remains the source of truth for
suspensions; servers copy them into Redis at start, so a Redis that lost its
data is repaired by the next server start. On a Redis Cluster every mark is acknowledged only once a
replica holds it (storage/redis_store.py `set_replicated`), so a master's crash cannot undo a logout.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from storage.redis_keys import disabled_subject_key, revoked_token_key, suspended_tenant_key
from storage.redis_store import set_replicated

if TYPE_CHECKING:  # storage.redis_store reads domain.config, which imports this module
    from storage.redis_store import RedisClient


class SessionStore:
    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def revoke_access_token(self, tenant_id: uuid.UUID, token_id: str, expires_at: int) -> None:
        """Deny this `jti` until the token would have expired anyway (then the key expires too)."""
        remaining_s = max(1, int(expires_at - time.time()) + 60)
        await set_replicated(self._client, revoked_token_key(tenant_id, token_id), b"1", ex=remaining_s)

    async def set_tenant_suspended(self, tenant_id: uuid.UUID, suspended: bool, replicated: bool = True) -> None:
        """`replicated=False` for the servers' copy at start: PostgreSQL stays the truth there, and a start
        must not wait for a replica."""
        key = suspended_tenant_key(tenant_id)
        if not suspended:
            await self._client.delete(key)
        elif replicated:
            await set_replicated(self._client, key, b"1")
        else:
            await self._client.set(key, b"1")

    async def disable_subject(self, subject: str, tenant_id: uuid.UUID) -> None:
        """A disabled terminal's (or user's) tokens stop working at once."""
        await set_replicated(self._client, disabled_subject_key(tenant_id, subject), b"1")

    async def denial(self, token_id: str, tenant_id: uuid.UUID, subject: str) -> str | None:
        """Why this token may not be used (`TENANT_SUSPENDED`, `TOKEN_REVOKED`, `PRINCIPAL_DISABLED`, in
        that order), or None; one round trip. A server checks it together with the call's rate limit
        (interceptors/authentication.py, storage/rate_limits.py `admit`); this is the check alone."""
        marks = await self._client.mget(*denial_keys(token_id, tenant_id, subject))
        return next((reason for reason, mark in zip(DENIALS, marks) if mark is not None), None)


# What denies a token, in order of precedence, and the key that marks it (all in the tenant's hash slot).
DENIALS = ("TENANT_SUSPENDED", "TOKEN_REVOKED", "PRINCIPAL_DISABLED")


def denial_keys(token_id: str, tenant_id: uuid.UUID, subject: str) -> list[str]:
    """The keys of DENIALS, in the same order."""
    return [suspended_tenant_key(tenant_id), revoked_token_key(tenant_id, token_id), disabled_subject_key(tenant_id, subject)]
