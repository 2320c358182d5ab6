"""Back-office identity management: tenants (platform administrators), and a
tenant's users and terminals (operators and tenant administrators).

Which role may call which method is decided by the authorization interceptor;
the finer rules (an operator may not create an operator) live here.
"""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import datetime

from domain.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from domain.passwords import PasswordHasher
from domain.principal import Principal
from domain.resource_names import SLUG_PATTERN, parse_tenant_name
from server.services import commands
from server.services.changes import record_change
from server.services.identity import hash_secret
from server.services.transactions import Transactions
from domain.ledger_rules import MAX_ACTOR_LENGTH, MAX_CALL_ID_LENGTH, currency_violations
from domain.validation import (
    bad_page_token,
    display_name_violations,
    email_violations,
    created_position,
    decode_page_token,
    keyset_after,
    keyset_page,
    keyset_position,
    invalid,
    normalize_email,
    page_size,
    parse_resource_id,
    raise_if_violations,
)
from domain.errors import INVALID_FORMAT, NOT_ALLOWED, REQUIRED, TOO_LONG, FieldViolation
from storage import audit, ledger, tenants, terminals, users
from storage.audit import AuditEvent, AuditVerification
from storage.ledger import ReconciliationReport
from storage.sessions import SessionStore
from storage.tenants import TenantRecord
from storage.terminals import TerminalRecord
from storage.users import UserRecord

# Roles each back-office role may grant when creating a user.
GRANTABLE_ROLES = {
    "tenant_admin": frozenset({"customer", "merchant", "operator", "tenant_admin"}),
    "operator": frozenset({"customer", "merchant"}),
}
_CLIENT_ID_ALPHABET = string.ascii_lowercase + string.digits
# Limits of the listing filters: the audit columns' own limits (0004's actor_text, request_id_text), and a
# search text long enough for any e-mail address or name fragment a person would type.
MAX_USER_QUERY_LENGTH = 100


def _initial_password() -> str:
    return secrets.token_urlsafe(15)


@dataclass(frozen=True)
class CreatedTenant:
    tenant: TenantRecord
    admin: UserRecord
    admin_initial_password: str


