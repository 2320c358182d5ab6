"""Group commit (storage/group_commit.py, payments_create_transfers_in and payments_charge_codes_in): several
CreateTransfers (or ChargePaymentCodes) in one transaction, each keeping its own outcome, against the real
database as the application role."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from domain.errors import FailedPrecondition
from domain.ledger_rules import MAX_BATCH_ITEMS
from storage import ledger, payment_codes
from storage.audit import verify_audit_chain
from storage.group_commit import ChargeGroupCommit, CodeGroupCommit, ItemFailure, TransferGroupCommit
from storage.unit_of_work import UnitOfWorkFactory
from tests.invariants.ledger_world import (  # noqa: F401 (fixtures)
    LedgerWorld, ledger_app_dsn, ledger_owner_dsn, ledger_units_of_work, new_context, world,
)

def _arguments(caller: uuid.UUID, source: uuid.UUID, target: uuid.UUID, amount_minor: int,
               request_id: str | None = None) -> tuple:
    context = new_context(request_id=request_id, source=str(source), target=str(target), amount=amount_minor)
    return (caller, False, source, target, amount_minor, "EUR", context.actor, context.method, context.request_id,
            context.request_hash, None)


async def _owner(world: LedgerWorld, account: uuid.UUID) -> uuid.UUID:
    return (await world.account(account)).owner_user_id


@pytest.fixture
def group(world: LedgerWorld) -> TransferGroupCommit:
    return TransferGroupCommit(world.units_of_work.pool, concurrent_batches=1, max_wait_s=60)


async def _transfer_count(world: LedgerWorld, request_ids: list[str]) -> int:
    async def count(unit_of_work) -> int:
        cursor = await unit_of_work.connection.execute(
            "select count(*) from transfers where request_id = any(%s)", (request_ids,))
        return (await cursor.fetchone())[0]

    return await world.read(count)


async def test_a_refused_item_in_the_middle_is_rolled_back_alone(world, group):
    payer, payee = await world.open(balance_minor=300), await world.open()
    caller = await _owner(world, payer)
    results = await group.commit_batch(world.tenant_id, [
        _arguments(caller, payer, payee, 100), _arguments(caller, payer, payee, 500), _arguments(caller, payer, payee, 150),
    ])
    assert not isinstance(results[0], ItemFailure) and not isinstance(results[2], ItemFailure)
    refused = ledger.batch_item_error(results[1])
    assert isinstance(refused, FailedPrecondition) and refused.reason == "INSUFFICIENT_FUNDS"
    # Its neighbours committed; it left nothing behind.
    assert await world.balance(payer) == 50 and await world.balance(payee) == 250
    # A failure that is not the ledger's (a caller who does not own the account) keeps its own reason too.
    stranger = await _owner(world, payee)
    [foreign] = await group.commit_batch(world.tenant_id, [_arguments(stranger, payer, payee, 1)])
    assert ledger.batch_item_error(foreign).reason == "ACCOUNT_NOT_FOUND"


async def test_every_argument_reaches_the_database_as_sent(world, group):
    """The batch's arrays carry every argument as sent: a description with non-ASCII letters, quotes and a
    backslash, one left out, the largest amount, the request hash's bytes — each transfer holds exactly
    what its item carried, in its item's place."""
    payer, payee = await world.open(balance_minor=100_000_000), await world.open()
    await world.top_up(payer, 100_000_000)
    caller = await _owner(world, payer)
    items = [_arguments(caller, payer, payee, 100_000_000), _arguments(caller, payer, payee, 7)]
    items[0] = (*items[0][:10], 'Pão de "queijo" \\ 東京 ✓')
    results = await group.commit_batch(world.tenant_id, items)
    assert not any(isinstance(result, ItemFailure) for result in results), results

    async def stored(unit_of_work) -> list[tuple]:
        cursor = await unit_of_work.connection.execute(
            """select t.request_id, t.amount_minor, t.description, k.request_hash
                 from transfers t join idempotency_keys k on k.request_id = t.request_id
                where t.request_id = any(%s)""", ([item[8] for item in items],))
        return sorted(await cursor.fetchall())

    assert await world.read(stored) == sorted((item[8], item[4], item[10], item[9]) for item in items)
    assert await world.balance(payee) == 100_000_007


