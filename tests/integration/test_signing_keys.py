"""Access-token signing keys in the real OpenBao: creation, rotation, check-and-set, and the keys CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import jwt
import pytest

from domain.config import Settings
from domain.tokens import TOKEN_KEY_UNKNOWN, TokenError, TokenService
from storage.secrets import SecretsStore, build_secrets
from storage.signing_keys import DEFAULT_RETIRED_KEY_GRACE_S, SigningKeyError, SigningKeyStore

ROOT = Path(__file__).resolve().parents[2]
TTL_S = 600
TENANT_ID = uuid.UUID("0b7c8f0e-6a1d-4c3e-9f55-2d8a61c0a001")
USER = "users/6f1c2b9a-3d4e-4f50-8a61-7b8c9d0e1f23"


@pytest.fixture
def settings(stack) -> Settings:
    return Settings(vault_address=stack.endpoints.vault_address, vault_token=stack.endpoints.vault_token)


@pytest.fixture
def secret_name() -> str:
    """A key set of its own per test, so tests never see each other's (or the servers') keys."""
    return f"test/jwt-signing-keys-{uuid.uuid4().hex}"


def _store(settings: Settings, secret_name: str, **options) -> SigningKeyStore:
    return SigningKeyStore(build_secrets(settings), secret_name=secret_name, **options)


def _tokens(key_ring) -> TokenService:
    return TokenService(key_ring, issuer="emoney.test", audience="emoney-api", access_ttl_s=TTL_S)


class _WriterInBetween:
    """The real secrets store, but another process changes the key set right after each versioned read."""

    def __init__(self, secrets: SecretsStore, change) -> None:
        self._secrets = secrets
        self._change = change

    async def read_versioned(self, path: str):
        stored = await self._secrets.read_versioned(path)
        await self._change()
        return stored

    async def write_if_version(self, path: str, values: dict, version: int) -> None:
        await self._secrets.write_if_version(path, values, version)


async def test_ensure_creates_the_first_key_once(settings, secret_name):
    """ensure() creates one Ed25519 key with the documented kid format, and later calls return it unchanged."""
    store = _store(settings, secret_name)
    assert await store.load() is None
    first = await store.ensure()
    again = await store.ensure()
    assert first.current_kid == again.current_kid and set(again.keys) == {first.current_kid}
    prefix, stamp, suffix = first.current_kid.split("-")
    assert prefix == "ed25519" and len(stamp) == 14 and stamp.isdigit() and len(suffix) == 4
    assert (await build_secrets(settings).read_versioned(secret_name)).version == 1


async def test_concurrent_ensure_agrees_on_one_key(settings, secret_name):
    """Processes starting together all end up with the same kid; only one write happens."""
    rings = await asyncio.gather(*(_store(settings, secret_name).ensure() for _ in range(5)))
    assert len({ring.current_kid for ring in rings}) == 1
    assert (await build_secrets(settings).read_versioned(secret_name)).version == 1


async def test_ensure_adopts_a_key_created_in_between(settings, secret_name):
    """When another process creates the key between our read and write, check-and-set makes us use theirs."""
    other = _store(settings, secret_name)
    racing = SigningKeyStore(_WriterInBetween(build_secrets(settings), other.ensure), secret_name=secret_name)
    ring = await racing.ensure()
    assert ring.current_kid == (await other.load()).current_kid


async def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(settings, secret_name):
    """After rotate(), the previous key still verifies its tokens and new tokens carry the new kid."""
    store = _store(settings, secret_name)
    tokens = _tokens(await store.ensure())
    old_token, old_principal = tokens.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = await store.rotate(TTL_S)
    ring = await store.load()
    assert ring.current_kid == new_kid != old_kid
    assert ring.keys[old_kid].private_key is None, "a retired key only verifies"
    tokens.replace_key_ring(ring)
    assert tokens.verify(old_token) == old_principal
    new_token, _ = tokens.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid


async def test_rotation_drops_keys_once_their_tokens_expired(settings, secret_name):
    """A key retired longer than the token lifetime plus grace is dropped; its tokens then fail."""
    now = [1_750_000_000]
    store = _store(settings, secret_name, clock=lambda: now[0])
    tokens = _tokens(await store.ensure())
    first_kid = (await store.load()).current_kid
    token, _ = tokens.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    now[0] += 1
    second_kid = await store.rotate(TTL_S)
    now[0] += TTL_S + DEFAULT_RETIRED_KEY_GRACE_S
    third_kid = await store.rotate(TTL_S)
    assert [key.kid for key in await store.summaries()] == [first_kid, second_kid, third_kid], "kept up to the limit"
    now[0] += 1
    fourth_kid = await store.rotate(TTL_S)
    summaries = await store.summaries()
    assert [(key.kid, key.current) for key in summaries] == [
        (second_kid, False),
        (third_kid, False),
        (fourth_kid, True),
    ]
    tokens.replace_key_ring(await store.load())
    with pytest.raises(TokenError) as raised:
        tokens.verify(token)
    assert raised.value.reason == TOKEN_KEY_UNKNOWN


async def test_a_rotation_that_loses_a_race_changes_nothing(settings, secret_name):
    """If the key set changes between read and write, rotate() refuses instead of overwriting."""
    other = _store(settings, secret_name)
    await other.ensure()
    interleaved = _WriterInBetween(build_secrets(settings), lambda: other.rotate(TTL_S))
    racing = SigningKeyStore(interleaved, secret_name=secret_name)
    with pytest.raises(SigningKeyError, match="run it again"):
        await racing.rotate(TTL_S)
    assert len(await other.summaries()) == 2, "only the other rotation happened"


async def test_a_malformed_key_set_is_refused_without_key_material(settings, secret_name):
    """A hand-edited, broken key set raises SigningKeyError that quotes no stored value."""
    await build_secrets(settings).write(
        secret_name,
        {"current_kid": "k1", "keys": {"k1": {"private_key_pem": "SECRET-PEM", "created_at": 1, "retired_at": None}}},
    )
    with pytest.raises(SigningKeyError) as raised:
        await _store(settings, secret_name).load()
    assert "SECRET-PEM" not in str(raised.value)


def _keys_cli(*arguments: str, vault_address: str, vault_token: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("VAULT_", "BAO_"))}
    environment |= {"VAULT_ADDR": vault_address, "VAULT_TOKEN": vault_token}
    return subprocess.run(
        [sys.executable, "-m", "server.keys_cli", *arguments],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_rotate_and_show(settings, secret_name):
    """`keys_cli rotate` twice then `show` lists both keys, the newer current; no private key is printed."""
    credentials = {"vault_address": settings.vault_address, "vault_token": settings.vault_token}
    rotated = [_keys_cli("--secret-name", secret_name, "rotate", **credentials) for _ in range(2)]
    for completed in rotated:
        assert completed.returncode == 0, completed.stderr
    kids = [completed.stdout.split()[1] for completed in rotated]
    shown = _keys_cli("--secret-name", secret_name, "show", **credentials)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("2 signing key(s)")
    assert kids[0] in lines[1] and "retired" in lines[1] and kids[1] in lines[2] and "current" in lines[2]
    stored = await build_secrets(settings).read(secret_name)
    for key in stored["keys"].values():
        pem_body = key["private_key_pem"].splitlines()[1]
        for output in (shown.stdout + shown.stderr, *(completed.stdout + completed.stderr for completed in rotated)):
            assert pem_body not in output and "PRIVATE KEY" not in output


def test_cli_show_with_no_keys_says_so(settings, secret_name):
    """`show` on an empty key set exits 0 and says how the first key is made."""
    credentials = {"vault_address": settings.vault_address, "vault_token": settings.vault_token}
    completed = _keys_cli("--secret-name", secret_name, "show", **credentials)
    assert completed.returncode == 0, completed.stderr
    assert "no signing keys" in completed.stdout


@pytest.mark.parametrize(
    ("arguments", "token", "code", "message"),
    [
        (["show"], "", 2, "VAULT_TOKEN is not set"),
        ([], "token", 2, "required"),
        (["rotate", "--max-token-ttl-s", "0"], "token", 2, "must be positive"),
        (["show"], "not-a-real-token", 1, "may not use"),
    ],
)
def test_cli_failures_exit_with_clear_messages(settings, arguments, token, code, message):
    """Usage and configuration errors exit 2, a refused token exits 1, each with a readable message."""
    completed = _keys_cli(*arguments, vault_address=settings.vault_address, vault_token=token)
    assert completed.returncode == code
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_cli_reports_an_unreachable_store(secret_name):
    """With nothing listening at VAULT_ADDR the CLI exits 1 and names the address."""
    from localstack.processes import free_port

    address = f"http://127.0.0.1:{free_port()}"
    completed = _keys_cli("--secret-name", secret_name, "rotate", vault_address=address, vault_token="token")
    assert completed.returncode == 1
    assert f"cannot reach the secrets store at {address}" in completed.stderr
