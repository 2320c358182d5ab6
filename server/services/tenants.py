"""Service layer for tenants: the business rules, free of gRPC and SQL."""

from __future__ import annotations

from domain.errors import NotFound
from domain.resource_names import parse_tenant_name
from storage import tenants as tenant_repository
from storage.tenants import PublicTenant
from server.services.transactions import Transactions


class TenantDirectory:
    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def get_public_tenant(self, name: str) -> PublicTenant:
        slug = parse_tenant_name(name)
        # No tenant is set: only the SECURITY DEFINER directory lookup can read anything.
        async with self._transactions.lookup(tenant_id=None) as unit_of_work:
            tenant = await tenant_repository.find_public_tenant(unit_of_work, slug)
        if tenant is None:
            # Suspended and unknown tenants look the same from outside: no existence oracle.
            raise NotFound(message=f"tenant `{slug}` not found", reason="TENANT_NOT_FOUND", metadata={"slug": slug})
        return tenant
