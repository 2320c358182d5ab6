"""Receipts: the writer (transfers read past each tenant's cursor) and reads, against real PostgreSQL
(application role) and SeaweedFS.

The module uses a database of its own (same server, all migrations applied) so that the stack's
running servers, which share the main database, never write its receipts.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Iterator
from zoneinfo import ZoneInfo

import psycopg
import pytest
import requests
from minio.error import S3Error
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from localstack import provisioning
from localstack.processes import free_port
from domain.config import Settings
from storage import ledger, payments_query
from storage.audit import RequestContext
from storage.idempotency import request_hash
from storage.migrate import apply_migrations
from storage.object_store import ObjectStore, build_minio
from storage.payments_query import PaymentRow
from storage.receipts import (
    ReceiptWriter,
    get_or_create_receipt,
    parse_bundle,
    presigned_receipt_url,
    receipt_key,
    render_receipt,
)
from storage.unit_of_work import UnitOfWorkFactory


@dataclass(frozen=True)
class Tenant:
    tenant_id: uuid.UUID
    slug: str
    user_id: uuid.UUID


@dataclass(frozen=True)
class Databases:
    owner_dsn: str
    app_dsn: str


@pytest.fixture(scope="module")
def databases(stack) -> Iterator[Databases]:
    name = f"receipts_{uuid.uuid4().hex[:12]}"
    credentials = provisioning.load_or_create_credentials(stack.state_dir / "database-credentials.json")
    with psycopg.connect(stack.postgres.dsn(), autocommit=True) as superuser:
        superuser.execute(
            sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(provisioning.OWNER_ROLE))
        )
    try:
        owner_dsn = stack.postgres.dsn(name, provisioning.OWNER_ROLE, credentials.owner_password)
        apply_migrations(owner_dsn)
        yield Databases(owner_dsn, stack.postgres.dsn(name, provisioning.APP_ROLE, credentials.app_password))
    finally:
        with psycopg.connect(stack.postgres.dsn(), autocommit=True) as superuser:
            superuser.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
async def pool(databases):
    async with AsyncConnectionPool(databases.app_dsn, min_size=1, max_size=4, kwargs={"autocommit": False}) as opened:
        yield opened


@pytest.fixture
def units_of_work(pool) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(pool)


def _settings(stack, endpoint: str | None = None) -> Settings:
    endpoints = stack.endpoints
    return Settings(
        s3_endpoint=endpoint or endpoints.s3_endpoint,
        s3_access_key=endpoints.s3_access_key,
        s3_secret_key=endpoints.s3_secret_key,
        s3_bucket=endpoints.s3_bucket,
    )


@pytest.fixture
def objects(stack) -> ObjectStore:
    return ObjectStore(build_minio(_settings(stack)), stack.endpoints.s3_bucket)


@pytest.fixture
def dead_objects(stack) -> ObjectStore:
    """Object storage that is down: nothing listens on its port."""
    return ObjectStore(build_minio(_settings(stack, f"127.0.0.1:{free_port()}")), stack.endpoints.s3_bucket)


def _create_tenant(owner_dsn: str) -> Tenant:
    tenant = Tenant(uuid.uuid4(), f"receipts-{uuid.uuid4().hex[:10]}", uuid.uuid4())
    with psycopg.connect(owner_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(tenant.tenant_id),))
        connection.execute(
            "insert into tenants (tenant_id, slug, display_name, default_currency) values (%s, %s, 'Receipts', 'EUR')",
            (tenant.tenant_id, tenant.slug),
        )
        connection.execute(
            "insert into users (tenant_id, user_id, email, display_name) values (%s, %s, %s, 'Payer')",
            (tenant.tenant_id, tenant.user_id, f"payer@{tenant.slug}.example"),
        )
    return tenant


@pytest.fixture
def tenant(databases) -> Tenant:
    return _create_tenant(databases.owner_dsn)


def _context(method: str) -> RequestContext:
    request_id = uuid.uuid4().hex
    return RequestContext("test-operator", method, request_id, request_hash(method, {"requestId": request_id}))


async def _top_up(unit_of_work, tenant: Tenant, amount_minor: int = 1250, currency: str = "EUR") -> uuid.UUID:
    """A real completed payment through the ledger functions: the float tops up a new customer account."""
    issuing = await ledger.ensure_float_account(unit_of_work, _context("test/EnsureFloat"), currency)
    customer = await ledger.create_account(
        unit_of_work, _context("test/CreateAccount"), owner_user_id=tenant.user_id, kind="customer", currency=currency
    )
    outcome = await ledger.post_transfer(
        unit_of_work,
        _context("test/TopUp"),
        kind="top_up",
        debit_account_id=issuing.account_id,
        credit_account_id=customer.account_id,
        amount_minor=amount_minor,
        currency=currency,
    )
    return outcome.record.transfer_id


async def _paid(units_of_work, tenant: Tenant, count: int = 1) -> list[uuid.UUID]:
    """Payments committed together, in ONE transaction: their receipts are due from the commit on."""
    async with units_of_work(tenant.tenant_id) as unit_of_work:
        payment_ids = [await _top_up(unit_of_work, tenant) for _ in range(count)]
        await unit_of_work.commit()
    return payment_ids


async def _payment(units_of_work, tenant: Tenant, payment_id: uuid.UUID) -> PaymentRow:
    async with units_of_work(tenant.tenant_id) as unit_of_work:
        return await payments_query.get(unit_of_work, payment_id)


async def _pending(units_of_work, tenant: Tenant) -> list[uuid.UUID]:
    """The tenant's transfers whose receipt is not written yet (receipts_pending, as the application role)."""
    async with units_of_work(tenant.tenant_id) as unit_of_work:
        cursor = await unit_of_work.connection.execute("select transfer_id from receipts_pending() order by transfer_id")
        return [row[0] for row in await cursor.fetchall()]


