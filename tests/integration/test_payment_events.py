"""Live payment events over PostgreSQL LISTEN/NOTIFY, against the real database as the application role."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from localstack import provisioning
from domain.errors import ResourceExhausted, ServiceUnavailable
from domain.ledger_rules import PAYMENT_EVENTS
from server.payment_events import (
    CHANNEL,
    MAX_ACCOUNTS_PER_EVENT,
    MAX_PAYLOAD_BYTES,
    PaymentEvent,
    PaymentEventHub,
    Subscription,
    notify_payment_event,
)
from storage.unit_of_work import UnitOfWorkFactory

WAIT_S = 5.0


@pytest.fixture(scope="module")
def app_password(stack) -> str:
    return provisioning.load_or_create_credentials(stack.state_dir / "database-credentials.json").app_password


@pytest.fixture
async def units_of_work(app_dsn):
    async with AsyncConnectionPool(app_dsn, min_size=1, max_size=2, kwargs={"autocommit": False}) as pool:
        yield UnitOfWorkFactory(pool)


@contextlib.asynccontextmanager
async def running_hub(stack, app_password: str, application_name: str = "test-payment-events", **options):
    """A hub connecting like the server does: the password-less DSN plus the password as a kwarg."""
    hub = PaymentEventHub(
        stack.endpoints.database_url, {"password": app_password, "application_name": application_name}, **options
    )
    runner = asyncio.create_task(hub.run())
    try:
        yield hub
    finally:
        await hub.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


@pytest.fixture
async def hub(stack, app_password):
    async with running_hub(stack, app_password) as running:
        yield running


def event(tenant_id, *, terminal_id=None, account_ids=(), kind="created", payment_id=None) -> PaymentEvent:
    return PaymentEvent(tenant_id, payment_id or uuid.uuid4(), kind, terminal_id, tuple(account_ids))


async def commit_events(units_of_work, *events: PaymentEvent) -> None:
    async with units_of_work() as unit_of_work:
        for payment_event in events:
            await notify_payment_event(unit_of_work.connection, payment_event)
        await unit_of_work.commit()


async def ready(subscription: Subscription) -> Subscription:
    await asyncio.wait_for(subscription.ready.wait(), WAIT_S)
    return subscription


async def next_event(subscription: Subscription) -> PaymentEvent:
    return await asyncio.wait_for(anext(subscription), WAIT_S)


async def events_until(subscription: Subscription, last_payment_id: uuid.UUID) -> list[uuid.UUID]:
    """Payment ids received up to and including `last_payment_id` (NOTIFY keeps commit order)."""
    received = []
    while not received or received[-1] != last_payment_id:
        received.append((await next_event(subscription)).payment_id)
    return received


async def test_a_committed_event_reaches_a_matching_subscriber(hub, units_of_work):
    """An event notified in a transaction that commits after the watch opened is delivered, intact."""
    tenant, terminal, account = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with hub.subscribe(tenant, terminal_id=terminal) as subscription:
        await ready(subscription)
        sent = event(tenant, terminal_id=terminal, account_ids=[account], kind="captured")
        await commit_events(units_of_work, sent)
        assert await next_event(subscription) == sent


async def test_a_rolled_back_event_is_never_delivered(hub, units_of_work):
    """NOTIFY inside a rolled-back transaction sends nothing; the next committed event comes first."""
    tenant = uuid.uuid4()
    async with hub.subscribe(tenant) as subscription:
        await ready(subscription)
        async with units_of_work() as unit_of_work:
            await notify_payment_event(unit_of_work.connection, event(tenant, kind="refunded"))
        committed = event(tenant)
        await commit_events(units_of_work, committed)
        assert await next_event(subscription) == committed


async def test_events_are_filtered_by_tenant_terminal_and_account(hub, units_of_work):
    """A watcher gets its tenant's events for its terminal or its accounts only; no filter means the whole tenant."""
    tenant, other_tenant = uuid.uuid4(), uuid.uuid4()
    terminal, other_terminal, account, other_account = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    by_terminal = hub.subscribe(tenant, terminal_id=terminal)
    by_account = hub.subscribe(tenant, account_ids=frozenset({account}))
    by_other_terminal = hub.subscribe(tenant, terminal_id=other_terminal)
    whole_tenant = hub.subscribe(tenant)
    other_tenants_terminal = hub.subscribe(other_tenant, terminal_id=terminal)
    for subscription in (by_terminal, by_account, by_other_terminal, whole_tenant, other_tenants_terminal):
        await ready(subscription)

    at_terminal = event(tenant, terminal_id=terminal, account_ids=[other_account])
    on_account = event(tenant, account_ids=[other_account, account])
    in_other_tenant = event(other_tenant, terminal_id=terminal, account_ids=[account])
    await commit_events(units_of_work, at_terminal, on_account, in_other_tenant)
    # Markers after the events under test (same commit order): each watcher reads up to its marker.
    end_terminal = event(tenant, terminal_id=terminal, account_ids=[account])
    end_other_terminal = event(tenant, terminal_id=other_terminal)
    end_other_tenant = event(other_tenant, terminal_id=terminal)
    await commit_events(units_of_work, end_terminal, end_other_terminal, end_other_tenant)

    ids = lambda *events: [e.payment_id for e in events]  # noqa: E731
    assert await events_until(by_terminal, end_terminal.payment_id) == ids(at_terminal, end_terminal)
    assert await events_until(by_account, end_terminal.payment_id) == ids(on_account, end_terminal)
    assert await events_until(by_other_terminal, end_other_terminal.payment_id) == ids(end_other_terminal)
    assert await events_until(whole_tenant, end_other_terminal.payment_id) == ids(
        at_terminal, on_account, end_terminal, end_other_terminal
    )
    assert await events_until(other_tenants_terminal, end_other_tenant.payment_id) == ids(
        in_other_tenant, end_other_tenant
    )