async def test_a_replay_and_its_first_attempt_in_one_batch_make_one_transfer(world, group):
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    caller = await _owner(world, payer)
    first = _arguments(caller, payer, payee, 100, request_id=f"same-{uuid.uuid4()}")
    original, replay = await group.commit_batch(world.tenant_id, [first, first])
    assert original[0] is False and replay[0] is True
    assert ledger._transfer_outcome(replay).record == ledger._transfer_outcome(original).record
    assert await world.balance(payer) == 900
    # The same id with another request inside one batch is refused, as it would be later.
    changed = _arguments(caller, payer, payee, 200, request_id=first[8])
    [reused] = await group.commit_batch(world.tenant_id, [changed])
    assert ledger.batch_item_error(reused).reason == "REQUEST_ID_REUSED"
    assert await _transfer_count(world, [first[8]]) == 1


async def test_opposite_transfers_and_one_account_in_every_item(world, group):
    alice, bob = await world.open(balance_minor=1_000), await world.open(balance_minor=1_000)
    alice_user, bob_user = await _owner(world, alice), await _owner(world, bob)
    others = [await world.open() for _ in range(6)]
    batch = [_arguments(alice_user, alice, bob, 300), _arguments(bob_user, bob, alice, 100)]
    batch += [_arguments(alice_user, alice, other, 50) for other in others]
    results = await group.commit_batch(world.tenant_id, batch)
    assert not [result for result in results if isinstance(result, ItemFailure)]
    assert await world.balance(alice) == 1_000 - 300 + 100 - 6 * 50
    assert await world.balance(bob) == 1_000 + 300 - 100
    assert [await world.balance(other) for other in others] == [50] * 6


async def test_a_hot_merchant_credited_by_every_item_stays_sharded_and_exact(world, group):
    merchant = await world.open(kind="merchant")
    payers = [await world.open(balance_minor=100) for _ in range(12)]
    batch = [_arguments(await _owner(world, payer), payer, merchant, 7) for payer in payers]
    results = await group.commit_batch(world.tenant_id, batch)
    assert [ledger._transfer_outcome(result).record.kind for result in results] == ["payment"] * 12
    assert await world.balance(merchant) == 84
    assert (await world.account(merchant)).balance_shards > 1


async def test_batches_keep_every_audit_stripe_chained(world, group):
    payer, payee = await world.open(balance_minor=10_000), await world.open()
    caller = await _owner(world, payer)
    for _ in range(3):
        await group.commit_batch(world.tenant_id, [_arguments(caller, payer, payee, 1) for _ in range(10)])
    verification = await world.read(verify_audit_chain)
    assert verification.ok, verification.broken_links
    assert verification.events_checked >= 30


async def test_concurrent_calls_form_batches_and_each_gets_its_own_answer(world, ledger_app_dsn, ledger_owner_dsn):
    """While a batch waits on the database, later calls queue and go out together in the next one."""
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    caller = await _owner(world, payer)
    group = TransferGroupCommit(world.units_of_work.pool, concurrent_batches=1, max_wait_s=60)
    async with await psycopg.AsyncConnection.connect(ledger_owner_dsn) as blocker:  # may lock rows
        await blocker.execute("select set_config('app.tenant_id', %s, true)", (str(world.tenant_id),))
        await blocker.execute("select 1 from accounts where account_id = %s for no key update", (payee,))
        first = asyncio.create_task(group.submit(world.tenant_id, _arguments(caller, payer, payee, 10)))
        await asyncio.sleep(0.2)  # the first batch is now waiting for the payee's row
        amounts = [20, 5_000, 30, 40]  # 5,000 is more than the payer has: refused alone
        queued = [asyncio.create_task(group.submit(world.tenant_id, _arguments(caller, payer, payee, amount)))
                  for amount in amounts]
        await asyncio.sleep(0.1)
        assert not first.done() and not any(task.done() for task in queued)
        await blocker.rollback()
    results = [await first, *[await task for task in queued]]
    assert group.stats.batches == 2 and group.stats.largest_batch == 4 and group.stats.items == 5
    assert isinstance(results[2], ItemFailure) and ledger.batch_item_error(results[2]).reason == "INSUFFICIENT_FUNDS"
    assert await world.balance(payee) == 10 + 20 + 30 + 40


