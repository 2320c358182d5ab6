"""A statement's bounds (server/services/statements.py): past the most entries one document holds, the export
is refused before any job is recorded, naming the count and the maximum; at the bound, it is recorded PENDING."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from domain.errors import FailedPrecondition
from domain.principal import Principal
from server.services import statements
from server.services.statements import StatementsService
from server.services.transactions import Transactions
from storage import statement_exports
from tests.invariants.ledger_world import (  # noqa: F401 (fixtures)
    LedgerWorld, ledger_app_dsn, ledger_owner_dsn, ledger_units_of_work, world,
)


async def test_past_the_most_entries_the_export_is_refused_and_records_nothing(world: LedgerWorld, monkeypatch):
    account = await world.open(balance_minor=100)
    for _ in range(2):
        await world.top_up(account, 10)  # three entries in all
    operator = Principal(subject=f"users/{uuid.uuid4()}", tenant_id=world.tenant_id, roles=frozenset({"operator"}),
                         token_id="t", expires_at=0)
    service = StatementsService(Transactions(world.units_of_work), objects=None)
    now = datetime.now(timezone.utc)
    monkeypatch.setattr(statements, "MAX_ENTRIES", {"csv": 2, "pdf": 2})
    with pytest.raises(FailedPrecondition) as refused:
        await service.export(operator, f"accounts/{account}", now - timedelta(hours=1), now + timedelta(minutes=1), "pdf", "")
    assert refused.value.reason == "STATEMENT_TOO_LARGE" and refused.value.metadata == {"entries": "3", "maximum": "2"}

    monkeypatch.setattr(statements, "MAX_ENTRIES", {"csv": 3, "pdf": 3})
    export = await service.export(operator, f"accounts/{account}", now - timedelta(hours=1), now + timedelta(minutes=1), "csv", "")
    assert (export.state, export.entries_total, export.language, export.time_zone) == ("pending", 3, "en", "UTC")
    stored = await world.read(lambda unit_of_work: statement_exports.get(unit_of_work, export.export_id))
    assert stored == export