async def test_the_payload_the_database_builds_is_what_python_decodes(app_dsn, units_of_work):
    """One encoder, one decoder: payments_notify (migrations/current/06_events.sql, also called by the SQL
    entry points) builds every payload and PaymentEvent.from_payload reads it back equal — each kind, with
    and without a terminal, with no accounts and with the most an event may name, within MAX_PAYLOAD_BYTES."""
    tenant = uuid.uuid4()
    most_accounts = [uuid.uuid4() for _ in range(MAX_ACCOUNTS_PER_EVENT)]
    sent = [
        event(tenant, kind=kind, terminal_id=terminal, account_ids=accounts)
        for kind in PAYMENT_EVENTS
        for terminal, accounts in ((None, ()), (uuid.uuid4(), most_accounts))
    ]
    async with await psycopg.AsyncConnection.connect(app_dsn, autocommit=True) as listener:
        await listener.execute(sql.SQL("listen {}").format(sql.Identifier(CHANNEL)))
        await commit_events(units_of_work, *sent)
        payloads = []
        async for notification in listener.notifies(timeout=WAIT_S):
            if str(tenant) in notification.payload:  # the stack's servers may announce their own payments
                payloads.append(notification.payload)
            if len(payloads) == len(sent):
                break
    assert [PaymentEvent.from_payload(payload) for payload in payloads] == sent
    assert max(len(payload.encode()) for payload in payloads) <= MAX_PAYLOAD_BYTES


async def test_unreadable_payloads_are_skipped(hub, units_of_work):
    """Payloads on the channel that are not payment events are logged and skipped; the hub keeps delivering."""
    tenant = uuid.uuid4()
    async with hub.subscribe(tenant) as subscription:
        await ready(subscription)
        async with units_of_work() as unit_of_work:
            for junk in ("not json", "[]", '{"tenantId": "x"}', f'{{"tenantId": "{tenant}", "event": "exploded"}}'):
                await unit_of_work.connection.execute("select pg_notify(%s, %s)", (CHANNEL, junk))
            await unit_of_work.commit()
        sent = event(tenant)
        await commit_events(units_of_work, sent)
        assert await next_event(subscription) == sent


async def test_a_slow_subscriber_is_closed_with_watch_too_slow(stack, app_password, units_of_work):
    """A watcher whose bounded queue overflows is ended with WATCH_TOO_SLOW; a fast one is unaffected."""
    tenant = uuid.uuid4()
    async with running_hub(stack, app_password, queue_size=2) as small_hub:
        slow = await ready(small_hub.subscribe(tenant))
        fast = await ready(small_hub.subscribe(tenant))
        for _ in range(3):  # one at a time: `fast` keeps up; by its third, `slow` was offered all three
            sent = event(tenant)
            await commit_events(units_of_work, sent)
            assert await next_event(fast) == sent
        with pytest.raises(ResourceExhausted) as raised:
            await next_event(slow)
        assert raised.value.reason == "WATCH_TOO_SLOW"
        assert small_hub.subscriber_count == 1


async def test_watchers_beyond_the_limit_are_refused(stack, app_password):
    """subscribe() past max_subscribers raises WATCHERS_EXHAUSTED; leaving a watch frees its place."""
    hub = PaymentEventHub(stack.endpoints.database_url, {"password": app_password}, max_subscribers=2)
    tenant = uuid.uuid4()
    async with hub.subscribe(tenant), hub.subscribe(tenant):
        with pytest.raises(ResourceExhausted) as raised:
            hub.subscribe(tenant)
        assert raised.value.reason == "WATCHERS_EXHAUSTED"
    assert hub.subscriber_count == 0
    async with hub.subscribe(tenant):
        assert hub.subscriber_count == 1


async def test_notify_refuses_an_autocommit_connection(app_dsn):
    """An event can only be queued inside a transaction, so it is never sent before (or without) a commit."""
    async with await psycopg.AsyncConnection.connect(app_dsn, autocommit=True) as connection:
        with pytest.raises(ValueError):
            await notify_payment_event(connection, event(uuid.uuid4()))


async def test_the_hub_reconnects_after_its_connection_is_killed(stack, app_password, units_of_work):
    """Killing the LISTEN backend ends open watches with WATCH_INTERRUPTED; after reconnecting, events flow again."""
    tenant, application_name = uuid.uuid4(), f"test-events-{uuid.uuid4().hex[:12]}"
    async with running_hub(stack, app_password, application_name) as hub:
        interrupted = await ready(hub.subscribe(tenant))
        with psycopg.connect(stack.postgres.dsn(), autocommit=True) as superuser:
            killed = superuser.execute(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = %s",
                (application_name,),
            ).fetchone()[0]
        assert killed == 1
        with pytest.raises(ServiceUnavailable) as raised:
            await next_event(interrupted)
        assert raised.value.reason == "WATCH_INTERRUPTED"

        async with hub.subscribe(tenant) as subscription:
            await ready(subscription)
            sent = event(tenant, kind="voided")
            await commit_events(units_of_work, sent)
            assert await next_event(subscription) == sent
