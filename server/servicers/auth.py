"""AuthService: translate requests, call the service layer, translate results."""

from __future__ import annotations

import grpc

from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from server.services.tenants import TenantDirectory


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, tenants: TenantDirectory) -> None:
        self._tenants = tenants

    async def GetTenant(
        self, request: auth_pb2.GetTenantRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetTenantResponse:
        tenant = await self._tenants.get_public_tenant(request.name)
        return auth_pb2.GetTenantResponse(
            tenant=auth_pb2.Tenant(
                name=f"tenants/{tenant.slug}",
                tenant_id=str(tenant.tenant_id),
                slug=tenant.slug,
                display_name=tenant.display_name,
                default_currency=tenant.default_currency,
            )
        )
