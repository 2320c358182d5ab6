"""The ledger's rules, each with a passing and a failing case, against real PostgreSQL as the app role."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from domain.ledger_rules import BALANCE_SHARDS_BY_KIND, MAX_TRANSFER_MINOR
from domain.principal import Principal
from server.payment_events import CHANNEL, PaymentEvent
from server.services import access
from storage import audit, idempotency, ledger, payment_codes
from tests.invariants.ledger_world import (  # noqa: F401 (fixtures)
    authorize_hold,
    LedgerWorld, ledger_app_dsn, ledger_owner_dsn, ledger_units_of_work, new_context, world,
)


def _soon(seconds: float = 300) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


async def _entries_of(world: LedgerWorld, transfer_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
    async def read(unit_of_work):
        cursor = await unit_of_work.connection.execute(
            "select account_id, amount_minor from ledger_entries where transfer_id = %s order by amount_minor", (transfer_id,)
        )
        return await cursor.fetchall()

    return await world.read(read)


async def _count(world: LedgerWorld, table: str) -> int:
    async def read(unit_of_work):
        cursor = await unit_of_work.connection.execute(f"select count(*) from {table}")
        return (await cursor.fetchone())[0]

    return await world.read(read)


# -- accounts -----------------------------------------------------------------------------------------


async def test_new_accounts_start_at_zero_and_merchants_are_sharded(world):
    """A new customer has one balance row; a merchant gets its balance shards; both start at zero."""
    customer = await world.account(await world.open("customer"))
    merchant = await world.account(await world.open("merchant"))
    assert (customer.balance_minor, customer.held_minor, customer.available_minor) == (0, 0, 0)
    assert customer.balance_shards == BALANCE_SHARDS_BY_KIND["customer"] == 0
    assert merchant.balance_shards == BALANCE_SHARDS_BY_KIND["merchant"] > 1


async def test_an_account_needs_an_existing_owner(world):
    """Opening an account for a user the tenant does not have is NOT_FOUND (OWNER_NOT_FOUND)."""
    with pytest.raises(NotFound) as caught:
        await world.run(lambda u: ledger.create_account(
            u, new_context(), owner_user_id=uuid.uuid4(), kind="customer", currency="EUR"))
    assert caught.value.reason == "OWNER_NOT_FOUND"


async def test_the_database_refuses_a_malformed_currency(world):
    """The currency domain refuses anything but three capital letters, whatever the caller validated."""
    owner = await world.user()
    with pytest.raises(psycopg.errors.CheckViolation):
        await world.run(lambda u: ledger.create_account(u, new_context(), owner_user_id=owner, kind="customer", currency="eur"))


async def test_the_float_is_created_once_per_currency(world):
    """ensure_float_account returns the same account every time, also when called concurrently."""
    ids = await asyncio.gather(*[
        world.run(lambda u: ledger.ensure_float_account(u, new_context(), "EUR")) for _ in range(5)
    ])
    assert len({account.account_id for account in ids}) == 1
    assert ids[0].kind == "system_float" and ids[0].owner_user_id is None


async def test_list_accounts_filters_and_pages(world):
    """list_accounts pages with a (created_at, account_id) keyset and filters by owner, kind and status."""
    customers = [await world.open("customer") for _ in range(3)]
    merchant = await world.open("merchant")
    await world.run(lambda u: ledger.set_account_status(u, new_context(), customers[0], "frozen"))
    first = await world.read(lambda u: ledger.list_accounts(u, kind="customer", limit=2))
    second = await world.read(lambda u: ledger.list_accounts(
        u, kind="customer", after=(first[-1].created_at, first[-1].account_id), limit=2))
    assert [a.account_id for a in first + second] == customers  # oldest first, no gap or repeat between pages
    frozen = await world.read(lambda u: ledger.list_accounts(u, status="frozen", limit=10))
    assert [a.account_id for a in frozen] == [customers[0]]
    owner = (await world.account(merchant)).owner_user_id
    owned = await world.read(lambda u: ledger.list_accounts(u, owner_user_id=owner, limit=10))
    assert [a.account_id for a in owned] == [merchant]


async def test_frozen_accounts_neither_send_nor_receive_until_unfrozen(world):
    """A frozen account fails both directions with ACCOUNT_FROZEN; unfreezing restores it."""
    frozen, other = await world.open(balance_minor=1_000), await world.open(balance_minor=1_000)
    await world.run(lambda u: ledger.set_account_status(u, new_context(), frozen, "frozen"))
    for debit, credit in ((frozen, other), (other, frozen)):
        with pytest.raises(FailedPrecondition) as caught:
            await world.move("p2p", debit, credit, 10)
        assert caught.value.reason == "ACCOUNT_FROZEN"
    await world.run(lambda u: ledger.set_account_status(u, new_context(), frozen, "active"))
    await world.move("p2p", frozen, other, 10)
    assert await world.balance(other) == 1_010


async def test_frozen_merchant_receives_nothing_in_its_shards(world):
    """A credit to a sharded (merchant) account re-checks the status after taking its shard."""
    customer, merchant = await world.open(balance_minor=500), await world.open("merchant")
    await world.run(lambda u: ledger.set_account_status(u, new_context(), merchant, "frozen"))
    with pytest.raises(FailedPrecondition) as caught:
        await world.move("payment", customer, merchant, 100)
    assert caught.value.reason == "ACCOUNT_FROZEN"
    assert await world.balance(merchant) == 0


async def test_only_an_empty_account_closes_and_closed_is_final(world):
    """Closing needs zero balance and nothing held (ACCOUNT_NOT_EMPTY); a closed account stays closed."""
    account, other = await world.open(balance_minor=300), await world.open()
    with pytest.raises(FailedPrecondition) as caught:
        await world.run(lambda u: ledger.set_account_status(u, new_context(), account, "closed"))
    assert caught.value.reason == "ACCOUNT_NOT_EMPTY"
    await world.move("p2p", account, other, 300)
    closed = await world.run(lambda u: ledger.set_account_status(u, new_context(), account, "closed"))
    assert closed.status == "closed"
    with pytest.raises(FailedPrecondition) as caught:
        await world.move("p2p", other, account, 1)
    assert caught.value.reason == "ACCOUNT_CLOSED"
    with pytest.raises(FailedPrecondition) as caught:
        await world.run(lambda u: ledger.set_account_status(u, new_context(), account, "active"))
    assert caught.value.reason == "ACCOUNT_CLOSED"


async def test_a_merchant_closes_after_its_shards_are_emptied(world):
    """Closing a sharded account counts its shards: it refuses while they hold money, closes at zero."""
    customer, merchant = await world.open(balance_minor=500), await world.open("merchant")
    await world.move("payment", customer, merchant, 200)
    with pytest.raises(FailedPrecondition) as caught:
        await world.run(lambda u: ledger.set_account_status(u, new_context(), merchant, "closed"))
    assert caught.value.reason == "ACCOUNT_NOT_EMPTY"
    await world.move("withdrawal", merchant, await world.float_account(), 200)
    assert (await world.run(lambda u: ledger.set_account_status(u, new_context(), merchant, "closed"))).status == "closed"


async def test_the_float_cannot_be_closed(world):
    """The tenant's float is never closed (ACCOUNT_KIND_NOT_ALLOWED)."""
    float_id = await world.float_account()
    with pytest.raises(InvalidArgument) as caught:
        await world.run(lambda u: ledger.set_account_status(u, new_context(), float_id, "closed"))
    assert caught.value.reason == "ACCOUNT_KIND_NOT_ALLOWED"


