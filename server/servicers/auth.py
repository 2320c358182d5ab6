"""AuthService: translate requests, call the service layer, translate results."""

from __future__ import annotations

import grpc

from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from interceptors.call_state import require_principal
from server.services.identity import IdentityService
from server.services.tenants import TenantDirectory
from server.servicers.converters import public_tenant_message, terminal_message, tokens_message, user_message


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, tenants: TenantDirectory, identity: IdentityService) -> None:
        self._tenants = tenants
        self._identity = identity

    async def GetTenant(self, request: auth_pb2.GetTenantRequest, context: grpc.aio.ServicerContext) -> auth_pb2.GetTenantResponse:
        tenant = await self._tenants.get_public_tenant(request.name)
        return auth_pb2.GetTenantResponse(tenant=public_tenant_message(tenant))

    async def SignUp(self, request: auth_pb2.SignUpRequest, context: grpc.aio.ServicerContext) -> auth_pb2.SignUpResponse:
        session = await self._identity.sign_up(
            request.tenant, request.email, request.password, request.display_name, request.phone_number
        )
        return auth_pb2.SignUpResponse(user=user_message(session.user, session.tenant_slug), tokens=tokens_message(session.tokens))

    async def Login(self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext) -> auth_pb2.LoginResponse:
        session = await self._identity.login(request.tenant, request.email, request.password)
        return auth_pb2.LoginResponse(user=user_message(session.user, session.tenant_slug), tokens=tokens_message(session.tokens))

    async def LoginTerminal(
        self, request: auth_pb2.LoginTerminalRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginTerminalResponse:
        terminal, issued = await self._identity.login_terminal(request.client_id, request.client_secret)
        return auth_pb2.LoginTerminalResponse(terminal=terminal_message(terminal), tokens=tokens_message(issued))

    async def RefreshToken(
        self, request: auth_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RefreshTokenResponse:
        issued = await self._identity.refresh(request.refresh_token)
        return auth_pb2.RefreshTokenResponse(tokens=tokens_message(issued))

    async def Logout(self, request: auth_pb2.LogoutRequest, context: grpc.aio.ServicerContext) -> auth_pb2.LogoutResponse:
        await self._identity.logout(require_principal(), request.refresh_token)
        return auth_pb2.LogoutResponse()

    async def GetCurrentUser(
        self, request: auth_pb2.GetCurrentUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetCurrentUserResponse:
        user, terminal, slug = await self._identity.current_user(require_principal())
        if terminal is not None:
            return auth_pb2.GetCurrentUserResponse(terminal=terminal_message(terminal))
        return auth_pb2.GetCurrentUserResponse(user=user_message(user, slug))

    async def ChangePassword(
        self, request: auth_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ChangePasswordResponse:
        await self._identity.change_password(require_principal(), request.current_password, request.new_password)
        return auth_pb2.ChangePasswordResponse()