async def _cursor(units_of_work, tenant: Tenant) -> tuple[int, int, str | None] | None:
    """The tenant's receipt cursor: (receipts written, failed attempts in a row, the last failure's kind)."""
    async with units_of_work(tenant.tenant_id) as unit_of_work:
        cursor = await unit_of_work.connection.execute("select receipts_written, attempts, last_error_kind from receipt_cursors")
        return await cursor.fetchone()


# A writer's pass writes nothing past the oldest transaction still running anywhere on the server
# (migrations/current/07_receipts.sql), and the stack's own servers run transactions on it all along: a
# pass may come too early for a payment just committed. So the tests write until what they expect is
# written, within a deadline, and then check that nothing more is.
WRITTEN_WITHIN_S = 10.0


async def _written(writer: ReceiptWriter, expected: int) -> int:
    """Receipts written by the writer's passes until `expected` are (or the deadline passed)."""
    total, deadline = 0, time.monotonic() + WRITTEN_WITHIN_S
    while total < expected and time.monotonic() < deadline:
        total += await writer.write_pending_once()
        if total < expected:
            await asyncio.sleep(0.05)
    return total


async def _drain(databases, pool, objects) -> None:
    """Write every receipt due in the module's database (earlier tests' tenants too), so a test can count its
    own: until the owner, who reads every tenant's, sees none due."""
    writer, deadline = ReceiptWriter(pool, objects), time.monotonic() + WRITTEN_WITHIN_S
    while True:
        with psycopg.connect(databases.owner_dsn) as owner:
            due = owner.execute("select count(*) from receipts_pending()").fetchone()[0]
        if due == 0:
            return
        assert time.monotonic() < deadline, f"{due} receipts still due"
        await writer.write_pending_once()
        await asyncio.sleep(0.05)


def _payment_row(**changes) -> PaymentRow:
    row = PaymentRow(
        payment_id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
        kind="payment",
        status="completed",
        from_account_id=uuid.UUID("00000000-0000-4000-8000-00000000000a"),
        to_account_id=uuid.UUID("00000000-0000-4000-8000-00000000000b"),
        amount_minor=1250,
        currency="EUR",
        captured_minor=0,
        refunded_minor=0,
        terminal_id=uuid.UUID("00000000-0000-4000-8000-0000000000cc"),
        related_id=None,
        request_id="r-1",
        created_at=datetime(2025, 3, 1, 13, 4, 5, 120000, tzinfo=timezone(timedelta(hours=2))),
        expires_at=None,
    )
    return replace(row, **changes)