# -- transfers ----------------------------------------------------------------------------------------


async def test_a_transfer_writes_two_entries_that_cancel_out(world):
    """A p2p transfer moves the amount and writes -amount on the debit, +amount on the credit account."""
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    outcome = await world.move("p2p", payer, payee, 250)
    assert not outcome.replayed and outcome.record.kind == "p2p" and outcome.record.status == "completed"
    assert await world.balance(payer) == 750 and await world.balance(payee) == 250
    assert await _entries_of(world, outcome.record.transfer_id) == [(payer, -250), (payee, 250)]


async def test_top_up_and_withdrawal_go_through_the_float(world):
    """Top-ups debit the float (which goes negative by the e-money issued); withdrawals credit it."""
    customer = await world.open(balance_minor=1_000)
    float_id = await world.float_account()
    await world.move("withdrawal", customer, float_id, 400)
    assert await world.balance(float_id) == -600
    assert await world.balance(customer) == 600


async def test_no_overdraft_without_a_limit(world):
    """Spending more than the available balance is FAILED_PRECONDITION (INSUFFICIENT_FUNDS); nothing moves."""
    payer, payee = await world.open(balance_minor=100), await world.open()
    transfers_before = await _count(world, "transfers")
    with pytest.raises(FailedPrecondition) as caught:
        await world.move("p2p", payer, payee, 101)
    assert caught.value.reason == "INSUFFICIENT_FUNDS"
    assert caught.value.metadata["availableMinor"] == "100"
    assert await world.balance(payer) == 100 and await _count(world, "transfers") == transfers_before


async def test_an_overdraft_limit_allows_exactly_that_much(world):
    """An account configured with an overdraft limit may go that far below zero and no further."""
    payer, payee = await world.open(overdraft_limit_minor=500), await world.open()
    await world.move("p2p", payer, payee, 500)
    assert await world.balance(payer) == -500
    with pytest.raises(FailedPrecondition):
        await world.move("p2p", payer, payee, 1)


@pytest.mark.parametrize("amount", [0, -5, MAX_TRANSFER_MINOR + 1])
async def test_amounts_outside_the_range_are_refused(world, amount):
    """Amounts must be 1..MAX_TRANSFER_MINOR: INVALID_ARGUMENT (AMOUNT_OUT_OF_RANGE)."""
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    with pytest.raises(InvalidArgument) as caught:
        await world.move("p2p", payer, payee, amount)
    assert caught.value.reason == "AMOUNT_OUT_OF_RANGE"


