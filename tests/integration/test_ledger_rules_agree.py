"""The Python rules (domain/ledger_rules.py, storage/ledger.py) and the database's say the same thing."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import psycopg
import pytest

from domain import ledger_rules
from domain.currencies import CURRENCY_MINOR_UNITS
from storage.ledger import LEDGER_FAILURES
from tests.invariants.ledger_world import create_tenant

CURRENT_SQL = Path(__file__).resolve().parents[2] / "migrations" / "current"


def latest_ledger_fail() -> str:
    """The text of ledger_fail() as it stands today: its one definition in migrations/current/."""
    defining = [path for path in sorted(CURRENT_SQL.glob("*.sql")) if "function ledger_fail(" in path.read_text()]
    assert len(defining) == 1, defining
    sql = defining[0].read_text()
    start = sql.index("function ledger_fail(")
    return sql[start:sql.index("$$;", start)]


@pytest.fixture(scope="module")
def connection(app_dsn):
    with psycopg.connect(app_dsn, autocommit=True) as connection:
        yield connection


def test_limits_match(connection):
    """Transfer maximum, hold duration, audit stripes and the largest group-commit batch are the same figures
    in SQL and Python."""
    row = connection.execute(
        "select ledger_max_transfer_minor(), ledger_max_hold_duration(), audit_stripe_count(), ledger_max_batch_items()"
    ).fetchone()
    assert row == (ledger_rules.MAX_TRANSFER_MINOR, ledger_rules.MAX_HOLD_DURATION, ledger_rules.AUDIT_STRIPES,
                   ledger_rules.MAX_BATCH_ITEMS)


def test_domains_carry_the_same_limits(owner_dsn):
    """The amount domains repeat ledger_max_transfer_minor() as a literal: they must not drift apart."""
    with psycopg.connect(owner_dsn) as owner:
        definitions = dict(owner.execute(
            """select t.typname, pg_get_constraintdef(c.oid) from pg_type t join pg_constraint c on c.contypid = t.oid
                where t.typname in ('transfer_amount_minor', 'entry_amount_minor', 'overdraft_minor')"""
        ).fetchall())
    for name, definition in definitions.items():
        assert str(ledger_rules.MAX_TRANSFER_MINOR) in definition, (name, definition)
    assert len(definitions) == 3


def test_money_request_ids_are_bounded_by_the_same_figure(owner_dsn):
    """Money tables hold a client's request_id (64, the contract's figure); the audit log's column also takes
    a call's x-request-id (100). Each bound is in the catalogue once and in Python once."""
    with psycopg.connect(owner_dsn) as owner:
        checks = dict(owner.execute(
            """select conrelid::regclass::text, pg_get_constraintdef(oid) from pg_constraint
                where conname like '%request_id_at_most_%'"""
        ).fetchall())
        domain = owner.execute(
            """select pg_get_constraintdef(c.oid) from pg_type t join pg_constraint c on c.contypid = t.oid
                where t.typname = 'request_id_text'"""
        ).fetchone()[0]
        tenant = create_tenant(owner_dsn)
        owner.execute("select set_config('app.tenant_id', %s, true)", (str(tenant),))
        too_long = "r" * (ledger_rules.MAX_REQUEST_ID_LENGTH + 1)
        with pytest.raises(psycopg.errors.CheckViolation):
            owner.execute("insert into idempotency_keys (tenant_id, caller, request_id, method, request_hash, result_id) "
                          "values (%s, 'users/x', %s, 'test/Bound', sha256('x'), gen_random_uuid())", (tenant, too_long))
        owner.rollback()
    assert set(checks) == {"transfers", "holds", "idempotency_keys"}
    for table, definition in checks.items():
        assert f"<= {ledger_rules.MAX_REQUEST_ID_LENGTH}" in definition, (table, definition)
    assert str(ledger_rules.MAX_CALL_ID_LENGTH) in domain, domain


def test_account_kind_rules_match(connection):
    """ledger_kinds_allowed() in SQL and kinds_allowed() in Python agree on every combination."""
    for transfer_kind, debit, credit in itertools.product(
        ledger_rules.TRANSFER_KINDS + ("unknown",), ledger_rules.ACCOUNT_KINDS, ledger_rules.ACCOUNT_KINDS
    ):
        in_sql = connection.execute("select ledger_kinds_allowed(%s, %s, %s)", (transfer_kind, debit, credit)).fetchone()[0]
        assert in_sql == ledger_rules.kinds_allowed(transfer_kind, debit, credit), (transfer_kind, debit, credit)