async def _bundled(stack, objects, tenant: Tenant) -> dict[str, list[bytes]]:
    """Every receipt the writer archived for the tenant, read back from the bundles under its prefix: the
    documents found for each payment id (one per bundle that holds it)."""
    client = build_minio(_settings(stack))
    prefix = f"tenants/{tenant.tenant_id}/"
    keys = [item.object_name for item in client.list_objects(stack.endpoints.s3_bucket, prefix=prefix + "receipts/bundles/", recursive=True)]
    receipts: dict[str, list[bytes]] = {}
    for key in keys:
        assert key.endswith(".jsonl")
        for payment_id, document in parse_bundle(await objects.get(tenant.tenant_id, key.removeprefix(prefix))).items():
            receipts.setdefault(payment_id, []).append(document)
    return receipts


async def test_a_committed_payment_is_archived_in_one_bundle_under_the_tenant_prefix(databases, stack, pool, units_of_work, objects, tenant):
    """Committed payments need nothing but their rows: the writer archives them as ONE bundle under
    tenants/{tenant}/receipts/bundles/, a line per receipt with the rendered bytes, and moves the cursor."""
    await _drain(databases, pool, objects)
    payment_ids = await _paid(units_of_work, tenant, count=3)
    assert sorted(await _pending(units_of_work, tenant)) == sorted(payment_ids)
    writer = ReceiptWriter(pool, objects)
    assert await _written(writer, 3) == 3
    bundled = await _bundled(stack, objects, tenant)
    assert sorted(bundled) == sorted(str(payment_id) for payment_id in payment_ids)
    for payment_id in payment_ids:
        expected = render_receipt(await _payment(units_of_work, tenant, payment_id), tenant.slug)
        assert bundled[str(payment_id)] == [expected]
        assert json.loads(expected)["tenantSlug"] == tenant.slug
    assert await _pending(units_of_work, tenant) == []
    assert await _cursor(units_of_work, tenant) == (3, 0, None)
    assert await writer.write_pending_once() == 0


async def test_a_rolled_back_payment_writes_nothing(databases, pool, units_of_work, objects, tenant):
    """A payment rolled back leaves nothing due and no object."""
    async with units_of_work(tenant.tenant_id) as unit_of_work:
        payment_id = await _top_up(unit_of_work, tenant)
    assert await _pending(units_of_work, tenant) == []
    await _drain(databases, pool, objects)
    assert await _cursor(units_of_work, tenant) is None  # nothing was ever due: no cursor row written
    with pytest.raises(S3Error):
        await objects.get(tenant.tenant_id, receipt_key(payment_id))


async def test_a_payment_committed_after_a_later_one_is_never_skipped(databases, stack, pool, units_of_work, objects, tenant):
    """Transactions commit out of the order of their ids. A payment whose transaction began first but commits
    last must still get its receipt: the writer stops at the oldest transaction still running, so it
    writes neither while the first is open (the second waits, already committed), and both after."""
    [setup] = await _paid(units_of_work, tenant)  # the tenant's audit stripes and EUR float exist, committed
    await _drain(databases, pool, objects)
    writer = ReceiptWriter(pool, objects)
    async with units_of_work(tenant.tenant_id) as first:
        # Its own currency, so that it locks no float account the later payment needs.
        early = await _top_up(first, tenant, currency="USD")  # has its transaction id, not committed
        [late] = await _paid(units_of_work, tenant)  # a later id, committed at once
        assert await writer.write_pending_once() == 0
        assert await _pending(units_of_work, tenant) == [late]
        await first.commit()
    assert sorted(await _pending(units_of_work, tenant)) == sorted([early, late])
    assert await _written(writer, 2) == 2
    assert await _pending(units_of_work, tenant) == []
    assert sorted(await _bundled(stack, objects, tenant)) == sorted([str(setup), str(early), str(late)])


