"""Domain records → protobuf messages (one place, shared by the servicers)."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from server.services.identity import IssuedTokens
from storage.tenants import PublicTenant, TenantRecord
from storage.terminals import TerminalRecord
from storage.users import UserRecord


def timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    converted = timestamp_pb2.Timestamp()
    converted.FromDatetime(moment)
    return converted


def user_message(user: UserRecord, tenant_slug: str) -> auth_pb2.User:
    return auth_pb2.User(
        name=f"users/{user.user_id}",
        user_id=str(user.user_id),
        tenant=f"tenants/{tenant_slug}" if tenant_slug else "",
        email=user.email,
        display_name=user.display_name,
        roles=list(user.roles),
        status=user.status,
        create_time=timestamp(user.created_at),
    )


def terminal_message(terminal: TerminalRecord) -> auth_pb2.Terminal:
    return auth_pb2.Terminal(
        name=f"terminals/{terminal.terminal_id}",
        terminal_id=str(terminal.terminal_id),
        merchant=f"users/{terminal.merchant_user_id}",
        display_name=terminal.display_name,
        client_id=terminal.client_id,
        status=terminal.status,
        create_time=timestamp(terminal.created_at),
    )


def tokens_message(issued: IssuedTokens) -> auth_pb2.Tokens:
    return auth_pb2.Tokens(
        access_token=issued.access_token,
        access_token_expire_time=timestamp(issued.access_expires_at),
        refresh_token=issued.refresh_token,
        refresh_token_expire_time=timestamp(issued.refresh_expires_at),
        token_type="Bearer",
    )


def public_tenant_message(tenant: PublicTenant | TenantRecord) -> auth_pb2.Tenant:
    return auth_pb2.Tenant(
        name=f"tenants/{tenant.slug}",
        tenant_id=str(tenant.tenant_id),
        slug=tenant.slug,
        display_name=tenant.display_name,
        default_currency=tenant.default_currency,
    )


def tenant_summary(tenant: TenantRecord) -> admin_pb2.TenantSummary:
    return admin_pb2.TenantSummary(
        tenant=public_tenant_message(tenant), status=tenant.status, create_time=timestamp(tenant.created_at)
    )