def test_every_failure_has_one_sqlstate_both_ways(connection):
    """Each identifier ledger_fail() raises arrives with the SQLSTATE the Python table maps it from."""
    for sqlstate, failure in LEDGER_FAILURES.items():
        with pytest.raises(psycopg.DatabaseError) as caught:
            connection.execute("select ledger_fail(%s)", (failure.reason,))
        assert (caught.value.sqlstate, caught.value.diag.message_primary) == (sqlstate, failure.reason)


def test_the_sql_knows_no_failure_the_python_table_lacks():
    """Every identifier in ledger_fail()'s CASE is in LEDGER_FAILURES (or is the internal EM000)."""
    body = latest_ledger_fail()
    in_sql = dict(re.findall(r"when '([A-Z_]+)' then '(EM\d{3})'", body))
    assert in_sql == {failure.reason: sqlstate for sqlstate, failure in LEDGER_FAILURES.items()}


def test_the_database_knows_the_currencies_the_code_knows(owner_dsn):
    """storage/migrate.py filled `currencies` with domain/currencies.py's list: the same codes, the same decimals."""
    with psycopg.connect(owner_dsn) as owner:
        in_sql = dict(owner.execute("select code, minor_units from currencies").fetchall())
    assert in_sql == dict(CURRENCY_MINOR_UNITS)
    assert (in_sql["JPY"], in_sql["EUR"], in_sql["BHD"]) == (0, 2, 3)


@pytest.mark.parametrize("currency", ["ABC", "XAU", "XXX"])
def test_the_database_refuses_an_account_in_a_code_that_is_no_currency(owner_dsn, currency):
    """Even the ledger role itself, writing the row directly, opens no account in a code the service refuses."""
    tenant_id = create_tenant(owner_dsn)
    insert = "insert into accounts (tenant_id, kind, currency) values (%s, 'system_float', %s)"
    with psycopg.connect(owner_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, false)", (str(tenant_id),))
        connection.execute("set role emoney_ledger")
        connection.execute(insert, (tenant_id, "JPY"))  # a currency: accepted
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            connection.execute(insert, (tenant_id, currency))
        connection.rollback()


def test_the_database_refuses_a_tenant_whose_default_is_no_currency(owner_dsn):
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        create_tenant(owner_dsn, currency="ABC")


def _allowed_words(definition: str) -> tuple[str, ...]:
    """The quoted words of a CHECK (... in ('a', 'b')) or ARRAY['a'::text, ...] definition, in order."""
    return tuple(re.findall(r"'([a-z0-9_]+)'", definition))


def test_the_domain_lists_are_the_databases(owner_dsn):
    """Kinds and statuses: each domain list (the single source the contract's enums are mapped from,
    server/servicers/enums.py) allows exactly what the database's CHECK constraints and domains allow."""
    from domain import principal

    with psycopg.connect(owner_dsn) as owner:
        domains = dict(owner.execute(
            """select t.typname, pg_get_constraintdef(c.oid) from pg_type t join pg_constraint c on c.contypid = t.oid
                where t.typname in ('account_kind', 'account_status', 'transfer_kind', 'transfer_status', 'hold_status')"""
        ).fetchall())
        checks = dict(owner.execute(
            """select c.conrelid::regclass::text, pg_get_constraintdef(c.oid) from pg_constraint c
                where c.contype = 'c' and c.conrelid::regclass::text in ('tenants', 'users', 'terminals')
                  and pg_get_constraintdef(c.oid) like '%status%'"""
        ).fetchall())
        roles = owner.execute(
            """select pg_get_constraintdef(c.oid) from pg_constraint c
                where c.contype = 'c' and c.conrelid = 'users'::regclass and pg_get_constraintdef(c.oid) like '%roles%'"""
        ).fetchall()
    assert {name: set(_allowed_words(definition)) for name, definition in domains.items()} == {
        "account_kind": set(ledger_rules.ACCOUNT_KINDS),
        "account_status": set(ledger_rules.ACCOUNT_STATUSES),
        "transfer_kind": set(ledger_rules.TRANSFER_KINDS),
        "transfer_status": set(ledger_rules.TRANSFER_STATUSES),
        "hold_status": set(ledger_rules.HOLD_STATUSES),
    }
    assert {table: set(_allowed_words(definition)) for table, definition in checks.items()} == {
        "tenants": set(principal.TENANT_STATUSES),
        "users": set(principal.USER_STATUSES),
        "terminals": set(principal.TERMINAL_STATUSES),
    }
    assert [set(_allowed_words(definition)) for (definition,) in roles] == [set(principal.USER_ROLES)]
    assert set(ledger_rules.PAYMENT_STATUSES) == set(ledger_rules.TRANSFER_STATUSES) | set(ledger_rules.HOLD_STATUSES)
    assert set(ledger_rules.PAYMENT_KINDS) == set(ledger_rules.TRANSFER_KINDS) | {ledger_rules.HOLD_KIND}
