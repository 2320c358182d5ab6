"""Ledger isolation and tamper-evidence: RLS between tenants, no rewriting of history, audit chain checks."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from domain.errors import NotFound
from domain.ledger_rules import AUDIT_STRIPES
from storage import audit, ledger
from tests.invariants.ledger_world import (  # noqa: F401 (fixtures)
    authorize_hold,
    LedgerWorld, create_tenant, ledger_app_dsn, ledger_owner_dsn, ledger_units_of_work, new_context, world,
)

LEDGER_TABLES = (
    "accounts", "account_balance_shards", "holds", "transfers", "ledger_entries", "idempotency_keys",
    "audit_chain_heads", "audit_events",
)


@pytest.fixture
async def busy_world(world: LedgerWorld) -> LedgerWorld:
    """A tenant with something in every ledger table."""
    payer, merchant = await world.open(balance_minor=1_000), await world.open("merchant")
    await world.move("payment", payer, merchant, 100)
    await world.run(lambda u: authorize_hold(
        u, new_context(), account_id=payer, merchant_account_id=merchant, amount_minor=50, currency="EUR",
        expires_at=datetime.now(timezone.utc) + timedelta(minutes=5)))
    return world


def _app_connection(app_dsn: str, tenant_id: uuid.UUID | None) -> psycopg.Connection:
    connection = psycopg.connect(app_dsn)
    connection.execute("select set_config('app.tenant_id', %s, false)", ("" if tenant_id is None else str(tenant_id),))
    return connection


async def test_another_tenant_sees_none_of_the_ledger(busy_world, app_dsn, owner_dsn):
    """Scoped to tenant B, unfiltered SELECTs on every ledger table return none of tenant A's rows."""
    other_tenant = create_tenant(owner_dsn)
    with _app_connection(app_dsn, other_tenant) as connection:
        for table in LEDGER_TABLES:
            assert connection.execute(f"select count(*) from {table}").fetchone()[0] == 0, table
    with _app_connection(app_dsn, busy_world.tenant_id) as connection:
        for table in LEDGER_TABLES:
            assert connection.execute(f"select count(*) from {table}").fetchone()[0] > 0, table


async def test_without_a_tenant_nothing_is_visible_and_nothing_moves(busy_world, app_dsn):
    """No app.tenant_id: every ledger table reads empty, and the ledger functions refuse to run."""
    with _app_connection(app_dsn, None) as connection:
        for table in LEDGER_TABLES:
            assert connection.execute(f"select count(*) from {table}").fetchone()[0] == 0, table
        with pytest.raises(psycopg.DatabaseError, match="TENANT_NOT_SET") as caught:
            connection.execute("select * from ledger_expire_due_holds(10)")
    assert caught.value.sqlstate == "EM000"  # not a business failure: answered as INTERNAL


async def test_a_tenant_cannot_move_another_tenants_money(busy_world, owner_dsn, ledger_units_of_work):
    """Tenant B naming tenant A's accounts gets ACCOUNT_NOT_FOUND: RLS hides them inside the functions too."""
    victim = (await busy_world.read(lambda u: ledger.list_accounts(u, kind="customer", limit=1)))[0]
    intruder = LedgerWorld(create_tenant(owner_dsn), ledger_units_of_work)
    thief = await intruder.open()
    with pytest.raises(NotFound) as caught:
        await intruder.move("p2p", victim.account_id, thief, 1)
    assert caught.value.reason == "ACCOUNT_NOT_FOUND"