async def test_the_largest_amount_is_allowed(world):
    """MAX_TRANSFER_MINOR itself is a valid amount."""
    payer, payee = await world.open(balance_minor=MAX_TRANSFER_MINOR), await world.open()
    await world.move("p2p", payer, payee, MAX_TRANSFER_MINOR)
    assert await world.balance(payee) == MAX_TRANSFER_MINOR


async def test_currencies_must_match(world):
    """The request's currency must be both accounts' currency: INVALID_ARGUMENT (CURRENCY_MISMATCH)."""
    euros, dollars = await world.open(balance_minor=100), await world.open(currency="USD")
    with pytest.raises(InvalidArgument) as caught:
        await world.move("p2p", euros, dollars, 10)
    assert caught.value.reason == "CURRENCY_MISMATCH"
    with pytest.raises(InvalidArgument):
        await world.move("p2p", euros, await world.open(), 10, currency="USD")


async def test_an_account_cannot_pay_itself(world):
    """Debit and credit account must differ: INVALID_ARGUMENT (SAME_ACCOUNT)."""
    account = await world.open(balance_minor=100)
    with pytest.raises(InvalidArgument) as caught:
        await world.move("p2p", account, account, 10)
    assert caught.value.reason == "SAME_ACCOUNT"


async def test_unknown_accounts_are_not_found(world):
    """A transfer to an account that does not exist is NOT_FOUND (ACCOUNT_NOT_FOUND)."""
    payer = await world.open(balance_minor=100)
    with pytest.raises(NotFound) as caught:
        await world.move("p2p", payer, uuid.uuid4(), 10)
    assert caught.value.reason == "ACCOUNT_NOT_FOUND"


@pytest.mark.parametrize(
    ("kind", "debit_kind", "credit_kind"),
    [("p2p", "customer", "merchant"), ("payment", "customer", "customer"), ("payment", "merchant", "customer"),
     ("top_up", "customer", "customer")],
)
async def test_each_transfer_kind_has_its_account_kinds(world, kind, debit_kind, credit_kind):
    """p2p is customer to customer, payment customer to merchant, top-up from the float: otherwise ACCOUNT_KIND_NOT_ALLOWED."""
    debit, credit = await world.open(debit_kind, balance_minor=0), await world.open(credit_kind)
    if debit_kind == "customer":
        await world.top_up(debit, 100)
    with pytest.raises(InvalidArgument) as caught:
        await world.move(kind, debit, credit, 10)
    assert caught.value.reason == "ACCOUNT_KIND_NOT_ALLOWED"


# -- idempotency --------------------------------------------------------------------------------------


async def test_a_retry_returns_the_original_transfer_and_stored_reply(world):
    """Same caller, request_id and request: the original record and stored reply, and no second movement."""
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    context = new_context(amount=100)

    async def first(unit_of_work):
        outcome = await ledger.post_transfer(unit_of_work, context, kind="p2p", debit_account_id=payer,
                                             credit_account_id=payee, amount_minor=100, currency="EUR")
        await idempotency.commit_with_response(unit_of_work, context, b"serialized reply")
        return outcome

    async with world.units_of_work(world.tenant_id) as unit_of_work:
        original = await first(unit_of_work)
    retry = await world.move("p2p", payer, payee, 100, context=context)
    assert retry.replayed and retry.record == original.record and retry.stored_response == b"serialized reply"
    assert await world.balance(payer) == 900


async def test_a_request_id_reused_for_another_request_is_refused(world):
    """Same caller and request_id with a different request: ALREADY_EXISTS (REQUEST_ID_REUSED)."""
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    await world.move("p2p", payer, payee, 100, context=new_context(request_id="pay-1", amount=100))
    with pytest.raises(AlreadyExists) as caught:
        await world.move("p2p", payer, payee, 200, context=new_context(request_id="pay-1", amount=200))
    assert caught.value.reason == "REQUEST_ID_REUSED"
    assert await world.balance(payer) == 900


async def test_request_ids_are_scoped_by_caller(world):
    """Two callers may use the same request_id: each gets its own movement."""
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    for actor in ("user:alice", "user:bob"):
        await world.move("p2p", payer, payee, 100, context=new_context(actor=actor, request_id="same", amount=100))
    assert await world.balance(payee) == 200


async def test_a_failed_call_leaves_its_request_id_free(world):
    """A call that fails rolls back with its key: the same request succeeds once funds arrive."""
    payer, payee = await world.open(), await world.open()
    context = new_context(amount=100)
    with pytest.raises(FailedPrecondition):
        await world.move("p2p", payer, payee, 100, context=context)
    await world.top_up(payer, 100)
    assert not (await world.move("p2p", payer, payee, 100, context=context)).replayed


# -- hot accounts -------------------------------------------------------------------------------------


