"""The audit log: append-only, hash-chained, written in the same transaction as the change.

Design (migrations/current/04_audit.sql): each tenant has `AUDIT_STRIPES` independent chains ("stripes").
A transaction appends to the first stripe no other transaction holds (SKIP LOCKED, from a random
start) and keeps it until commit, so the chain head is never a queue that every money movement waits
in; each stripe is a complete chain on its own:

    hash = sha256(previous_hash || canonical bytes of the event)

where the first `previous_hash` of a stripe is its genesis hash and the head row keeps the last
sequence and hash (so deleting the newest events is detected too). Ledger functions append their
events inside the same SQL call that moves the money; `append_audit` is for every other change.

What the chain proves: nobody edited, inserted or removed an event without rewriting every later
hash of that stripe and its head. The application role cannot do either (no UPDATE/DELETE grants,
plus triggers refusing it for everyone); anchoring the heads outside the database would also cover
an attacker with the owner's rights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from psycopg.types.json import Jsonb

from storage.unit_of_work import UnitOfWork

VERIFY_BATCH_ROWS = 5_000


@dataclass(frozen=True)
class RequestContext:
    """Who asked for a change, through which method, and how to recognise a retry of it.

    `actor` is the caller's subject (user or terminal); it is also the scope of idempotency keys.
    `request_hash` (sha256 of the canonical request, see storage.idempotency.request_hash) is required
    by every call that moves money.
    """

    actor: str
    method: str
    request_id: str
    request_hash: bytes | None = None


@dataclass(frozen=True)
class AppendedEvent:
    stripe: int
    sequence: int
    hash: bytes
    created_at: datetime


@dataclass(frozen=True)
class AuditEvent:
    stripe: int
    sequence: int
    actor: str
    method: str
    request_id: str
    summary: dict[str, Any]
    created_at: datetime
    hash: bytes


@dataclass(frozen=True)
class BrokenLink:
    """The first event of a stripe that does not verify, and why.

    problem: HASH_MISMATCH (the event's content was changed), LINK_BROKEN (its previous_hash is not the
    previous event's hash), SEQUENCE_GAP (events are missing before it), HEAD_MISMATCH (the newest
    events were removed or the head was changed).
    """

    stripe: int
    sequence: int
    problem: str
    created_at: datetime | None


@dataclass(frozen=True)
class AuditVerification:
    stripes_checked: int
    events_checked: int
    broken_links: list[BrokenLink]  # at most one per stripe, oldest first

    @property
    def ok(self) -> bool:
        return not self.broken_links

    @property
    def first_broken(self) -> BrokenLink | None:
        return self.broken_links[0] if self.broken_links else None


def _dumps(value: Any) -> str:
    # Ids and times become strings; amounts should already be strings or ints (never floats).
    return json.dumps(value, default=str, separators=(",", ":"))


async def append_audit(unit_of_work: UnitOfWork, context: RequestContext, summary: Mapping[str, Any]) -> AppendedEvent:
    """Append an event (`summary` is typically {"before": ..., "after": ...}) to the tenant's chain."""
    cursor = await unit_of_work.connection.execute(
        "select stripe, sequence, hash, created_at from audit_append(%s, %s, %s, %s)",
        (context.actor, context.method, context.request_id, Jsonb(dict(summary), dumps=_dumps)),
    )
    return AppendedEvent(*await cursor.fetchone())


async def list_audit_events(
    unit_of_work: UnitOfWork, after: tuple[datetime, int, int] | None, limit: int
) -> list[AuditEvent]:
    """Oldest first, keyset-paginated on (created_at, stripe, sequence)."""
    where, parameters = "", []
    if after is not None:
        where, parameters = "where (created_at, stripe, sequence) > (%s, %s, %s)", list(after)
    cursor = await unit_of_work.connection.execute(
        f"""select stripe, sequence, actor, method, request_id, summary, created_at, hash from audit_events {where}
             order by created_at, stripe, sequence limit %s""",
        (*parameters, limit),
    )
    return [AuditEvent(*row) for row in await cursor.fetchall()]


