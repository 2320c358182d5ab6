"""Identity service layer: sign-up, logins, refresh-token rotation, logout, passwords.

Rules that live here (and again in the database where it can hold them):
- an unknown e-mail, a wrong password and a disabled user answer the same
  INVALID_CREDENTIALS, after the same Argon2id work;
- password hashing never holds a database connection (it runs between two
  short units of work);
- a refresh token works once; reusing one revokes its whole family.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from domain.errors import MISMATCH, AlreadyExists, FailedPrecondition, NotFound, Unauthenticated
from domain.passwords import PasswordHasher, password_violations
from domain.principal import TERMINAL_ROLE, Principal
from domain.resource_names import parse_tenant_name
from server.services.changes import change_context, record_change
from server.services.transactions import Transactions
from domain.tokens import TokenService
from domain.phones import e164
from domain.validation import (
    display_name_violations,
    email_violations,
    invalid,
    normalize_email,
    raise_if_violations,
    required_violations,
)
from storage import ledger, refresh_tokens, terminals, tenants, users
from storage.sessions import SessionStore
from storage.terminals import TerminalRecord
from storage.users import UserRecord

MAX_CREDENTIAL_LENGTH = 256
MAX_REFRESH_TOKEN_LENGTH = 200


def hash_secret(secret: str) -> bytes:
    """SHA-256 for high-entropy random secrets (refresh tokens, terminal secrets): nothing to brute-force."""
    return hashlib.sha256(secret.encode()).digest()


def _invalid_credentials() -> Unauthenticated:
    return Unauthenticated(message="the credentials are not valid", reason="INVALID_CREDENTIALS")


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    access_expires_at: datetime
    refresh_token: str = ""
    refresh_expires_at: datetime | None = None


@dataclass(frozen=True)
class Session:
    user: UserRecord
    tenant_slug: str
    tokens: IssuedTokens


class IdentityService:
    def __init__(
        self,
        transactions: Transactions,
        passwords: PasswordHasher,
        tokens: TokenService,
        sessions: SessionStore,
        refresh_ttl_s: int = 14 * 24 * 3600,
    ) -> None:
        self._transactions = transactions
        self._passwords = passwords
        self._tokens = tokens
        self._sessions = sessions
        self._refresh_ttl_s = refresh_ttl_s

    # -- people ---------------------------------------------------------------------------------

    async def sign_up(self, tenant_name: str, email: str, password: str, display_name: str, phone_number: str = "") -> Session:
        slug = parse_tenant_name(tenant_name, "tenant")
        email = normalize_email(email)
        phone, phone_violations = e164(phone_number.strip()) if phone_number.strip() else (None, [])
        raise_if_violations(
            email_violations(email) + password_violations(password, email) + display_name_violations(display_name)
            + phone_violations
        )
        async with self._transactions.lookup(None) as unit_of_work:
            tenant = await tenants.find_public_tenant(unit_of_work, slug)
        if tenant is None:
            raise NotFound(message=f"tenant `{slug}` not found", reason="TENANT_NOT_FOUND", metadata={"slug": slug})
        password_hash = await self._passwords.hash(password)
        async with self._transactions.change(tenant.tenant_id) as unit_of_work:
            if await users.find_by_email(unit_of_work, email) is not None:
                raise AlreadyExists(message="this e-mail address is already registered", reason="EMAIL_TAKEN")
            if phone is not None and await users.find_by_phone(unit_of_work, phone) is not None:
                raise AlreadyExists(message="this phone number is already registered", reason="PHONE_TAKEN")
            user = await users.insert(unit_of_work, tenant.tenant_id, email, display_name.strip(), password_hash, ["customer"],
                                      phone_e164=phone)
            subject = f"users/{user.user_id}"
            await record_change(unit_of_work, subject, None, {"user": subject, "roles": ["customer"]})
            # A citizen can be paid from the moment they sign up: their account in the tenant's default currency,
            # opened (and audited by the ledger) in the same transaction as the user.
            await ledger.create_account(unit_of_work, change_context(subject), owner_user_id=user.user_id,
                                        kind="customer", currency=tenant.default_currency)
            issued = await self._start_session(unit_of_work, tenant.tenant_id, user)
            await unit_of_work.commit()
        return Session(user, slug, issued)

    async def login(self, tenant_name: str, email: str, password: str) -> Session:
        slug = parse_tenant_name(tenant_name, "tenant")
        email = normalize_email(email)
        raise_if_violations(required_violations(email=email, password=password))
        if len(email) > MAX_CREDENTIAL_LENGTH or len(password) > MAX_CREDENTIAL_LENGTH:
            raise _invalid_credentials()
        async with self._transactions.lookup(None) as unit_of_work:
            tenant = await tenants.find_tenant_any_status(unit_of_work, slug)
        user = None
        if tenant is not None and tenant.status == "active":
            async with self._transactions.lookup(tenant.tenant_id) as unit_of_work:
                user = await users.find_by_email(unit_of_work, email)
        # Always one Argon2id verification, whatever was (not) found: no timing oracle.
        usable = user is not None and user.status == "active"
        result = await self._passwords.verify(user.password_hash if usable else None, password)
        if not result.valid or tenant is None or user is None:
            raise _invalid_credentials()
        new_hash = await self._passwords.hash(password) if result.needs_rehash else None
        async with self._transactions.change(tenant.tenant_id) as unit_of_work:
            if new_hash is not None:
                await users.set_password_hash(unit_of_work, user.user_id, new_hash)
            issued = await self._start_session(unit_of_work, tenant.tenant_id, user)
            await unit_of_work.commit()
        return Session(user, slug, issued)

    async def _start_session(self, unit_of_work, tenant_id: uuid.UUID, user: UserRecord) -> IssuedTokens:
        return await self._issue_pair(unit_of_work, tenant_id, user, family_id=uuid.uuid4())

    async def _issue_pair(self, unit_of_work, tenant_id: uuid.UUID, user: UserRecord, family_id: uuid.UUID) -> IssuedTokens:
        access_token, principal = self._tokens.issue(subject=f"users/{user.user_id}", tenant_id=tenant_id, roles=user.roles)
        token_id, secret = uuid.uuid4(), secrets.token_urlsafe(32)
        refresh_expires_at = datetime.now(timezone.utc) + timedelta(seconds=self._refresh_ttl_s)
        await refresh_tokens.insert(
            unit_of_work, tenant_id, token_id, family_id, user.user_id, hash_secret(secret), refresh_expires_at
        )
        return IssuedTokens(
            access_token=access_token,
            access_expires_at=datetime.fromtimestamp(principal.expires_at, timezone.utc),
            refresh_token=f"{tenant_id.hex}.{token_id.hex}.{secret}",
            refresh_expires_at=refresh_expires_at,
        )

    # -- refresh and logout ---------------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        tenant_id, token_id, secret = _parse_refresh_token(refresh_token)
        async with self._transactions.change(tenant_id) as unit_of_work:
            record = await refresh_tokens.get_for_update(unit_of_work, token_id)
            if record is None or not hmac.compare_digest(record.secret_hash, hash_secret(secret)):
                raise Unauthenticated(message="the refresh token is not valid", reason="REFRESH_TOKEN_INVALID")
            if record.status == "used":
                # Someone replayed a token that was already exchanged: assume theft, end the whole family.
                await refresh_tokens.revoke_family(unit_of_work, record.family_id)
                await unit_of_work.commit()
                raise Unauthenticated(
                    message="the refresh token was already used; the session is revoked", reason="REFRESH_TOKEN_REUSED"
                )
            if record.status != "active" or record.expires_at <= datetime.now(timezone.utc):
                raise Unauthenticated(message="the refresh token has expired or was revoked", reason="REFRESH_TOKEN_INVALID")
            user = await users.get(unit_of_work, record.user_id)
            tenant_active = await tenants.is_active(unit_of_work, tenant_id)
            if user is None or user.status != "active" or not tenant_active:
                raise Unauthenticated(message="the refresh token is not valid", reason="REFRESH_TOKEN_INVALID")
            await refresh_tokens.mark_used(unit_of_work, token_id)
            issued = await self._issue_pair(unit_of_work, tenant_id, user, record.family_id)
            await unit_of_work.commit()
        return issued

    async def logout(self, principal: Principal, refresh_token: str) -> None:
        tenant_id, token_id, secret = _parse_refresh_token(refresh_token)
        if tenant_id != principal.tenant_id:
            raise Unauthenticated(message="the refresh token is not valid", reason="REFRESH_TOKEN_INVALID")
        async with self._transactions.change(tenant_id) as unit_of_work:
            record = await refresh_tokens.get_for_update(unit_of_work, token_id)
            owned = record is not None and f"users/{record.user_id}" == principal.subject
            if not owned or not hmac.compare_digest(record.secret_hash, hash_secret(secret)):
                raise Unauthenticated(message="the refresh token is not valid", reason="REFRESH_TOKEN_INVALID")
            await refresh_tokens.revoke_family(unit_of_work, record.family_id)
            await unit_of_work.commit()
        await self._sessions.revoke_access_token(principal.tenant_id, principal.token_id, principal.expires_at)

    # -- the caller -----------------------------------------------------------------------------

    async def current_user(self, principal: Principal) -> tuple[UserRecord | None, TerminalRecord | None, str]:
        async with self._transactions.lookup(principal.tenant_id) as unit_of_work:
            slug = await tenants.slug_of(unit_of_work, principal.tenant_id)
            if principal.is_terminal:
                terminal = await terminals.get(unit_of_work, principal.resource_id)
                if terminal is None:
                    raise Unauthenticated(message="the caller no longer exists", reason="PRINCIPAL_UNKNOWN")
                return None, terminal, slug
            user = await users.get(unit_of_work, principal.resource_id)
        if user is None:
            raise Unauthenticated(message="the caller no longer exists", reason="PRINCIPAL_UNKNOWN")
        return user, None, slug


    async def change_password(self, principal: Principal, current_password: str, new_password: str) -> None:
        if principal.is_terminal:
            raise FailedPrecondition(message="terminals have no password", reason="NOT_A_USER")
        async with self._transactions.lookup(principal.tenant_id) as unit_of_work:
            user = await users.get(unit_of_work, principal.resource_id)
        if user is None:
            raise Unauthenticated(message="the caller no longer exists", reason="PRINCIPAL_UNKNOWN")
        raise_if_violations(password_violations(new_password, user.email, "new_password"))
        if len(current_password) > MAX_CREDENTIAL_LENGTH or not (await self._passwords.verify(user.password_hash, current_password)).valid:
            raise invalid("current_password", MISMATCH, "is not the current password", "WRONG_PASSWORD")
        new_hash = await self._passwords.hash(new_password)
        async with self._transactions.change(principal.tenant_id) as unit_of_work:
            await users.set_password_hash(unit_of_work, user.user_id, new_hash)
            await refresh_tokens.revoke_all_for_user(unit_of_work, user.user_id)
            await record_change(unit_of_work, principal.subject, None,
                                {"user": principal.subject, "passwordChanged": True, "sessionsRevoked": True})
            await unit_of_work.commit()

    # -- terminals ------------------------------------------------------------------------------

    async def login_terminal(self, client_id: str, client_secret: str) -> tuple[TerminalRecord, IssuedTokens]:
        raise_if_violations(required_violations(client_id=client_id, client_secret=client_secret))
        if len(client_id) > 64 or len(client_secret) > MAX_CREDENTIAL_LENGTH:
            raise _invalid_credentials()
        async with self._transactions.lookup(None) as unit_of_work:
            credentials = await terminals.credentials_by_client_id(unit_of_work, client_id)
        # Compare against a fixed hash when unknown, so both paths cost the same.
        expected = credentials.secret_hash if credentials is not None else hash_secret("unknown-terminal")
        matches = hmac.compare_digest(expected, hash_secret(client_secret))
        usable = credentials is not None and credentials.status == "active" and credentials.tenant_status == "active"
        if not (matches and usable):
            raise _invalid_credentials()
        async with self._transactions.lookup(credentials.tenant_id) as unit_of_work:
            terminal = await terminals.get(unit_of_work, credentials.terminal_id)
        access_token, principal = self._tokens.issue(
            subject=f"terminals/{credentials.terminal_id}", tenant_id=credentials.tenant_id, roles=[TERMINAL_ROLE]
        )
        return terminal, IssuedTokens(access_token, datetime.fromtimestamp(principal.expires_at, timezone.utc))


def _parse_refresh_token(token: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    raise_if_violations(required_violations(refresh_token=token))
    parts = token.split(".") if 0 < len(token) <= MAX_REFRESH_TOKEN_LENGTH else []
    try:
        if len(parts) != 3 or not parts[2]:
            raise ValueError
        return uuid.UUID(hex=parts[0]), uuid.UUID(hex=parts[1]), parts[2]
    except ValueError:
        raise Unauthenticated(message="the refresh token is not valid", reason="REFRESH_TOKEN_INVALID") from None

