"""The admission gate (interceptors/admission.py): a bound on calls at work, FIFO, and nothing lost
when a waiting or just-admitted call is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from interceptors.admission import Admission


async def _hold(gate: Admission, name: str, order: list[str], release: asyncio.Event) -> None:
    async with gate:
        order.append(name)
        await release.wait()


async def test_at_most_limit_calls_work_at_once_and_the_rest_enter_in_arrival_order():
    gate, order, release = Admission(2), [], asyncio.Event()
    tasks = [asyncio.create_task(_hold(gate, f"call-{number}", order, release)) for number in range(6)]
    await asyncio.sleep(0.01)
    assert (gate.active, gate.waiting, order) == (2, 4, ["call-0", "call-1"])
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == [f"call-{number}" for number in range(6)]
    assert (gate.active, gate.waiting) == (0, 0)


async def test_a_cancelled_waiter_leaves_the_queue_and_takes_no_place():
    gate, order, release = Admission(1), [], asyncio.Event()
    first = asyncio.create_task(_hold(gate, "first", order, release))
    second = asyncio.create_task(_hold(gate, "second", order, release))
    third = asyncio.create_task(_hold(gate, "third", order, release))
    await asyncio.sleep(0.01)
    second.cancel()
    await asyncio.sleep(0.01)
    assert gate.waiting == 1
    release.set()
    await asyncio.wait_for(asyncio.gather(first, third), 5)
    assert second.cancelled() and order == ["first", "third"]
    assert (gate.active, gate.waiting) == (0, 0)


async def test_a_place_handed_to_a_call_cancelled_at_that_moment_passes_to_the_next():
    gate, order = Admission(1), []
    release_first = asyncio.Event()
    first = asyncio.create_task(_hold(gate, "first", order, release_first))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(_hold(gate, "second", order, asyncio.Event()))
    third_release = asyncio.Event()
    third = asyncio.create_task(_hold(gate, "third", order, third_release))
    await asyncio.sleep(0.01)
    release_first.set()
    await asyncio.sleep(0)  # first leaves and hands its place to second ...
    second.cancel()  # ... which is cancelled before it runs again
    third_release.set()
    await asyncio.wait_for(asyncio.gather(first, third), 5)
    with pytest.raises(asyncio.CancelledError):
        await second
    assert order == ["first", "third"]
    assert (gate.active, gate.waiting) == (0, 0)


async def test_an_error_inside_releases_the_place():
    gate = Admission(1)
    with pytest.raises(RuntimeError):
        async with gate:
            raise RuntimeError("the handler failed")
    async with gate:
        assert gate.active == 1
    assert gate.active == 0


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        Admission(0)


# --- the gate in a real grpc.aio server (loopback, no dependencies), behind the real error mapping ---

import grpc  # noqa: E402

from interceptors.pipeline import CallPipeline  # noqa: E402


class _Counter:
    def __init__(self) -> None:
        self.now = self.peak = 0

    async def hold(self, seconds: float) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.now -= 1


async def _serve(counter: _Counter, limit: int) -> tuple[grpc.aio.Server, int]:
    async def unary(request: bytes, context) -> bytes:
        await counter.hold(0.05)
        return b"done"

    async def stream(request: bytes, context):
        await counter.hold(0.2)
        yield b"event"

    # The test methods are in no access policy: role checks are left out of this pipeline.
    server = grpc.aio.server(interceptors=[CallPipeline(admission=Admission(limit), authorize_roles=False)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Gate", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    }),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def test_unary_calls_behind_error_mapping_are_admitted_limit_at_a_time():
    """Error mapping serves every unary call as stream_unary; the gate must count that shape too (it
    once wrapped only unary_unary and so let every call through)."""
    counter = _Counter()
    server, port = await _serve(counter, limit=2)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Gate/Unary")
            answers = await asyncio.wait_for(asyncio.gather(*(call(b"x", timeout=10) for _ in range(12))), 10)
    finally:
        await server.stop(0)
    assert answers == [b"done"] * 12
    assert counter.peak == 2


async def test_streams_are_not_counted():
    counter = _Counter()
    server, port = await _serve(counter, limit=1)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = channel.unary_stream("/test.Gate/Stream")

            async def one() -> list[bytes]:
                return [message async for message in stream(b"x", timeout=10)]

            answers = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(4))), 10)
    finally:
        await server.stop(0)
    assert answers == [[b"event"]] * 4
    assert counter.peak == 4


async def test_a_call_whose_message_never_arrives_gives_its_place_back(monkeypatch):
    """Headers and then nothing: after REQUEST_ARRIVAL_TIMEOUT_S the call is refused (INVALID_ARGUMENT) and
    its place goes to the next call, instead of being held until a deadline that may never come."""
    from interceptors import pipeline

    monkeypatch.setattr(pipeline, "REQUEST_ARRIVAL_TIMEOUT_S", 0.3)
    counter = _Counter()
    server, port = await _serve(counter, limit=1)
    never = asyncio.Event()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            async def silent():  # a request stream that never yields its message
                await never.wait()
                yield b"x"

            stalled = channel.stream_unary("/test.Gate/Unary")(silent(), timeout=30)
            await asyncio.sleep(0.05)
            answer = await asyncio.wait_for(channel.unary_unary("/test.Gate/Unary")(b"x", timeout=10), 5)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(stalled, 5)
    finally:
        never.set()
        await server.stop(0)
    assert answer == b"done"
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