async def test_a_call_never_queues_past_the_longest_wait(world, ledger_app_dsn, ledger_owner_dsn):
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    other_payer, other_payee = await world.open(balance_minor=1_000), await world.open()
    caller, other_caller = await _owner(world, payer), await _owner(world, other_payer)
    group = TransferGroupCommit(world.units_of_work.pool, concurrent_batches=1, max_wait_s=0.05)
    async with await psycopg.AsyncConnection.connect(ledger_owner_dsn) as blocker:  # may lock rows
        await blocker.execute("select set_config('app.tenant_id', %s, true)", (str(world.tenant_id),))
        await blocker.execute("select 1 from accounts where account_id = %s for no key update", (payee,))
        stuck = asyncio.create_task(group.submit(world.tenant_id, _arguments(caller, payer, payee, 10)))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        # The only batch in flight is stuck: this call goes out beside it once it has waited 50 ms.
        # (Other accounts: the stuck batch holds its payer's row, which a second batch from it would wait for.)
        other = await group.submit(world.tenant_id, _arguments(other_caller, other_payer, other_payee, 20))
        assert time.monotonic() - started < 5
        assert not stuck.done()
        await blocker.rollback()
    await stuck
    assert not isinstance(other, ItemFailure)
    assert 0.04 <= group.stats.longest_wait_s < 5


async def test_a_batch_is_refused_when_larger_than_the_database_allows(world, group):
    with pytest.raises(ValueError):
        TransferGroupCommit(world.units_of_work.pool, max_items=MAX_BATCH_ITEMS + 1)
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    caller = await _owner(world, payer)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        await group.commit_batch(world.tenant_id, [_arguments(caller, payer, payee, 1)] * (MAX_BATCH_ITEMS + 1))
    assert await world.balance(payer) == 1_000



@pytest.mark.parametrize("call", [
    # CreateTransfer's batch: two payers for one of everything else.
    ("select * from payments_create_transfers_in(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
     lambda tenant, account: (tenant, [uuid.uuid4()], [False], [account, account], [account], [1], ["EUR"], ["a"], ["m"], ["r"],
                              [bytes(32)])),
    # ChargePaymentCode's batch: one code, no terminal.
    ("select * from payments_charge_codes_in(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
     lambda tenant, account: (tenant, [bytes(32)], [], [1], ["EUR"], ["a"], ["m"], ["r"], [bytes(32)])),
    # A missing array.
    ("select * from payments_charge_codes_in(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
     lambda tenant, account: (tenant, [bytes(32)], None, [1], ["EUR"], ["a"], ["m"], ["r"], [bytes(32)])),
], ids=["transfers", "charges", "missing"])
async def test_a_batch_whose_arrays_differ_in_length_is_refused_whole(world, ledger_app_dsn, call):
    """Both batch statements refuse arguments that do not describe whole items (22023), before any item runs."""
    account = await world.open(balance_minor=100)
    query, arguments = call
    async with await psycopg.AsyncConnection.connect(ledger_app_dsn, autocommit=True) as connection:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            await connection.execute(query, arguments(world.tenant_id, account))
    assert await world.balance(account) == 100


ROOT = Path(__file__).resolve().parents[2]
_KILLED_BATCH = """
import asyncio, json, sys, uuid
from psycopg_pool import AsyncConnectionPool
from storage.group_commit import TransferGroupCommit

async def main():
    tenant, batch = json.loads(sys.argv[2])
    batch = [[uuid.UUID(a) if i in (0, 2, 3) else (bytes.fromhex(a) if i == 9 else a) for i, a in enumerate(item)]
             for item in batch]
    async with AsyncConnectionPool(sys.argv[1], min_size=1, max_size=1, kwargs={"autocommit": False}) as pool:
        print("started", flush=True)
        await TransferGroupCommit(pool).commit_batch(uuid.UUID(tenant), batch)

asyncio.run(main())
"""


