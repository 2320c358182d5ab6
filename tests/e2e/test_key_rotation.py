"""Signing-key rotation is a command; tokens signed before it stay valid, and every server learns
the new key the first time it sees a token signed with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import jwt

from emoney.auth.v1 import auth_pb2
from domain.config import Settings
from domain.tokens import TokenService
from storage.secrets import build_secrets
from storage.signing_keys import SigningKeyStore
from tests.fixtures.identity import auth_stub, bearer, demo_user, login

ROOT = Path(__file__).resolve().parents[2]


async def test_rotation_keeps_old_tokens_and_spreads_the_new_key(stack):
    """After `keys_cli rotate`: a token from before still works on every server, and a token signed with
    the new key is accepted by both servers (each reloads its key ring on the unknown kid)."""
    customer = demo_user(stack, "customer")
    before = login(stack.endpoints.envoy, "tenants/demo-city", customer.email, customer.password)
    old_kid = jwt.get_unverified_header(before.tokens.access_token)["kid"]

    environment = {**os.environ, "VAULT_ADDR": stack.endpoints.vault_address, "VAULT_TOKEN": stack.endpoints.vault_token}
    rotated = subprocess.run(
        [sys.executable, "-m", "server.keys_cli", "rotate"], env=environment, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert rotated.returncode == 0, rotated.stderr

    settings = Settings(vault_address=stack.endpoints.vault_address, vault_token=stack.endpoints.vault_token)
    key_ring = await SigningKeyStore(build_secrets(settings)).load()
    assert key_ring.current_kid != old_kid
    minted, _ = TokenService(key_ring, issuer=settings.token_issuer, audience=settings.token_audience).issue(
        subject=before.user.name, tenant_id=stack.demo.tenant_id, roles=["customer"]
    )
    for address in stack.endpoints.grpc_servers:
        with grpc.insecure_channel(address) as channel:
            auth = auth_stub(channel)
            for token in (before.tokens.access_token, minted):
                me = auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(token), timeout=10)
                assert me.user.email == customer.email
