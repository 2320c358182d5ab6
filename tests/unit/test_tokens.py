"""Access tokens: issue/verify, every known JWT attack, leeway, key rotation and key-ring refresh."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.utils import base64url_decode, base64url_encode

from domain.tokens import (
    MAX_TOKEN_CHARS,
    REQUIRED_CLAIMS,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    TOKEN_KEY_UNKNOWN,
    KeyRing,
    KeyRingRefresher,
    SigningKey,
    TokenError,
    TokenService,
)

ISSUER = "emoney.test"
AUDIENCE = "emoney-api"
TTL_S = 600
LEEWAY_S = 30
TENANT_ID = uuid.UUID("0b7c8f0e-6a1d-4c3e-9f55-2d8a61c0a001")
USER = "users/6f1c2b9a-3d4e-4f50-8a61-7b8c9d0e1f23"


def _key(kid: str) -> SigningKey:
    private_key = Ed25519PrivateKey.generate()
    return SigningKey(kid=kid, private_key=private_key, public_key=private_key.public_key(), created_at=0)


def _retired(key: SigningKey) -> SigningKey:
    return SigningKey(kid=key.kid, private_key=None, public_key=key.public_key, created_at=key.created_at)


def _ring(current: SigningKey, *others: SigningKey) -> KeyRing:
    return KeyRing(current_kid=current.kid, keys={key.kid: key for key in (current, *others)})


def _service(ring: KeyRing, clock=time.time) -> TokenService:
    return TokenService(ring, issuer=ISSUER, audience=AUDIENCE, access_ttl_s=TTL_S, leeway_s=LEEWAY_S, clock=clock)


def _claims(**overrides) -> dict:
    """Valid claims as of now, with `overrides`; an override may be a function of now (a parameter made at
    collection time must not be a clock reading: the suite may run for longer than a token lives)."""
    now = int(time.time())
    claims = {
        "sub": USER,
        "tenant_id": str(TENANT_ID),
        "roles": ["customer"],
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + TTL_S,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    claims.update({name: value(now) if callable(value) else value for name, value in overrides.items()})
    return claims


def _signed(key: SigningKey, claims: dict, **header) -> str:
    """A token really signed by `key`: what an attacker cannot make, used to test claim checks."""
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, **header})


def _segment(value: dict) -> str:
    return base64url_encode(json.dumps(value).encode()).decode()


def _refused(service: TokenService, token: str) -> str:
    with pytest.raises(TokenError) as raised:
        service.verify(token)
    return raised.value.reason


@pytest.fixture
def key() -> SigningKey:
    return _key("ed25519-20250101000000-aaaa")


@pytest.fixture
def service(key: SigningKey) -> TokenService:
    return _service(_ring(key))


def test_an_issued_token_verifies_to_the_same_principal(service, key):
    """issue() → verify() round-trips subject, tenant, roles, jti and expiry; the header names the key."""
    token, principal = service.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer", "merchant"])
    assert service.verify(token) == principal
    assert principal.roles == {"customer", "merchant"}
    assert principal.expires_at - int(time.time()) in range(TTL_S - 2, TTL_S + 1)
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "JWT", "kid": key.kid}


def test_every_token_gets_its_own_id(service):
    """Two tokens for the same caller carry different jti values (logout revokes one, not both)."""
    first = service.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])[1]
    second = service.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])[1]
    assert first.token_id != second.token_id


@pytest.mark.parametrize(
    ("subject", "roles"),
    [("admins/6f1c2b9a-3d4e-4f50-8a61-7b8c9d0e1f23", ["customer"]), (USER, []), (USER, ["root"])],
)
def test_issue_refuses_what_verify_would_refuse(service, subject, roles):
    """The issuer never signs a subject or role set that verification rejects."""
    with pytest.raises(ValueError):
        service.issue(subject=subject, tenant_id=TENANT_ID, roles=roles)


def test_alg_none_is_refused(service, key):
    """An unsigned token (`alg: none`) naming a real kid is TOKEN_INVALID."""
    token = f"{_segment({'alg': 'none', 'typ': 'JWT', 'kid': key.kid})}.{_segment(_claims())}."
    assert _refused(service, token) == TOKEN_INVALID


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.Raw])
def test_hs256_signed_with_the_public_key_is_refused(service, key, encoding):
    """HS/RS confusion: HMAC-SHA256 keyed with our public key bytes is TOKEN_INVALID."""
    public_format = (
        serialization.PublicFormat.SubjectPublicKeyInfo
        if encoding is serialization.Encoding.PEM
        else serialization.PublicFormat.Raw
    )
    secret = key.public_key.public_bytes(encoding, public_format)
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid})}.{_segment(_claims())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert _refused(service, f"{signing_input}.{base64url_encode(signature).decode()}") == TOKEN_INVALID


def test_an_rs256_token_is_refused(service, key):
    """A token signed with RSA (any algorithm but EdDSA) is TOKEN_INVALID, even with a known kid."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": key.kid})
    assert _refused(service, token) == TOKEN_INVALID