async def test_a_merchant_spends_what_its_shards_received(world):
    """Payments land in a merchant's shards; a refund or withdrawal sweeps them and checks the total."""
    customers = [await world.open(balance_minor=100) for _ in range(4)]
    merchant = await world.open("merchant")
    for customer in customers:
        await world.move("payment", customer, merchant, 100)
    assert await world.balance(merchant) == 400
    await world.move("withdrawal", merchant, await world.float_account(), 400)
    assert await world.balance(merchant) == 0
    with pytest.raises(FailedPrecondition) as caught:
        await world.move("withdrawal", merchant, await world.float_account(), 1)
    assert caught.value.reason == "INSUFFICIENT_FUNDS"


# -- holds --------------------------------------------------------------------------------------------


async def _authorize(world, payer, merchant, amount, expires_at=None, context=None):
    return (await world.run(lambda u: authorize_hold(
        u, context or new_context("test/Authorize", amount=amount), account_id=payer, merchant_account_id=merchant,
        amount_minor=amount, currency="EUR", expires_at=expires_at or _soon()))).record


async def test_a_hold_reserves_funds_and_a_partial_capture_releases_the_rest(world):
    """Authorize lowers available (not the balance); capturing part moves it and releases the remainder."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    hold = await _authorize(world, payer, merchant, 600)
    account = await world.account(payer)
    assert (account.balance_minor, account.held_minor, account.available_minor) == (1_000, 600, 400)
    captured = (await world.run(lambda u: ledger.capture_hold(u, new_context(), hold.hold_id, 450))).record
    assert captured.status == "captured" and captured.captured_minor == 450 and captured.capture_transfer_id
    account = await world.account(payer)
    assert (account.balance_minor, account.held_minor) == (550, 0)
    assert await world.balance(merchant) == 450
    transfer = await world.read(lambda u: ledger.get_transfer(u, captured.capture_transfer_id))
    assert (transfer.kind, transfer.amount_minor, transfer.hold_id) == ("capture", 450, hold.hold_id)


async def test_a_hold_cannot_reserve_more_than_is_available(world):
    """Authorizing beyond the available balance is INSUFFICIENT_FUNDS, counting earlier holds."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    await _authorize(world, payer, merchant, 700)
    with pytest.raises(FailedPrecondition) as caught:
        await _authorize(world, payer, merchant, 301)
    assert caught.value.reason == "INSUFFICIENT_FUNDS"
    with pytest.raises(FailedPrecondition):
        await world.move("p2p", payer, await world.open(), 301)


async def test_a_capture_cannot_exceed_its_hold(world):
    """Capturing more than was authorized is CAPTURE_EXCEEDS_HOLD; the hold stays authorized."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    hold = await _authorize(world, payer, merchant, 300)
    with pytest.raises(FailedPrecondition) as caught:
        await world.run(lambda u: ledger.capture_hold(u, new_context(), hold.hold_id, 301))
    assert caught.value.reason == "CAPTURE_EXCEEDS_HOLD"
    assert (await world.read(lambda u: ledger.get_hold(u, hold.hold_id))).status == "authorized"


async def test_a_hold_is_resolved_at_most_once(world):
    """After a capture, a second capture or a void is HOLD_ALREADY_RESOLVED."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    hold = await _authorize(world, payer, merchant, 300)
    await world.run(lambda u: ledger.capture_hold(u, new_context(), hold.hold_id, 300))
    for resolve in (lambda u: ledger.capture_hold(u, new_context(), hold.hold_id, 1),
                    lambda u: ledger.void_hold(u, new_context(), hold.hold_id)):
        with pytest.raises(FailedPrecondition) as caught:
            await world.run(resolve)
        assert caught.value.reason == "HOLD_ALREADY_RESOLVED"


async def test_a_void_releases_everything(world):
    """Voiding a hold gives all its funds back to the available balance, moving no money."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    hold = await _authorize(world, payer, merchant, 300)
    voided = (await world.run(lambda u: ledger.void_hold(u, new_context(), hold.hold_id))).record
    assert voided.status == "voided" and voided.resolved_at is not None
    assert (await world.account(payer)).available_minor == 1_000 and await world.balance(merchant) == 0


async def test_unknown_holds_are_not_found(world):
    """Capturing or voiding a hold that does not exist is NOT_FOUND (HOLD_NOT_FOUND)."""
    with pytest.raises(NotFound) as caught:
        await world.run(lambda u: ledger.void_hold(u, new_context(), uuid.uuid4()))
    assert caught.value.reason == "HOLD_NOT_FOUND"


async def test_hold_expiry_must_be_in_the_future_and_bounded(world):
    """An expiry in the past or beyond the maximum hold duration is EXPIRY_OUT_OF_RANGE."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    for expires_at in (_soon(-1), _soon(31 * 24 * 3600)):
        with pytest.raises(InvalidArgument) as caught:
            await _authorize(world, payer, merchant, 10, expires_at=expires_at)
        assert caught.value.reason == "EXPIRY_OUT_OF_RANGE"


