"""Password hashing with Argon2id, off the event loop, with a bound on waiting work.

Parameters follow OWASP's recommendation (19 MiB, t=2, p=1): about 20-30 ms
here, instead of ~100 ms for the library default, so logins do not cap the
machine. Hashing runs in a small thread pool (argon2-cffi releases the GIL);
at most `max_waiting` more calls may queue behind it, beyond which callers get
RESOURCE_EXHAUSTED at once instead of piling up. Verifying an unknown user runs
against a dummy hash, so it costs the same as a wrong password.
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from domain.errors import REQUIRED, TOO_LONG, TOO_SHORT, TOO_WEAK, FieldViolation, ResourceExhausted

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128
# A short deny-list of the passwords attackers try first (length-eligible ones only).
COMMON_PASSWORDS = frozenset(
    {
        "1234567890", "12345678910", "123456789a", "qwertyuiop", "1q2w3e4r5t", "password1", "password12",
        "password123", "password1234", "passw0rd123", "iloveyou123", "qwerty1234", "qwerty12345", "abcdefghij",
        "abc1234567", "0987654321", "1111111111", "0000000000", "letmein123", "welcome123", "admin12345",
        "administrator", "changeme123", "football123", "princess123", "sunshine123", "trustno1234",
        "q1w2e3r4t5y6", "asdfghjkl1", "zxcvbnm123", "monkey12345", "dragon12345", "master12345",
        "superman123", "starwars123", "whatever123", "baseball123", "computer123", "1qaz2wsx3edc",
    }
)


def password_violations(password: str, email: str, field: str = "password") -> list[FieldViolation]:
    """NIST-style rules: length, not common, not the e-mail. No composition rules."""
    if not password:
        return [FieldViolation(field, "is required", REQUIRED)]
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append((f"must be at least {MIN_PASSWORD_LENGTH} characters", TOO_SHORT))
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append((f"must be at most {MAX_PASSWORD_LENGTH} characters", TOO_LONG))
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(password)) < 3:
        problems.append(("is too common or too simple", TOO_WEAK))
    local_part = email.split("@", 1)[0].lower()
    if email and (lowered == email.lower() or (len(local_part) >= 4 and local_part in lowered)):
        problems.append(("must not contain the e-mail address", TOO_WEAK))
    return [FieldViolation(field, description, reason) for description, reason in problems]


@dataclass(frozen=True)
class VerifyResult:
    valid: bool
    needs_rehash: bool = False


class PasswordHasher:
    def __init__(self, *, workers: int = 2, max_waiting: int = 64, memory_kib: int = 19 * 1024, time_cost: int = 2) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=argon2.Type.ID
        )
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._slots = asyncio.Semaphore(workers + max_waiting)
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    async def _run(self, function, *arguments):
        if self._slots.locked():
            raise ResourceExhausted(
                message="too many password checks at once; retry shortly", reason="PASSWORD_HASHING_BUSY", retry_after_ms=200
            )
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *arguments)

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> VerifyResult:
        """Check a password; with no hash (unknown user), burn the same time and answer invalid."""
        return await self._run(self._verify_sync, password_hash, password)

    def _verify_sync(self, password_hash: str | None, password: str) -> VerifyResult:
        candidate = password_hash if password_hash else self._dummy_hash
        try:
            self._hasher.verify(candidate, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return VerifyResult(valid=False)
        if not password_hash:
            return VerifyResult(valid=False)
        return VerifyResult(valid=True, needs_rehash=self._hasher.check_needs_rehash(password_hash))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
