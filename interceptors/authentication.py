"""Authentication: every non-public call carries a valid bearer token, or is refused (a stage of
interceptors/pipeline.py).

The token is read from the `authorization` metadata (`Bearer <jwt>`; Envoy
passes the same header through for JSON and grpc-web), verified (EdDSA only,
every claim required), then checked against Redis: revoked `jti` (logout),
suspended tenant, disabled terminal — in the same round trip (one Lua script,
storage/rate_limits.py `admit`) as the call's rate limit, which is then charged
here instead of in the rate-limit stage: one Redis round trip per call. The principal is put on the
call state for the layers below. When Redis cannot answer, the call is refused
with UNAVAILABLE: revocations live there, so we fail closed.
"""

from __future__ import annotations

import logging

import grpc
import redis.exceptions

from interceptors.call_state import CallState, MethodPlan
from interceptors.rate_limit import RateLimitPolicy, client_address_of, rate_limited
from domain.errors import ServiceUnavailable, Unauthenticated
from domain.principal import Principal
from domain.tokens import KeyRingRefresher, TokenError
from storage.rate_limits import RateLimiter
from storage.sessions import DENIALS, SessionStore, denial_keys

logger = logging.getLogger("emoney.auth")
MAX_AUTHORIZATION_HEADER_LENGTH = 4096 + len("Bearer ")


def bearer_token(metadata: tuple) -> str | None:
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token and len(value) <= MAX_AUTHORIZATION_HEADER_LENGTH:
                return token.strip()
            return None
    return None


class TokenAuthentication:
    """The identity stage of the pipeline: a non-public call's principal, from its bearer token."""

    def __init__(self, key_refresher: KeyRingRefresher, sessions: SessionStore,
                 rate_limits: tuple[RateLimiter, RateLimitPolicy] | None = None) -> None:
        # The refresher verifies with the current key ring and reloads it once when a token
        # names a kid this process does not know yet (another server rotated the key).
        self._key_refresher = key_refresher
        self._sessions = sessions
        # With the limiter and its policy, the token check and the rate limit share one round trip.
        self._rate_limits = rate_limits

    async def identify(self, plan: MethodPlan, context: grpc.aio.ServicerContext, state: CallState) -> None:
        """Set `state.principal`, or raise UNAUTHENTICATED, UNAVAILABLE or RESOURCE_EXHAUSTED."""
        if plan.public:
            return
        principal = await self._verify(state.metadata)
        await self._check_sessions(plan, principal, state)
        state.principal = principal

    async def _verify(self, metadata: tuple) -> Principal:
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated(
                message="this method needs `authorization: Bearer <access token>`", reason="CREDENTIALS_MISSING"
            )
        try:
            return await self._key_refresher.verify(token)
        except TokenError as error:
            raise Unauthenticated(message=str(error), reason=error.reason) from None

    async def _check_sessions(self, plan: MethodPlan, principal: Principal, state: CallState) -> None:
        """Revoked, suspended or disabled: UNAUTHENTICATED. Over its rate limit (when charged here):
        RESOURCE_EXHAUSTED. Redis away: UNAVAILABLE — revocations live there, so we fail closed."""
        limiter, policy = self._rate_limits or (None, None)
        group = plan.rate_group
        try:
            if limiter is None or policy is None or group is None:
                denial = await self._sessions.denial(principal.token_id, principal.tenant_id, principal.subject)
                retry_after_ms = 0
            else:
                buckets = policy.buckets_for(group, principal, client_address_of(state))
                keys = denial_keys(principal.token_id, principal.tenant_id, principal.subject)
                admission = await limiter.admit(keys, buckets)
                denial = None if admission.denied is None else DENIALS[admission.denied]
                retry_after_ms = admission.retry_after_ms
                state.rate_limit_charged = True
        except redis.exceptions.RedisError:
            raise ServiceUnavailable(
                message="sessions cannot be checked right now; retry shortly", reason="SESSION_STORE_UNAVAILABLE"
            ) from None
        if denial is not None:
            raise Unauthenticated(message="the access token is no longer valid", reason=denial)
        if retry_after_ms > 0:
            raise rate_limited(group, retry_after_ms)