async def _expire_now(world: LedgerWorld, owner_dsn: str, hold_id: uuid.UUID) -> None:
    """Move a hold's times into the past, as the schema owner (time travel for tests)."""
    with psycopg.connect(owner_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(world.tenant_id),))
        connection.execute(
            "update holds set created_at = now() - interval '2 minutes', expires_at = now() - interval '1 minute' where hold_id = %s",
            (hold_id,),
        )


async def test_an_expired_hold_cannot_be_captured(world, owner_dsn):
    """Capturing after the expiry is HOLD_EXPIRED."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    hold = await _authorize(world, payer, merchant, 300)
    await _expire_now(world, owner_dsn, hold.hold_id)
    with pytest.raises(FailedPrecondition) as caught:
        await world.run(lambda u: ledger.capture_hold(u, new_context(), hold.hold_id, 100))
    assert caught.value.reason == "HOLD_EXPIRED"


async def test_expiring_due_holds_releases_their_funds(world, owner_dsn):
    """expire_due_holds expires exactly the holds past their expiry and gives their funds back."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    due, later = await _authorize(world, payer, merchant, 300), await _authorize(world, payer, merchant, 200)
    await _expire_now(world, owner_dsn, due.hold_id)
    assert world.tenant_id in await world.read(lambda u: ledger.tenants_with_due_holds(u, 1000))
    expired = await world.run(lambda u: ledger.expire_due_holds(u, 100))
    assert [(hold.hold_id, hold.status) for hold in expired] == [(due.hold_id, "expired")]
    assert (await world.account(payer)).held_minor == 200
    assert (await world.read(lambda u: ledger.get_hold(u, later.hold_id))).status == "authorized"
    assert await world.run(lambda u: ledger.expire_due_holds(u, 100)) == []


async def test_a_payment_releases_the_payers_own_expired_holds_on_the_spot(world, owner_dsn):
    """Funds of an expired hold are usable before the background task ran: the debit releases it."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    hold = await _authorize(world, payer, merchant, 800)
    await _expire_now(world, owner_dsn, hold.hold_id)
    await world.move("payment", payer, merchant, 900)
    assert (await world.read(lambda u: ledger.get_hold(u, hold.hold_id))).status == "expired"
    assert (await world.account(payer)).available_minor == 100


async def test_a_repeated_authorization_is_one_hold(world):
    """Authorize is idempotent: a retry returns the same hold and reserves nothing more."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    context = new_context("test/Authorize", amount=300)
    first = await _authorize(world, payer, merchant, 300, context=context)
    second = await _authorize(world, payer, merchant, 300, context=context)
    assert first == second and (await world.account(payer)).held_minor == 300


# -- refunds ------------------------------------------------------------------------------------------


async def test_refunds_are_bounded_by_the_payment(world):
    """Partial refunds add up to the payment and no further (REFUND_EXCEEDS_PAYMENT)."""
    customer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    payment = (await world.move("payment", customer, merchant, 500)).record
    first = (await world.run(lambda u: ledger.refund(u, new_context(), payment.transfer_id, 200))).record
    assert (first.kind, first.debit_account_id, first.credit_account_id, first.related_transfer_id) == (
        "refund", merchant, customer, payment.transfer_id)
    assert (await world.read(lambda u: ledger.get_transfer(u, payment.transfer_id))).status == "partially_refunded"
    with pytest.raises(FailedPrecondition) as caught:
        await world.run(lambda u: ledger.refund(u, new_context(), payment.transfer_id, 301))
    assert caught.value.reason == "REFUND_EXCEEDS_PAYMENT" and caught.value.metadata["refundableMinor"] == "300"
    await world.run(lambda u: ledger.refund(u, new_context(), payment.transfer_id, 300))
    paid = await world.read(lambda u: ledger.get_transfer(u, payment.transfer_id))
    assert (paid.status, paid.refunded_minor) == ("refunded", 500)
    assert await world.balance(customer) == 1_000 and await world.balance(merchant) == 0


