"""Refresh-token repository: single-use tokens grouped in families (one per login)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class RefreshTokenRecord:
    token_id: uuid.UUID
    family_id: uuid.UUID
    user_id: uuid.UUID
    secret_hash: bytes
    status: str
    expires_at: datetime


async def insert(
    unit_of_work: UnitOfWork,
    tenant_id: uuid.UUID,
    token_id: uuid.UUID,
    family_id: uuid.UUID,
    user_id: uuid.UUID,
    secret_hash: bytes,
    expires_at: datetime,
) -> None:
    await unit_of_work.connection.execute(
        """insert into refresh_tokens (tenant_id, token_id, family_id, user_id, secret_hash, expires_at)
           values (%s, %s, %s, %s, %s, %s)""",
        (tenant_id, token_id, family_id, user_id, secret_hash, expires_at),
    )


async def get_for_update(unit_of_work: UnitOfWork, token_id: uuid.UUID) -> RefreshTokenRecord | None:
    """Lock the row: two refreshes with one token are serialised, and the second sees it used."""
    cursor = await unit_of_work.connection.execute(
        """select token_id, family_id, user_id, secret_hash, status, expires_at
             from refresh_tokens where token_id = %s for update""",
        (token_id,),
    )
    row = await cursor.fetchone()
    return None if row is None else RefreshTokenRecord(*row)


async def mark_used(unit_of_work: UnitOfWork, token_id: uuid.UUID) -> None:
    await unit_of_work.connection.execute(
        "update refresh_tokens set status = 'used', used_at = now() where token_id = %s", (token_id,)
    )


async def revoke_family(unit_of_work: UnitOfWork, family_id: uuid.UUID) -> int:
    cursor = await unit_of_work.connection.execute(
        "update refresh_tokens set status = 'revoked' where family_id = %s and status <> 'revoked'", (family_id,)
    )
    return cursor.rowcount


async def revoke_all_for_user(unit_of_work: UnitOfWork, user_id: uuid.UUID) -> int:
    cursor = await unit_of_work.connection.execute(
        "update refresh_tokens set status = 'revoked' where user_id = %s and status = 'active'", (user_id,)
    )
    return cursor.rowcount
