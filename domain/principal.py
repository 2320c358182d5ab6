"""Who is calling: the authenticated principal of one call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

# Roles a user can hold, and the role every terminal token carries.
USER_ROLES = ("customer", "merchant", "operator", "tenant_admin", "platform_admin")
TERMINAL_ROLE = "terminal"

# Who may become a principal at all: the statuses of users, terminals and tenants (the CHECK constraints
# of migrations 0002 and 0003 allow exactly these; only `active` ones log in).
USER_STATUSES = ("active", "disabled")
TERMINAL_STATUSES = ("active", "disabled")
TENANT_STATUSES = ("active", "suspended")


@dataclass(frozen=True)
class Principal:
    # `users/{uuid}` or `terminals/{uuid}` (the JWT `sub`).
    subject: str
    tenant_id: uuid.UUID
    roles: frozenset[str]
    # The access token's `jti` and expiry (seconds since the epoch), for logout.
    token_id: str
    expires_at: int

    @property
    def is_terminal(self) -> bool:
        return self.subject.startswith("terminals/")

    @property
    def resource_id(self) -> uuid.UUID:
        return uuid.UUID(self.subject.split("/", 1)[1])
