"""Access tokens: short-lived EdDSA (Ed25519) JWTs that say who is calling and for which tenant.

One algorithm is accepted (no `alg: none`, no HS/RS confusion), every claim is
required, and the verification key is chosen by the header `kid` from our own
key ring, never taken from the token. Signing keys live in the secrets store
(storage/signing_keys.py); a rotation makes a new key current while the
previous one keeps verifying until the tokens it signed have expired.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.principal import TERMINAL_ROLE, USER_ROLES, Principal

logger = logging.getLogger("emoney.tokens")

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("sub", "tenant_id", "roles", "jti", "iat", "exp", "iss", "aud")
KNOWN_ROLES = frozenset((*USER_ROLES, TERMINAL_ROLE))
DEFAULT_ACCESS_TTL_S = 600
DEFAULT_LEEWAY_S = 30
DEFAULT_REFRESH_INTERVAL_S = 60.0
# Our tokens are 500-600 characters (all five user roles included); anything far above is not ours and
# is refused before any parsing work.
MAX_TOKEN_CHARS = 4096
VERIFIED_CACHE_SIZE = 10_000  # verified tokens remembered per process (about 3 MB)
MAX_TOKEN_ID_CHARS = 64
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SUBJECT_PATTERN = re.compile(rf"(users|terminals)/{_UUID}")
_TENANT_ID_PATTERN = re.compile(_UUID)

TOKEN_INVALID = "TOKEN_INVALID"
TOKEN_EXPIRED = "TOKEN_EXPIRED"
TOKEN_KEY_UNKNOWN = "TOKEN_KEY_UNKNOWN"


class TokenError(Exception):
    """An access token was refused. `reason` is UPPER_SNAKE; the message is safe to show a client."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _invalid() -> TokenError:
    return TokenError(TOKEN_INVALID, "the access token is invalid")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    # Only the current key needs its private half; retired keys only verify.
    private_key: Ed25519PrivateKey | None = field(repr=False)
    public_key: Ed25519PublicKey = field(repr=False)
    # Seconds since the epoch.
    created_at: int


@dataclass(frozen=True)
class KeyRing:
    current_kid: str
    keys: Mapping[str, SigningKey]

    def __post_init__(self) -> None:
        if any(kid != key.kid for kid, key in self.keys.items()):
            raise ValueError("key ring entries must be stored under their own kid")
        if self.current_kid not in self.keys or self.keys[self.current_kid].private_key is None:
            raise ValueError("the current key must be in the ring with its private key")

    @property
    def current(self) -> SigningKey:
        return self.keys[self.current_kid]