async def test_a_batch_never_splits_one_transactions_payments(databases, stack, pool, units_of_work, objects, tenant):
    """With batches of 2: a transaction of 3 payments is written whole in one bundle (a cursor between two
    payments of one transaction could not say which of them is written), the next transaction after it."""
    await _drain(databases, pool, objects)
    three = await _paid(units_of_work, tenant, count=3)
    [fourth] = await _paid(units_of_work, tenant)
    fifth_and_sixth = await _paid(units_of_work, tenant, count=2)
    writer = ReceiptWriter(pool, objects, batch_size=2)
    assert await _written(writer, 3) == 3
    assert sorted(await _pending(units_of_work, tenant)) == sorted([fourth, *fifth_and_sixth])
    assert await _written(writer, 1) == 1
    assert await _written(writer, 2) == 2
    assert await _pending(units_of_work, tenant) == []
    assert sorted(await _bundled(stack, objects, tenant)) == sorted(str(p) for p in [*three, fourth, *fifth_and_sixth])


async def test_receipts_wait_while_object_storage_is_down_then_are_written_once(
    databases, stack, pool, units_of_work, objects, dead_objects, tenant
):
    """With S3 down a pass writes 0 and raises nothing, the payments stay due and the cursor counts the
    failure; with S3 back they are written exactly once."""
    await _drain(databases, pool, objects)
    payment_ids = await _paid(units_of_work, tenant, count=2)
    dead_writer = ReceiptWriter(pool, dead_objects)
    deadline = time.monotonic() + WRITTEN_WITHIN_S
    while await _cursor(units_of_work, tenant) is None and time.monotonic() < deadline:  # until a pass tried
        assert await dead_writer.write_pending_once() == 0
        await asyncio.sleep(0.05)
    assert sorted(await _pending(units_of_work, tenant)) == sorted(payment_ids)
    written, attempts, error_kind = await _cursor(units_of_work, tenant)
    assert (written, attempts) == (0, 1) and error_kind

    writer = ReceiptWriter(pool, objects)
    assert await _written(writer, 2) == 2
    assert await writer.write_pending_once() == 0
    assert await _pending(units_of_work, tenant) == []
    assert await _cursor(units_of_work, tenant) == (2, 0, None)
    bundled = await _bundled(stack, objects, tenant)
    assert sorted(bundled) == sorted(str(payment_id) for payment_id in payment_ids)
    assert all(len(documents) == 1 for documents in bundled.values())


async def test_another_tenant_sees_none_of_the_receipt_state(databases, pool, units_of_work, objects, tenant):
    """Row-level security scopes the cursors and what is due: another tenant, or no tenant, reads nothing."""
    await _paid(units_of_work, tenant)
    await _drain(databases, pool, objects)  # the tenant now has a cursor row
    await _paid(units_of_work, tenant)
    stranger = _create_tenant(databases.owner_dsn)
    for tenant_id in (stranger.tenant_id, None):
        async with units_of_work(tenant_id) as unit_of_work:
            for query in ("select count(*) from receipt_cursors", "select count(*) from receipts_pending()"):
                cursor = await unit_of_work.connection.execute(query)
                assert (await cursor.fetchone())[0] == 0
    async with units_of_work(tenant.tenant_id) as unit_of_work:
        for query in ("select count(*) from receipt_cursors", "select count(*) from receipts_pending()"):
            cursor = await unit_of_work.connection.execute(query)
            assert (await cursor.fetchone())[0] == 1


def test_rendering_is_deterministic_with_integer_minor_units():
    """The same payment renders to the same canonical bytes: sorted keys, integer minor units, UTC time."""
    payment = _payment_row()
    body = render_receipt(payment, "demo-city")
    assert body == render_receipt(payment, "demo-city")
    assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    document = json.loads(body)
    assert document["amountMinor"] == 1250 and isinstance(document["amountMinor"], int)
    assert document["amount"] == "12.50"
    assert document["refundedMinor"] == 0 and document["refunded"] == "0.00"
    assert document["createdAt"] == "2025-03-01T11:04:05.120000Z"
    assert document["paymentId"] == str(payment.payment_id)
    assert document["terminalId"] == str(payment.terminal_id)
    assert (document["currency"], document["kind"], document["status"]) == ("EUR", "payment", "completed")


@pytest.mark.parametrize(
    ("currency", "amount_minor", "display"),
    [
        ("EUR", 5, "0.05"),
        ("JPY", 1250, "1250"),
        ("KRW", 7, "7"),
        ("BHD", 1250, "1.250"),
        ("KWD", 100000000, "100000.000"),
        ("CLF", 12345, "1.2345"),
    ],
)
def test_display_amounts_follow_the_currency_decimals(currency, amount_minor, display):
    """The display string has the currency's ISO 4217 decimals: 2, or 0 (JPY, KRW), 3 (BHD, KWD, ...), 4 (CLF)."""
    document = json.loads(render_receipt(_payment_row(currency=currency, amount_minor=amount_minor), "t"))
    assert document["amount"] == display