async def test_a_capture_refunds_up_to_what_was_captured(world):
    """A capture is refundable up to the captured amount, not the authorized one."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    hold = await _authorize(world, payer, merchant, 600)
    captured = (await world.run(lambda u: ledger.capture_hold(u, new_context(), hold.hold_id, 400))).record
    with pytest.raises(FailedPrecondition):
        await world.run(lambda u: ledger.refund(u, new_context(), captured.capture_transfer_id, 401))
    await world.run(lambda u: ledger.refund(u, new_context(), captured.capture_transfer_id, 400))
    assert await world.balance(payer) == 1_000


async def test_only_payments_are_refundable(world):
    """Refunding a p2p transfer is TRANSFER_NOT_REFUNDABLE; an unknown one TRANSFER_NOT_FOUND."""
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    transfer = (await world.move("p2p", payer, payee, 100)).record
    with pytest.raises(FailedPrecondition) as caught:
        await world.run(lambda u: ledger.refund(u, new_context(), transfer.transfer_id, 10))
    assert caught.value.reason == "TRANSFER_NOT_REFUNDABLE"
    with pytest.raises(NotFound) as caught:
        await world.run(lambda u: ledger.refund(u, new_context(), uuid.uuid4(), 10))
    assert caught.value.reason == "TRANSFER_NOT_FOUND"


# -- statements ---------------------------------------------------------------------------------------


async def test_the_statement_pages_with_running_balances(world):
    """list_entries returns every entry with the balance after it, in keyset pages, both directions."""
    account, other = await world.open(balance_minor=1_000), await world.open(balance_minor=1_000)
    for amount in (100, 200, 300):
        await world.move("p2p", account, other, amount)
    await world.move("p2p", other, account, 50)
    first = await world.read(lambda u: ledger.list_entries(u, account, limit=3))
    rest = await world.read(lambda u: ledger.list_entries(u, account, after=(first[-1].created_at, first[-1].entry_id), limit=3))
    entries = first + rest
    assert [(e.amount_minor, e.balance_after_minor) for e in entries] == [
        (1_000, 1_000), (-100, 900), (-200, 700), (-300, 400), (50, 450)]
    assert entries[1].transfer_kind == "p2p" and entries[1].counterparty_account_id == other
    newest = await world.read(lambda u: ledger.list_entries(u, account, newest_first=True, limit=2))
    assert [(e.amount_minor, e.balance_after_minor) for e in newest] == [(50, 450), (-300, 400)]


def _money_in_shards(account):
    async def read(unit_of_work) -> int:
        cursor = await unit_of_work.connection.execute(
            "select coalesce(sum(balance_minor), 0) from account_balance_shards where account_id = %s", (account,))
        return (await cursor.fetchone())[0]

    return read


async def _whole_statement(world, account, newest_first: bool, page: int) -> list:
    entries, after = [], None
    for _ in range(100):
        batch = await world.read(lambda u: ledger.list_entries(u, account, after=after, newest_first=newest_first, limit=page))
        entries += batch
        if len(batch) < page:
            return entries
        after = (batch[-1].created_at, batch[-1].entry_id)
    raise AssertionError("paging did not end")


async def test_both_directions_give_every_entry_the_same_running_balance_on_a_sharded_account(world, owner_dsn):
    """Oldest first the running balance counts up from zero, newest first down from the balance now (row
    plus shards): on a merchant whose credits land in shards, both give every entry the same balance."""
    merchant = await world.open("merchant")
    assert (await world.account(merchant)).balance_shards == BALANCE_SHARDS_BY_KIND["merchant"] > 0
    payers = [await world.open(balance_minor=10_000) for _ in range(3)]
    payments = []
    for number in range(11):
        payments.append((await world.move("payment", payers[number % 3], merchant, 100 + number)).record)
        if number == 5:  # a debit sweeps the shards into the row; the payments after it stay in shards
            await world.run(lambda u: ledger.refund(u, new_context(), payments[2].transfer_id, 50))
    oldest_first = await _whole_statement(world, merchant, newest_first=False, page=5)
    newest_first = await _whole_statement(world, merchant, newest_first=True, page=4)
    assert len(oldest_first) == 12
    assert [(e.entry_id, e.balance_after_minor) for e in reversed(newest_first)] == [
        (e.entry_id, e.balance_after_minor) for e in oldest_first]
    expected, running = [], 0
    for entry in oldest_first:
        running += entry.amount_minor
        expected.append(running)
    assert [e.balance_after_minor for e in oldest_first] == expected
    assert newest_first[0].balance_after_minor == (await world.account(merchant)).balance_minor == sum(
        100 + number for number in range(11)) - 50
    assert await world.read(_money_in_shards(merchant)) > 0  # so the balance "now" really needed the shards
    # Which end a page counts from depends on where it lies in the account's life. Opened a day ago, every
    # page lies in the newer half: the same balances must come from the balance now.
    with psycopg.connect(owner_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(world.tenant_id),))
        connection.execute("update accounts set created_at = created_at - interval '1 day' where account_id = %s", (merchant,))
    counted_from_now = await _whole_statement(world, merchant, newest_first=False, page=5)
    assert [(e.entry_id, e.balance_after_minor) for e in counted_from_now] == [
        (e.entry_id, e.balance_after_minor) for e in oldest_first]


async def test_the_statement_filters_by_time_and_balance_at_reads_the_past(world):
    """Entries in [start, end) only (running balances still count what came before); balance_at sums up to an instant."""
    account, other = await world.open(balance_minor=1_000), await world.open()
    await world.move("p2p", account, other, 100)
    await asyncio.sleep(0.02)
    middle = datetime.now(timezone.utc)
    await asyncio.sleep(0.02)
    await world.move("p2p", account, other, 200)
    later = await world.read(lambda u: ledger.list_entries(u, account, start=middle, limit=10))
    assert [(e.amount_minor, e.balance_after_minor) for e in later] == [(-200, 700)]
    earlier = await world.read(lambda u: ledger.list_entries(u, account, end=middle, limit=10))
    assert [e.amount_minor for e in earlier] == [1_000, -100]
    assert await world.read(lambda u: ledger.balance_at(u, account, middle)) == 900
    assert await world.read(lambda u: ledger.balance_at(u, account, middle - timedelta(days=1))) == 0


async def test_statements_of_unknown_accounts_are_not_found(world):
    """list_entries and balance_at of an account the tenant does not have are NOT_FOUND."""
    with pytest.raises(NotFound):
        await world.read(lambda u: ledger.list_entries(u, uuid.uuid4(), limit=10))
    with pytest.raises(NotFound):
        await world.read(lambda u: ledger.balance_at(u, uuid.uuid4(), datetime.now(timezone.utc)))


# -- audit and reconciliation -------------------------------------------------------------------------


async def test_every_change_leaves_an_audit_event_and_the_chain_verifies(world):
    """Opening, moving, holding and freezing each append an event with actor, method and request id."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    context = new_context("emoney.payments.v1.PaymentsService/CreateTransfer", actor="user:ana")
    await world.move("payment", payer, merchant, 10, context=context)
    await _authorize(world, payer, merchant, 10)
    await world.run(lambda u: ledger.set_account_status(u, new_context(), payer, "frozen"))
    await world.run(lambda u: audit.append_audit(u, new_context("test/Custom"), {"before": None, "after": {"x": "1"}}))
    events = await world.read(lambda u: audit.list_audit_events(u, None, 100))
    payment_event = next(e for e in events if e.request_id == context.request_id)
    assert (payment_event.actor, payment_event.method) == ("user:ana", context.method)
    assert payment_event.summary["after"]["amountMinor"] == "10"
    # two accounts opened, the float, the top-up, the payment, the hold, the freeze, the custom event
    assert len(events) == 8
    verification = await world.read(audit.verify_audit_chain)
    assert verification.ok and verification.events_checked == len(events)


