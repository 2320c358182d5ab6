"""Authorization: the caller's roles must include one the access policy lists for the method.

Runs after authentication and before anything looks at the request body
(AIP-211: check permission before validating). Unlisted methods are denied.
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import grpc

from interceptors.access_policy import allowed_roles, is_public
from interceptors.call_state import current_call
from interceptors.error_mapping import abort_with_domain_error
from interceptors.wrapping import AroundInterceptor
from domain.errors import PermissionDenied


class AuthorizationInterceptor(AroundInterceptor):
    @contextlib.asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        if not is_public(method):
            state = current_call.get()
            principal = None if state is None else state.principal
            if principal is None or not (principal.roles & allowed_roles(method)):
                await abort_with_domain_error(
                    context, PermissionDenied(message="your role may not call this method", reason="ROLE_NOT_ALLOWED")
                )
        yield
