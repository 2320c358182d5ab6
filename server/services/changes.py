"""Audit events of changes that move no money: tenants, users, terminals, passwords.

Money movements are audited by the ledger functions themselves. Identity and access changes are
audited here, in the same transaction as the change, in the tenant's chain: who did it (the caller's
subject), through which method, and the call's request id. Summaries name resources and roles, never
e-mail addresses, names or secrets — the chain is append-only and cannot forget personal data.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

from domain.ledger_rules import MAX_CALL_ID_LENGTH
from interceptors.call_state import current_method, current_request_id
from storage import audit
from storage.audit import RequestContext
from storage.unit_of_work import UnitOfWork



def change_context(actor: str) -> RequestContext:
    """The caller, this call's method and its request id (x-request-id, or the one the server gave it)."""
    request_id = current_request_id() or str(uuid.uuid4())
    return RequestContext(actor=actor, method=current_method() or "internal", request_id=request_id[:MAX_CALL_ID_LENGTH])


async def record_change(unit_of_work: UnitOfWork, actor: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> None:
    await audit.append_audit(unit_of_work, change_context(actor), {"before": before, "after": after})
