"""Authorization: the caller's roles must include one the access policy lists for the method.

Runs after authentication and before anything looks at the request body
(AIP-211: check permission before validating). Unlisted methods are denied.
"""

from __future__ import annotations

from domain.errors import PermissionDenied
from domain.principal import Principal


def authorize(principal: Principal | None, allowed_roles: frozenset[str]) -> None:
    """Raise PERMISSION_DENIED unless the principal holds one of the method's roles (none: nobody may)."""
    if principal is None or not (principal.roles & allowed_roles):
        raise PermissionDenied(message="your role may not call this method", reason="ROLE_NOT_ALLOWED")