def test_a_token_signed_by_another_ed25519_key_under_our_kid_is_refused(service, key):
    """The signature is checked with our key for that kid: a stranger's Ed25519 key fails."""
    stranger = _key(key.kid)
    assert _refused(service, _signed(stranger, _claims())) == TOKEN_INVALID


@pytest.mark.parametrize(("claim", "value"), [("aud", "another-api"), ("iss", "evil.example")])
def test_wrong_audience_or_issuer_is_refused(service, key, claim, value):
    """A properly signed token for another audience or from another issuer is TOKEN_INVALID."""
    assert _refused(service, _signed(key, _claims(**{claim: value}))) == TOKEN_INVALID


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_each_missing_claim_is_refused(service, key, claim):
    """Every claim is required: a signed token without any one of them is TOKEN_INVALID."""
    claims = _claims()
    del claims[claim]
    assert _refused(service, _signed(key, claims)) == TOKEN_INVALID


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": "users/not-a-uuid"},
        {"sub": "admins/6f1c2b9a-3d4e-4f50-8a61-7b8c9d0e1f23"},
        {"tenant_id": "demo-city"},
        {"tenant_id": 42},
        {"roles": []},
        {"roles": "customer"},
        {"roles": ["customer", "root"]},
        {"roles": [["customer"]]},
        {"jti": "x" * 65},
        {"jti": 7},
        {"exp": lambda now: now + TTL_S + 0.5},
    ],
)
def test_claims_of_the_wrong_shape_are_refused(service, key, overrides):
    """Signed tokens whose claims have the wrong type or shape are TOKEN_INVALID."""
    assert _refused(service, _signed(key, _claims(**overrides))) == TOKEN_INVALID


def test_a_tampered_tenant_id_is_refused(service):
    """Editing tenant_id in the payload while keeping the signature is TOKEN_INVALID."""
    token, _ = service.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    header, payload, signature = token.split(".")
    claims = json.loads(base64url_decode(payload))
    claims["tenant_id"] = str(uuid.uuid4())
    assert _refused(service, f"{header}.{_segment(claims)}.{signature}") == TOKEN_INVALID


def test_an_unknown_kid_is_reported_as_such(service):
    """A token naming a key we do not have is TOKEN_KEY_UNKNOWN (the caller may reload keys)."""
    assert _refused(service, _signed(_key("ed25519-20990101000000-ffff"), _claims())) == TOKEN_KEY_UNKNOWN


@pytest.mark.parametrize("kid", [None, 7, ["ed25519-20250101000000-aaaa"]])
def test_a_missing_or_non_string_kid_is_refused(service, key, kid):
    """Without a string kid there is no key to verify with: TOKEN_INVALID, though the signature is ours."""
    header = {"alg": "EdDSA", "typ": "JWT"} | ({} if kid is None else {"kid": kid})
    signing_input = f"{_segment(header)}.{_segment(_claims())}"
    signature = base64url_encode(key.private_key.sign(signing_input.encode())).decode()
    assert _refused(service, f"{signing_input}.{signature}") == TOKEN_INVALID


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        "....",
        "é.ü.ß",
        f"{_segment({'alg': 'EdDSA'})}",
        f"{base64url_encode(b'not json').decode()}.e30.",
        f"{base64url_encode(b'[1, 2]').decode()}.e30.",
        "x" * (MAX_TOKEN_CHARS + 1),
    ],
)
def test_garbage_is_refused(service, token):
    """Malformed, non-JSON and oversized strings are TOKEN_INVALID, never another exception."""
    assert _refused(service, token) == TOKEN_INVALID


