"""Ledger invariants under concurrency: many clients at once, through storage.ledger as the app role.

What must hold whatever the interleaving: money is conserved, no account goes below its floor,
cached balances equal the entries, every acknowledged transfer is stored exactly once, duplicates
move money once, opposite transfers never deadlock, a hot merchant keeps taking payments, refunds
never exceed the payment, and a close never strands money in a closed account.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime, timedelta, timezone

from domain.errors import DomainError, FailedPrecondition
from storage import ledger
from tests.invariants.ledger_world import (  # noqa: F401 (fixtures)
    authorize_hold,
    LedgerWorld, ledger_app_dsn, ledger_owner_dsn, ledger_units_of_work, new_context, world,
)

CLIENTS = 50
ACCOUNTS = 20
TRANSFERS_PER_CLIENT = 20
STARTING_BALANCE_MINOR = 5_000


async def _reconciled(world: LedgerWorld) -> ledger.ReconciliationReport:
    report = await world.read(ledger.reconcile)
    assert report.ok, report.discrepancies
    return report


async def test_random_transfers_conserve_money_and_are_stored_exactly_once(world):
    """50 clients x random p2p and payments among 20 accounts: totals, floors, entries and acks all agree."""
    customers = [await world.open(balance_minor=STARTING_BALANCE_MINOR) for _ in range(ACCOUNTS - 2)]
    merchants = [await world.open("merchant") for _ in range(2)]
    setup_transfers = {t.transfer_id for t in await _all_transfers(world)}
    acknowledged: list[ledger.TransferRecord] = []
    refused: Counter[str] = Counter()

    async def client(seed: int) -> None:
        chooser = random.Random(seed)
        for _ in range(TRANSFERS_PER_CLIENT):
            debit = chooser.choice(customers)
            credit = chooser.choice([account for account in customers + merchants if account != debit])
            kind = "payment" if credit in merchants else "p2p"
            try:
                acknowledged.append((await world.move(kind, debit, credit, chooser.randint(1, 400))).record)
            except FailedPrecondition as error:
                refused[error.reason] += 1

    await asyncio.gather(*[client(seed) for seed in range(CLIENTS)])

    assert set(refused) <= {"INSUFFICIENT_FUNDS"}, refused
    stored = [t for t in await _all_transfers(world) if t.transfer_id not in setup_transfers]
    assert sorted(t.transfer_id for t in stored) == sorted(t.transfer_id for t in acknowledged)  # exactly once each
    expected = Counter({account: STARTING_BALANCE_MINOR for account in customers})
    for transfer in acknowledged:
        expected[transfer.debit_account_id] -= transfer.amount_minor
        expected[transfer.credit_account_id] += transfer.amount_minor
    balances = {account: await world.balance(account) for account in customers + merchants}
    assert balances == {account: expected[account] for account in customers + merchants}
    assert sum(balances.values()) == STARTING_BALANCE_MINOR * len(customers)
    assert min(balances.values()) >= 0
    await _reconciled(world)


async def _all_transfers(world: LedgerWorld) -> list[ledger.TransferRecord]:
    async def read(unit_of_work):
        cursor = await unit_of_work.connection.execute(
            """select transfer_id, kind, debit_account_id, credit_account_id, amount_minor, currency, status,
                      refunded_minor, request_id, actor, related_transfer_id, hold_id, terminal_id, created_at
                 from transfers"""
        )
        return [ledger.TransferRecord(*row) for row in await cursor.fetchall()]

    return await world.read(read)


async def test_concurrent_duplicates_move_money_once(world):
    """20 copies of one request arriving together: one movement, and every copy answers with it."""
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    context = new_context(amount=100)
    outcomes = await asyncio.gather(*[world.move("p2p", payer, payee, 100, context=context) for _ in range(20)])
    assert len({outcome.record.transfer_id for outcome in outcomes}) == 1
    assert [outcome.replayed for outcome in outcomes].count(False) == 1
    assert await world.balance(payer) == 900 and await world.balance(payee) == 100


async def test_opposite_transfers_never_deadlock(world):
    """A->B and B->A at the same time, many times: all succeed (fixed lock order), no deadlock error."""
    alpha, beta = await world.open(balance_minor=10_000), await world.open(balance_minor=10_000)
    moves = [world.move("p2p", alpha, beta, 7) for _ in range(40)] + [world.move("p2p", beta, alpha, 5) for _ in range(40)]
    await asyncio.gather(*moves)
    assert await world.balance(alpha) == 10_000 - 40 * 7 + 40 * 5
    assert await world.balance(beta) == 10_000 + 40 * 7 - 40 * 5
    await _reconciled(world)


async def test_a_hot_merchant_takes_fifty_payers_at_once(world):
    """50 customers paying one merchant concurrently all succeed, spread over its balance shards."""
    payers = [await world.open(balance_minor=1_000) for _ in range(CLIENTS)]
    merchant = await world.open("merchant")
    rounds = 3
    await asyncio.gather(*[world.move("payment", payer, merchant, 10) for payer in payers for _ in range(rounds)])
    assert await world.balance(merchant) == CLIENTS * rounds * 10

    async def shards_used(unit_of_work):
        cursor = await unit_of_work.connection.execute(
            "select count(*) from account_balance_shards where account_id = %s and balance_minor <> 0", (merchant,))
        return (await cursor.fetchone())[0]

    assert await world.read(shards_used) > 1
    await _reconciled(world)


async def test_a_hot_merchant_refunds_while_payments_arrive(world):
    """Refunds sweep the merchant's shards while payments keep landing in them: nothing lost, no errors."""
    payers = [await world.open(balance_minor=1_000) for _ in range(20)]
    merchant = await world.open("merchant")
    payments = [(await world.move("payment", payer, merchant, 100)).record for payer in payers]
    refunds = [world.run(lambda u, p=payment: ledger.refund(u, new_context(), p.transfer_id, 40)) for payment in payments]
    more_payments = [world.move("payment", payer, merchant, 30) for payer in payers]
    await asyncio.gather(*refunds, *more_payments)
    assert await world.balance(merchant) == 20 * (100 - 40 + 30)
    assert all([await world.balance(payer) == 1_000 - 100 + 40 - 30 for payer in payers])
    await _reconciled(world)


