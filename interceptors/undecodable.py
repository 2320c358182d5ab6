"""A request that does not decode reaches our code as a value instead of failing inside gRPC."""

from __future__ import annotations

from typing import Any

import grpc


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
