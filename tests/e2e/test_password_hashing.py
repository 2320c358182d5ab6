"""Argon2id hashing runs off the event loop: a burst of logins does not stall cheap calls."""

from __future__ import annotations

import asyncio
import time

import grpc

from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from emoney.platform.v1 import platform_pb2, platform_pb2_grpc
from tests.fixtures.identity import demo_user


async def test_cheap_calls_are_served_while_logins_hash(stack):
    """While 16 logins are hashing on one server, GetServerInfo on the same server answers long before they finish."""
    customer = demo_user(stack, "customer")
    async with grpc.aio.insecure_channel(stack.endpoints.grpc_servers[0]) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        platform = platform_pb2_grpc.PlatformServiceStub(channel)
        await platform.GetServerInfo(platform_pb2.GetServerInfoRequest(), timeout=10)  # warm the channel
        request = auth_pb2.LoginRequest(tenant="tenants/demo-city", email=customer.email, password=customer.password)
        started = time.monotonic()
        logins = [asyncio.ensure_future(auth.Login(request, timeout=30)) for _ in range(16)]
        await asyncio.sleep(0.01)
        probe_started = time.monotonic()
        await platform.GetServerInfo(platform_pb2.GetServerInfoRequest(), timeout=10)
        probe_s = time.monotonic() - probe_started
        results = await asyncio.gather(*logins)
        logins_s = time.monotonic() - started
    assert all(result.tokens.access_token for result in results)
    # 16 hashes on 2 worker threads take many hash-times; the probe must not wait for them.
    assert probe_s < logins_s / 3, f"probe {probe_s:.3f}s vs logins {logins_s:.3f}s"
