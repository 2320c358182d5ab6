"""Live payment events: PostgreSQL LISTEN/NOTIFY fanned out to in-process subscribers.

Why NOTIFY: a notification sent inside a transaction is delivered when, and only when, that
transaction commits (never for a rolled-back change), in commit order, to every server process
listening on the database — so a `WatchPayments` stream on any process sees a payment the moment
it is durable, with no extra infrastructure.

    storage (in the payment's transaction)         notify_payment_event(connection, event)
    each server process                            PaymentEventHub.run(): one autocommit connection
                                                   doing LISTEN, dispatching to matching subscribers
    WatchPayments                                  async with hub.subscribe(...) as events:
                                                       async for event in events: ...

Delivery is at most once. Events committed while a hub is not listening (PostgreSQL restarting, the
connection lost) cannot be replayed, so the hub ends every open subscription with
`ServiceUnavailable(WATCH_INTERRUPTED)` when it loses its connection: a client reconnects, reads
`ListPayments` for what it may have missed, and watches again. A subscriber that cannot keep up is
ended with `ResourceExhausted(WATCH_TOO_SLOW)` instead of letting its queue grow without bound.

Payloads carry identifiers only (no amounts, no names): every role that may LISTEN on this database
is one of ours, but the channel is shared by all tenants, so nothing in it needs hiding. The database
builds every payload, in one function (payments_notify, migrations/current/06_events.sql) that the SQL
entry points and `notify_payment_event` below both call; this module only decodes it
(`PaymentEvent.from_payload`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from domain.errors import DomainError, InvalidArgument, ResourceExhausted, ServiceUnavailable
from domain.ledger_rules import PAYMENT_EVENTS
from storage.movements import notify_payment

logger = logging.getLogger("emoney.payment_events")

CHANNEL = "emoney_payment_events"

# A payment touches two accounts; the bound keeps every payload far below PostgreSQL's 8000 bytes.
MAX_ACCOUNTS_PER_EVENT = 8
MAX_PAYLOAD_BYTES = 1_024
# How many accounts one subscription may watch (a merchant's accounts; see payments_query.owned_account_ids).
MAX_WATCHED_ACCOUNTS = 1_000

# The listening connection proves it is alive this often (a half-open TCP connection is otherwise silent).
HEARTBEAT_INTERVAL_S = 10.0
HEARTBEAT_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5
RECONNECT_DELAY_MIN_S = 0.1
RECONNECT_DELAY_MAX_S = 5.0


@dataclass(frozen=True)
class PaymentEvent:
    tenant_id: uuid.UUID
    payment_id: uuid.UUID
    event: str  # one of PAYMENT_EVENTS (domain/ledger_rules.py)
    terminal_id: uuid.UUID | None
    account_ids: tuple[uuid.UUID, ...]

    def __post_init__(self) -> None:
        if self.event not in PAYMENT_EVENTS:
            raise ValueError(f"unknown payment event {self.event!r}")
        if len(self.account_ids) > MAX_ACCOUNTS_PER_EVENT:
            raise ValueError(f"a payment event names at most {MAX_ACCOUNTS_PER_EVENT} accounts")

    @classmethod
    def from_payload(cls, payload: str) -> "PaymentEvent":
        """Parse a NOTIFY payload; raises ValueError (or TypeError/KeyError) on anything malformed."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError("payload too large")
        fields: dict[str, Any] = json.loads(payload)
        terminal_id = fields["terminalId"]
        return cls(
            tenant_id=uuid.UUID(fields["tenantId"]),
            payment_id=uuid.UUID(fields["paymentId"]),
            event=fields["event"],
            terminal_id=None if terminal_id is None else uuid.UUID(terminal_id),
            account_ids=tuple(uuid.UUID(account_id) for account_id in fields["accountIds"]),
        )