@pytest.mark.parametrize(
    "statement",
    [
        "update ledger_entries set amount_minor = amount_minor * 2",
        "delete from ledger_entries",
        "update audit_events set summary = '{}'",
        "delete from audit_events",
        "update transfers set amount_minor = 1",
        "delete from transfers",
        "delete from accounts",
        "delete from idempotency_keys",
        "truncate ledger_entries",
    ],
)
async def test_the_app_role_cannot_rewrite_history(busy_world, app_dsn, statement):
    """The application role has no UPDATE or DELETE on entries, audit events or a transfer's money columns."""
    with _app_connection(app_dsn, busy_world.tenant_id) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "update accounts set balance_minor = balance_minor + 1",
        "update accounts set held_minor = 0",
        "update accounts set status = 'frozen'",
        "insert into accounts (tenant_id, account_id, kind, currency) select tenant_id, gen_random_uuid(), kind, currency"
        " from accounts limit 1",
        "update account_balance_shards set balance_minor = 0",
        "insert into ledger_entries (tenant_id, transfer_id, account_id, amount_minor, currency)"
        " select tenant_id, transfer_id, debit_account_id, 1, currency from transfers limit 1",
        "update transfers set refunded_minor = 0",
        "update holds set status = 'voided'",
        "update audit_chain_heads set last_sequence = last_sequence + 1",
        "insert into idempotency_keys (tenant_id, caller, request_id, method, request_hash)"
        " select tenant_id, caller, request_id || 'x', method, request_hash from idempotency_keys limit 1",
        "update payment_codes set used_at = now()",
        "select ledger_apply_leg(gen_random_uuid(), a, 1, 0) from accounts a limit 1",
        "select * from payments_create_transfer(null, true, gen_random_uuid(), gen_random_uuid(), 1, 'EUR', 'a', 'm',"
        " 'r', null)",
        "select ledger_write_transfer(a.tenant_id, gen_random_uuid(), 'p2p', a, a, 1, 'EUR', 'a', null, null,"
        " null, 0) from accounts a limit 1",
    ],
)
async def test_money_moves_only_through_the_ledger_functions(busy_world, app_dsn, statement):
    """The application role cannot write a balance, an entry, a transfer, a hold or the audit chain itself, nor
    call an inner step: only the entry points (SECURITY DEFINER, owned by emoney_ledger) write money (0012)."""
    with _app_connection(app_dsn, busy_world.tenant_id) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(statement)


async def test_every_definer_function_the_app_may_call_pins_its_search_path(owner_dsn):
    """A SECURITY DEFINER function without a fixed search_path could be steered to objects a caller made.
    And the ledger's entry points run as emoney_ledger, which has no cross-tenant read policy."""
    with psycopg.connect(owner_dsn) as connection:
        rows = connection.execute(
            """select p.oid::regprocedure::text, pg_get_userbyid(p.proowner), coalesce(p.proconfig, '{}')
                 from pg_proc p
                where p.pronamespace = 'public'::regnamespace and p.prosecdef
                  and has_function_privilege('emoney_app', p.oid, 'execute')"""
        ).fetchall()
        ledger_policies = connection.execute(
            "select count(*) from pg_policies where 'emoney_ledger' = any(roles)").fetchone()[0]
    by_name = {name.split("(")[0]: (owner, config) for name, owner, config in rows}
    for name, (owner, config) in by_name.items():
        # pg_temp named, and last: unnamed, PostgreSQL would search the caller's temporary tables first.
        assert "search_path=pg_catalog, public, pg_temp" in config, (name, config)
    for entry_point in ("payments_create_transfer_in", "ledger_post_transfer", "ledger_capture_hold", "audit_append"):
        assert by_name[entry_point][0] == "emoney_ledger", entry_point
    assert ledger_policies == 0


async def test_the_app_role_cannot_shadow_ledger_tables_with_temporary_ones(busy_world, app_dsn):
    """A temporary `account_balance_shards` of the caller's could have been used by a definer function in place
    of the real one (an app-made balance): the application role may create no temporary table (0012)."""
    with _app_connection(app_dsn, busy_world.tenant_id) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("create temporary table account_balance_shards (like public.account_balance_shards)")


async def test_entry_points_still_see_only_the_callers_tenant(busy_world, owner_dsn, ledger_units_of_work):
    """Running as emoney_ledger changes nothing about isolation: another tenant's hold is HOLD_NOT_FOUND."""
    async def first_hold(unit_of_work) -> uuid.UUID:
        cursor = await unit_of_work.connection.execute("select hold_id from holds limit 1")
        return (await cursor.fetchone())[0]

    hold_id = await busy_world.read(first_hold)
    intruder = LedgerWorld(create_tenant(owner_dsn), ledger_units_of_work)
    with pytest.raises(NotFound) as caught:
        await intruder.run(lambda u: ledger.capture_hold(u, new_context(), hold_id, 1))
    assert caught.value.reason == "HOLD_NOT_FOUND"


@pytest.mark.parametrize(
    "statement",
    [
        "update ledger_entries set amount_minor = amount_minor * 2",
        "delete from ledger_entries",
        "update audit_events set summary = '{}'",
        "delete from audit_events",
        "update transfers set amount_minor = 1",
        "truncate audit_events",
    ],
)
async def test_not_even_the_owner_rewrites_history(busy_world, owner_dsn, statement):
    """Triggers refuse UPDATE, DELETE and TRUNCATE of entries and audit events for everyone, the owner too."""
    with psycopg.connect(owner_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, false)", (str(busy_world.tenant_id),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only|immutable"):
            connection.execute(statement)


