"""server/servicers/idempotent.py: a money call's reply is the one stored with its request id, byte for byte."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import datetime, timezone

from emoney.payments.v1 import payments_pb2
from server.servicers.converters import transfer_payment
from server.servicers.idempotent import answer
from storage.ledger import Outcome, TransferRecord

RECORD = TransferRecord(
    transfer_id=uuid.uuid4(), kind="top_up", debit_account_id=uuid.uuid4(), credit_account_id=uuid.uuid4(),
    amount_minor=500, currency="EUR", status="completed", refunded_minor=0, request_id="r-1", actor="users/x",
    related_transfer_id=None, hold_id=None, terminal_id=None, created_at=datetime(2026, 1, 2, tzinfo=timezone.utc),
)


def reply_to(outcome_of) -> tuple[payments_pb2.TopUpResponse, list[bytes]]:
    """The reply `answer` gives when the movement returns `outcome_of(serialize)`, and the bytes it stored."""
    stored: list[bytes] = []

    async def movement(serialize):
        return outcome_of(serialize, stored)

    return asyncio.run(answer(payments_pb2.TopUpResponse, transfer_payment, movement)), stored


def test_a_new_movement_returns_the_very_reply_it_stored():
    def new(serialize, stored):
        stored.append(serialize(RECORD))
        return Outcome(RECORD, replayed=False, stored_response=None)

    reply, stored = reply_to(new)
    assert stored == [reply.SerializeToString()]
    assert reply.payment.amount_minor == 500


def test_a_replay_returns_the_stored_bytes_not_the_record_as_it_is_now():
    original = payments_pb2.TopUpResponse(payment=transfer_payment(RECORD)).SerializeToString()
    refunded_since = replace(RECORD, status="refunded", refunded_minor=500)
    reply, stored = reply_to(lambda serialize, stored: Outcome(refunded_since, replayed=True, stored_response=original))
    assert reply.SerializeToString() == original and stored == []


def test_a_replay_with_nothing_stored_is_rebuilt_from_the_record_as_created():
    """The SQL entry points store no reply: their replay returns the record as it was created."""
    reply, stored = reply_to(lambda serialize, stored: Outcome(RECORD, replayed=True, stored_response=None))
    assert reply == payments_pb2.TopUpResponse(payment=transfer_payment(RECORD)) and stored == []