async def notify_payment_event(connection: psycopg.AsyncConnection, event: PaymentEvent) -> None:
    """Queue `event` in the caller's transaction: PostgreSQL sends it at commit, never on rollback.

    Call it with the unit of work's connection, after the change it announces, before `commit()`
    (storage.movements.notify_payment, the one place that asks the database to send one).
    """
    await notify_payment(
        connection, event.tenant_id, event.payment_id, event.event, event.terminal_id, event.account_ids
    )


class Subscription:
    """The events of one watcher: an async iterator of PaymentEvent and an async context manager.

    Leaving the `async with` block unsubscribes. Iteration ends with the error the hub closed the
    subscription with (WATCH_TOO_SLOW, WATCH_INTERRUPTED); `ready` is set once the hub is listening,
    i.e. from then on every committed matching event reaches this subscription (one made while the
    hub is connecting waits for it).
    """

    def __init__(
        self,
        hub: "PaymentEventHub",
        tenant_id: uuid.UUID,
        terminal_id: uuid.UUID | None,
        account_ids: frozenset[uuid.UUID],
        queue_size: int,
    ) -> None:
        self._hub = hub
        self.tenant_id = tenant_id
        self.terminal_id = terminal_id
        self.account_ids = account_ids
        self.ready = asyncio.Event()
        self._queue_size = queue_size
        self._events: collections.deque[PaymentEvent] = collections.deque()
        self._wakeup = asyncio.Event()
        self._error: DomainError | None = None
        self._finished = False

    def matches(self, event: PaymentEvent) -> bool:
        """Same tenant, and the event's terminal or one of its accounts is watched; with neither
        filter, every event of the tenant (callers decide who may watch a whole tenant)."""
        if event.tenant_id != self.tenant_id:
            return False
        if self.terminal_id is None and not self.account_ids:
            return True
        if self.terminal_id is not None and event.terminal_id == self.terminal_id:
            return True
        return not self.account_ids.isdisjoint(event.account_ids)

    def offer(self, event: PaymentEvent) -> None:
        """Called by the hub; never blocks. A full queue ends the subscription instead of growing."""
        if self._finished:
            return
        if len(self._events) >= self._queue_size:
            self.fail(
                ResourceExhausted(
                    message="the payment watch fell too far behind; watch again and list what was missed",
                    reason="WATCH_TOO_SLOW",
                )
            )
            return
        self._events.append(event)
        self._wakeup.set()

    def fail(self, error: DomainError) -> None:
        """End the subscription with `error`, dropping undelivered events (the client re-lists anyway)."""
        if self._finished:
            return
        self._events.clear()
        self._error = error
        self._finished = True
        self._hub.remove(self)
        self._wakeup.set()

    def close(self) -> None:
        if not self._finished:
            self._finished = True
            self._hub.remove(self)
            self._wakeup.set()

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> PaymentEvent:
        while True:
            if self._events:
                return self._events.popleft()
            if self._error is not None:
                raise self._error
            if self._finished:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()