async def test_concurrent_refunds_never_exceed_the_payment(world):
    """20 refunds of 10 racing on a payment of 100: exactly 10 succeed, the rest are REFUND_EXCEEDS_PAYMENT."""
    customer, merchant = await world.open(balance_minor=100), await world.open("merchant")
    payment = (await world.move("payment", customer, merchant, 100)).record
    results = await asyncio.gather(
        *[world.run(lambda u: ledger.refund(u, new_context(), payment.transfer_id, 10)) for _ in range(20)],
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(results) - len(refused) == 10
    assert {error.reason for error in refused} == {"REFUND_EXCEEDS_PAYMENT"}
    assert await world.balance(customer) == 100 and await world.balance(merchant) == 0
    await _reconciled(world)


async def test_holds_and_payments_on_one_payer_never_overdraw(world):
    """Authorizations and payments racing on one payer never reserve or spend more than it has."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    expires_at = datetime.now(timezone.utc) + timedelta(minutes=5)
    holds = [world.run(lambda u: authorize_hold(
        u, new_context(), account_id=payer, merchant_account_id=merchant, amount_minor=100, currency="EUR",
        expires_at=expires_at)) for _ in range(15)]
    payments = [world.move("payment", payer, merchant, 100) for _ in range(15)]
    results = await asyncio.gather(*holds, *payments, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(f, FailedPrecondition) and f.reason == "INSUFFICIENT_FUNDS" for f in failures), failures
    assert len(results) - len(failures) == 10
    account = await world.account(payer)
    assert account.available_minor == 0 and account.balance_minor >= 0
    await _reconciled(world)


async def test_capture_and_void_racing_resolve_a_hold_once(world):
    """Many captures and voids of one hold at once: exactly one wins, the rest see HOLD_ALREADY_RESOLVED."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    hold = (await world.run(lambda u: authorize_hold(
        u, new_context(), account_id=payer, merchant_account_id=merchant, amount_minor=500, currency="EUR",
        expires_at=datetime.now(timezone.utc) + timedelta(minutes=5)))).record
    attempts = [world.run(lambda u: ledger.capture_hold(u, new_context(), hold.hold_id, 300)) for _ in range(10)]
    attempts += [world.run(lambda u: ledger.void_hold(u, new_context(), hold.hold_id)) for _ in range(10)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(results) - len(failures) == 1
    assert {f.reason for f in failures} == {"HOLD_ALREADY_RESOLVED"}
    assert (await world.account(payer)).held_minor == 0
    await _reconciled(world)


async def test_closing_a_merchant_while_it_is_being_paid_strands_nothing(world):
    """Close races payments into the merchant's shards: either the close fails, or later payments do —
    a closed account never holds money."""
    payers = [await world.open(balance_minor=1_000) for _ in range(30)]
    merchant = await world.open("merchant")
    payments = [world.move("payment", payer, merchant, 10) for payer in payers]
    closes = [world.run(lambda u: ledger.set_account_status(u, new_context(), merchant, "closed")) for _ in range(3)]
    results = await asyncio.gather(*payments[:15], *closes, *payments[15:], return_exceptions=True)
    reasons = Counter(r.reason for r in results if isinstance(r, DomainError))
    assert set(reasons) <= {"ACCOUNT_NOT_EMPTY", "ACCOUNT_CLOSED"}, reasons
    account = await world.account(merchant)
    if account.status == "closed":
        assert account.balance_minor == 0
    paid = sum(1 for r in results if isinstance(r, ledger.Outcome) and r.record.kind == "payment")
    assert account.balance_minor == 10 * paid
    await _reconciled(world)


async def test_the_float_takes_concurrent_top_ups(world):
    """Top-ups debit the float's shards concurrently: the float mirrors exactly the money issued."""
    customers = [await world.open() for _ in range(30)]
    await asyncio.gather(*[world.top_up(customer, 250) for customer in customers for _ in range(2)])
    assert await world.balance(await world.float_account()) == -30 * 2 * 250
    assert sum([await world.balance(customer) for customer in customers]) == 30 * 2 * 250
    await _reconciled(world)
