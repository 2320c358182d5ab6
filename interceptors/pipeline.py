"""One pass through every concern of a call: the server's only gRPC interceptor.

grpc.aio runs each server interceptor on every call: it awaits the interceptor, which awaits the next
one for the method's handler and wraps that handler in a new one, and each wrapper then adds a frame (an
async context manager) around the call. With eight concerns as eight interceptors, that machinery cost
more than the concerns themselves (issue #14: the project's no-op answered 0.43× the calls of a bare
grpc.aio server). Here one interceptor builds each method's handler the first time the method is called
— what the method needs, worked out once (`MethodPlan`) — and that handler runs the concerns, in this
order, in one coroutine:

1. the call's state: request id, client address, JSON or not (interceptors/request_context.py);
2. the size of the request headers (interceptors/request_headers.py);
3. admission: at most N unary calls at work per process (interceptors/admission.py);
4. identity: the bearer token, its revocations and the call's rate limit in one Redis round trip
   (interceptors/authentication.py);
5. authorization by role (interceptors/authorization.py);
6. the rate limit of a call not charged yet: login, sign-up, public calls (interceptors/rate_limit.py);
7. the request message: read here, so a missing or undecodable one is refused deliberately;
8. the method itself;

and around 2-8, error mapping (interceptors/error_mapping.py): every exception becomes a deliberate
status; at the end, the metrics and the access-log line of the call, with the code the client saw.

Written by hand: grpc.aio has no other way to compose server-side concerns than its interceptors, and
no library offers this one.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, AsyncIterator, Callable, Protocol

import grpc

from interceptors.access_policy import allowed_roles, is_public
from interceptors.admission import Admission, admitted
from interceptors.authorization import authorize
from interceptors.call_state import CallState, MethodPlan, current_call
from interceptors.error_mapping import abort_with, status_for_error
from interceptors.metrics import MetricsRegistry
from interceptors.rate_limit import RateLimits
from interceptors.request_context import TrustedNetworks, TrustedProxies, begin_call, log_call, log_level_of
from interceptors.request_headers import check_request_headers
from interceptors.undecodable import UndecodableRequest, tolerate_undecodable
from domain.errors import InvalidArgument

# How long a unary call's one message may take to arrive after its headers. gRPC clients send both
# together; a caller that sends headers and stalls would otherwise hold its admission place
# until its deadline — or for ever without one.
REQUEST_ARRIVAL_TIMEOUT_S = 10.0


class Identity(Protocol):
    """The identity stage: sets `state.principal` for the calls that need one, or raises a DomainError."""

    async def identify(self, plan: MethodPlan, context: grpc.aio.ServicerContext, state: CallState) -> None: ...


class CallPipeline(grpc.aio.ServerInterceptor):
    """Every concern of a call, in one pass. A stage given as None is skipped (tests build partial
    pipelines); the server builds the whole one (interceptors/__init__.py)."""

    def __init__(
        self,
        *,
        identity: Identity | None = None,
        rate_limits: RateLimits | None = None,
        admission: Admission | None = None,
        metrics: MetricsRegistry | None = None,
        trusted_proxies: TrustedNetworks = (),
        max_metadata_bytes: int | None = None,
        authorize_roles: bool = True,
    ) -> None:
        if max_metadata_bytes is not None and max_metadata_bytes < 1:
            raise ValueError(f"the metadata limit must be positive, not {max_metadata_bytes}")
        self._identity = identity
        self._rate_limits = rate_limits
        self._admission = admission
        self._metrics = metrics
        self._trusted_proxies = TrustedProxies(trusted_proxies)
        self._max_metadata_bytes = max_metadata_bytes
        self._authorize_roles = authorize_roles
        # Each method's handler, built on its first call. Only methods the server has (a handler was
        # found) are kept, so callers naming made-up methods cannot grow it.
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            inner = await continuation(handler_call_details)
            if inner is None:
                return None
            handler = self._handlers[method] = self._handler_for(method, inner)
        return handler

    def plan_for(self, method: str, handler: grpc.RpcMethodHandler) -> MethodPlan:
        public = is_public(method)
        return MethodPlan(
            method=method,
            public=public,
            roles=frozenset() if public else allowed_roles(method),
            rate_group=None if self._rate_limits is None else self._rate_limits.policy.group_for(method),
            admitted=self._admission is not None and admitted(method, handler),
            log_level=log_level_of(method),
        )

    def _handler_for(self, method: str, inner: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The method's handler, served with a streaming request so that the one request message of a
        unary-request method is read here (step 7). Callers see no difference: the wire format of
        unary and streaming requests is the same. Without it two inputs would never reach our code: a
        request that does not decode (gRPC answers UNKNOWN with the parser's message: HTTP 500 on the
        JSON face), and a call that ends without a request message, which grpc.aio leaves open until
        the client's deadline (for ever without one), holding its place."""
        plan = self.plan_for(method, inner)
        inner = tolerate_undecodable(inner)
        behaviour = {
            (False, False): inner.unary_unary,
            (True, False): inner.stream_unary,
            (False, True): inner.unary_stream,
            (True, True): inner.stream_stream,
        }[(inner.request_streaming, inner.response_streaming)]
        one_request = not inner.request_streaming

        if not inner.response_streaming:
            async def unary_response(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                return await self._serve_unary_response(plan, behaviour, one_request, requests, context)

            return grpc.stream_unary_rpc_method_handler(
                unary_response, inner.request_deserializer, inner.response_serializer
            )

        async def stream_response(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            # An async generator function itself: grpc.aio looks at the function to know how to serve it.
            responses = self._serve_stream_response(plan, behaviour, one_request, requests, context)
            try:
                async for response in responses:
                    yield response
            finally:
                await responses.aclose()  # its cleanup (log, metrics) now, in this call's context

        return grpc.stream_stream_rpc_method_handler(stream_response, inner.request_deserializer, inner.response_serializer)

    # -- the two shapes of a call ------------------------------------------------------------------

    async def _serve_unary_response(
        self, plan: MethodPlan, behaviour: Callable[..., Any], one_request: bool, requests: Any,
        context: grpc.aio.ServicerContext,
    ) -> Any:
        state = begin_call(plan.method, context, self._trusted_proxies)
        token = current_call.set(state)
        try:
            try:
                self._check_headers(state)
                if not plan.admitted:
                    return await self._respond(plan, behaviour, one_request, requests, context, state)
                async with self._admission:
                    return await self._respond(plan, behaviour, one_request, requests, context, state)
            except BaseException as error:
                await self._fail(plan, context, state, error)
        finally:
            self._end(plan, state)
            current_call.reset(token)

    async def _serve_stream_response(
        self, plan: MethodPlan, behaviour: Callable[..., Any], one_request: bool, requests: Any,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[Any]:
        # Streams are long-lived: they are never admitted (interceptors/admission.py says why).
        state = begin_call(plan.method, context, self._trusted_proxies)
        token = current_call.set(state)
        try:
            try:
                self._check_headers(state)
                await self._check_caller(plan, context, state)
                request = await _the_request(context) if one_request else requests
                responses = behaviour(request, context)
                if inspect.isawaitable(responses):
                    # The reader/writer style (it writes with `context.write` and returns None), such as
                    # grpc.health's Watch: nothing to iterate, just wait for it.
                    await responses
                    return
                if hasattr(responses, "__aiter__"):
                    async for response in responses:
                        yield response
                else:
                    for response in responses:
                        yield response
            except BaseException as error:
                await self._fail(plan, context, state, error)
        finally:
            self._end(plan, state)
            current_call.reset(token)

    # -- the stages ------------------------------------------------------------------------------------

    def _check_headers(self, state: CallState) -> None:
        if self._max_metadata_bytes is not None:
            check_request_headers(state.metadata, self._max_metadata_bytes)

    async def _check_caller(self, plan: MethodPlan, context: grpc.aio.ServicerContext, state: CallState) -> None:
        """Steps 4-6: who calls, whether they may, and whether they are within their rate limit."""
        if self._identity is not None:
            await self._identity.identify(plan, context, state)
        if self._authorize_roles and not plan.public:
            authorize(state.principal, plan.roles)
        if self._rate_limits is not None:
            await self._rate_limits.enforce(plan, state)

    async def _respond(
        self, plan: MethodPlan, behaviour: Callable[..., Any], one_request: bool, requests: Any,
        context: grpc.aio.ServicerContext, state: CallState,
    ) -> Any:
        await self._check_caller(plan, context, state)
        response = behaviour(await _the_request(context) if one_request else requests, context)
        return await response if inspect.isawaitable(response) else response

    async def _fail(
        self, plan: MethodPlan, context: grpc.aio.ServicerContext, state: CallState, error: BaseException
    ) -> None:
        """Error mapping: answer `error` with its deliberate status (this raises grpc's AbortError), or
        let cancellation and an abort already made pass, noting the code for the log and metrics."""
        if isinstance(error, grpc.aio.AbortError):
            if state.code == grpc.StatusCode.OK:
                state.code = grpc.StatusCode.UNKNOWN  # aborted without going through error mapping
            raise error
        if not isinstance(error, Exception) or isinstance(error, asyncio.CancelledError):
            if state.code == grpc.StatusCode.OK:
                state.code = grpc.StatusCode.CANCELLED
            raise error
        await abort_with(context, status_for_error(error, plan.method))

    def _end(self, plan: MethodPlan, state: CallState) -> None:
        if self._metrics is not None:
            self._metrics.record(plan.method, state.code, state.elapsed_ms())
        log_call(state, plan.log_level)


async def _the_request(context: grpc.aio.ServicerContext) -> Any:
    """The one request message of a unary-request call, or a deliberate refusal."""
    try:
        async with asyncio.timeout(REQUEST_ARRIVAL_TIMEOUT_S):  # a timer, not a task: cheap on every call
            request = await context.read()
    except TimeoutError:
        raise InvalidArgument(
            message=f"the request message did not arrive within {REQUEST_ARRIVAL_TIMEOUT_S:g} s of the call's headers",
            reason="REQUEST_NOT_RECEIVED",
        ) from None
    if request is grpc.aio.EOF:
        raise InvalidArgument(message="the call ended without a request message", reason="MISSING_REQUEST")
    if isinstance(request, UndecodableRequest):
        raise InvalidArgument(
            message="the request is not a valid protobuf message of this method's request type",
            reason="MALFORMED_REQUEST",
            metadata={"error": request.error},
        )
    return request