class PaymentEventHub:
    """One LISTEN connection per server process, fanning committed payment events out to subscribers.

    `connect_kwargs` is read at every connection attempt (not copied), so a password the server
    reads from the secrets store after start-up is picked up; `autocommit` is always forced on
    (LISTEN takes effect at commit).
    """

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        *,
        max_subscribers: int = 1_000,
        queue_size: int = 256,
    ) -> None:
        if max_subscribers < 1 or queue_size < 1:
            raise ValueError("max_subscribers and queue_size must be positive")
        self._conninfo = conninfo
        self._connect_kwargs = connect_kwargs
        self._max_subscribers = max_subscribers
        self._queue_size = queue_size
        self._by_tenant: dict[uuid.UUID, set[Subscription]] = {}
        self._subscriber_count = 0
        self._listening = False
        self._closed = False
        self._runner: asyncio.Task | None = None

    @property
    def subscriber_count(self) -> int:
        return self._subscriber_count

    def subscribe(
        self,
        tenant_id: uuid.UUID,
        *,
        terminal_id: uuid.UUID | None = None,
        account_ids: frozenset[uuid.UUID] | None = None,
    ) -> Subscription:
        if self._closed:
            raise ServiceUnavailable(message="the server is shutting down", reason="WATCH_INTERRUPTED")
        watched = frozenset(account_ids or ())
        if len(watched) > MAX_WATCHED_ACCOUNTS:
            raise InvalidArgument(message=f"a watch covers at most {MAX_WATCHED_ACCOUNTS} accounts", reason="WATCH_TOO_BROAD")
        if self._subscriber_count >= self._max_subscribers:
            raise ResourceExhausted(
                message="too many payment watches on this server; try again shortly", reason="WATCHERS_EXHAUSTED"
            )
        subscription = Subscription(self, tenant_id, terminal_id, watched, self._queue_size)
        self._by_tenant.setdefault(tenant_id, set()).add(subscription)
        self._subscriber_count += 1
        if self._listening:
            subscription.ready.set()
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Forget a subscription (idempotent); called when it closes or fails."""
        subscriptions = self._by_tenant.get(subscription.tenant_id)
        if subscriptions is None or subscription not in subscriptions:
            return
        subscriptions.discard(subscription)
        self._subscriber_count -= 1
        if not subscriptions:
            del self._by_tenant[subscription.tenant_id]

    def dispatch(self, payload: str) -> None:
        """Hand one NOTIFY payload to every matching subscriber; malformed payloads are logged and skipped."""
        if not self._by_tenant:  # nobody watches on this server: every payment's event, not even decoded
            return
        try:
            event = PaymentEvent.from_payload(payload)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            logger.warning("unreadable payment event skipped: %s", type(error).__name__, extra={"bytes": len(payload)})
            return
        for subscription in list(self._by_tenant.get(event.tenant_id, ())):
            if subscription.matches(event):
                subscription.offer(event)

    async def run(self) -> None:
        """Listen until closed or cancelled, reconnecting with backoff whenever the connection is lost."""
        self._runner = asyncio.current_task()
        delay_s = RECONNECT_DELAY_MIN_S
        while not self._closed:
            try:
                async with await self._connect() as connection:
                    await connection.execute(sql.SQL("listen {}").format(sql.Identifier(CHANNEL)))
                    self._start_listening()
                    delay_s = RECONNECT_DELAY_MIN_S
                    await self._receive(connection)
            except Exception as error:  # PostgreSQL restarting, the network, a dead connection: retry
                logger.warning("payment event listener disconnected: %s", type(error).__name__)
            finally:
                if self._listening:
                    self._stop_listening()
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RECONNECT_DELAY_MAX_S)

    async def close(self) -> None:
        """Stop listening and end every subscription (WATCH_INTERRUPTED); further subscribes are refused."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None and runner is not asyncio.current_task() and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        self._stop_listening(message="the server is shutting down")

    async def _connect(self) -> psycopg.AsyncConnection:
        kwargs = {
            "application_name": "emoney-payment-events",
            "connect_timeout": CONNECT_TIMEOUT_S,
            **self._connect_kwargs,
            "autocommit": True,
        }
        return await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)

    async def _receive(self, connection: psycopg.AsyncConnection) -> None:
        while True:
            async for notification in connection.notifies(timeout=HEARTBEAT_INTERVAL_S):
                self.dispatch(notification.payload)
            await asyncio.wait_for(connection.execute("select 1"), HEARTBEAT_TIMEOUT_S)

    def _start_listening(self) -> None:
        self._listening = True
        for subscriptions in self._by_tenant.values():
            for subscription in subscriptions:
                subscription.ready.set()

    def _stop_listening(self, message: str = "the payment event stream was interrupted; list and watch again") -> None:
        """Events may be missed from now on: end every open subscription so its client knows."""
        self._listening = False
        for subscriptions in list(self._by_tenant.values()):
            for subscription in list(subscriptions):
                subscription.fail(ServiceUnavailable(message=message, reason="WATCH_INTERRUPTED"))