async def test_reconciliation_of_a_busy_ledger_is_clean(world):
    """After transfers, holds, captures and refunds, every reconciliation check passes."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    payment = (await world.move("payment", payer, merchant, 300)).record
    await world.run(lambda u: ledger.refund(u, new_context(), payment.transfer_id, 100))
    hold = await _authorize(world, payer, merchant, 200)
    await world.run(lambda u: ledger.capture_hold(u, new_context(), hold.hold_id, 150))
    await _authorize(world, payer, merchant, 50)
    report = await world.read(ledger.reconcile)
    assert report.ok, report.discrepancies
    assert report.entries_sum_by_currency == {"EUR": 0} and report.transfers_checked == 4


async def test_reconciliation_reports_a_corrupted_balance_and_hold(world, owner_dsn):
    """A balance and a held amount changed behind the ledger's back (as the owner) are both reported."""
    account, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    await _authorize(world, account, merchant, 100)
    with psycopg.connect(owner_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(world.tenant_id),))
        connection.execute("update accounts set balance_minor = balance_minor + 7, held_minor = 0 where account_id = %s", (account,))
    report = await world.read(ledger.reconcile)
    found = {(d.check, d.subject, d.expected_minor, d.actual_minor) for d in report.discrepancies}
    assert ("BALANCE_MISMATCH", str(account), 1_000, 1_007) in found
    assert ("HELD_MISMATCH", str(account), 100, 0) in found
    assert not report.ok