def test_an_oversized_token_is_refused_even_with_a_valid_signature(service, key):
    """The length cap applies before any parsing: a genuine but huge token is TOKEN_INVALID."""
    token = _signed(key, _claims(padding="p" * MAX_TOKEN_CHARS))
    assert _refused(service, token) == TOKEN_INVALID


def test_a_token_expired_within_the_leeway_still_verifies(key):
    """Clock skew: a token that expired less than leeway_s ago is accepted."""
    issued_at = time.time() - TTL_S - LEEWAY_S + 10
    issuer = _service(_ring(key), clock=lambda: issued_at)
    token, principal = issuer.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    assert _service(_ring(key)).verify(token) == principal


def test_a_token_expired_beyond_the_leeway_is_refused(key):
    """A token that expired more than leeway_s ago is TOKEN_EXPIRED."""
    issued_at = time.time() - TTL_S - LEEWAY_S - 10
    issuer = _service(_ring(key), clock=lambda: issued_at)
    token, _ = issuer.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    assert _refused(_service(_ring(key)), token) == TOKEN_EXPIRED


def test_a_remembered_token_still_expires(key, monkeypatch):
    """Verified tokens are remembered (no second signature check), but one verified while fresh is
    TOKEN_EXPIRED once its expiry (plus leeway) has passed, like any other."""
    service = _service(_ring(key))
    token, principal = service.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    assert service.verify(token) == principal
    assert service.verify(token) == principal
    later = time.time() + TTL_S + LEEWAY_S + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert _refused(service, token) == TOKEN_EXPIRED


def test_a_remembered_token_is_checked_again_after_the_key_ring_changes(key):
    """Replacing the key ring forgets every verified token: a token of a dropped key is refused even
    if it was verified a moment before."""
    service = _service(_ring(key))
    token, _ = service.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    service.verify(token)
    service.replace_key_ring(_ring(_key("ed25519-20250103000000-cccc")))
    assert _refused(service, token) == TOKEN_KEY_UNKNOWN


def test_a_token_issued_in_the_future_is_refused(service, key):
    """An iat further ahead than the leeway is TOKEN_INVALID (not a token we issued)."""
    later = int(time.time()) + LEEWAY_S + 60
    assert _refused(service, _signed(key, _claims(iat=later, exp=later + TTL_S))) == TOKEN_INVALID


@pytest.mark.parametrize("lifetime_s", [TTL_S + 1, 10 * 365 * 24 * 3600], ids=["a-second-too-long", "ten-years"])
def test_a_token_living_longer_than_the_configured_lifetime_is_refused(service, key, lifetime_s):
    """exp - iat above access_ttl_s is no token we issued, even correctly signed: TOKEN_INVALID."""
    now = int(time.time())
    assert _refused(service, _signed(key, _claims(iat=now, exp=now + lifetime_s))) == TOKEN_INVALID


def test_a_token_that_expires_in_2100_is_refused(service, key):
    """A signed token valid until 2100 (exp far past iat) is refused like any other bad token."""
    assert _refused(service, _signed(key, _claims(exp=4_102_444_800))) == TOKEN_INVALID


def test_a_token_of_exactly_the_configured_lifetime_verifies(service, key):
    """The server's own tokens live exactly access_ttl_s, and pass."""
    now = int(time.time())
    assert service.verify(_signed(key, _claims(iat=now, exp=now + TTL_S))).expires_at == now + TTL_S


