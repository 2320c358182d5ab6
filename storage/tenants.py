"""Tenant repository: SQL for the `tenants` table lives here and nowhere else."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from storage.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class PublicTenant:
    tenant_id: uuid.UUID
    slug: str
    display_name: str
    default_currency: str


async def find_public_tenant(unit_of_work: UnitOfWork, slug: str) -> PublicTenant | None:
    """The public profile of an active tenant, readable before login (SECURITY DEFINER function)."""
    cursor = await unit_of_work.connection.execute(
        "select tenant_id, slug, display_name, default_currency from public_tenant_by_slug(%s)", (slug,)
    )
    row = await cursor.fetchone()
    return None if row is None else PublicTenant(*row)


async def insert_tenant(unit_of_work: UnitOfWork, tenant_id: uuid.UUID, slug: str, display_name: str, currency: str) -> None:
    """Insert a tenant; the unit of work must be scoped to `tenant_id` (RLS checks the new row)."""
    await unit_of_work.connection.execute(
        "insert into tenants (tenant_id, slug, display_name, default_currency) values (%s, %s, %s, %s)",
        (tenant_id, slug, display_name, currency),
    )