async def test_a_stored_reply_is_never_overwritten(busy_world, app_dsn):
    """Once an idempotency key has its reply, updating it again is refused."""
    with _app_connection(app_dsn, busy_world.tenant_id) as connection:
        connection.execute("update idempotency_keys set response = 'first' where response is null")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="never overwritten"):
            connection.execute("update idempotency_keys set response = 'second'")


async def test_every_ledger_table_forces_row_level_security(owner_dsn):
    """Catalog check: each ledger table has RLS enabled and forced and a tenant_id-first primary key."""
    with psycopg.connect(owner_dsn) as connection:
        rows = connection.execute(
            """select c.relname, c.relrowsecurity, c.relforcerowsecurity,
                      (select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid
                                                                          and a.attnum = i.indkey[0]
                        where i.indrelid = c.oid and i.indisprimary)
                 from pg_class c where c.relname = any(%s)""",
            (list(LEDGER_TABLES),),
        ).fetchall()
    assert {row[0] for row in rows} == set(LEDGER_TABLES)
    for name, enabled, forced, first_key_column in rows:
        assert enabled and forced and first_key_column == "tenant_id", name


def _tamper(stack, tenant_id: uuid.UUID, statement: str) -> None:
    """As the superuser with triggers off for this session (what an attacker with full rights could do)."""
    from localstack import provisioning

    with psycopg.connect(stack.postgres.dsn(provisioning.DATABASE_NAME)) as connection:
        connection.execute("set session_replication_role = replica")
        connection.execute(statement, (tenant_id,))


async def test_verification_names_the_first_tampered_event(busy_world, stack):
    """Editing an event's summary breaks its hash: verification reports that stripe and sequence."""
    events = await busy_world.read(lambda u: audit.list_audit_events(u, None, 100))
    target = events[len(events) // 2]
    _tamper(stack, busy_world.tenant_id,
            f"update audit_events set summary = '{{\"forged\": true}}' where tenant_id = %s and stripe = {target.stripe} and sequence = {target.sequence}")
    verification = await busy_world.read(audit.verify_audit_chain)
    assert not verification.ok
    broken = verification.first_broken
    assert (broken.stripe, broken.sequence, broken.problem) == (target.stripe, target.sequence, "HASH_MISMATCH")


async def test_verification_detects_a_rehashed_event_and_a_removed_one(busy_world, stack):
    """Recomputing one event's hash breaks the next link; deleting a stripe's newest event breaks its head."""
    for number in range(AUDIT_STRIPES + 1):  # more events than stripes: some stripe has two
        await busy_world.run(lambda u: audit.append_audit(u, new_context("test/Note"), {"after": {"note": str(number)}}))
    events = await busy_world.read(lambda u: audit.list_audit_events(u, None, 1000))
    by_stripe: dict[int, list] = {}
    for event in sorted(events, key=lambda e: e.sequence):
        by_stripe.setdefault(event.stripe, []).append(event)
    rehashed_stripe = next(stripe for stripe, stripe_events in by_stripe.items() if len(stripe_events) >= 2)
    first = by_stripe[rehashed_stripe][0]
    _tamper(stack, busy_world.tenant_id,
            f"""update audit_events set summary = '{{}}',
                       hash = audit_event_hash(previous_hash, tenant_id, stripe, sequence, created_at, actor, method,
                                               request_id, '{{}}')
                 where tenant_id = %s and stripe = {first.stripe} and sequence = {first.sequence}""")
    verification = await busy_world.read(audit.verify_audit_chain)
    assert (verification.first_broken.stripe, verification.first_broken.sequence,
            verification.first_broken.problem) == (rehashed_stripe, first.sequence + 1, "LINK_BROKEN")
    other_stripe = next(stripe for stripe in by_stripe if stripe != rehashed_stripe)
    newest = by_stripe[other_stripe][-1]
    _tamper(stack, busy_world.tenant_id,
            f"delete from audit_events where tenant_id = %s and stripe = {newest.stripe} and sequence = {newest.sequence}")
    verification = await busy_world.read(audit.verify_audit_chain)
    assert {(link.stripe, link.problem) for link in verification.broken_links} == {
        (rehashed_stripe, "LINK_BROKEN"), (other_stripe, "HEAD_MISMATCH")}
