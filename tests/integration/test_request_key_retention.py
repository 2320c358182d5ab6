"""Idempotency keys are forgotten after the retention period (migrations/0013, server/background.py):
only keys older than it, in every tenant, nothing else; a retry after that is a new request."""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
import pytest

from server.background import RequestKeyJanitor
from storage import idempotency
from tests.invariants.ledger_world import (  # noqa: F401 (fixtures)
    LedgerWorld, create_tenant, ledger_app_dsn, ledger_owner_dsn, ledger_units_of_work, new_context, world,
)

RETENTION = timedelta(days=30)


def _age(owner_dsn: str, tenant_id: uuid.UUID, request_id: str, days: int) -> None:
    """Move a key's creation into the past, as the schema owner (time travel for tests)."""
    with psycopg.connect(owner_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(tenant_id),))
        updated = connection.execute(
            "update idempotency_keys set created_at = now() - make_interval(days => %s) where request_id = %s",
            (days, request_id),
        ).rowcount
    assert updated == 1


async def _keys(world: LedgerWorld) -> set[str]:
    async def read(unit_of_work) -> set[str]:
        cursor = await unit_of_work.connection.execute("select request_id from idempotency_keys")
        return {row[0] for row in await cursor.fetchall()}

    return await world.read(read)


async def test_only_keys_past_retention_are_forgotten_in_every_tenant(world, ledger_owner_dsn, ledger_units_of_work):
    other = LedgerWorld(create_tenant(ledger_owner_dsn), ledger_units_of_work)
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    their_payer, their_payee = await other.open(balance_minor=1_000), await other.open()
    old, recent, fresh = new_context(), new_context(), new_context()
    for context in (old, recent, fresh):
        await world.move("p2p", payer, payee, 10, context)
    their_old = new_context()
    await other.move("p2p", their_payer, their_payee, 10, their_old)
    _age(ledger_owner_dsn, world.tenant_id, old.request_id, 31)
    _age(ledger_owner_dsn, world.tenant_id, recent.request_id, 29)
    _age(ledger_owner_dsn, other.tenant_id, their_old.request_id, 40)

    forgotten = await RequestKeyJanitor(ledger_units_of_work, RETENTION).forget_once()

    assert forgotten >= 2  # ours and theirs (other tests' tenants have no aged keys)
    ours = await _keys(world)
    assert old.request_id not in ours and {recent.request_id, fresh.request_id} <= ours
    assert their_old.request_id not in await _keys(other)
    # The movements themselves stay: only the keys went.
    assert (await world.account(payee)).balance_minor == 30


async def test_a_retry_after_retention_is_a_new_request(world, ledger_owner_dsn, ledger_units_of_work):
    payer, payee = await world.open(balance_minor=1_000), await world.open()
    context = new_context()
    first = await world.move("p2p", payer, payee, 10, context)
    assert (await world.move("p2p", payer, payee, 10, context)).replayed
    _age(ledger_owner_dsn, world.tenant_id, context.request_id, 31)
    await RequestKeyJanitor(ledger_units_of_work, RETENTION).forget_once()
    again = await world.move("p2p", payer, payee, 10, context)
    assert not again.replayed and again.record.transfer_id != first.record.transfer_id
    assert (await world.account(payee)).balance_minor == 20


async def test_a_retention_under_a_day_is_refused(world):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least a day"):
        await world.read(lambda u: idempotency.forget_old_keys(u, timedelta(hours=23), 10))


async def test_the_key_of_a_redeemed_payment_code_is_kept(world, ledger_owner_dsn, ledger_units_of_work):
    """A used code lets its terminal retry with the same request id, answered by the key's replay: that key is
    never forgotten, or the retry would pay a second time (migrations/0013)."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    redeemed, plain = new_context(), new_context()
    payment = (await world.move("payment", payer, merchant, 10, redeemed)).record
    await world.move("payment", payer, merchant, 10, plain)
    with psycopg.connect(ledger_owner_dsn) as connection:  # the code the payment redeemed, as the owner writes it
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(world.tenant_id),))
        connection.execute(
            """insert into payment_codes (tenant_id, code_hash, account_id, currency, max_amount_minor, expires_at,
                                          created_by, used_at, used_by, used_request_id, used_for)
               values (%s, %s, %s, 'EUR', 100, now() + interval '5 minutes', 'users/x', now(), %s, %s, %s)""",
            (world.tenant_id, uuid.uuid4().bytes * 2, payer, redeemed.actor, redeemed.request_id, payment.transfer_id),
        )
    for context in (redeemed, plain):
        _age(ledger_owner_dsn, world.tenant_id, context.request_id, 40)
    await RequestKeyJanitor(ledger_units_of_work, RETENTION).forget_once()
    keys = await _keys(world)
    assert redeemed.request_id in keys and plain.request_id not in keys
