"""Background work of a server process: expiring holds nobody resolved, and forgetting idempotency
keys past their retention period.

Every server process runs both; concurrent runs are safe (the ledger skips holds another
transaction is resolving; two deletes of the same old keys simply find fewer), so no leader
election is needed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable
from datetime import timedelta

from server.payment_events import PaymentEvent, notify_payment_event
from storage import idempotency, ledger
from storage.unit_of_work import UnitOfWorkFactory

logger = logging.getLogger("emoney.background")

async def repeat(one_pass: Callable[[], Awaitable[int]], interval_s: float, *, done: str, failed: str) -> None:
    """Run `one_pass` for ever, `interval_s` apart; log how many things it did (when any) or why it failed."""
    while True:
        try:
            count = await one_pass()
            if count:
                logger.info(done, extra={"count": count})
        except Exception as error:  # a dependency may be away; try again next round
            logger.warning("%s: %s", failed, type(error).__name__)
        await asyncio.sleep(interval_s)


EXPIRE_BATCH = 200
MAX_TENANTS_PER_PASS = 100


class HoldExpirer:
    def __init__(self, units_of_work: UnitOfWorkFactory, interval_s: float = 1.0) -> None:
        self._units_of_work = units_of_work
        self._interval_s = interval_s

    async def expire_once(self) -> int:
        """One pass over the tenants with due holds; returns how many holds expired."""
        async with self._units_of_work(None, read_only=True) as unit_of_work:
            tenant_ids = await ledger.tenants_with_due_holds(unit_of_work, MAX_TENANTS_PER_PASS)
        expired = 0
        for tenant_id in tenant_ids:
            async with self._units_of_work(tenant_id) as unit_of_work:
                holds = await ledger.expire_due_holds(unit_of_work, EXPIRE_BATCH)
                for hold in holds:
                    await notify_payment_event(
                        unit_of_work.connection,
                        PaymentEvent(
                            tenant_id=tenant_id, payment_id=hold.hold_id, event="expired", terminal_id=hold.terminal_id,
                            account_ids=(hold.account_id, hold.merchant_account_id),
                        ),
                    )
                await unit_of_work.commit()
                expired += len(holds)
        return expired

    async def run(self) -> None:
        await repeat(self.expire_once, self._interval_s, done="expired holds", failed="hold expiry pass failed")


FORGET_BATCH = 5_000
# Up to 100,000 keys per tenant per pass (a pass a minute): well above a tenant's sustained rate.
MAX_BATCHES_PER_TENANT = 20


class RequestKeyJanitor:
    """Forgets idempotency keys older than `retention` (migrations/0013), a batch per tenant per pass."""

    def __init__(self, units_of_work: UnitOfWorkFactory, retention: timedelta, interval_s: float = 60.0) -> None:
        self._units_of_work = units_of_work
        self._retention = retention
        self._interval_s = interval_s

    async def forget_once(self) -> int:
        async with self._units_of_work(None, read_only=True) as unit_of_work:
            tenant_ids = await idempotency.tenants_with_old_keys(unit_of_work, self._retention, MAX_TENANTS_PER_PASS)
        forgotten = 0
        for tenant_id in tenant_ids:
            for _ in range(MAX_BATCHES_PER_TENANT):  # a batch per transaction, until one comes back short
                async with self._units_of_work(tenant_id) as unit_of_work:
                    batch = await idempotency.forget_old_keys(unit_of_work, self._retention, FORGET_BATCH)
                    await unit_of_work.commit()
                forgotten += batch
                if batch < FORGET_BATCH:
                    break
        return forgotten

    async def run(self) -> None:
        await asyncio.sleep(self._interval_s)  # nothing is a minute old at start-up
        await repeat(self.forget_once, self._interval_s, done="forgot idempotency keys past retention",
                     failed="idempotency key retention pass failed")
