"""Fixtures and helpers for ledger tests: a fresh tenant per test, a pool as the application role.

Imported by tests/integration/test_ledger*.py and tests/invariants/test_*.py (fixtures live in their
own module, not in a conftest). Everything runs against the session's real PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from localstack import provisioning
from storage import idempotency, ledger
from storage.audit import RequestContext
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

Result = TypeVar("Result")
POOL_MAX_CONNECTIONS = 30


def new_context(method: str = "test/Move", actor: str = "user:tester", request_id: str | None = None, **request: Any) -> RequestContext:
    """A request context whose hash covers `request` (so two contexts with the same request_id and
    the same request are a retry; with a different request, a reuse)."""
    request_id = request_id or str(uuid.uuid4())
    return RequestContext(actor, method, request_id, idempotency.request_hash(method, {"request_id": request_id, **request}))


async def authorize_hold(
    unit_of_work: UnitOfWork,
    context: RequestContext,
    *,
    account_id: uuid.UUID,
    merchant_account_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    expires_at: datetime,
    terminal_id: uuid.UUID | None = None,
) -> ledger.Outcome[ledger.HoldRecord]:
    """Reserve funds on the payer's account for a later capture: available drops, the ledger balance not.

    ledger_authorize_hold() called directly: production reaches it only through a payment code
    (payments_redeem_code, services/payments.py redeem_code), so the storage layer has no wrapper for it."""
    async with ledger.translated_failures():
        cursor = await unit_of_work.connection.execute(
            "select * from ledger_authorize_hold(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (account_id, merchant_account_id, terminal_id, amount_minor, currency, expires_at,
             *ledger._call_arguments(context)),
        )
        return ledger._hold_outcome(await cursor.fetchone())



def create_tenant(owner_dsn: str, currency: str = "EUR") -> uuid.UUID:
    tenant_id = uuid.uuid4()
    with psycopg.connect(owner_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(tenant_id),))
        connection.execute(
            "insert into tenants (tenant_id, slug, display_name, default_currency) values (%s, %s, 'Ledger test', %s)",
            (tenant_id, f"ledger-{tenant_id.hex[:12]}", currency),
        )
    return tenant_id


@dataclass
class LedgerWorld:
    """One tenant with helpers to open accounts and move money through storage.ledger."""

    tenant_id: uuid.UUID
    units_of_work: UnitOfWorkFactory
    currency: str = "EUR"
    _float_account_id: uuid.UUID | None = field(default=None, init=False)

    async def run(self, work: Callable[[UnitOfWork], Awaitable[Result]]) -> Result:
        """Run `work` in one unit of work of this tenant and commit it."""
        async with self.units_of_work(self.tenant_id) as unit_of_work:
            result = await work(unit_of_work)
            await unit_of_work.commit()
            return result

    async def read(self, work: Callable[[UnitOfWork], Awaitable[Result]]) -> Result:
        async with self.units_of_work(self.tenant_id) as unit_of_work:
            return await work(unit_of_work)

    async def user(self) -> uuid.UUID:
        async def insert(unit_of_work: UnitOfWork) -> uuid.UUID:
            cursor = await unit_of_work.connection.execute(
                "insert into users (tenant_id, email, display_name) values (%s, %s, 'Ledger user') returning user_id",
                (self.tenant_id, f"{uuid.uuid4().hex}@ledger.example"),
            )
            return (await cursor.fetchone())[0]

        return await self.run(insert)

    async def float_account(self) -> uuid.UUID:
        if self._float_account_id is None:
            account = await self.run(lambda u: ledger.ensure_float_account(u, new_context("test/EnsureFloat"), self.currency))
            self._float_account_id = account.account_id
        return self._float_account_id

    async def open(self, kind: str = "customer", balance_minor: int = 0, overdraft_limit_minor: int = 0,
                   currency: str | None = None) -> uuid.UUID:
        owner = await self.user()
        account = await self.run(
            lambda u: ledger.create_account(
                u, new_context("test/CreateAccount"), owner_user_id=owner, kind=kind,
                currency=currency or self.currency, overdraft_limit_minor=overdraft_limit_minor,
            )
        )
        if balance_minor:
            await self.top_up(account.account_id, balance_minor)
        return account.account_id

    async def top_up(self, account_id: uuid.UUID, amount_minor: int) -> ledger.TransferRecord:
        float_id = await self.float_account()
        outcome = await self.move("top_up", float_id, account_id, amount_minor)
        return outcome.record

    async def move(
        self, kind: str, debit: uuid.UUID, credit: uuid.UUID, amount_minor: int,
        context: RequestContext | None = None, currency: str | None = None,
    ) -> ledger.Outcome[ledger.TransferRecord]:
        context = context or new_context(kind=kind, debit=str(debit), credit=str(credit), amount=amount_minor)
        return await self.run(
            lambda u: ledger.post_transfer(
                u, context, kind=kind, debit_account_id=debit, credit_account_id=credit,
                amount_minor=amount_minor, currency=currency or self.currency,
            )
        )

    async def account(self, account_id: uuid.UUID) -> ledger.AccountRecord:
        record = await self.read(lambda u: ledger.get_account(u, account_id))
        assert record is not None
        return record

    async def balance(self, account_id: uuid.UUID) -> int:
        return (await self.account(account_id)).balance_minor


@pytest.fixture(scope="session")
def ledger_owner_dsn(stack) -> str:
    """The schema owner's DSN (the same as tests/integration's `owner_dsn`, usable from any folder)."""
    return stack.endpoints.owner_database_url


@pytest.fixture(scope="session")
def ledger_app_dsn(stack) -> str:
    """The application role's DSN (the same as tests/integration's `app_dsn`, usable from any folder)."""
    credentials = provisioning.load_or_create_credentials(stack.state_dir / "database-credentials.json")
    return stack.postgres.dsn(provisioning.DATABASE_NAME, provisioning.APP_ROLE, credentials.app_password)


@pytest.fixture(scope="module")
async def ledger_units_of_work(ledger_app_dsn):
    """Units of work over a pool of connections as the application role (RLS forced)."""
    async with AsyncConnectionPool(
        ledger_app_dsn, min_size=2, max_size=POOL_MAX_CONNECTIONS, kwargs={"autocommit": False}, timeout=30
    ) as pool:
        yield UnitOfWorkFactory(pool)


@pytest.fixture
def world(ledger_owner_dsn, ledger_units_of_work) -> LedgerWorld:
    """A fresh tenant for each test."""
    return LedgerWorld(create_tenant(ledger_owner_dsn), ledger_units_of_work)
