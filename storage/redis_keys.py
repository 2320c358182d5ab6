"""Every Redis key the platform uses, named in one place, with the hash tag that decides where it lives.

A Redis Cluster keeps each key in one of 16,384 hash slots, each slot on one master. The slot is the
CRC16 of the key's *hash tag* — the text between its first `{` and the next `}` — or of the whole key
when it has none. One Lua script's keys, and the keys of one MGET, must all lie in one slot, or the
cluster refuses the command (CROSSSLOT). So each key is tagged with what it is read together with:

| key                                                | written by               | read with                      |
|----------------------------------------------------|--------------------------|--------------------------------|
| `emoney:revoked-jti:{<tenant>}:<jti>`              | Logout                   | the next two, in one MGET per  |
| `emoney:suspended-tenant:{<tenant>}`               | SuspendTenant, start-up  | authenticated call             |
| `emoney:disabled-subject:{<tenant>}:<subject>`     | DisableTerminal          |                                |
| `emoney:rl:<group>:principal:{<tenant>}:<subject>` | the rate limiter's GCRA  | the tenant's bucket, in one    |
| `emoney:rl:<group>:tenant:{<tenant>}`              | script                   | script per call                |
| `emoney:rl:<group>:address:{<address>}`            | 〃                       | nothing (one bucket per call)  |

`<tenant>` is the tenant's UUID, which holds no brace. Everything a logged-in call reads is tagged with
its tenant, so one tenant's keys share one slot: the cluster spreads tenants over the masters, not one
tenant's calls (a tenant at its default limit, 2,000 calls/s, is a few thousand Redis commands/s on
its master — far below what one master serves). An address is the client's (`address_identity`); an
odd one holding braces only moves its single key to another slot.

The same names are used on a single Redis, where tags mean nothing: one layout, one code path.
"""

from __future__ import annotations

import uuid
from typing import Iterable

from redis.crc import key_slot

# Below the rate limiter's prefix (storage.rate_limits.RateLimiter's key_prefix, which tests vary).
RATE_LIMIT_PREFIX = "emoney:rl:"
_REVOKED_TOKEN = "emoney:revoked-jti:"
_SUSPENDED_TENANT = "emoney:suspended-tenant:"
_DISABLED_SUBJECT = "emoney:disabled-subject:"


def tenant_tag(tenant_id: uuid.UUID) -> str:
    """The hash tag of everything a tenant's logged-in calls read: its keys share one slot."""
    return "{" + str(tenant_id) + "}"


def revoked_token_key(tenant_id: uuid.UUID, token_id: str) -> str:
    return f"{_REVOKED_TOKEN}{tenant_tag(tenant_id)}:{token_id}"


def suspended_tenant_key(tenant_id: uuid.UUID) -> str:
    return _SUSPENDED_TENANT + tenant_tag(tenant_id)


def disabled_subject_key(tenant_id: uuid.UUID, subject: str) -> str:
    return f"{_DISABLED_SUBJECT}{tenant_tag(tenant_id)}:{subject}"


def principal_bucket_key(group: str, tenant_id: uuid.UUID, subject: str) -> str:
    """A principal's rate-limit bucket (below RATE_LIMIT_PREFIX), in its tenant's slot."""
    return f"{group}:principal:{tenant_tag(tenant_id)}:{subject}"


def tenant_bucket_key(group: str, tenant_id: uuid.UUID) -> str:
    """A tenant's rate-limit bucket (below RATE_LIMIT_PREFIX)."""
    return f"{group}:tenant:{tenant_tag(tenant_id)}"


def address_bucket_key(group: str, address: str) -> str:
    """A client address's rate-limit bucket (below RATE_LIMIT_PREFIX), for calls without a login."""
    return f"{group}:address:{{{address}}}"


def share_one_slot(keys: Iterable[str]) -> bool:
    """Whether these keys may be used in one script or one multi-key command on a Redis Cluster."""
    return len({key_slot(key.encode()) for key in keys}) <= 1
