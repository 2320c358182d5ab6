"""Outermost interceptor: a request id for every call, and one JSON log line per call.

The request id comes from `x-request-id` (Envoy generates one for every request
it proxies) when it is well-formed, else a new UUID; it is echoed back to the
client in the initial metadata so a support ticket can quote it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from typing import AsyncIterator

import grpc

from interceptors.call_state import CallState, current_call
from interceptors.wrapping import AroundInterceptor

REQUEST_ID_HEADER = "x-request-id"
# Accept what Envoy and common clients generate; anything else is replaced, not trusted.
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

access_log = logging.getLogger("emoney.access")
_QUIET_PREFIX = "/grpc.health.v1.Health/"


def _request_id_from(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _REQUEST_ID_PATTERN.match(value):
            return value
    return str(uuid.uuid4())


class RequestContextInterceptor(AroundInterceptor):
    @contextlib.asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        state = CallState(method=method, request_id=_request_id_from(context), peer=context.peer() or "")
        token = current_call.set(state)
        try:
            await context.send_initial_metadata(((REQUEST_ID_HEADER, state.request_id),))
            yield
        except grpc.aio.AbortError:
            if state.code == grpc.StatusCode.OK:
                state.code = grpc.StatusCode.UNKNOWN  # aborted without going through error mapping
            raise
        except BaseException:
            if state.code == grpc.StatusCode.OK:
                state.code = grpc.StatusCode.CANCELLED
            raise
        finally:
            # Envoy probes health every second per server; keep those out of the INFO log.
            level = logging.DEBUG if method.startswith(_QUIET_PREFIX) else logging.INFO
            access_log.log(
                level,
                "call",
                extra={
                    "method": method,
                    "code": state.code.name,
                    "reason": state.error_reason,
                    "duration_ms": round(state.elapsed_ms(), 3),
                    "peer": state.peer,
                },
            )
            current_call.reset(token)