async def list_page(
    unit_of_work: UnitOfWork,
    before: tuple[datetime, int, int] | None,
    limit: int,
    actor: str | None = None,
    request_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[AuditEvent]:
    """Newest first, keyset-paginated on (created_at, stripe, sequence) (0009's indexes), filtered."""
    conditions, parameters = [], []
    if before is not None:
        conditions.append("(created_at, stripe, sequence) < (%s, %s, %s)")
        parameters += list(before)
    for condition, value in (("actor = %s", actor), ("request_id = %s", request_id), ("created_at >= %s", start), ("created_at < %s", end)):
        if value is not None:
            conditions.append(condition)
            parameters.append(value)
    where = f"where {' and '.join(conditions)}" if conditions else ""
    cursor = await unit_of_work.connection.execute(
        f"""select stripe, sequence, actor, method, request_id, summary, created_at, hash from audit_events {where}
             order by created_at desc, stripe desc, sequence desc limit %s""",
        (*parameters, limit),
    )
    return [AuditEvent(*row) for row in await cursor.fetchall()]


async def verify_audit_chain(unit_of_work: UnitOfWork, batch_rows: int = VERIFY_BATCH_ROWS) -> AuditVerification:
    """Recompute every stripe of the current tenant's chain; report each stripe's first broken link."""
    connection = unit_of_work.connection
    cursor = await connection.execute(
        """select stripe, last_sequence, last_hash, audit_genesis_hash(tenant_id, stripe)
             from audit_chain_heads order by stripe"""
    )
    heads = await cursor.fetchall()
    broken: list[BrokenLink] = []
    events_checked = 0
    for stripe, last_sequence, last_hash, genesis in heads:
        link, checked = await _verify_stripe(unit_of_work, stripe, last_sequence, bytes(last_hash), bytes(genesis), batch_rows)
        events_checked += checked
        if link is not None:
            broken.append(link)
    broken.sort(key=lambda link: (link.created_at is None, link.created_at or datetime.min, link.stripe))
    return AuditVerification(stripes_checked=len(heads), events_checked=events_checked, broken_links=broken)


async def _verify_stripe(
    unit_of_work: UnitOfWork, stripe: int, last_sequence: int, last_hash: bytes, genesis: bytes, batch_rows: int
) -> tuple[BrokenLink | None, int]:
    """Walk one stripe in sequence order, up to the head read before (later appends are not ours to judge)."""
    expected_sequence, expected_previous, checked = 1, genesis, 0
    while expected_sequence <= last_sequence:
        cursor = await unit_of_work.connection.execute(
            """select sequence, previous_hash, hash, created_at,
                      audit_event_hash(previous_hash, tenant_id, stripe, sequence, created_at, actor, method,
                                       request_id, summary) = hash as intact
                 from audit_events
                where stripe = %s and sequence >= %s and sequence <= %s
                order by sequence limit %s""",
            (stripe, expected_sequence, last_sequence, batch_rows),
        )
        rows = await cursor.fetchall()
        if not rows:
            break
        for sequence, previous_hash, event_hash, created_at, intact in rows:
            checked += 1
            problem = None
            if sequence != expected_sequence:
                problem = "SEQUENCE_GAP"
            elif bytes(previous_hash) != expected_previous:
                problem = "LINK_BROKEN"
            elif not intact:
                problem = "HASH_MISMATCH"
            if problem is not None:
                return BrokenLink(stripe, sequence, problem, created_at), checked
            expected_sequence, expected_previous = sequence + 1, bytes(event_hash)
    if expected_sequence - 1 != last_sequence or expected_previous != last_hash:
        return BrokenLink(stripe, expected_sequence, "HEAD_MISMATCH", None), checked
    return None, checked

