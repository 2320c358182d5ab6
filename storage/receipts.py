"""Receipts: a JSON document per completed payment, in object storage under the tenant's prefix.

No payment waits for, or fails because of, object storage (transactional outbox):

    storage.movements, in the payment's transaction enqueue_receipt(unit_of_work, tenant_id, payment_id)
    (the SQL entry points: receipts_request)
    ReceiptWriter.run() in every server process    for each tenant with pending rows (SECURITY DEFINER
                                                   lookup), in a unit of work scoped to that tenant:
                                                   lock a batch (FOR UPDATE SKIP LOCKED), render,
                                                   upload the batch as ONE bundle, mark written, commit
    GetReceipt                                     get_or_create_receipt / presigned_receipt_url

Bundles: the writer archives a batch as one JSON-lines object, `receipts/bundles/YYYY/MM/DD/{first
payment id}.jsonl` (one receipt document per line, in the batch's order; `bundle_key` on each outbox
row says which). One S3 write per batch, not per payment: under load the per-payment writes cost about
a quarter of the machine (SeaweedFS plus the uploading threads). The per-payment object
`receipts/{id}.json`, which GetReceipt returns and links to, is written when a receipt is first asked
for — the same bytes, since rendering is deterministic.

While object storage is down the rows stay pending (with `attempts` and `last_error_kind`) and the
writer backs off up to BACKOFF_MAX_S. A crash between an upload and its commit leaves the rows pending,
so a later bundle archives them again: a receipt may sit in two bundles, never in none.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import timezone
from typing import Sequence

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
# One upload (a receipt, or a bundle of a batch) may take this long: well inside the pool's
# idle_in_transaction_session_timeout (30 s), since the batch's rows stay locked meanwhile.
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


async def enqueue_receipt(unit_of_work: UnitOfWork, tenant_id: uuid.UUID, payment_id: uuid.UUID) -> None:
    """Ask for a receipt, in the payment's own transaction (idempotent: a second call changes nothing).
    The request itself is the database's receipts_request (migrations/current/07_receipts.sql), the
    one the SQL entry points make too.

    Raises ValueError when the tenant has no such payment: a receipt that could never be rendered
    would otherwise stay pending forever.
    """
    cursor = await unit_of_work.connection.execute(
        """select receipts_request(%(tenant)s, %(payment)s)
            where exists (select from transfers where transfer_id = %(payment)s)
               or exists (select from holds where hold_id = %(payment)s)""",
        {"tenant": tenant_id, "payment": payment_id},
    )
    if await cursor.fetchone() is None:
        raise ValueError(f"no payment {payment_id} in this tenant to write a receipt for")


async def get_or_create_receipt(
    unit_of_work: UnitOfWork, objects: ObjectStore, tenant_id: uuid.UUID, payment: PaymentRow, tenant_slug: str,
    language: str = "en", time_zone: str = "UTC",
) -> bytes:
    """The stored receipt; if it is not written yet, render it, upload it (best effort) and return it.

    When it uploads, it also marks the outbox row written on `unit_of_work` (effective if the caller
    commits). While object storage is unreachable the receipt is rendered from the payment instead.
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
    await _mark_written(unit_of_work, [payment.payment_id])
    return body


async def presigned_receipt_url(
    objects: ObjectStore, tenant_id: uuid.UUID, payment_id: uuid.UUID, expires_s: int = 300
) -> str:
    """A short-lived URL reading the stored receipt, on the address apps use (EMONEY_S3_PUBLIC_URL)."""
    return await objects.presigned_get(tenant_id, receipt_key(payment_id), expires_s)


async def _mark_written(unit_of_work: UnitOfWork, payment_ids: Sequence[uuid.UUID]) -> None:
    # SKIP LOCKED: never wait for a writer holding the row; it marks the row itself.
    # Not now(): that is when OUR transaction began, and a payment that began after it but committed
    # before our SELECT (READ COMMITTED) has a later created_at, which `written_at >= created_at`
    # refuses — failing the whole batch again and again under steady load (found by tools/faults).
    await unit_of_work.connection.execute(
        """update receipt_outbox set written_at = greatest(clock_timestamp(), created_at), attempts = attempts + 1, last_error_kind = null
            where payment_id in (select payment_id from receipt_outbox
                                  where payment_id = any(%s) and written_at is null
                                    for update skip locked)""",
        (list(payment_ids),),
    )


async def _record_failure(unit_of_work: UnitOfWork, payment_ids: Sequence[uuid.UUID], error_kind: str) -> None:
    await unit_of_work.connection.execute(
        "update receipt_outbox set attempts = attempts + 1, last_error_kind = %s where payment_id = any(%s)",
        (error_kind[:100], list(payment_ids)),
    )


class ReceiptWriter:
    """Uploads pending receipts; every server process may run one (rows are shared with SKIP LOCKED)."""

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
        async with self._units_of_work(None) as unit_of_work:
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
            cursor = await unit_of_work.connection.execute(
                """select payment_id from receipt_outbox where written_at is null
                    order by created_at, payment_id limit %s for update skip locked""",
                (self._batch_size,),
            )
            payment_ids = [row[0] for row in await cursor.fetchall()]
            if not payment_ids:
                return 0, False
            tenant_slug, language, time_zone = await tenants.receipt_voice(unit_of_work, tenant_id)
            written, storage_failed = await self._upload(unit_of_work, tenant_id, tenant_slug, payment_ids, language, time_zone)
            if written:
                await _mark_written(unit_of_work, written)
            await unit_of_work.commit()
        return len(written), storage_failed

    async def _upload(
        self, unit_of_work: UnitOfWork, tenant_id: uuid.UUID, tenant_slug: str, payment_ids: list[uuid.UUID],
        language: str = "en", time_zone: str = "UTC",
    ) -> tuple[list[uuid.UUID], bool]:
        """Render the batch and upload it as one bundle (see the module's docstring). On an object-storage
        failure every row of the batch stays pending with the failure recorded."""
        payments = await payments_query.get_many(unit_of_work, payment_ids)
        for payment_id in payment_ids:
            if payment_id not in payments:  # enqueue_receipt refuses unknown payments; record it, never loop silently
                await _record_failure(unit_of_work, [payment_id], "PaymentNotFound")
        rendered = [(payment_id, render_receipt(payments[payment_id], tenant_slug, language, time_zone)) for payment_id in payment_ids if payment_id in payments]
        if not rendered:
            return [], False
        key = bundle_key(payments[rendered[0][0]])
        body = b"\n".join(document for _, document in rendered) + b"\n"
        try:
            await asyncio.wait_for(self._objects.put(tenant_id, key, body, BUNDLE_CONTENT_TYPE), UPLOAD_TIMEOUT_S)
        except Exception as error:  # object storage down or refusing: keep the rows pending
            logger.warning("receipt bundle upload failed: %s", type(error).__name__)
            await _record_failure(unit_of_work, [payment_id for payment_id, _ in rendered], type(error).__name__)
            return [], True
        written = [payment_id for payment_id, _ in rendered]
        await unit_of_work.connection.execute(
            "update receipt_outbox set bundle_key = %s where payment_id = any(%s)", (key, written)
        )
        return written, False
