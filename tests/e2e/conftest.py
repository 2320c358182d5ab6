"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import grpc
import pytest


@pytest.fixture
def channel(stack):
    """A native gRPC channel through Envoy (a module may define its own, longer-lived one)."""
    with grpc.insecure_channel(stack.endpoints.envoy) as opened:
        yield opened
