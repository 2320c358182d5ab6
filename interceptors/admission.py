"""Admission: at most `limit` unary calls of this process do their work at once; the others wait
their turn, first come first served, before anything of theirs runs.

Why (issue #6): past saturation every admitted call used to start at once — hundreds of them
interleaved on one event loop, each waiting its turn for Redis, a pooled connection and the CPU. The
Redis client's timeouts then fired on answers that had long arrived but were not read yet, and calls
failed with SESSION_STORE_UNAVAILABLE although every dependency was healthy. With a bound on the
calls in progress, a call that is admitted finishes at the speed of an unloaded server, and the excess
waits here, where waiting costs nothing: its latency grows, it does not fail.

A waiting call still ends when its client gives up (its deadline or a cancel: gRPC cancels the
coroutine, which leaves the queue). The queue itself is bounded by the server's
`maximum_concurrent_rpcs` (EMONEY_MAX_CONCURRENT_RPCS), past which gRPC answers RESOURCE_EXHAUSTED.

Streams (WatchPayments, health Watch) are long-lived and are not counted; neither is the health
service, so Envoy's health checks are answered at once however busy the server is.
"""

from __future__ import annotations

import asyncio

import grpc

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class Admission:
    """A FIFO gate of `limit` places; `waiting` and `active` for metrics and tests."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the admission limit must be at least 1, not {limit}")
        self.limit = limit
        self.active = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def __aenter__(self) -> None:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the place is handed over by __aexit__ (active already counts it)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a place just as it was cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)  # the place goes straight to the oldest waiter
                return
        self.active -= 1


def admitted(method: str, handler: grpc.RpcMethodHandler) -> bool:
    """Whether calls of this method pass through the gate: calls with one response, except the exempt
    services (health, reflection)."""
    return not handler.response_streaming and not method.startswith(EXEMPT_PREFIXES)
