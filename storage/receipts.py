"""Receipts: a JSON document per completed payment, in object storage under the tenant's prefix.

No payment waits for, fails because of, or writes anything for object storage: a transfer's receipt is
read from the committed transfer row itself (migrations/current/07_receipts.sql says how none is missed):

    a transfer (any kind; a hold's receipt is its capture's)   its row carries created_xid, its transaction's id
    ReceiptWriter.run() in every server process    for each tenant with transfers past its cursor (SECURITY
                                                   DEFINER lookup), in a unit of work scoped to that tenant:
                                                   take the tenant's turn (advisory lock), read the horizon,
                                                   then the transfers in [cursor, horizon), render, upload
                                                   the batch as ONE bundle, move the cursor, commit
    GetReceipt                                     get_or_create_receipt / presigned_receipt_url

Bundles: the writer archives a batch as one JSON-lines object, `receipts/bundles/YYYY/MM/DD/{first
payment id}.jsonl` (one receipt document per line, in the batch's order). One S3 write per batch, not per
payment: under load the per-payment writes cost about a quarter of the machine (SeaweedFS plus the
uploading threads). The per-payment object `receipts/{id}.json`, which GetReceipt returns and links to,
is written when a receipt is first asked for — the same bytes, since rendering is deterministic.

While object storage is down the cursor stays where it is (its row counts `attempts` and keeps
`last_error_kind`) and the writer backs off up to BACKOFF_MAX_S. A crash between an upload and its commit
leaves the cursor where it was, so a later bundle archives those receipts again: a receipt may sit in two
bundles, never in none.

Why by hand: the receipt's document, its bundling and the cursor are this platform's own; the parts that
are not (the S3 client, the database's transaction ids and snapshots) are minio and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import timezone

from minio.error import S3Error
from psycopg_pool import AsyncConnectionPool

from domain.currencies import decimal_text, minor_units
from domain.statement_documents import kind_label, money, when
from storage import payments_query, tenants
from storage.object_store import ObjectStore
from storage.payments_query import PaymentRow
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

logger = logging.getLogger("emoney.receipts")

RECEIPT_VERSION = 1
RECEIPT_CONTENT_TYPE = "application/json"
BUNDLE_CONTENT_TYPE = "application/x-ndjson"
MAX_TENANTS_PER_PASS = 100
MAX_BATCH_SIZE = 500
# The first key of the writer's transaction-level advisory lock (the second: the tenant id's hash), so the
# writers of several processes take turns per tenant. No other advisory lock of the schema uses it.
RECEIPTS_LOCK_CLASS = 0x5EC1
# One upload (a receipt, or a bundle of a batch) may take this long: well inside the pool's
# idle_in_transaction_session_timeout (30 s), since the writer's transaction (and its tenant's turn) stays
# open meanwhile.
UPLOAD_TIMEOUT_S = 10.0
BACKOFF_MAX_S = 30.0
# After a pass that wrote less than a full batch, the writer waits this long so the next bundle holds
# more receipts: receipts land in object storage within about a second, at a fraction of the cost.
GATHER_INTERVAL_S = 0.5

# Decimals for a currency code that is no ISO 4217 currency (an account opened before currencies were
# checked): what every receipt used before the list came from ISO 4217.
UNKNOWN_CURRENCY_MINOR_UNITS = 2


def receipt_key(payment_id: uuid.UUID) -> str:
    """The receipt's key relative to the tenant's prefix (ObjectStore adds `tenants/{tenant_id}/`)."""
    return f"receipts/{payment_id}.json"


def bundle_key(first: PaymentRow) -> str:
    """Where the writer archives a batch whose first receipt is `first` (relative to the tenant prefix)."""
    day = first.created_at.astimezone(timezone.utc).strftime("%Y/%m/%d")
    return f"receipts/bundles/{day}/{first.payment_id}.jsonl"


def parse_bundle(body: bytes) -> dict[str, bytes]:
    """The receipts in a bundle, by payment id (as text): each line is one receipt document."""
    return {json.loads(line)["paymentId"]: line for line in body.splitlines() if line}


def display_amount(amount_minor: int, currency: str) -> str:
    """Minor units as a decimal string for people (1250 EUR -> "12.50", 1250 JPY -> "1250"); integer
    arithmetic only, never a float."""
    digits = minor_units(currency)
    return decimal_text(amount_minor, UNKNOWN_CURRENCY_MINOR_UNITS if digits is None else digits)


def render_receipt(payment: PaymentRow, tenant_slug: str, language: str = "en", time_zone: str = "UTC") -> bytes:
    """The receipt document: canonical JSON (sorted keys, no spaces), so the same payment always
    renders to the same bytes. Amounts are integer minor units plus a display string.

    A tenant that speaks another language than English, or counts its days in another time zone than UTC
    (UpdateTenantSettings), also gets `display`: the amount, the kind and the time as its people read them
    (domain/statement_documents.py, Babel's CLDR formats). An English, UTC tenant's receipts keep exactly the
    bytes they always had."""
    if payment.created_at.tzinfo is None:
        raise ValueError("a payment's created_at must carry a time zone")
    document: dict[str, object] = {
        "receiptVersion": RECEIPT_VERSION,
        "tenantSlug": tenant_slug,
        "paymentId": str(payment.payment_id),
        "kind": payment.kind,
        "status": payment.status,
        "currency": payment.currency,
        "amountMinor": payment.amount_minor,
        "amount": display_amount(payment.amount_minor, payment.currency),
        "refundedMinor": payment.refunded_minor,
        "refunded": display_amount(payment.refunded_minor, payment.currency),
        "fromAccountId": str(payment.from_account_id),
        "toAccountId": str(payment.to_account_id),
        "terminalId": None if payment.terminal_id is None else str(payment.terminal_id),
        "relatedPaymentId": None if payment.related_id is None else str(payment.related_id),
        "createdAt": payment.created_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if payment.description is not None:  # only when written: receipts of payments without one keep their bytes
        document["description"] = payment.description
    if (language, time_zone) != ("en", "UTC"):
        document["display"] = {
            "language": language, "timeZone": time_zone, "kind": kind_label(payment.kind, language),
            "amount": money(payment.amount_minor, payment.currency, language), "createdAt": when(payment.created_at, language, time_zone),
        }
    if payment.kind == "hold":
        document["capturedMinor"] = payment.captured_minor
        document["captured"] = display_amount(payment.captured_minor, payment.currency)
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def get_or_create_receipt(
    objects: ObjectStore, tenant_id: uuid.UUID, payment: PaymentRow, tenant_slug: str,
    language: str = "en", time_zone: str = "UTC",
) -> bytes:
    """The stored receipt; if it is not written yet, render it, upload it (best effort) and return it.
    While object storage is unreachable the receipt is rendered from the payment instead. (The writer
    still archives it in a bundle: the per-payment object and the bundles are written independently.)
    """
    key = receipt_key(payment.payment_id)
    try:
        return await objects.get(tenant_id, key)
    except S3Error as error:
        if error.code != "NoSuchKey":
            logger.warning("receipt read failed: %s", type(error).__name__)
            return render_receipt(payment, tenant_slug, language, time_zone)
    except Exception as error:  # object storage unreachable: the document is deterministic, render it
        logger.warning("receipt read failed: %s", type(error).__name__)
        return render_receipt(payment, tenant_slug, language, time_zone)
    body = render_receipt(payment, tenant_slug, language, time_zone)
    try:
        await asyncio.wait_for(objects.put(tenant_id, key, body, RECEIPT_CONTENT_TYPE), UPLOAD_TIMEOUT_S)
    except Exception as error:  # best effort: the writer uploads it later
        logger.warning("receipt upload failed: %s", type(error).__name__)
    return body


async def presigned_receipt_url(
    objects: ObjectStore, tenant_id: uuid.UUID, payment_id: uuid.UUID, expires_s: int = 300
) -> str:
    """A short-lived URL reading the stored receipt, on the address apps use (EMONEY_S3_PUBLIC_URL)."""
    return await objects.presigned_get(tenant_id, receipt_key(payment_id), expires_s)


class ReceiptWriter:
    """Uploads pending receipts; every server process may run one (a tenant's writers take turns with an
    advisory lock)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        objects: ObjectStore,
        *,
        batch_size: int = MAX_BATCH_SIZE,
        idle_interval_s: float = 1.0,
        gather_interval_s: float = GATHER_INTERVAL_S,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        self._units_of_work = UnitOfWorkFactory(pool)
        self._objects = objects
        self._batch_size = batch_size
        self._idle_interval_s = idle_interval_s
        self._gather_interval_s = gather_interval_s

    async def write_pending_once(self) -> int:
        """One pass over the tenants with pending receipts; returns how many receipts were written.
        Object-storage failures leave the rows pending and are not raised."""
        written, _ = await self._write_pass()
        return written

    async def run(self) -> None:
        backoff_s = 0.0
        while True:
            try:
                written, storage_failed = await self._write_pass()
            except Exception as error:  # the database may be away: try again later
                logger.warning("receipt pass failed: %s", type(error).__name__)
                written, storage_failed = 0, True
            if storage_failed:
                backoff_s = min(max(backoff_s * 2, self._idle_interval_s), BACKOFF_MAX_S)
                await asyncio.sleep(backoff_s)
                continue
            backoff_s = 0.0
            if written:
                logger.info("receipts written", extra={"count": written})
            if written >= self._batch_size:
                continue  # a backlog: on at once
            # Otherwise let receipts gather: a few large bundles cost far less than many small ones.
            await asyncio.sleep(self._gather_interval_s if written else self._idle_interval_s)

    async def _write_pass(self) -> tuple[int, bool]:
        """(receipts written, whether object storage failed and the caller should back off)."""
        async with self._units_of_work(None, read_only=True) as unit_of_work:
            cursor = await unit_of_work.connection.execute(
                "select * from tenants_with_pending_receipts(%s)", (MAX_TENANTS_PER_PASS,)
            )
            tenant_ids = [row[0] for row in await cursor.fetchall()]
        total = 0
        for tenant_id in tenant_ids:
            written, storage_failed = await self._write_tenant_batch(tenant_id)
            total += written
            if storage_failed:
                return total, True
        return total, False

    async def _write_tenant_batch(self, tenant_id: uuid.UUID) -> tuple[int, bool]:
        async with self._units_of_work(tenant_id) as unit_of_work:
            connection = unit_of_work.connection
            cursor = await connection.execute(
                "select pg_try_advisory_xact_lock(%s, hashtext(%s::text))", (RECEIPTS_LOCK_CLASS, str(tenant_id))
            )
            if not (await cursor.fetchone())[0]:
                return 0, False  # another process is writing this tenant's receipts
            cursor = await connection.execute("select next_xid from receipt_cursors")  # row-level security: this tenant's
            row = await cursor.fetchone()
            start = 0 if row is None else row[0]
            # The horizon first, the transfers after, in a later statement (migrations/current/07_receipts.sql).
            horizon = (await (await connection.execute("select receipts_horizon()")).fetchone())[0]
            payment_ids, end = await self._next_batch(unit_of_work, start, horizon)
            if not payment_ids:
                return 0, False
            tenant_slug, language, time_zone = await tenants.receipt_voice(unit_of_work, tenant_id)
            failure = await self._upload(unit_of_work, tenant_id, tenant_slug, payment_ids, language, time_zone)
            await connection.execute(
                """insert into receipt_cursors as c (tenant_id, next_xid, receipts_written, attempts, last_error_kind)
                   values (%(tenant)s, %(next)s, %(written)s, %(attempts)s, %(error)s)
                   on conflict (tenant_id) do update
                      set next_xid = excluded.next_xid, receipts_written = c.receipts_written + excluded.receipts_written,
                          attempts = case when excluded.attempts = 0 then 0 else c.attempts + 1 end,
                          last_error_kind = excluded.last_error_kind, updated_at = now()""",
                {"tenant": tenant_id, "next": start if failure else end, "written": 0 if failure else len(payment_ids),
                 "attempts": 1 if failure else 0, "error": failure},
            )
            await unit_of_work.commit()
        return (0, True) if failure else (len(payment_ids), False)

    async def _next_batch(self, unit_of_work: UnitOfWork, start: int, horizon: int) -> tuple[list[uuid.UUID], int]:
        """The transfers of the next batch, oldest transaction first, and where the cursor goes after them:
        at most batch_size transfers, never part of one transaction's (a transaction of more transfers than
        that is taken whole)."""
        # transfers_by_created_xid is a BRIN index (migration 0021 says why): it finds the block ranges that
        # may hold these ids, and the few rows found are sorted. (Within one transaction the order does not
        # matter: a batch takes a transaction whole.)
        query = """select transfer_id, created_xid from transfers
                    where created_xid >= %s and created_xid < %s order by created_xid limit %s"""
        cursor = await unit_of_work.connection.execute(query, (start, horizon, self._batch_size + 1))
        rows = await cursor.fetchall()
        if len(rows) <= self._batch_size:
            return [transfer_id for transfer_id, _ in rows], horizon
        end = rows[self._batch_size][1]  # the first transaction left out
        if end == rows[0][1]:  # a single transaction holds more than a batch: take all of it
            cursor = await unit_of_work.connection.execute(
                "select transfer_id, created_xid from transfers where created_xid = %s", (end,))
            rows, end = await cursor.fetchall(), end + 1
        return [transfer_id for transfer_id, created_xid in rows if created_xid < end], end

    async def _upload(
        self, unit_of_work: UnitOfWork, tenant_id: uuid.UUID, tenant_slug: str, payment_ids: list[uuid.UUID],
        language: str = "en", time_zone: str = "UTC",
    ) -> str | None:
        """Render the batch and upload it as one bundle (see the module's docstring); the kind of error when
        object storage failed (the batch then stays pending), None when the bundle is stored."""
        payments = await payments_query.get_many(unit_of_work, payment_ids)
        rendered = [render_receipt(payments[payment_id], tenant_slug, language, time_zone) for payment_id in payment_ids]
        key = bundle_key(payments[payment_ids[0]])
        body = b"\n".join(rendered) + b"\n"
        try:
            await asyncio.wait_for(self._objects.put(tenant_id, key, body, BUNDLE_CONTENT_TYPE), UPLOAD_TIMEOUT_S)
        except Exception as error:  # object storage down or refusing: keep the batch pending
            logger.warning("receipt bundle upload failed: %s", type(error).__name__)
            return type(error).__name__[:100]
        return None
