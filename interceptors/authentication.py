"""Authentication: every non-public call carries a valid bearer token, or is refused.

The token is read from the `authorization` metadata (`Bearer <jwt>`; Envoy
passes the same header through for JSON and grpc-web), verified (EdDSA only,
every claim required), then checked against Redis in one round trip: revoked
`jti` (logout), suspended tenant, disabled terminal. The principal is put on the
call state for the layers below. When Redis cannot answer, the call is refused
with UNAVAILABLE: revocations live there, so we fail closed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import AsyncIterator

import grpc
import redis.exceptions

from interceptors.access_policy import is_public
from interceptors.call_state import current_call
from interceptors.error_mapping import abort_with_domain_error
from interceptors.wrapping import AroundInterceptor
from domain.errors import ServiceUnavailable, Unauthenticated
from domain.principal import Principal
from domain.tokens import KeyRingRefresher, TokenError
from storage.sessions import SessionStore

logger = logging.getLogger("emoney.auth")
MAX_AUTHORIZATION_HEADER_LENGTH = 4096 + len("Bearer ")


def bearer_token(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token and len(value) <= MAX_AUTHORIZATION_HEADER_LENGTH:
                return token.strip()
            return None
    return None


class AuthenticationInterceptor(AroundInterceptor):
    def __init__(self, key_refresher: KeyRingRefresher, sessions: SessionStore) -> None:
        # The refresher verifies with the current key ring and reloads it once when a token
        # names a kid this process does not know yet (another server rotated the key).
        self._key_refresher = key_refresher
        self._sessions = sessions

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        if not is_public(method):
            try:
                principal = await self._authenticate(context)
            except (Unauthenticated, ServiceUnavailable) as error:
                await abort_with_domain_error(context, error)
            state = current_call.get()
            if state is not None:
                state.principal = principal
        yield

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        token = bearer_token(context)
        if token is None:
            raise Unauthenticated(
                message="this method needs `authorization: Bearer <access token>`", reason="CREDENTIALS_MISSING"
            )
        principal = await self._verify(token)
        try:
            denial = await self._sessions.denial(principal.token_id, principal.tenant_id, principal.subject)
        except redis.exceptions.RedisError:
            raise ServiceUnavailable(
                message="sessions cannot be checked right now; retry shortly", reason="SESSION_STORE_UNAVAILABLE"
            ) from None
        if denial is not None:
            raise Unauthenticated(message="the access token is no longer valid", reason=denial)
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            return await self._key_refresher.verify(token)
        except TokenError as error:
            raise Unauthenticated(message=str(error), reason=error.reason) from None