async def test_get_or_create_returns_the_stored_receipt(databases, stack, pool, units_of_work, objects, tenant):
    """After the writer archived it, get_or_create_receipt stores the per-payment object once, with the
    bundle's bytes, and returns exactly the stored bytes from then on."""
    [payment_id] = await _paid(units_of_work, tenant)
    await _drain(databases, pool, objects)
    payment = await _payment(units_of_work, tenant, payment_id)
    for _ in range(2):
        body = await get_or_create_receipt(objects, tenant.tenant_id, payment, tenant.slug)
        assert body == await objects.get(tenant.tenant_id, receipt_key(payment_id))
        assert [body] == (await _bundled(stack, objects, tenant))[str(payment_id)]


async def test_get_or_create_writes_a_missing_receipt_and_the_writer_still_archives_it(databases, stack, pool, units_of_work, objects, tenant):
    """A receipt not archived yet is rendered and uploaded as the per-payment object; the bundle, written
    independently, holds the same bytes."""
    [payment_id] = await _paid(units_of_work, tenant)
    payment = await _payment(units_of_work, tenant, payment_id)
    body = await get_or_create_receipt(objects, tenant.tenant_id, payment, tenant.slug)
    assert body == render_receipt(payment, tenant.slug)
    assert await objects.get(tenant.tenant_id, receipt_key(payment_id)) == body
    assert await _pending(units_of_work, tenant) == [payment_id]
    await _drain(databases, pool, objects)
    assert await _pending(units_of_work, tenant) == []
    assert (await _bundled(stack, objects, tenant))[str(payment_id)] == [body]


async def test_get_or_create_renders_while_object_storage_is_down(units_of_work, dead_objects, tenant):
    """With S3 unreachable the receipt is still answered, rendered from the payment, and stays due."""
    [payment_id] = await _paid(units_of_work, tenant)
    payment = await _payment(units_of_work, tenant, payment_id)
    body = await get_or_create_receipt(dead_objects, tenant.tenant_id, payment, tenant.slug)
    assert body == render_receipt(payment, tenant.slug)
    assert await _pending(units_of_work, tenant) == [payment_id]


async def test_a_presigned_url_reads_the_receipt(pool, units_of_work, objects, tenant):
    """A short-lived pre-signed URL fetched with plain HTTP returns the stored receipt."""
    [payment_id] = await _paid(units_of_work, tenant)
    # as GetReceipt does before linking to it
    await get_or_create_receipt(objects, tenant.tenant_id, await _payment(units_of_work, tenant, payment_id), tenant.slug)
    url = await presigned_receipt_url(objects, tenant.tenant_id, payment_id, expires_s=60)
    assert f"tenants/{tenant.tenant_id}/receipts/{payment_id}.json" in url
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.content == await objects.get(tenant.tenant_id, receipt_key(payment_id))


def test_a_receipt_speaks_the_tenants_language_and_time_zone_and_english_utc_keeps_its_bytes():
    """A pt-BR tenant in São Paulo gets a `display` block in its words; an English, UTC tenant's receipt is
    exactly what it was before tenants had settings."""
    payment = _payment_row(currency="BRL", amount_minor=123456)
    english = render_receipt(payment, "t")
    assert english == render_receipt(payment, "t", "en", "UTC") and "display" not in json.loads(english)
    display = json.loads(render_receipt(payment, "t", "pt-BR", "America/Sao_Paulo"))["display"]
    assert display["language"] == "pt-BR" and display["timeZone"] == "America/Sao_Paulo"
    assert display["amount"].replace("\u00a0", " ") == "R$ 1.234,56"
    local = payment.created_at.astimezone(ZoneInfo("America/Sao_Paulo"))
    assert display["createdAt"] == local.strftime("%d/%m/%Y %H:%M:%S")
    assert display["kind"] in ("Transferência entre pessoas", "Pagamento a estabelecimento", "Depósito (recarga)", "Saque",
                               "Pagamento capturado", "Estorno")
