"""Statements people can keep: a period of an account exported as CSV or PDF (domain/statement_documents.py),
stored in the object store under the tenant's prefix, downloaded through a pre-signed link.

An export is a job (migration 0020): ExportStatement checks the request and the period's size, records the
job and returns at once; a worker in every server process (`StatementExportWorker`) claims pending jobs with
SKIP LOCKED, reads the entries a page at a time (recording its progress, which also renews its claim), renders
the document in a thread, uploads it and records its size and SHA-256. A job whose worker died is taken over
after a minute; one whose upload failed (the object store away) goes back to pending and is tried again. So
no export ever runs inside a request's deadline, and a payment never waits for one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from domain.errors import OUT_OF_RANGE, REQUIRED, FailedPrecondition, NotFound
from domain.ledger_rules import MAX_ROWS_PER_READ
from domain.principal import Principal
from domain.statement_documents import StatementHeader, StatementLine, language_violations, render_csv, render_pdf
from domain.validation import invalid, parse_resource_id, raise_if_violations
from server.services import access
from server.services.transactions import Transactions
from storage import ledger, limits, statement_exports
from storage.object_store import MAX_OBJECT_BYTES, ObjectStore
from storage.statement_exports import StatementExport
from storage.unit_of_work import UnitOfWorkFactory

logger = logging.getLogger("emoney.statements")

CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
MAX_PERIOD = timedelta(days=366)
# The most entries one document holds: a CSV stays well under the object store's 10 MiB per object, and a
# PDF (drawn in Python, about 2.5 ms an entry here) within half a minute of one core.
MAX_ENTRIES = {"csv": 50_000, "pdf": 10_000}
DOWNLOAD_LINK_S = 300
WORKER_INTERVAL_S = 1.0
MAX_TENANTS_PER_PASS = 100


@dataclass(frozen=True)
class ExportView:
    export: StatementExport
    download_url: str | None
    download_url_expires_at: datetime | None


class StatementsService:
    def __init__(self, transactions: Transactions, objects: ObjectStore, worker: "StatementExportWorker | None" = None) -> None:
        self._transactions = transactions
        self._objects = objects
        self._worker = worker

    async def export(self, principal: Principal, account_name: str, start: datetime | None, end: datetime | None,
                     document_format: str, language: str) -> StatementExport:
        account_id = parse_resource_id(account_name, "accounts", "account")
        if start is None:
            raise invalid("start_time", REQUIRED, "is required")
        if end is None:
            raise invalid("end_time", REQUIRED, "is required")
        if end <= start or end - start > MAX_PERIOD:
            raise invalid("end_time", OUT_OF_RANGE, f"must be after start_time and at most {MAX_PERIOD.days} days later")
        raise_if_violations(language_violations(language))
        async with self._transactions.change(principal.tenant_id) as unit_of_work:
            access.visible_account(principal, await ledger.get_account(unit_of_work, account_id))
            entries = await statement_exports.count_entries(unit_of_work, account_id, start, end)
            if entries > MAX_ENTRIES[document_format]:
                raise FailedPrecondition(
                    message=f"the period has {entries} entries; a {document_format.upper()} statement holds at most "
                            f"{MAX_ENTRIES[document_format]}: ask for a shorter period",
                    reason="STATEMENT_TOO_LARGE",
                    metadata={"entries": str(entries), "maximum": str(MAX_ENTRIES[document_format])},
                )
            zone, tenant_language = await limits.settings(unit_of_work)
            export = await statement_exports.insert(unit_of_work, principal.tenant_id, account_id, principal.subject, start,
                                                    end, document_format, language or tenant_language, zone, entries)
            await unit_of_work.commit()
        if self._worker is not None:
            self._worker.wake()
        return export

    async def get(self, principal: Principal, name: str) -> ExportView:
        export_id = parse_resource_id(name, "statementExports", "name")
        async with self._transactions.read(principal.tenant_id) as unit_of_work:
            export = await statement_exports.get(unit_of_work, export_id)
            account = None if export is None else await ledger.get_account(unit_of_work, export.account_id)
        if export is None or account is None or not access.may_see_account(principal, account.owner_user_id):
            raise NotFound(message="statement export not found", reason="STATEMENT_EXPORT_NOT_FOUND")
        if export.state != "succeeded" or export.object_key is None:
            return ExportView(export, None, None)
        expires_at = datetime.now(timezone.utc) + timedelta(seconds=DOWNLOAD_LINK_S)
        url = await self._objects.presigned_get(principal.tenant_id, _relative_key(export), DOWNLOAD_LINK_S)
        return ExportView(export, url, expires_at)


def _relative_key(export: StatementExport) -> str:
    return f"statements/{export.account_id}/{export.export_id}.{export.format}"


class StatementExportWorker:
    """Writes pending exports, in every server process (module docstring)."""

    def __init__(self, units_of_work: UnitOfWorkFactory, objects: ObjectStore, interval_s: float = WORKER_INTERVAL_S) -> None:
        self._units_of_work = units_of_work
        self._objects = objects
        self._interval_s = interval_s
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """An export was just asked for: look now rather than at the next pass."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                written = await self.write_pending()
                if written:
                    logger.info("statement exports written", extra={"count": written})
            except Exception as error:  # a dependency may be away; try again next pass
                logger.warning("statement export pass failed: %s", type(error).__name__)
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._interval_s)
            except TimeoutError:
                pass
            self._wakeup.clear()

    async def write_pending(self) -> int:
        async with self._units_of_work(None, read_only=True) as unit_of_work:
            tenant_ids = await statement_exports.tenants_with_pending(unit_of_work, MAX_TENANTS_PER_PASS)
        written = 0
        for tenant_id in tenant_ids:
            while True:
                async with self._units_of_work(tenant_id) as unit_of_work:
                    export = await statement_exports.claim_next(unit_of_work)
                    await unit_of_work.commit()
                if export is None:
                    break
                written += await self._write(tenant_id, export)
        return written

    async def _write(self, tenant_id: uuid.UUID, export: StatementExport) -> int:
        try:
            header, lines = await self._read(tenant_id, export)
            render = render_csv if export.format == "csv" else render_pdf
            document = await asyncio.to_thread(render, header, lines)
            if len(document) > MAX_OBJECT_BYTES:
                raise ValueError(f"the document is {len(document)} bytes, more than the {MAX_OBJECT_BYTES} an object may be")
        except Exception as error:  # a document that cannot be made now will not be made later: say why
            logger.exception("statement export failed", extra={"export_id": str(export.export_id)})
            async with self._units_of_work(tenant_id) as unit_of_work:
                await statement_exports.fail(unit_of_work, export.export_id, f"{type(error).__name__}: {error}")
                await unit_of_work.commit()
            return 0
        try:
            key = await self._objects.put(tenant_id, _relative_key(export), document, CONTENT_TYPES[export.format])
        except Exception as error:  # the object store is away: back to pending, the next pass tries again
            logger.warning("statement export upload failed: %s", type(error).__name__)
            async with self._units_of_work(tenant_id) as unit_of_work:
                await statement_exports.release(unit_of_work, export.export_id)
                await unit_of_work.commit()
            return 0
        async with self._units_of_work(tenant_id) as unit_of_work:
            await statement_exports.finish(unit_of_work, export.export_id, len(lines), key, len(document),
                                           hashlib.sha256(document).digest())
            await unit_of_work.commit()
        return 1

    async def _read(self, tenant_id: uuid.UUID, export: StatementExport) -> tuple[StatementHeader, list[StatementLine]]:
        async with self._units_of_work(tenant_id) as unit_of_work:
            account = await ledger.get_account(unit_of_work, export.account_id)
            if account is None:
                raise ValueError("the account is gone")
            tenant_name, holder_name = await statement_exports.names(unit_of_work, tenant_id, account.owner_user_id)
            opening = await statement_exports.balance_before(unit_of_work, export.account_id, export.start_time)
        header = StatementHeader(tenant_name, str(export.account_id), holder_name, account.currency, export.start_time,
                                 export.end_time, export.time_zone, export.language, opening)
        lines: list[StatementLine] = []
        after = None
        while True:
            async with self._units_of_work(tenant_id) as unit_of_work:
                page = await ledger.list_entries(unit_of_work, export.account_id, start=export.start_time,
                                                 end=export.end_time, after=after, limit=MAX_ROWS_PER_READ)
                lines += [StatementLine(entry.created_at, str(entry.transfer_id), entry.transfer_kind, entry.description,
                                        entry.amount_minor, entry.balance_after_minor) for entry in page]
                await statement_exports.progress(unit_of_work, export.export_id, len(lines))
                await unit_of_work.commit()
            if len(page) < MAX_ROWS_PER_READ:
                return header, lines
            after = (page[-1].created_at, page[-1].entry_id)
