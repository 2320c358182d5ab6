"""Tenant repository: SQL for the `tenants` table lives here and nowhere else."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg

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


async def insert_tenant(unit_of_work: UnitOfWork, tenant_id: uuid.UUID, slug: str, display_name: str, currency: str) -> bool:
    """Insert a tenant; the unit of work must be scoped to `tenant_id` (RLS checks the new row).

    False when the slug is taken: the transaction is then failed, and its unit of work must be left."""
    try:
        await unit_of_work.connection.execute(
            "insert into tenants (tenant_id, slug, display_name, default_currency) values (%s, %s, %s, %s)",
            (tenant_id, slug, display_name, currency),
        )
    except psycopg.errors.UniqueViolation:
        return False
    return True


@dataclass(frozen=True)
class TenantRecord:
    tenant_id: uuid.UUID
    slug: str
    display_name: str
    default_currency: str
    status: str
    created_at: datetime
    kind: str = "organisation"


_TENANT_COLUMNS = "tenant_id, slug, display_name, default_currency, status, created_at"


async def find_tenant_any_status(unit_of_work: UnitOfWork, slug: str) -> TenantRecord | None:
    """Any tenant by slug, suspended ones and the platform tenant included (SECURITY DEFINER)."""
    cursor = await unit_of_work.connection.execute(
        f"select {_TENANT_COLUMNS}, kind from tenant_by_slug_any_status(%s)", (slug,)
    )
    row = await cursor.fetchone()
    return None if row is None else TenantRecord(*row)


async def list_tenants_page(unit_of_work: UnitOfWork, after_slug: str | None, limit: int) -> list[TenantRecord]:
    cursor = await unit_of_work.connection.execute(
        f"select {_TENANT_COLUMNS} from tenants_page(%s, %s)", (after_slug, limit)
    )
    return [TenantRecord(*row) for row in await cursor.fetchall()]


async def set_tenant_status(unit_of_work: UnitOfWork, tenant_id: uuid.UUID, status: str) -> tuple[TenantRecord, str] | None:
    """Change the status of the tenant the unit of work is scoped to; the tenant after, and its status
    before (read by the same UPDATE, so a concurrent change cannot slip in between)."""
    cursor = await unit_of_work.connection.execute(
        f"update tenants set status = %s, updated_at = now() where tenant_id = %s returning {_TENANT_COLUMNS}, old.status",
        (status, tenant_id),
    )
    row = await cursor.fetchone()
    return None if row is None else (TenantRecord(*row[:-1]), row[-1])


async def suspended_tenant_ids(unit_of_work: UnitOfWork) -> list[uuid.UUID]:
    cursor = await unit_of_work.connection.execute("select * from suspended_tenant_ids()")
    return [row[0] for row in await cursor.fetchall()]


async def slug_of(unit_of_work: UnitOfWork, tenant_id: uuid.UUID) -> str:
    """The slug of the unit of work's own tenant ('' if it is not visible)."""
    cursor = await unit_of_work.connection.execute("select slug from tenants where tenant_id = %s", (tenant_id,))
    row = await cursor.fetchone()
    return "" if row is None else row[0]


async def receipt_voice(unit_of_work: UnitOfWork, tenant_id: uuid.UUID) -> tuple[str, str, str]:
    """What a receipt names and speaks: the tenant's (slug, language, time zone)."""
    cursor = await unit_of_work.connection.execute(
        "select slug, language, time_zone from tenants where tenant_id = %s", (tenant_id,)
    )
    row = await cursor.fetchone()
    return ("", "en", "UTC") if row is None else (row[0], row[1], row[2])


async def default_currency(unit_of_work: UnitOfWork, tenant_id: uuid.UUID) -> str:
    """The currency the unit of work's own tenant opens accounts in when none is asked for."""
    cursor = await unit_of_work.connection.execute("select default_currency from tenants where tenant_id = %s", (tenant_id,))
    return (await cursor.fetchone())[0]


async def is_active(unit_of_work: UnitOfWork, tenant_id: uuid.UUID) -> bool:
    """Whether the unit of work's own tenant exists and is not suspended."""
    cursor = await unit_of_work.connection.execute("select status from tenants where tenant_id = %s", (tenant_id,))
    row = await cursor.fetchone()
    return row is not None and row[0] == "active"