class TokenService:
    """Issues and verifies access tokens with the keys of one key ring.

    `clock` stamps `iat`/`exp` when issuing (tests backdate tokens with it); verification
    checks expiry against the wall clock inside PyJWT, with `leeway_s` for clock skew. A token
    that claims to live longer than `access_ttl_s` (`exp - iat`) is not one we issued and is
    refused; both stamps come from the issuer's one clock, so skew needs no allowance there.
    """

    def __init__(
        self,
        key_ring: KeyRing,
        *,
        issuer: str,
        audience: str,
        access_ttl_s: int = DEFAULT_ACCESS_TTL_S,
        leeway_s: int = DEFAULT_LEEWAY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if access_ttl_s <= 0 or leeway_s < 0:
            raise ValueError("access_ttl_s must be positive and leeway_s not negative")
        self._key_ring = key_ring
        self._issuer = issuer
        self._audience = audience
        self._access_ttl_s = access_ttl_s
        self._leeway_s = leeway_s
        self._clock = clock
        # Tokens whose signature and claims were verified, by their exact text: a signature check
        # (EdDSA) costs more than the rest of an authenticated call's bookkeeping, and the same token
        # comes back on every call of a session. A hit re-checks only the expiry; the key ring
        # changing empties it. Revocation is not cached here (the Redis deny-list is read per call).
        self._verified: dict[str, Principal] = {}

    def replace_key_ring(self, key_ring: KeyRing) -> None:
        self._key_ring = key_ring
        self._verified = {}

    def key_ids(self) -> set[str]:
        return set(self._key_ring.keys)

    def issue(self, *, subject: str, tenant_id: uuid.UUID, roles: Iterable[str]) -> tuple[str, Principal]:
        role_set = frozenset(roles)
        if not SUBJECT_PATTERN.fullmatch(subject):
            raise ValueError("subject must be users/{uuid} or terminals/{uuid}")
        if not role_set or not role_set <= KNOWN_ROLES:
            raise ValueError("roles must be a non-empty set of known roles")
        issued_at = int(self._clock())
        principal = Principal(
            subject=subject,
            tenant_id=tenant_id,
            roles=role_set,
            token_id=uuid.uuid4().hex,
            expires_at=issued_at + self._access_ttl_s,
        )
        claims = {
            "sub": subject,
            "tenant_id": str(tenant_id),
            "roles": sorted(role_set),
            "jti": principal.token_id,
            "iat": issued_at,
            "exp": principal.expires_at,
            "iss": self._issuer,
            "aud": self._audience,
        }
        key = self._key_ring.current
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, principal

    def verify(self, token: str) -> Principal:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise _invalid()
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at <= time.time() - self._leeway_s:  # PyJWT's rule, on the same clock
                del self._verified[token]
                raise TokenError(TOKEN_EXPIRED, "the access token has expired")
            return known
        principal = self._verify_signed(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = principal
        return principal

    def _verify_signed(self, token: str) -> Principal:
        key = self._verification_key(token)
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(TOKEN_EXPIRED, "the access token has expired") from None
        except jwt.InvalidTokenError as error:
            raise _invalid() from error
        return _principal_from_claims(claims, max_lifetime_s=self._access_ttl_s)

    def _verification_key(self, token: str) -> SigningKey:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise _invalid() from error
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _invalid()
        key = self._key_ring.keys.get(kid)
        if key is None:
            raise TokenError(TOKEN_KEY_UNKNOWN, "the access token was signed by an unknown key")
        return key


def _principal_from_claims(claims: dict[str, Any], *, max_lifetime_s: int) -> Principal:
    """Types, shapes and the lifetime, which PyJWT does not check; a signed token from us always passes."""
    subject, tenant_id, roles = claims["sub"], claims["tenant_id"], claims["roles"]
    token_id, expires_at, issued_at = claims["jti"], claims["exp"], claims["iat"]
    if not (isinstance(subject, str) and SUBJECT_PATTERN.fullmatch(subject)):
        raise _invalid()
    if not (isinstance(tenant_id, str) and _TENANT_ID_PATTERN.fullmatch(tenant_id)):
        raise _invalid()
    if not (
        isinstance(roles, list)
        and 0 < len(roles) <= len(KNOWN_ROLES)
        and all(isinstance(role, str) and role in KNOWN_ROLES for role in roles)
    ):
        raise _invalid()
    if not (isinstance(token_id, str) and 0 < len(token_id) <= MAX_TOKEN_ID_CHARS):
        raise _invalid()
    if type(expires_at) is not int or type(issued_at) is not int:
        raise _invalid()
    if expires_at - issued_at > max_lifetime_s:
        raise _invalid()
    return Principal(
        subject=subject,
        tenant_id=uuid.UUID(tenant_id),
        roles=frozenset(roles),
        token_id=token_id,
        expires_at=expires_at,
    )


class KeyRingSource(Protocol):
    async def load(self) -> KeyRing | None: ...


class KeyRingRefresher:
    """Keeps a TokenService's key ring in step with the secrets store.

    Reloads every `refresh_interval_s`, and at once when a token names a kid we do not
    know (another process may have rotated) — but at most once per `min_refresh_gap_s`,
    so a flood of made-up kids cannot turn into a flood of secrets-store reads.
    """

    def __init__(
        self,
        source: KeyRingSource,
        tokens: TokenService,
        *,
        refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S,
        min_refresh_gap_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._tokens = tokens
        self._refresh_interval_s = refresh_interval_s
        self._min_refresh_gap_s = min_refresh_gap_s
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._last_requested_at: float | None = None

    async def run(self) -> None:
        """Reload forever, every `refresh_interval_s`; the first key ring comes from start-up (ensure())."""
        while True:
            await asyncio.sleep(self._refresh_interval_s)
            async with self._lock:
                await self._reload()

    async def refresh_now(self) -> bool:
        """Reload unless one was requested less than `min_refresh_gap_s` ago; True if it reloaded."""
        async with self._lock:
            now = self._monotonic()
            if self._last_requested_at is not None and now - self._last_requested_at < self._min_refresh_gap_s:
                return False
            self._last_requested_at = now
            return await self._reload()

    async def verify(self, token: str) -> Principal:
        """Verify, reloading the key ring once (debounced) when the token's kid is unknown."""
        try:
            return self._tokens.verify(token)
        except TokenError as error:
            if error.reason != TOKEN_KEY_UNKNOWN or not await self.refresh_now():
                raise
        return self._tokens.verify(token)

    async def _reload(self) -> bool:
        try:
            key_ring = await self._source.load()
        except Exception as error:  # the store may be down or sealed: keep verifying with the keys we have
            logger.warning("signing keys not reloaded: %s", type(error).__name__)
            return False
        if key_ring is None:
            logger.warning("signing keys not reloaded: none stored")
            return False
        self._tokens.replace_key_ring(key_ring)
        return True