class AdministrationService:
    def __init__(self, transactions: Transactions, passwords: PasswordHasher, sessions: SessionStore) -> None:
        self._transactions = transactions
        self._passwords = passwords
        self._sessions = sessions

    # -- tenants (platform administrators) ------------------------------------------------------

    async def create_tenant(self, caller: Principal, command: commands.CreateTenant) -> CreatedTenant:
        slug, display_name, currency = command.slug, command.display_name, command.default_currency
        admin_email, admin_display_name = normalize_email(command.admin_email), command.admin_display_name
        violations = display_name_violations(display_name) + display_name_violations(admin_display_name, "admin_display_name")
        violations += email_violations(admin_email, "admin_email")
        if not SLUG_PATTERN.match(slug) or "--" in slug:
            violations.append(FieldViolation(
                "slug", "must be 3-63 lower-case letters, digits or single inner hyphens", REQUIRED if not slug else INVALID_FORMAT
            ))
        violations += currency_violations(currency, "default_currency")
        raise_if_violations(violations)
        password = _initial_password()
        password_hash = await self._passwords.hash(password)
        tenant_id = uuid.uuid4()
        async with self._transactions.change(tenant_id) as unit_of_work:
            if not await tenants.insert_tenant(unit_of_work, tenant_id, slug, display_name.strip(), currency):
                raise AlreadyExists(message=f"tenant `{slug}` already exists", reason="TENANT_EXISTS")
            admin = await users.insert(
                unit_of_work, tenant_id, admin_email, admin_display_name.strip(), password_hash, ["tenant_admin", "operator"]
            )
            tenant = await tenants.find_tenant_any_status(unit_of_work, slug)
            await record_change(unit_of_work, caller.subject, None, {
                "tenant": f"tenants/{slug}", "status": tenant.status, "defaultCurrency": currency,
                "admin": f"users/{admin.user_id}", "adminRoles": ["operator", "tenant_admin"]})
            await unit_of_work.commit()
        return CreatedTenant(tenant, admin, password)

    async def list_tenants(self, requested_page_size: int, page_token: str) -> tuple[list[TenantRecord], str]:
        limit = page_size(requested_page_size)
        position = decode_page_token(page_token, ("after",))
        async with self._transactions.read(None) as unit_of_work:
            rows = await tenants.list_tenants_page(unit_of_work, position["after"] if position else None, limit + 1)
        return keyset_page(rows, limit, lambda row: {"after": row.slug})

    async def set_tenant_status(self, caller: Principal, name: str, suspended: bool) -> TenantRecord:
        slug = parse_tenant_name(name)
        async with self._transactions.lookup(None) as unit_of_work:
            found = await tenants.find_tenant_any_status(unit_of_work, slug)
        if found is None:
            raise NotFound(message=f"tenant `{slug}` not found", reason="TENANT_NOT_FOUND", metadata={"slug": slug})
        if found.kind == "platform":
            raise FailedPrecondition(message="the platform tenant cannot be suspended", reason="PLATFORM_TENANT")
        async with self._transactions.change(found.tenant_id) as unit_of_work:
            changed = await tenants.set_tenant_status(unit_of_work, found.tenant_id, "suspended" if suspended else "active")
            if changed is None:  # removed since the lookup above
                raise NotFound(message=f"tenant `{slug}` not found", reason="TENANT_NOT_FOUND", metadata={"slug": slug})
            updated, previous_status = changed
            if previous_status != updated.status:  # a repeated suspend or reactivate changes nothing to audit
                await record_change(unit_of_work, caller.subject, {"tenant": name, "status": previous_status},
                                    {"tenant": name, "status": updated.status})
            # Order errs on the safe side: a suspension reaches Redis before it is committed, a
            # reactivation only after. (Servers re-copy suspensions from PostgreSQL when they start.)
            if suspended:
                await self._sessions.set_tenant_suspended(found.tenant_id, True)
            await unit_of_work.commit()
        if not suspended:
            await self._sessions.set_tenant_suspended(found.tenant_id, False)
        return updated

    # -- users (tenant back office) -------------------------------------------------------------

    async def create_user(self, caller: Principal, command: commands.CreateUser) -> tuple[UserRecord, str, str]:
        email, display_name, roles = normalize_email(command.email), command.display_name, list(command.roles)
        raise_if_violations(email_violations(email) + display_name_violations(display_name) + _role_violations(roles))
        allowed = frozenset().union(*(GRANTABLE_ROLES.get(role, frozenset()) for role in caller.roles))
        if not set(roles) <= allowed:
            raise PermissionDenied(
                message=f"you may grant only: {', '.join(sorted(allowed)) or 'nothing'}", reason="ROLE_NOT_GRANTABLE"
            )
        password = _initial_password()
        password_hash = await self._passwords.hash(password)
        async with self._transactions.change(caller.tenant_id) as unit_of_work:
            if await users.find_by_email(unit_of_work, email) is not None:
                raise AlreadyExists(message="this e-mail address is already registered", reason="EMAIL_TAKEN")
            user = await users.insert(unit_of_work, caller.tenant_id, email, display_name.strip(), password_hash, sorted(set(roles)))
            slug = await tenants.slug_of(unit_of_work, caller.tenant_id)
            await record_change(unit_of_work, caller.subject, None, {"user": f"users/{user.user_id}", "roles": list(user.roles)})
            await unit_of_work.commit()
        return user, password, slug

    async def list_users(self, caller: Principal, command: commands.ListUsers) -> tuple[list[UserRecord], str, str]:
        """A page of the caller's tenant's users."""
        limit = page_size(command.page.size)
        role = command.role
        if role:
            raise_if_violations(_role_violations([role], "role"))
        query = command.query.strip()
        if len(query) > MAX_USER_QUERY_LENGTH:
            raise invalid("query", TOO_LONG, f"must be at most {MAX_USER_QUERY_LENGTH} characters")
        after = keyset_after(command.page.token, "id")
        async with self._transactions.read(caller.tenant_id) as unit_of_work:
            rows = await users.list_page(unit_of_work, after, limit + 1, role or None, query or None)
            slug = await tenants.slug_of(unit_of_work, caller.tenant_id)
        page, next_token = keyset_page(rows, limit, created_position("id", "user_id"))
        return page, next_token, slug

    # -- terminals ------------------------------------------------------------------------------

    async def register_terminal(self, caller: Principal, merchant_name: str, display_name: str) -> tuple[TerminalRecord, str]:
        merchant_id = parse_resource_id(merchant_name, "users", "merchant")
        raise_if_violations(display_name_violations(display_name))
        client_id = "term_" + "".join(secrets.choice(_CLIENT_ID_ALPHABET) for _ in range(24))
        client_secret = secrets.token_urlsafe(32)
        async with self._transactions.change(caller.tenant_id) as unit_of_work:
            merchant = await users.get(unit_of_work, merchant_id)
            if merchant is None:
                raise NotFound(message="merchant not found", reason="MERCHANT_NOT_FOUND")
            if "merchant" not in merchant.roles or merchant.status != "active":
                raise FailedPrecondition(message="the user is not an active merchant", reason="NOT_A_MERCHANT")
            terminal = await terminals.insert(
                unit_of_work, caller.tenant_id, merchant_id, display_name.strip(), client_id, hash_secret(client_secret)
            )
            await record_change(unit_of_work, caller.subject, None, {
                "terminal": f"terminals/{terminal.terminal_id}", "merchant": f"users/{merchant_id}",
                "clientId": client_id, "status": terminal.status})
            await unit_of_work.commit()
        return terminal, client_secret

    async def disable_terminal(self, caller: Principal, name: str) -> TerminalRecord:
        terminal_id = parse_resource_id(name, "terminals")
        async with self._transactions.change(caller.tenant_id) as unit_of_work:
            changed = await terminals.disable(unit_of_work, terminal_id)
            if changed is None:
                raise NotFound(message="terminal not found", reason="TERMINAL_NOT_FOUND")
            terminal, previous_status = changed
            if previous_status != terminal.status:  # disabling a disabled terminal changes nothing to audit
                await record_change(unit_of_work, caller.subject, {"terminal": f"terminals/{terminal_id}", "status": previous_status},
                                    {"terminal": f"terminals/{terminal_id}", "status": terminal.status})
            await self._sessions.disable_subject(f"terminals/{terminal_id}", caller.tenant_id)
            await unit_of_work.commit()
        return terminal

    async def list_terminals(self, caller: Principal, requested_page_size: int, page_token: str) -> tuple[list[TerminalRecord], str]:
        limit = page_size(requested_page_size)
        after = keyset_after(page_token, "id")
        async with self._transactions.read(caller.tenant_id) as unit_of_work:
            rows = await terminals.list_page(unit_of_work, after, limit + 1)
        return keyset_page(rows, limit, created_position("id", "terminal_id"))

    # -- audit log ------------------------------------------------------------------------------

    async def list_audit_events(self, caller: Principal, command: commands.ListAuditEvents) -> tuple[list[AuditEvent], str]:
        """The caller's tenant's audit events, newest first; the filters are exact matches and a period."""
        limit = page_size(command.page.size)
        if len(command.actor) > MAX_ACTOR_LENGTH:
            raise invalid("actor", TOO_LONG, f"must be at most {MAX_ACTOR_LENGTH} characters")
        if len(command.request_id) > MAX_CALL_ID_LENGTH:
            raise invalid("request_id", TOO_LONG, f"must be at most {MAX_CALL_ID_LENGTH} characters")
        before = _audit_position_before(command.page.token)
        async with self._transactions.read(caller.tenant_id) as unit_of_work:
            rows = await audit.list_page(
                unit_of_work, before, limit + 1, actor=command.actor or None, request_id=command.request_id or None,
                start=command.start, end=command.end,
            )
        return keyset_page(rows, limit, _audit_position)

    async def verify_audit_chain(self, caller: Principal) -> AuditVerification:
        async with self._transactions.read(caller.tenant_id) as unit_of_work:
            return await audit.verify_audit_chain(unit_of_work)

    # -- the ledger -----------------------------------------------------------------------------

    async def reconcile_ledger(self, caller: Principal) -> ReconciliationReport:
        async with self._transactions.read(caller.tenant_id) as unit_of_work:
            return await ledger.reconcile(unit_of_work)


def _audit_position(event: AuditEvent) -> dict[str, str]:
    return {"created": event.created_at.isoformat(), "stripe": str(event.stripe), "sequence": str(event.sequence)}


def _audit_position_before(page_token: str) -> tuple[datetime, int, int] | None:
    """Decode the (created_at, stripe, sequence) keyset position `_audit_position` wrote into a page token."""
    position = keyset_position(page_token, {"created": datetime.fromisoformat, "stripe": int, "sequence": int})
    if position is None:
        return None
    created, stripe, sequence = position
    if created.tzinfo is None or not 0 <= stripe <= 63 or not 1 <= sequence < 2**63:
        raise bad_page_token()
    return created, stripe, sequence


def _role_violations(roles: list[str], field: str = "roles") -> list[FieldViolation]:
    if not roles:
        return [FieldViolation(field, "must name at least one role", REQUIRED)]
    unknown = sorted(set(roles) - {"customer", "merchant", "operator", "tenant_admin"})
    if unknown or len(roles) > 4:
        description = f"may only contain customer, merchant, operator, tenant_admin (got {', '.join(unknown) or 'too many'})"
        return [FieldViolation(field, description, NOT_ALLOWED if unknown else TOO_LONG)]
    return []



