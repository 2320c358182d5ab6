"""Group commit: the concurrent CreateTransfers (and, separately, ChargePaymentCodes and CreatePaymentCodes)
of one process and tenant share one transaction.

A transfer on its own costs one commit, and a durable commit costs one WAL flush (an fsync) — the flush,
and PostgreSQL's global lock on the NOTIFY queue held from a transaction's NOTIFY through its commit, are
what a transfer's throughput is bound by (README, Performance). Here the calls that arrive while the
database is busy with earlier ones wait for a batch, and a batch is ONE statement
(`payments_create_transfers_in`, migrations/current/10_movements.sql; for charges and codes
`payments_charge_codes_in` and `payments_create_codes_in`, 12_payment_codes.sql): one round trip, one commit,
one flush and one pass through the NOTIFY lock for all of its items. Each item keeps its own outcome: a money
batch runs its items in one subtransaction and, only if one is refused, again with each item in its own, so
that the refused one is rolled back alone and keeps its own error (10_movements.sql says why not always; a
code batch runs each code in its own, 12_payment_codes.sql says why).

When batches form: a tenant has at most `concurrent_batches` batches in flight per process. A call that
finds fewer goes out at once, alone (no call waits when the database is idle); the calls that arrive
while they run queue, and the next batch takes up to `max_items` of them as soon as one finishes. No call
waits longer than `max_wait_s` for that: past it, one more batch goes out beside the others. The waits
and batch sizes are counted (`stats`, shown by the metrics endpoint).

Why here and by hand: the batch must be one statement to one SQL function, built from several callers'
requests inside one event loop; no library does this for psycopg (its pipeline mode sends several
statements in one round trip, but each in its own transaction when autocommitting, or all failing
together in one). asyncio's futures are all it needs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from domain.ledger_rules import MAX_BATCH_ITEMS
from storage.unit_of_work import one_statement_rows

_TRANSFERS_QUERY = """
    select r.item, r.failed_sqlstate, r.failed_message, r.failed_detail, (r.outcome).*
      from payments_create_transfers_in(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) r
     order by r.item"""
_CODES_QUERY = """
    select r.item, r.failed_sqlstate, r.failed_message, r.failed_detail, r.expires_at
      from payments_create_codes_in(%s, %s, %s, %s, %s, %s, %s, %s, %s) r
     order by r.item"""
_CHARGES_QUERY = """
    select r.item, r.failed_sqlstate, r.failed_message, r.failed_detail, (r.outcome).*
      from payments_charge_codes_in(%s, %s, %s, %s, %s, %s, %s, %s, %s) r
     order by r.item"""


@dataclass(frozen=True)
class ItemFailure:
    """How one item of a batch was refused: what the one-item entry point would have raised."""

    sqlstate: str
    message: str
    detail: str | None


@dataclass
class GroupCommitStats:
    batches: int = 0
    items: int = 0
    largest_batch: int = 0
    wait_seconds_total: float = 0.0  # queued until its batch went out, summed over items
    longest_wait_s: float = 0.0


@dataclass
class _Queued:
    arguments: tuple
    result: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


class GroupCommit:
    """The queues, batches and bounded waits shared by every group commit; a subclass names its batch
    statement (`batch_query`, run with the tenant and one array per argument) and what it batches."""

    batch_query: str
    what: str

    def __init__(self, pool: AsyncConnectionPool, *, max_items: int = 32, concurrent_batches: int = 1,
                 max_wait_s: float = 0.005) -> None:
        if not 1 <= max_items <= MAX_BATCH_ITEMS:
            raise ValueError(f"max_items must be 1 to {MAX_BATCH_ITEMS}, not {max_items}")
        if concurrent_batches < 1 or max_wait_s < 0:
            raise ValueError("concurrent_batches must be at least 1 and max_wait_s not negative")
        self._pool = pool
        self.max_items, self.concurrent_batches, self.max_wait_s = max_items, concurrent_batches, max_wait_s
        self._queues: dict[uuid.UUID, list[_Queued]] = {}
        self._in_flight: dict[uuid.UUID, int] = {}
        self._timers: dict[uuid.UUID, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self.stats = GroupCommitStats()

    async def submit(self, tenant_id: uuid.UUID, arguments: Sequence[Any]) -> tuple | ItemFailure:
        """One item (the arguments after the tenant of the subclass's one-item entry point:
        payments_create_transfer_in, payments_charge_code_in or payments_create_code_in): its outcome row
        (ledger_transfer_outcome's columns; for a code, its expiry), or how the item was refused. A failure
        of the whole batch (the database unreachable, a timeout) is raised, as for a call on its own."""
        queued = _Queued(tuple(arguments), asyncio.get_running_loop().create_future())
        self._queues.setdefault(tenant_id, []).append(queued)
        self._dispatch(tenant_id)
        return await queued.result

    def _dispatch(self, tenant_id: uuid.UUID) -> None:
        queue = self._queues.get(tenant_id)
        while queue and self._in_flight.get(tenant_id, 0) < self.concurrent_batches:
            self._send(tenant_id, queue)
        if queue and tenant_id not in self._timers:
            overdue_in = max(0.0, queue[0].queued_at + self.max_wait_s - time.monotonic())
            self._timers[tenant_id] = asyncio.get_running_loop().call_later(overdue_in, self._overdue, tenant_id)
        if not queue:
            self._queues.pop(tenant_id, None)

    def _overdue(self, tenant_id: uuid.UUID) -> None:
        """The oldest queued call has waited max_wait_s: it goes now, beside the batches in flight."""
        self._timers.pop(tenant_id, None)
        queue = self._queues.get(tenant_id)
        if queue:
            self._send(tenant_id, queue)
        self._dispatch(tenant_id)

    def _send(self, tenant_id: uuid.UUID, queue: list[_Queued]) -> None:
        batch, queue[:] = queue[: self.max_items], queue[self.max_items:]
        timer = self._timers.pop(tenant_id, None)
        if timer is not None:
            timer.cancel()
        self._in_flight[tenant_id] = self._in_flight.get(tenant_id, 0) + 1
        task = asyncio.get_running_loop().create_task(self._run(tenant_id, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, tenant_id: uuid.UUID, batch: list[_Queued]) -> None:
        sent_at = time.monotonic()
        waits = [sent_at - queued.queued_at for queued in batch]
        stats = self.stats
        stats.batches += 1
        stats.items += len(batch)
        stats.largest_batch = max(stats.largest_batch, len(batch))
        stats.wait_seconds_total += sum(waits)
        stats.longest_wait_s = max(stats.longest_wait_s, *waits)
        try:
            results = await self.commit_batch(tenant_id, [queued.arguments for queued in batch])
            for queued, result in zip(batch, results, strict=True):
                _settle(queued, result)
        except BaseException as error:  # the whole batch failed (or this task was cancelled): every item says so
            for queued in batch:
                if not queued.result.done():
                    queued.result.set_exception(error)
            if not isinstance(error, Exception):
                raise
        finally:
            self._in_flight[tenant_id] -= 1
            if not self._in_flight[tenant_id]:
                del self._in_flight[tenant_id]
            self._dispatch(tenant_id)

    async def commit_batch(self, tenant_id: uuid.UUID, batch: Sequence[Sequence[Any]]) -> list[tuple | ItemFailure]:
        """Commit these items (see submit) as one batch, now: each one's outcome row, or how it was
        refused, in order."""
        columns = list(zip(*batch, strict=True))
        rows = await one_statement_rows(self._pool, self.batch_query, (tenant_id, *map(list, columns)))
        if [row[0] for row in rows] != list(range(1, len(batch) + 1)):
            raise psycopg.InternalError(f"a batch of {len(batch)} {self.what} answered {len(rows)} rows")
        return [tuple(outcome) if sqlstate is None else ItemFailure(sqlstate, message, detail)
                for _, sqlstate, message, detail, *outcome in rows]


class TransferGroupCommit(GroupCommit):
    """CreateTransfer's group commit: items are payments_create_transfer_in's arguments after the tenant."""

    batch_query = _TRANSFERS_QUERY
    what = "transfers"


class ChargeGroupCommit(GroupCommit):
    """ChargePaymentCode's group commit: items are payments_charge_code_in's arguments after the tenant."""

    batch_query = _CHARGES_QUERY
    what = "charges"


class CodeGroupCommit(GroupCommit):
    """CreatePaymentCode's group commit: items are payments_create_code_in's arguments after the tenant; an
    item's outcome row is (expires_at,)."""

    batch_query = _CODES_QUERY
    what = "codes"


def _settle(queued: _Queued, value: object) -> None:
    if not queued.result.done():  # a caller that gave up (its deadline passed) is not told
        queued.result.set_result(value)
