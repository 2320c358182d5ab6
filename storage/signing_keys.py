"""Access-token signing keys, kept as one key set in the secrets store.

The whole set is one KV v2 secret (`secret/emoney/jwt-signing-keys` by default):

    {"current_kid": "ed25519-20250101120000-ab12",
     "keys": {kid: {"private_key_pem": "...", "created_at": epoch_s, "retired_at": epoch_s | null}}}

One secret, so a reader always sees a consistent set; every change is a
check-and-set write, so two processes changing it at once cannot overwrite
each other. A rotation retires the current key instead of deleting it: tokens
it signed keep verifying until they expire, then the key is dropped.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.tokens import DEFAULT_LEEWAY_S, DEFAULT_REFRESH_INTERVAL_S, KeyRing, SigningKey
from storage.secrets import SecretsStore, SecretVersionConflict

logger = logging.getLogger("emoney.signing_keys")

DEFAULT_SECRET_NAME = "jwt-signing-keys"
# A retired key is kept for the longest token lifetime plus this: the verification leeway, and the
# time other server processes may keep signing with it until their periodic reload sees the rotation.
DEFAULT_RETIRED_KEY_GRACE_S = DEFAULT_LEEWAY_S + int(DEFAULT_REFRESH_INTERVAL_S)
# Rotating faster than retired keys expire piles keys up; the cap keeps the set (and the secret) small.
MAX_KEYS = 10
MAX_KID_CHARS = 64


class SigningKeyError(Exception):
    """The stored key set is malformed, or a change to it could not be made. Never carries key material."""


@dataclass(frozen=True)
class StoredKey:
    kid: str
    private_key_pem: str = field(repr=False)
    created_at: int
    # None for the current key; when it stopped signing, for the others.
    retired_at: int | None


@dataclass(frozen=True)
class KeySummary:
    """What an operator may see about one key: no key material."""

    kid: str
    current: bool
    created_at: int
    retired_at: int | None


@dataclass(frozen=True)
class _KeySet:
    current_kid: str
    keys: dict[str, StoredKey]

    @classmethod
    def starting_with(cls, key: StoredKey) -> _KeySet:
        return cls(key.kid, {key.kid: key})

    @classmethod
    def from_document(cls, values: dict[str, Any]) -> _KeySet:
        current_kid, entries = values.get("current_kid"), values.get("keys")
        if not isinstance(current_kid, str) or not isinstance(entries, dict) or current_kid not in entries:
            raise SigningKeyError("the stored signing key set is malformed: current_kid or keys")
        keys = {kid: _stored_key(kid, entry) for kid, entry in entries.items()}
        if any((key.retired_at is None) != (kid == current_kid) for kid, key in keys.items()):
            raise SigningKeyError("the stored signing key set is malformed: exactly the current key is unretired")
        return cls(current_kid, keys)

    def to_document(self) -> dict[str, Any]:
        return {
            "current_kid": self.current_kid,
            "keys": {
                kid: {
                    "private_key_pem": key.private_key_pem,
                    "created_at": key.created_at,
                    "retired_at": key.retired_at,
                }
                for kid, key in self.keys.items()
            },
        }

    def key_ring(self) -> KeyRing:
        return KeyRing(
            current_kid=self.current_kid,
            keys={kid: _signing_key(key, with_private_key=kid == self.current_kid) for kid, key in self.keys.items()},
        )

    def rotated(self, new_key: StoredKey, now: int, keep_retired_s: int) -> _KeySet:
        """The current key retires now; keys retired more than `keep_retired_s` ago are dropped."""
        kept = {
            kid: replace(key, retired_at=now) if kid == self.current_kid else key
            for kid, key in self.keys.items()
            if kid == self.current_kid or now - key.retired_at <= keep_retired_s
        }
        if len(kept) >= MAX_KEYS:
            raise SigningKeyError(
                f"{len(kept)} signing keys are still in use (the limit is {MAX_KEYS}); "
                "rotate again once older keys have expired"
            )
        return _KeySet(new_key.kid, {**kept, new_key.kid: new_key})


def _stored_key(kid: object, entry: object) -> StoredKey:
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_CHARS or not isinstance(entry, dict):
        raise SigningKeyError("the stored signing key set is malformed: a key id or entry")
    pem, created_at, retired_at = entry.get("private_key_pem"), entry.get("created_at"), entry.get("retired_at")
    if not isinstance(pem, str) or type(created_at) is not int or not (retired_at is None or type(retired_at) is int):
        raise SigningKeyError(f"the stored signing key {kid} is malformed")
    return StoredKey(kid=kid, private_key_pem=pem, created_at=created_at, retired_at=retired_at)


def _signing_key(key: StoredKey, *, with_private_key: bool) -> SigningKey:
    try:
        private_key = serialization.load_pem_private_key(key.private_key_pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        private_key = None
    if not isinstance(private_key, Ed25519PrivateKey):
        raise SigningKeyError(f"the stored signing key {key.kid} is not an Ed25519 private key")
    return SigningKey(
        kid=key.kid,
        private_key=private_key if with_private_key else None,
        public_key=private_key.public_key(),
        created_at=key.created_at,
    )


def _retirement_order(key: StoredKey) -> tuple[bool, int, int, str]:
    return (key.retired_at is None, key.retired_at or 0, key.created_at, key.kid)


def _new_key(now: int, taken: set[str]) -> StoredKey:
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d%H%M%S")
    kid = f"ed25519-{stamp}-{os.urandom(2).hex()}"
    while kid in taken:  # same second and same 16 random bits: draw again
        kid = f"ed25519-{stamp}-{os.urandom(2).hex()}"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return StoredKey(kid=kid, private_key_pem=pem.decode(), created_at=now, retired_at=None)


class SigningKeyStore:
    def __init__(
        self,
        secrets: SecretsStore,
        *,
        secret_name: str = DEFAULT_SECRET_NAME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = secrets
        self._secret_name = secret_name
        self._clock = clock

    @property
    def secret_name(self) -> str:
        return self._secret_name

    async def load(self) -> KeyRing | None:
        """The stored key ring (private key of the current key only), or None if none is stored yet."""
        key_set, _ = await self._read()
        return None if key_set is None else key_set.key_ring()

    async def ensure(self) -> KeyRing:
        """The stored key ring, creating the first key if there is none. Safe for processes starting at once."""
        key_set, version = await self._read()
        if key_set is not None:
            return key_set.key_ring()
        first_key = _new_key(int(self._clock()), taken=set())
        created = _KeySet.starting_with(first_key)
        try:
            await self._secrets.write_if_version(self._secret_name, created.to_document(), version)
        except SecretVersionConflict:
            # Another process created the first key a moment ago: use theirs.
            key_ring = await self.load()
            if key_ring is None:
                raise SigningKeyError("the signing key set changed while it was being created; try again") from None
            return key_ring
        logger.info("created the first access-token signing key", extra={"kid": first_key.kid})
        return created.key_ring()

    async def rotate(self, max_token_ttl_s: int, *, grace_s: int = DEFAULT_RETIRED_KEY_GRACE_S) -> str:
        """Make a new key current and return its kid. The previous key keeps verifying; keys retired more
        than `max_token_ttl_s + grace_s` ago (so every token they signed has expired) are dropped."""
        if max_token_ttl_s <= 0 or grace_s < 0:
            raise ValueError("max_token_ttl_s must be positive and grace_s not negative")
        key_set, version = await self._read()
        now = int(self._clock())
        new_key = _new_key(now, taken=set() if key_set is None else set(key_set.keys))
        if key_set is None:
            rotated = _KeySet.starting_with(new_key)
        else:
            rotated = key_set.rotated(new_key, now, keep_retired_s=max_token_ttl_s + grace_s)
        try:
            await self._secrets.write_if_version(self._secret_name, rotated.to_document(), version)
        except SecretVersionConflict:
            # Retrying could rotate twice; the operator decides.
            raise SigningKeyError(
                "the signing keys changed during the rotation; nothing was changed, run it again"
            ) from None
        logger.info("rotated the access-token signing key", extra={"kid": new_key.kid})
        return new_key.kid

    async def summaries(self) -> list[KeySummary]:
        """Every stored key without key material: retired keys in the order they retired, then the current one."""
        key_set, _ = await self._read()
        if key_set is None:
            return []
        keys = sorted(key_set.keys.values(), key=_retirement_order)
        return [KeySummary(key.kid, key.kid == key_set.current_kid, key.created_at, key.retired_at) for key in keys]

    async def _read(self) -> tuple[_KeySet | None, int]:
        stored = await self._secrets.read_versioned(self._secret_name)
        key_set = None if stored.values is None else _KeySet.from_document(stored.values)
        return key_set, stored.version