async def test_one_statement_movements_make_their_receipt_due_and_announce_their_event(world, ledger_app_dsn):
    """CreateTransfer, ChargePaymentCode and AuthorizePayment, one SQL statement each, send the live event
    through the function every movement uses (payments_notify): each event decodes to its payment; both
    payments' receipts are due (read from their transfer rows), the hold waits for its capture's; and a
    back-office caller cannot send from someone else's account (NOT_ACCOUNT_OWNER)."""
    payer, merchant = await world.open(balance_minor=10_000), await world.open("merchant")
    payer_user = (await world.account(payer)).owner_user_id
    merchant_user = (await world.account(merchant)).owner_user_id
    charge_code, authorize_code = uuid.uuid4().bytes * 2, uuid.uuid4().bytes * 2

    async def add_terminal(unit_of_work) -> uuid.UUID:
        cursor = await unit_of_work.connection.execute(
            """insert into terminals (tenant_id, merchant_user_id, display_name, client_id, secret_hash)
               values (%s, %s, 'Till', %s, %s) returning terminal_id""",
            (world.tenant_id, merchant_user, "term_" + uuid.uuid4().hex[:24], bytes(32)),
        )
        return (await cursor.fetchone())[0]

    def customer_transfer(caller: uuid.UUID, back_office: bool):
        return ledger.create_customer_transfer(
            world.units_of_work, world.tenant_id, new_context(), caller_user_id=caller, caller_is_back_office=back_office,
            from_account_id=payer, to_account_id=merchant, amount_minor=100, currency="EUR",
        )

    def redeem(code_hash: bytes, hold_expires_at: datetime | None):
        return ledger.redeem_payment_code(
            world.units_of_work, world.tenant_id, new_context(), code_hash=code_hash, terminal_id=terminal,
            amount_minor=200, currency="EUR", hold_expires_at=hold_expires_at,
        )

    async with await psycopg.AsyncConnection.connect(ledger_app_dsn, autocommit=True) as listener:
        await listener.execute(f"listen {CHANNEL}")
        transfer = (await customer_transfer(payer_user, back_office=False)).record
        terminal = await world.run(add_terminal)
        for code_hash in (charge_code, authorize_code):
            await payment_codes.create(
                world.units_of_work, world.tenant_id, caller_user_id=payer_user, caller_is_back_office=False,
                code_hash=code_hash, account_id=payer, currency="EUR", max_amount_minor=1_000, ttl_s=60,
                created_by="user:tester",
            )
        charge = (await redeem(charge_code, None)).record
        hold = (await redeem(authorize_code, _soon(60))).record
        with pytest.raises(PermissionDenied) as refused:
            await customer_transfer(merchant_user, back_office=True)
        events = []
        async for notification in listener.notifies(timeout=5):
            if str(world.tenant_id) in notification.payload:
                events.append(PaymentEvent.from_payload(notification.payload))
            if len(events) == 3:
                break
    assert refused.value.reason == "NOT_ACCOUNT_OWNER"
    assert events == [
        PaymentEvent(world.tenant_id, transfer.transfer_id, "created", None, (payer, merchant)),
        PaymentEvent(world.tenant_id, charge.transfer_id, "created", terminal, (payer, merchant)),
        PaymentEvent(world.tenant_id, hold.hold_id, "created", terminal, (payer, merchant)),
    ]

    async def receipts_due(unit_of_work) -> set[uuid.UUID]:
        cursor = await unit_of_work.connection.execute("select transfer_id from receipts_pending()")
        return {row[0] for row in await cursor.fetchall()}

    due = await world.read(receipts_due)  # every transfer of the tenant, these two among them; never a hold
    assert {transfer.transfer_id, charge.transfer_id} <= due and hold.hold_id not in due


async def test_the_entry_points_and_the_access_module_agree_who_may_send(world):
    """payments_create_transfer and payments_create_code_in check in SQL who may send from an account, or
    make a payment code for it (ACCOUNT_NOT_FOUND, then NOT_ACCOUNT_OWNER); server/services/access.py says
    the same in Python, for every kind of caller and source account — the database's checks and the code's
    must not drift apart."""
    customer_account, target = await world.open(balance_minor=1_000), await world.open()
    owner, stranger = (await world.account(customer_account)).owner_user_id, await world.user()
    callers = {
        "owner": _principal(world, f"users/{owner}", "customer"),
        "another customer": _principal(world, f"users/{stranger}", "customer"),
        "back office": _principal(world, f"users/{stranger}", "operator"),
        "back-office owner": _principal(world, f"users/{owner}", "operator", "customer"),
        "terminal": _principal(world, f"terminals/{uuid.uuid4()}", "terminal"),
    }
    for source in (customer_account, await world.float_account()):
        source_owner = (await world.account(source)).owner_user_id
        for name, principal in callers.items():
            caller_user_id, back_office = access.transfer_caller(principal)
            try:
                await ledger.create_customer_transfer(
                    world.units_of_work, world.tenant_id, new_context(), caller_user_id=caller_user_id,
                    caller_is_back_office=back_office, from_account_id=source, to_account_id=target, amount_minor=1,
                    currency="EUR",
                )
                in_sql = "allowed"
            except (NotFound, PermissionDenied) as refusal:
                in_sql = refusal.reason
            try:
                await payment_codes.create(
                    world.units_of_work, world.tenant_id, caller_user_id=caller_user_id,
                    caller_is_back_office=back_office, code_hash=hashlib.sha256(uuid.uuid4().bytes).digest(),
                    account_id=source, currency="EUR", max_amount_minor=1, ttl_s=60, created_by=principal.subject,
                )
                code_in_sql = "allowed"
            except (NotFound, PermissionDenied) as refusal:
                code_in_sql = refusal.reason
            assert in_sql == code_in_sql == _access_verdict(principal, source_owner), (name, source)


def _principal(world: LedgerWorld, subject: str, *roles: str) -> Principal:
    return Principal(subject=subject, tenant_id=world.tenant_id, roles=frozenset(roles), token_id="test", expires_at=0)


def _access_verdict(principal: Principal, source_owner: uuid.UUID | None) -> str:
    if not access.may_see_account(principal, source_owner):
        return "ACCOUNT_NOT_FOUND"
    if not access.may_spend_from(principal, source_owner):
        return "NOT_ACCOUNT_OWNER"
    return "allowed"
