"""AdminService: requests become commands, the service layer's records become replies (every call goes
through the service layer)."""

from __future__ import annotations

import grpc

from emoney.admin.v1 import admin_pb2, admin_pb2_grpc
from domain.validation import optional_timestamp
from interceptors.call_state import require_principal
from server.services import commands
from server.services.administration import AdministrationService
from server.services.limits import LimitsService
from server.servicers.converters import (
    audit_event_message, identity_level_from_message, identity_level_message, tenant_summary, terminal_message, timestamp,
    user_message,
)
from server.servicers.enums import ROLE


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, administration: AdministrationService, limits: LimitsService) -> None:
        self._administration = administration
        self._limits = limits

    # -- identity levels and limits (server/services/limits.py) -------------------------------------

    async def ListIdentityLevels(self, request, context: grpc.aio.ServicerContext) -> admin_pb2.ListIdentityLevelsResponse:
        levels, zone, language = await self._limits.list_levels(require_principal())
        return admin_pb2.ListIdentityLevelsResponse(
            identity_levels=[identity_level_message(level) for level in levels], time_zone=zone, language=language)

    async def SetIdentityLevel(self, request: admin_pb2.SetIdentityLevelRequest, context: grpc.aio.ServicerContext) -> admin_pb2.SetIdentityLevelResponse:
        level = await self._limits.set_level(require_principal(), identity_level_from_message(request.identity_level))
        return admin_pb2.SetIdentityLevelResponse(identity_level=identity_level_message(level))

    async def SetUserLevel(self, request: admin_pb2.SetUserLevelRequest, context: grpc.aio.ServicerContext) -> admin_pb2.SetUserLevelResponse:
        previous, level = await self._limits.set_user_level(require_principal(), request.user, request.level, request.reason)
        return admin_pb2.SetUserLevelResponse(previous_level=previous, level=level)

    async def SetTerminalLimit(self, request: admin_pb2.SetTerminalLimitRequest, context: grpc.aio.ServicerContext) -> admin_pb2.SetTerminalLimitResponse:
        limit = request.daily_charge_limit_minor if request.HasField("daily_charge_limit_minor") else None
        terminal = await self._limits.set_terminal_limit(require_principal(), request.terminal, limit)
        return admin_pb2.SetTerminalLimitResponse(terminal=terminal_message(terminal))

    async def UpdateTenantSettings(self, request: admin_pb2.UpdateTenantSettingsRequest, context: grpc.aio.ServicerContext) -> admin_pb2.UpdateTenantSettingsResponse:
        zone, language = await self._limits.update_settings(require_principal(), request.time_zone, request.language)
        return admin_pb2.UpdateTenantSettingsResponse(time_zone=zone, language=language)

    async def VerifyAuditChain(self, request, context: grpc.aio.ServicerContext) -> admin_pb2.VerifyAuditChainResponse:
        verification = await self._administration.verify_audit_chain(require_principal())
        return admin_pb2.VerifyAuditChainResponse(
            ok=verification.ok,
            stripes_checked=verification.stripes_checked,
            events_checked=verification.events_checked,
            broken_links=[
                admin_pb2.BrokenLink(stripe=link.stripe, sequence=link.sequence, problem=link.problem, create_time=timestamp(link.created_at))
                for link in verification.broken_links
            ],
        )

    async def ListAuditEvents(self, request: admin_pb2.ListAuditEventsRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ListAuditEventsResponse:
        command = commands.ListAuditEvents(
            commands.Page(request.page_size, request.page_token), request.actor, request.request_id,
            optional_timestamp(request, "start_time"), optional_timestamp(request, "end_time"),
        )
        rows, next_token = await self._administration.list_audit_events(require_principal(), command)
        return admin_pb2.ListAuditEventsResponse(audit_events=[audit_event_message(row) for row in rows], next_page_token=next_token)

    async def ReconcileLedger(self, request, context: grpc.aio.ServicerContext) -> admin_pb2.ReconcileLedgerResponse:
        report = await self._administration.reconcile_ledger(require_principal())
        return admin_pb2.ReconcileLedgerResponse(
            ok=report.ok,
            check_time=timestamp(report.checked_at),
            accounts_checked=report.accounts_checked,
            transfers_checked=report.transfers_checked,
            entries_checked=report.entries_checked,
            discrepancies=[
                admin_pb2.Discrepancy(check=d.check, subject=d.subject, expected_minor=d.expected_minor, actual_minor=d.actual_minor)
                for d in report.discrepancies
            ],
            truncated=report.truncated,
        )

    async def CreateTenant(self, request: admin_pb2.CreateTenantRequest, context: grpc.aio.ServicerContext) -> admin_pb2.CreateTenantResponse:
        command = commands.CreateTenant(
            request.slug, request.display_name, request.default_currency, request.admin_email, request.admin_display_name
        )
        created = await self._administration.create_tenant(require_principal(), command)
        return admin_pb2.CreateTenantResponse(
            tenant=tenant_summary(created.tenant),
            admin=user_message(created.admin, created.tenant.slug),
            admin_initial_password=created.admin_initial_password,
        )

    async def ListTenants(self, request: admin_pb2.ListTenantsRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ListTenantsResponse:
        rows, next_token = await self._administration.list_tenants(request.page_size, request.page_token)
        return admin_pb2.ListTenantsResponse(tenants=[tenant_summary(row) for row in rows], next_page_token=next_token)

    async def SuspendTenant(self, request: admin_pb2.SuspendTenantRequest, context: grpc.aio.ServicerContext) -> admin_pb2.SuspendTenantResponse:
        tenant = await self._administration.set_tenant_status(require_principal(), request.name, suspended=True)
        return admin_pb2.SuspendTenantResponse(tenant=tenant_summary(tenant))

    async def ReactivateTenant(
        self, request: admin_pb2.ReactivateTenantRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ReactivateTenantResponse:
        tenant = await self._administration.set_tenant_status(require_principal(), request.name, suspended=False)
        return admin_pb2.ReactivateTenantResponse(tenant=tenant_summary(tenant))

    async def CreateUser(self, request: admin_pb2.CreateUserRequest, context: grpc.aio.ServicerContext) -> admin_pb2.CreateUserResponse:
        command = commands.CreateUser(request.email, request.display_name, tuple(ROLE.required_list(request.roles, "roles")))
        user, password, slug = await self._administration.create_user(require_principal(), command)
        return admin_pb2.CreateUserResponse(user=user_message(user, slug), initial_password=password)

    async def ListUsers(self, request: admin_pb2.ListUsersRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ListUsersResponse:
        command = commands.ListUsers(
            commands.Page(request.page_size, request.page_token), ROLE.filter(request.role, "role"), request.query
        )
        rows, next_token, slug = await self._administration.list_users(require_principal(), command)
        return admin_pb2.ListUsersResponse(users=[user_message(row, slug) for row in rows], next_page_token=next_token)

    async def RegisterTerminal(
        self, request: admin_pb2.RegisterTerminalRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RegisterTerminalResponse:
        terminal, secret = await self._administration.register_terminal(require_principal(), request.merchant, request.display_name)
        return admin_pb2.RegisterTerminalResponse(terminal=terminal_message(terminal), client_secret=secret)

    async def DisableTerminal(
        self, request: admin_pb2.DisableTerminalRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DisableTerminalResponse:
        terminal = await self._administration.disable_terminal(require_principal(), request.name)
        return admin_pb2.DisableTerminalResponse(terminal=terminal_message(terminal))

    async def ListTerminals(self, request: admin_pb2.ListTerminalsRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ListTerminalsResponse:
        rows, next_token = await self._administration.list_terminals(require_principal(), request.page_size, request.page_token)
        return admin_pb2.ListTerminalsResponse(terminals=[terminal_message(row) for row in rows], next_page_token=next_token)