def test_refusal_messages_carry_no_internals(service, key):
    """What a client may see names no kid, claim or library detail."""
    forged = _signed(_key("ed25519-20990101000000-ffff"), _claims(aud="x"))
    for token in (forged, _signed(key, _claims(aud="x")), "garbage"):
        with pytest.raises(TokenError) as raised:
            service.verify(token)
        message = str(raised.value)
        assert message.startswith("the access token ") and "ed25519" not in message and "aud" not in message


def test_a_key_ring_needs_its_current_private_key(key):
    """A ring whose current key cannot sign is refused when built."""
    with pytest.raises(ValueError):
        _ring(_retired(key))
    with pytest.raises(ValueError):
        KeyRing(current_kid="missing", keys={key.kid: key})


def test_a_retired_key_verifies_until_it_is_dropped(key):
    """After rotation the previous key's tokens verify; once dropped they are TOKEN_KEY_UNKNOWN."""
    service = _service(_ring(key))
    old_token, old_principal = service.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    new_key = _key("ed25519-20250102000000-bbbb")
    service.replace_key_ring(_ring(new_key, _retired(key)))
    assert service.verify(old_token) == old_principal
    new_token, _ = service.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    assert service.key_ids() == {key.kid, new_key.kid}
    service.replace_key_ring(_ring(new_key))
    assert _refused(service, old_token) == TOKEN_KEY_UNKNOWN
    assert service.verify(new_token).subject == USER


class _Source:
    """An in-memory key source that counts loads and can fail."""

    def __init__(self, key_ring: KeyRing | None) -> None:
        self.key_ring = key_ring
        self.loads = 0
        self.failing = False

    async def load(self) -> KeyRing | None:
        self.loads += 1
        if self.failing:
            raise ConnectionError("store down")
        return self.key_ring


async def test_an_unknown_kid_triggers_one_reload_and_then_verifies(key):
    """A token from a freshly rotated key verifies after one debounced reload of the key ring."""
    new_key = _key("ed25519-20250102000000-bbbb")
    other_process = _service(_ring(new_key, _retired(key)))
    token, principal = other_process.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    source = _Source(_ring(new_key, _retired(key)))
    service = _service(_ring(key))
    refresher = KeyRingRefresher(source, service, monotonic=lambda: 100.0)
    assert await refresher.verify(token) == principal
    assert source.loads == 1
    new_token, _ = service.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid


async def test_made_up_kids_reload_at_most_once_per_gap(key):
    """A flood of unknown kids causes one store read per min_refresh_gap_s, not one per token."""
    now = [100.0]
    source = _Source(_ring(key))
    service = _service(_ring(key))
    refresher = KeyRingRefresher(source, service, min_refresh_gap_s=5.0, monotonic=lambda: now[0])
    forged = _signed(_key("ed25519-20990101000000-ffff"), _claims())
    for _ in range(20):
        with pytest.raises(TokenError):
            await refresher.verify(forged)
    assert source.loads == 1
    now[0] += 5.0
    with pytest.raises(TokenError):
        await refresher.verify(forged)
    assert source.loads == 2


async def test_a_failing_store_keeps_the_current_key_ring(key, service):
    """When the store is down (or empty) the service keeps verifying with the keys it has."""
    token, principal = service.issue(subject=USER, tenant_id=TENANT_ID, roles=["customer"])
    source = _Source(None)
    refresher = KeyRingRefresher(source, service, min_refresh_gap_s=0.0)
    assert await refresher.refresh_now() is False
    source.failing = True
    assert await refresher.refresh_now() is False
    assert service.verify(token) == principal


async def test_the_periodic_reload_picks_up_a_rotation(key, service):
    """run() swaps in the stored key ring on its interval, without any token asking for it."""
    new_key = _key("ed25519-20250102000000-bbbb")
    source = _Source(_ring(new_key, _retired(key)))
    task = asyncio.create_task(KeyRingRefresher(source, service, refresh_interval_s=0.01).run())
    try:
        for _ in range(200):
            if service.key_ids() == {key.kid, new_key.kid}:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert service.key_ids() == {key.kid, new_key.kid}
