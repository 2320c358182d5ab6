"""Idempotency keys (AIP-155): the same request_id from the same caller is answered once.

A key is `(tenant, caller, request_id)`, stored in `idempotency_keys` in the SAME transaction as the
change it guards, together with a sha256 of the request. The ledger functions claim the key as their
first statement, so:

* a retry after the original committed finds the key and gets the original result back
  (`Outcome.replayed`, with the stored reply bytes if the movement stored them);
* a duplicate arriving while the original is still running waits on the original's uncommitted key
  (PostgreSQL blocks the second INSERT of a unique key), then finds it — exactly one movement;
* the same key with a different request hash is REQUEST_ID_REUSED (ALREADY_EXISTS);
* a call that fails rolls back with its key, so the client may retry it.

Storing the serialized reply without a second round trip while row locks are held: a movement that
runs in a storage transaction (storage/movements.py) calls `commit_with_response` with the bytes its
caller's `serialize` gave for the record, which sends the UPDATE of the key and the COMMIT in one
pipeline — the one round trip a commit costs anyway. Which bytes those are, and turning them back into
a reply on a replay, is server/servicers/idempotent.py's business, the one place that does it:

    async with units_of_work(tenant_id) as unit_of_work:
        outcome = await ledger.post_transfer(unit_of_work, context, ...)
        if outcome.replayed:
            return outcome  # outcome.stored_response: the bytes stored by the original call
        await idempotency.commit_with_response(unit_of_work, context, serialize(outcome.record))
        return outcome
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any, Mapping

from domain.ledger_rules import MAX_RESPONSE_BYTES
from storage.audit import RequestContext
from storage.unit_of_work import UnitOfWork


def request_hash(method: str, request: Mapping[str, Any] | bytes) -> bytes:
    """sha256 over the method and the canonical request.

    `request` is either a mapping (canonical JSON: sorted keys, no spaces; ids and amounts as strings
    or ints) or already-canonical bytes such as `message.SerializeToString(deterministic=True)`.
    """
    if isinstance(request, (bytes, bytearray)):
        body = bytes(request)
    else:
        body = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False).encode()
    return hashlib.sha256(method.encode() + b"\x00" + body).digest()


async def commit_with_response(unit_of_work: UnitOfWork, context: RequestContext, response: bytes) -> None:
    """Store the serialized reply with the key this transaction claimed, and commit — one round trip."""
    if len(response) > MAX_RESPONSE_BYTES:
        raise ValueError(f"a stored reply is limited to {MAX_RESPONSE_BYTES} bytes")
    connection = unit_of_work.connection
    async with connection.pipeline():
        await connection.execute(
            "update idempotency_keys set response = %s where caller = %s and request_id = %s and response is null",
            (response, context.actor, context.request_id),
        )
        await unit_of_work.commit()


async def tenants_with_old_keys(unit_of_work: UnitOfWork, older_than: timedelta, limit: int) -> list[uuid.UUID]:
    """Tenants that have keys older than `older_than` (migrations/0013); any tenant's unit of work."""
    cursor = await unit_of_work.connection.execute("select * from tenants_with_old_requests(%s, %s)", (older_than, limit))
    return [row[0] for row in await cursor.fetchall()]


async def forget_old_keys(unit_of_work: UnitOfWork, older_than: timedelta, max_rows: int) -> int:
    """Delete up to `max_rows` of this tenant's keys older than `older_than` (at least a day); how many.
    A retry of a forgotten request is a new request."""
    cursor = await unit_of_work.connection.execute("select ledger_forget_old_requests(%s, %s)", (older_than, max_rows))
    return (await cursor.fetchone())[0]