async def test_a_process_killed_mid_batch_commits_all_or_nothing_and_retries_land_once(world, ledger_app_dsn, ledger_owner_dsn):
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    caller = await _owner(world, payer)
    batch = [_arguments(caller, payer, payee, amount) for amount in (10, 20, 30)]
    encoded = [[str(a) if isinstance(a, uuid.UUID) else (a.hex() if isinstance(a, bytes) else a) for a in item]
               for item in batch]
    async with await psycopg.AsyncConnection.connect(ledger_owner_dsn) as blocker:  # may lock rows
        await blocker.execute("select set_config('app.tenant_id', %s, true)", (str(world.tenant_id),))
        await blocker.execute("select 1 from accounts where account_id = %s for no key update", (payee,))
        watcher = await psycopg.AsyncConnection.connect(ledger_app_dsn, autocommit=True)
        process = subprocess.Popen(
            [sys.executable, "-c", _KILLED_BATCH, ledger_app_dsn, json.dumps([str(world.tenant_id), encoded])],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert process.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 20
        while True:  # its batch is in the database, waiting for the payee's row (seen as its own role)
            cursor = await watcher.execute(
                "select count(*) from pg_stat_activity where query like '%%payments_create_transfers_in%%' "
                "and wait_event_type = 'Lock'")
            if (await cursor.fetchone())[0]:
                break
            assert time.monotonic() < deadline, "the batch never reached the database"
            await asyncio.sleep(0.05)
        await watcher.close()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        await blocker.rollback()
    request_ids = [item[8] for item in batch]
    committed = await _transfer_count(world, request_ids)
    assert committed in (0, 3), committed  # one transaction: never part of a batch
    # Every client retries with the same request ids: each transfer exists exactly once afterwards.
    group = TransferGroupCommit(world.units_of_work.pool)
    results = await asyncio.gather(*(group.submit(world.tenant_id, item) for item in batch))
    assert not [result for result in results if isinstance(result, ItemFailure)]
    assert await _transfer_count(world, request_ids) == 3
    assert await world.balance(payee) == 60 and await world.balance(payer) == 940


async def test_the_servers_units_of_work_route_create_transfer_through_group_commit(world):
    payer, payee = await world.open(balance_minor=100), await world.open()
    group = TransferGroupCommit(world.units_of_work.pool)
    units_of_work = UnitOfWorkFactory(world.units_of_work.pool, group_commit=group)
    caller = await _owner(world, payer)
    done = await ledger.create_customer_transfer(
        units_of_work, world.tenant_id, new_context(), caller_user_id=caller, caller_is_back_office=False,
        from_account_id=payer, to_account_id=payee, amount_minor=60, currency="EUR")
    assert done.record.amount_minor == 60 and group.stats.items == 1
    with pytest.raises(FailedPrecondition) as refused:
        await ledger.create_customer_transfer(
            units_of_work, world.tenant_id, new_context(), caller_user_id=caller, caller_is_back_office=False,
            from_account_id=payer, to_account_id=payee, amount_minor=60, currency="EUR")
    assert refused.value.reason == "INSUFFICIENT_FUNDS" and refused.value.metadata


# -- ChargePaymentCode (payments_charge_codes_in) ---------------------------------------------------


@pytest.fixture
def charges(world: LedgerWorld) -> ChargeGroupCommit:
    return ChargeGroupCommit(world.units_of_work.pool, concurrent_batches=1, max_wait_s=60)


async def _terminal(world: LedgerWorld, merchant: uuid.UUID) -> uuid.UUID:
    merchant_user = await _owner(world, merchant)

    async def insert(unit_of_work) -> uuid.UUID:
        cursor = await unit_of_work.connection.execute(
            """insert into terminals (tenant_id, merchant_user_id, display_name, client_id, secret_hash)
               values (%s, %s, 'Till', %s, %s) returning terminal_id""",
            (world.tenant_id, merchant_user, "term_" + uuid.uuid4().hex[:24], bytes(32)),
        )
        return (await cursor.fetchone())[0]

    return await world.run(insert)


async def _code(world: LedgerWorld, payer: uuid.UUID, max_amount_minor: int = 1_000) -> bytes:
    code_hash = uuid.uuid4().bytes * 2
    await payment_codes.create(
        world.units_of_work, world.tenant_id, caller_user_id=(await world.account(payer)).owner_user_id,
        caller_is_back_office=False, code_hash=code_hash, account_id=payer, currency="EUR",
        max_amount_minor=max_amount_minor, ttl_s=300, created_by="user:tester",
    )
    return code_hash


def _charge(code_hash: bytes, terminal: uuid.UUID, amount_minor: int, request_id: str | None = None) -> tuple:
    context = new_context(request_id=request_id, code=code_hash.hex(), amount=amount_minor)
    return (code_hash, terminal, amount_minor, "EUR", context.actor, context.method, context.request_id,
            context.request_hash)


async def test_charges_a_refused_one_in_the_middle_is_rolled_back_alone(world, charges):
    """Three charges in one batch, the middle one above its code's maximum: it is refused with the error it
    would have had alone; the other two move their money, and their codes are used."""
    merchant = await world.open("merchant")
    terminal = await _terminal(world, merchant)
    payers = [await world.open(balance_minor=1_000) for _ in range(3)]
    codes = [await _code(world, payer, max_amount_minor=300) for payer in payers]
    results = await charges.commit_batch(world.tenant_id, [
        _charge(codes[0], terminal, 100), _charge(codes[1], terminal, 400), _charge(codes[2], terminal, 250),
    ])
    refused = ledger.batch_item_error(results[1])
    assert isinstance(refused, FailedPrecondition) and refused.reason == "AMOUNT_EXCEEDS_CODE"
    assert [await world.balance(payer) for payer in payers] == [900, 1_000, 750]
    assert await world.balance(merchant) == 350
    # The refused code is still unused: charged again within its maximum, it pays.
    [again] = await charges.commit_batch(world.tenant_id, [_charge(codes[1], terminal, 300)])
    assert not isinstance(again, ItemFailure) and await world.balance(payers[1]) == 700


async def test_a_charge_and_its_replay_in_one_batch_pay_once(world, charges):
    """The same terminal's retry (same request_id) in the same batch replays the first item's payment; another
    request on the same code is PAYMENT_CODE_USED, as it would be later."""
    merchant = await world.open("merchant")
    terminal = await _terminal(world, merchant)
    payer = await world.open(balance_minor=1_000)
    code = await _code(world, payer)
    first = _charge(code, terminal, 120)
    original, replay, other = await charges.commit_batch(world.tenant_id, [first, first, _charge(code, terminal, 120)])
    assert not isinstance(original, ItemFailure) and not isinstance(replay, ItemFailure)
    assert ledger._transfer_outcome(replay).record.transfer_id == ledger._transfer_outcome(original).record.transfer_id
    assert ledger.batch_item_error(other).reason == "PAYMENT_CODE_USED"
    assert await world.balance(payer) == 880 and await world.balance(merchant) == 120
    assert await _transfer_count(world, [first[6]]) == 1


async def test_batches_of_charges_sharing_payers_in_opposite_orders_never_deadlock(world):
    """Two batches at once, each charging codes of the same two payers in the opposite order: the codes and
    accounts are locked in one global order before any item runs, so both commit, every charge exact."""
    merchant = await world.open("merchant")
    terminal = await _terminal(world, merchant)
    alice, bob = await world.open(balance_minor=1_000), await world.open(balance_minor=1_000)
    codes = {payer: [await _code(world, payer) for _ in range(2)] for payer in (alice, bob)}
    one = ChargeGroupCommit(world.units_of_work.pool)
    two = ChargeGroupCommit(world.units_of_work.pool)
    first, second = await asyncio.wait_for(asyncio.gather(
        one.commit_batch(world.tenant_id, [_charge(codes[alice][0], terminal, 10), _charge(codes[bob][0], terminal, 20)]),
        two.commit_batch(world.tenant_id, [_charge(codes[bob][1], terminal, 40), _charge(codes[alice][1], terminal, 80)]),
    ), timeout=30)
    assert not any(isinstance(result, ItemFailure) for result in [*first, *second])
    assert (await world.balance(alice), await world.balance(bob), await world.balance(merchant)) == (910, 940, 150)


async def test_every_charge_of_a_batch_credits_one_merchant(world, charges):
    """A batch of charges from many payers to the one merchant credits it exactly once per charge."""
    merchant = await world.open("merchant")
    terminal = await _terminal(world, merchant)
    payers = [await world.open(balance_minor=100) for _ in range(12)]
    codes = [await _code(world, payer) for payer in payers]
    results = await charges.commit_batch(world.tenant_id, [_charge(code, terminal, 7) for code in codes])
    assert not any(isinstance(result, ItemFailure) for result in results)
    assert await world.balance(merchant) == 12 * 7
    assert {await world.balance(payer) for payer in payers} == {93}


# -- CreatePaymentCode (payments_create_codes_in) ---------------------------------------------------


async def test_codes_a_refused_one_in_the_middle_is_rolled_back_alone(world):
    """Three codes in one batch, the middle one for an account its caller does not own: it is refused with the
    error it would have had alone (ACCOUNT_NOT_FOUND); the other two are stored, expiring after their lifetime."""
    mine, theirs = await world.open(), await world.open()
    caller = await _owner(world, mine)
    codes = CodeGroupCommit(world.units_of_work.pool, concurrent_batches=1, max_wait_s=60)
    hashes = [uuid.uuid4().bytes * 2 for _ in range(3)]
    results = await codes.commit_batch(world.tenant_id, [
        (caller, False, account, "EUR", 500, 60, code_hash, "user:tester")
        for account, code_hash in zip((mine, theirs, mine), hashes)
    ])
    assert isinstance(results[1], ItemFailure)
    assert ledger.batch_item_error(results[1]).reason == "ACCOUNT_NOT_FOUND"
    now = datetime.now(timezone.utc)
    for result in (results[0], results[2]):
        assert not isinstance(result, ItemFailure)
        assert now + timedelta(seconds=50) < result[0] <= now + timedelta(seconds=61)

    async def stored(unit_of_work) -> list[bytes]:
        cursor = await unit_of_work.connection.execute(
            "select code_hash from payment_codes where code_hash = any(%s)", (hashes,))
        return sorted(bytes(row[0]) for row in await cursor.fetchall())

    assert await world.read(stored) == sorted([hashes[0], hashes[2]])


async def test_the_servers_units_of_work_route_create_payment_code_through_group_commit(world):
    """payment_codes.create goes through the code group commit when the factory has one; a refusal comes back as
    the same domain error as on its own (a frozen account's ACCOUNT_FROZEN)."""
    account = await world.open()
    caller = await _owner(world, account)
    group = CodeGroupCommit(world.units_of_work.pool)
    units_of_work = UnitOfWorkFactory(world.units_of_work.pool, code_group_commit=group)
    make = lambda: payment_codes.create(  # noqa: E731
        units_of_work, world.tenant_id, caller_user_id=caller, caller_is_back_office=False,
        code_hash=uuid.uuid4().bytes * 2, account_id=account, currency="EUR", max_amount_minor=100, ttl_s=30,
        created_by="user:tester")
    expires_at = await make()
    assert expires_at > datetime.now(timezone.utc) and group.stats.items == 1
    await world.run(lambda unit_of_work: ledger.set_account_status(unit_of_work, new_context(), account, "frozen"))
    with pytest.raises(FailedPrecondition) as refused:
        await make()
    assert refused.value.reason == "ACCOUNT_FROZEN" and group.stats.items == 2
