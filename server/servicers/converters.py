"""Domain records → protobuf messages (one place, shared by the servicers). Kinds, statuses and roles
become the contract's enums through the tables in server/servicers/enums.py."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from google.protobuf import timestamp_pb2

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2
from domain.currencies import minor_units
from domain.ledger_rules import HOLD_KIND
from server.services.identity import IssuedTokens
from server.servicers.enums import (
    ACCOUNT_KIND, ACCOUNT_STATUS, PAYMENT_KIND, PAYMENT_STATUS, ROLE, STATEMENT_EXPORT_STATE, STATEMENT_FORMAT, TENANT_STATUS,
    TERMINAL_STATUS, USER_STATUS,
)
from server.services.statements import ExportView
from storage.audit import AuditEvent
from storage.ledger import AccountRecord, EntryRecord, HoldRecord, TransferRecord
from storage.limits import LIMIT_FIELDS, CurrencyLimits, IdentityLevel
from storage.payments_query import PartyNames, PaymentRow
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
        roles=ROLE.to_wire_list(user.roles),
        status=USER_STATUS.to_wire(user.status),
        create_time=timestamp(user.created_at),
        level=user.level_code or "",
    )


def terminal_message(terminal: TerminalRecord) -> auth_pb2.Terminal:
    return auth_pb2.Terminal(
        name=f"terminals/{terminal.terminal_id}",
        terminal_id=str(terminal.terminal_id),
        merchant=f"users/{terminal.merchant_user_id}",
        display_name=terminal.display_name,
        client_id=terminal.client_id,
        status=TERMINAL_STATUS.to_wire(terminal.status),
        create_time=timestamp(terminal.created_at),
        daily_charge_limit_minor=terminal.daily_charge_limit_minor,
    )



def audit_event_message(event: AuditEvent) -> admin_pb2.AuditEvent:
    return admin_pb2.AuditEvent(
        stripe=event.stripe,
        sequence=event.sequence,
        create_time=timestamp(event.created_at),
        actor=event.actor,
        method=event.method,
        request_id=event.request_id,
        # Sorted keys and no spaces: the same event always reads the same, whatever the face.
        summary_json=json.dumps(event.summary, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        hash_hex=bytes(event.hash).hex(),
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
        tenant=public_tenant_message(tenant), status=TENANT_STATUS.to_wire(tenant.status),
        create_time=timestamp(tenant.created_at),
    )


def _name(collection: str, identifier: uuid.UUID | None) -> str:
    return "" if identifier is None else f"{collection}/{identifier}"


def account_message(account: AccountRecord) -> accounts_pb2.Account:
    overdraft = account.overdraft_limit_minor
    return accounts_pb2.Account(
        name=f"accounts/{account.account_id}",
        account_id=str(account.account_id),
        owner=_name("users", account.owner_user_id),
        kind=ACCOUNT_KIND.to_wire(account.kind),
        currency=account.currency,
        status=ACCOUNT_STATUS.to_wire(account.status),
        balance_minor=account.balance_minor,
        held_minor=account.held_minor,
        available_minor=account.available_minor,
        overdraft_limit_minor=overdraft,
        create_time=timestamp(account.created_at),
        currency_minor_units=minor_units(account.currency),
        owner_display_name=account.owner_display_name or "",
    )


def entry_message(entry: EntryRecord) -> accounts_pb2.Entry:
    return accounts_pb2.Entry(
        entry_id=entry.entry_id,
        payment=_name("payments", entry.transfer_id),
        amount_minor=entry.amount_minor,
        balance_after_minor=entry.balance_after_minor,
        kind=PAYMENT_KIND.to_wire(entry.transfer_kind),
        create_time=timestamp(entry.created_at),
        description=entry.description or "",
    )


def _payment(payment_id, kind: str, status: str, from_account_id, to_account_id, amount_minor: int, currency: str,
             terminal_id, related_id, request_id: str, created_at, **amounts_and_expiry) -> payments_pb2.Payment:
    """The one Payment shape for a transfer, a hold or a listed row (their records differ only in names)."""
    return payments_pb2.Payment(
        name=f"payments/{payment_id}",
        payment_id=str(payment_id),
        kind=PAYMENT_KIND.to_wire(kind),
        status=PAYMENT_STATUS.to_wire(status),
        from_account=_name("accounts", from_account_id),
        to_account=_name("accounts", to_account_id),
        amount_minor=amount_minor,
        currency=currency,
        terminal=_name("terminals", terminal_id),
        related_payment=_name("payments", related_id),
        request_id=request_id,
        create_time=timestamp(created_at),
        **amounts_and_expiry,
    )


def transfer_payment(transfer: TransferRecord) -> payments_pb2.Payment:
    return _payment(transfer.transfer_id, transfer.kind, transfer.status, transfer.debit_account_id,
                    transfer.credit_account_id, transfer.amount_minor, transfer.currency, transfer.terminal_id,
                    transfer.related_transfer_id or transfer.hold_id, transfer.request_id, transfer.created_at,
                    refunded_minor=transfer.refunded_minor, description=transfer.description or "")


def hold_payment(hold: HoldRecord) -> payments_pb2.Payment:
    return _payment(hold.hold_id, HOLD_KIND, hold.status, hold.account_id, hold.merchant_account_id,
                    hold.amount_minor, hold.currency, hold.terminal_id, hold.capture_transfer_id, hold.request_id,
                    hold.created_at, captured_minor=hold.captured_minor, expire_time=timestamp(hold.expires_at))


def row_payment(row: PaymentRow, names: PartyNames | None = None) -> payments_pb2.Payment:
    """A listed payment; `names` (the back office's only) fill in who it is between."""
    named = {} if names is None else {"from_display_name": names.from_name, "to_display_name": names.to_name,
                                      "terminal_display_name": names.terminal_name}
    return _payment(row.payment_id, row.kind, row.status, row.from_account_id, row.to_account_id, row.amount_minor,
                    row.currency, row.terminal_id, row.related_id, row.request_id, row.created_at,
                    captured_minor=row.captured_minor, refunded_minor=row.refunded_minor,
                    expire_time=timestamp(row.expires_at), description=row.description or "", **named)


def level_limits_message(limits: CurrencyLimits) -> admin_pb2.LevelLimits:
    return admin_pb2.LevelLimits(currency=limits.currency, **{name: getattr(limits, name) for name in LIMIT_FIELDS})


def identity_level_message(level: IdentityLevel) -> admin_pb2.IdentityLevel:
    return admin_pb2.IdentityLevel(code=level.code, display_name=level.display_name, rank=level.rank,
                                   limits=[level_limits_message(limits) for limits in level.limits])


def identity_level_from_message(message: admin_pb2.IdentityLevel) -> IdentityLevel:
    return IdentityLevel(message.code, message.display_name, message.rank, tuple(
        CurrencyLimits(limits.currency, **{name: getattr(limits, name) if limits.HasField(name) else None
                                           for name in LIMIT_FIELDS})
        for limits in message.limits))


def statement_export_message(view: ExportView) -> accounts_pb2.StatementExport:
    export = view.export
    return accounts_pb2.StatementExport(
        name=f"statementExports/{export.export_id}", account=f"accounts/{export.account_id}",
        start_time=timestamp(export.start_time), end_time=timestamp(export.end_time),
        format=STATEMENT_FORMAT.to_wire(export.format), language=export.language, time_zone=export.time_zone,
        state=STATEMENT_EXPORT_STATE.to_wire(export.state), entries_total=export.entries_total,
        entries_done=export.entries_done, download_url=view.download_url or "",
        download_url_expire_time=timestamp(view.download_url_expires_at), size_bytes=export.size_bytes or 0,
        sha256_hex="" if export.sha256 is None else bytes(export.sha256).hex(), error=export.error or "",
        create_time=timestamp(export.created_at), finish_time=timestamp(export.finished_at),
    )
