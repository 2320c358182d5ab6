"""The one place that answers a money call idempotently: replay the reply it gave, or build it and store it.

A retry with the same request_id gets the reply the first call got, byte for byte (AIP-155). Two kinds of
movement get there differently, and both go through `answer`:

- a movement of a storage transaction (TopUp, Withdraw, CapturePayment, VoidPayment, RefundPayment;
  storage/movements.py) stores the serialized reply with its idempotency key, in the UPDATE that travels
  with its COMMIT in one pipeline (storage.idempotency.commit_with_response) — no round trip of its own,
  and never a movement committed without its reply. A replay's outcome carries those bytes back.
- a movement of an SQL entry point (CreateTransfer, ChargePaymentCode, AuthorizePayment) is one
  autocommit statement and stores no reply: a replay returns the record as it was created, so the reply
  built from it is the same bytes.

Why the service takes a `serialize` function rather than handing the open transaction back here: the
transaction, its commit and the stored bytes stay in storage, where the reply must be written before the
commit; the protobuf reply, which the service layer does not know, is built only here. `answer` builds
the reply once, hands its bytes to storage through `serialize`, and returns that same reply — or, on a
replay, parses the stored bytes, or rebuilds the reply from the record when nothing was stored.
"""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

from google.protobuf.message import Message

from storage.ledger import HoldRecord, Outcome, TransferRecord
from storage.movements import Serialize

Reply = TypeVar("Reply", bound=Message)
Record = TypeVar("Record", TransferRecord, HoldRecord)


async def answer(
    reply_type: type[Reply],
    payment_of: Callable[[Record], Message],
    movement: Callable[[Serialize], Awaitable[Outcome[Record]]],
) -> Reply:
    """Run `movement` (a service call given the serializer) and return its reply — every money reply is
    `reply_type(payment=payment_of(record))` — as stored or replayed."""
    built: list[Reply] = []

    def build(record: Record) -> Reply:
        return reply_type(payment=payment_of(record))

    def serialize(record: Record) -> bytes:
        built.append(build(record))
        return built[-1].SerializeToString()

    outcome = await movement(serialize)
    if outcome.replayed and outcome.stored_response is not None:
        return reply_type.FromString(outcome.stored_response)
    if built and not outcome.replayed:
        return built[-1]
    return build(outcome.record)
