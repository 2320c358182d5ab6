"""Wrap any kind of gRPC method handler (unary or streaming) in one async
context manager, so each interceptor states its concern exactly once.

The context manager sees the whole call: for a server stream, every message is
yielded inside it, so an error raised mid-stream reaches it like any other.
"""

from __future__ import annotations

import inspect
from typing import Any, AsyncContextManager, AsyncIterator, Callable

import grpc

Around = Callable[[str, grpc.aio.ServicerContext], AsyncContextManager[None]]


def wrap_handler(handler: grpc.RpcMethodHandler, method: str, around: Around) -> grpc.RpcMethodHandler:
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _single(handler.unary_unary, method, around), handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _single(handler.stream_unary, method, around), handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _stream(handler.unary_stream, method, around), handler.request_deserializer, handler.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        _stream(handler.stream_stream, method, around), handler.request_deserializer, handler.response_serializer
    )


def _single(inner: Callable[..., Any], method: str, around: Around) -> Callable[..., Any]:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with around(method, context):
            return await inner(request, context)

    return behaviour


def _stream(inner: Callable[..., AsyncIterator[Any]], method: str, around: Around) -> Callable[..., AsyncIterator[Any]]:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with around(method, context):
            responses = inner(request, context)
            if inspect.isawaitable(responses):
                # A handler in the reader/writer style (it writes with `context.write` and returns
                # None), such as grpc.health's Watch: nothing to iterate, just wait for it.
                await responses
                return
            async for response in responses:
                yield response

    return behaviour


class UndecodableRequest:
    """Handed to a handler instead of a request whose bytes are not a valid message of the method's
    type (corrupt wire format, a string field that is not UTF-8, ...)."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def tolerate_undecodable(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The same handler, but a request that does not decode reaches the handler as an
    `UndecodableRequest` instead of failing inside gRPC (which answers UNKNOWN with the parser's
    message), so the innermost layer can refuse it with a deliberate status."""
    deserializer = handler.request_deserializer
    if deserializer is None or handler.request_streaming:
        return handler

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as error:  # google.protobuf.message.DecodeError and friends
            return UndecodableRequest(type(error).__name__)

    return handler._replace(request_deserializer=deserialize)


class AroundInterceptor(grpc.aio.ServerInterceptor):
    """Base class: subclasses implement `around(method, context)`, and `covers` when some methods are
    none of their concern."""

    def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncContextManager[None]:
        raise NotImplementedError

    def covers(self, method: str, handler: grpc.RpcMethodHandler) -> bool:
        return True

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or not self.covers(handler_call_details.method, handler):
            return handler
        return wrap_handler(handler, handler_call_details.method, self.around)
