"""The references every ratio of `make bench` is measured against, in the same run (issue 14).

- **Bare servers behind the same Envoy**: as many `tools/bench/bare_server.py` processes as the platform
  has servers, and a second Envoy rendered by the same code (localstack/envoy.py `start_envoy`) with them
  as its upstreams. The same k6 scripts call them: GetServerInfo is the **bare no-op**, CreateTransfer
  the **bare transfer** (one durable SQL statement).
- **The database alone** (pgbench, the engine's own load generator, 16 clients, as the application role
  with the tenant set, as a server does): the ledger's transfer entry point
  (`payments_create_transfer_in`, what CreateTransfer runs) against the bare statement.

The bare table lives in the stack's own database, so both sides share PostgreSQL, its settings and disk.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from localstack import provisioning
from localstack.envoy import EnvoyService, start_envoy
from localstack.postgres import pg_bin_dir
from localstack.processes import ManagedProcess, free_ports, wait_for_tcp
from localstack.stack import DESCRIPTOR_PATH, ROOT, LocalStack
from tools.bench.bare_server import DSN_VARIABLE, TABLE

BARE_BALANCE_MINOR = 10**15
PGBENCH_CLIENTS = 16


@dataclass
class BareReference:
    """The bare servers and their Envoy."""

    servers: list[ManagedProcess]
    envoy: EnvoyService

    @property
    def address(self) -> str:
        return self.envoy.address

    def pids(self) -> list[int]:
        return [server.pid for server in self.servers]

    def stop(self) -> None:
        self.envoy.stop()
        for server in self.servers:
            server.stop()


def superuser_dsn(stack: LocalStack) -> str:
    """The bench's own tables are made by the superuser: it reads `accounts` past row-level security."""
    return stack.postgres.dsn(provisioning.DATABASE_NAME)


def prepare_bare_table(dsn: str, accounts: list[str]) -> None:
    """One row per bench account (the same names the k6 scripts send), each with plenty of money."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"drop table if exists {TABLE}")
        connection.execute(f"""create table {TABLE} (
                                   account       text   primary key,
                                   idx           int    not null unique,
                                   balance_minor bigint not null check (balance_minor >= 0))""")
        with connection.cursor().copy(f"copy {TABLE} (account, idx, balance_minor) from stdin") as copy:
            for index, account in enumerate(accounts, start=1):
                copy.write_row((account, index, BARE_BALANCE_MINOR))
        connection.execute(f"grant select, update on {TABLE} to {provisioning.APP_ROLE}")
        connection.execute(f"analyze {TABLE}")


def analyze_database(dsn: str) -> None:
    """Statistics for every table that holds rows, as autovacuum would have gathered them in a running
    database; a table still empty is left without (as autovacuum leaves it, until 50 rows have changed).

    The seeding fills the ledger's tables in seconds and the scenarios start at once, before autovacuum's
    first pass (a minute at most) and before busy backends have even reported their counts. Without
    statistics the planner costs every index of a small table alike, and PostgreSQL 18's skip scan lets it
    answer `accounts` look-ups by (tenant, account) through `accounts_by_creation` (tenant, created_at,
    account_id), skipping over every distinct created_at: each foreign-key check and the group-commit lock
    then read the whole index. An empty table must not be analyzed: with statistics saying "no rows" the
    planner plans a sequential scan from the table's size at that moment (a never-analyzed table is assumed
    to have at least ten pages), and the plans cached when `payment_codes` was empty then scanned every code
    charged so far on each charge. Cached plans (PL/pgSQL's, the foreign keys') are re-planned when
    statistics arrive. The bare reference's table is analyzed the same way (prepare_bare_table)."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        tables = connection.execute(
            "select format('%I.%I', schemaname, relname) from pg_stat_user_tables order by 1").fetchall()
        for (table,) in tables:
            if connection.execute(f"select exists (select from {table})").fetchone()[0]:
                connection.execute(f"analyze {table}")


def app_role(stack: LocalStack) -> tuple[str, str]:
    """The application role's DSN without its password, and the password (the servers read it from the
    secrets store); children get the password in their environment, never on their command line."""
    credentials = provisioning.load_or_create_credentials(stack.state_dir / "database-credentials.json")
    return stack.postgres.dsn(provisioning.DATABASE_NAME, provisioning.APP_ROLE), credentials.app_password


def start_bare_reference(stack: LocalStack, processes: int, work_dir: Path) -> BareReference:
    dsn, password = app_role(stack)
    environment = {**os.environ, DSN_VARIABLE: dsn, "PGPASSWORD": password}
    ports = free_ports(processes + 2)
    servers = []
    try:
        for index, port in enumerate(ports[:processes]):
            server = ManagedProcess(f"bare-{index}", [sys.executable, "-m", "tools.bench.bare_server", "--port", str(port)],
                                    stack.log_dir / f"bare-{index}.log", env=environment, cwd=ROOT).start()
            servers.append(server)
            wait_for_tcp("127.0.0.1", port, 30, server)
        envoy = start_envoy(config_dir=work_dir / "bare-envoy", log_dir=stack.log_dir / "bare-envoy",
                            listen_port=ports[-2], admin_port=ports[-1],
                            upstreams=[("127.0.0.1", port) for port in ports[:processes]],
                            descriptor_path=DESCRIPTOR_PATH, allowed_origins=[])
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return BareReference(servers, envoy)


# -- the database alone -------------------------------------------------------------------------------


def _entry_point_script(tenant: str, accounts: int) -> str:
    return f"""\\set a random(1, {accounts})
\\set b 1 + ((:a - 1) + random(1, {accounts - 1})) % {accounts}
begin;
select set_config('app.tenant_id', '{tenant}', true);
select payments_create_transfer_in('{tenant}'::uuid, f.owner_user_id, false, f.account_id, t.account_id, 1, 'EUR',
       'pgbench', 'emoney.payments.v1.PaymentsService/CreateTransfer', 'pgbench-' || gen_random_uuid(),
       sha256(gen_random_uuid()::text::bytea))
  from bench_entry_accounts f, bench_entry_accounts t where f.idx = :a and t.idx = :b;
commit;
"""


def _bare_script(accounts: int) -> str:
    """The bare server's statement (bare_server.MOVE), the two rows picked by number."""
    return f"""\\set a random(1, {accounts})
\\set b 1 + ((:a - 1) + random(1, {accounts - 1})) % {accounts}
with locked as (select idx from {TABLE} where idx = any(array[:a, :b]) order by idx for update)
update {TABLE} set balance_minor = balance_minor + case when {TABLE}.idx = :a then -1 else 1 end
  from locked where {TABLE}.idx = locked.idx;
"""


def prepare_entry_point_accounts(dsn: str, accounts: list[str]) -> None:
    """The bench's customer accounts with their owners, numbered for pgbench's random picks."""
    ids = [account.removeprefix("accounts/") for account in accounts]
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("drop table if exists bench_entry_accounts")
        connection.execute("""create table bench_entry_accounts as
                                select row_number() over (order by a.account_id)::int as idx, a.account_id, a.owner_user_id
                                  from accounts a where a.account_id = any(%s::uuid[])""", (ids,))
        connection.execute("alter table bench_entry_accounts add primary key (idx)")
        connection.execute(f"grant select on bench_entry_accounts to {provisioning.APP_ROLE}")


@dataclass
class PgbenchRun:
    key: str
    output: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def transactions(self) -> int:
        found = re.search(r"number of transactions actually processed: (\d+)", self.output)
        return int(found.group(1)) if found else 0

    def failed(self) -> int:
        found = re.search(r"number of failed transactions: (\d+)", self.output)
        return int(found.group(1)) if found else 0

    def percentile_ms(self, fraction: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_pgbench(stack: LocalStack, key: str, script: str, duration_s: float, pids: list[int],
                clients: int = PGBENCH_CLIENTS) -> PgbenchRun:
    """pgbench with `script` for `duration_s` against the stack's database as the application role; every
    transaction's latency from pgbench's own log (--log)."""
    run = PgbenchRun(key)
    with tempfile.TemporaryDirectory(prefix="emoney-pgbench-") as folder:
        dsn, password = app_role(stack)
        script_path = Path(folder) / "script.sql"
        script_path.write_text(script)
        command = [str(Path(pg_bin_dir()) / "pgbench"), "--no-vacuum", "--client", str(clients), "--jobs", "2",
                   "--time", str(max(1, round(duration_s))), "--file", str(script_path),
                   "--log", "--log-prefix", str(Path(folder) / "log"), dsn]
        run.started_at = time.time()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder,
                                   env={**os.environ, "PGCONNECT_TIMEOUT": "10", "PGPASSWORD": password})
        pids.append(process.pid)
        try:
            output, _ = process.communicate(timeout=duration_s + 120)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        finally:
            pids.remove(process.pid)
        run.ended_at = time.time()
        run.output = output
        if process.returncode != 0:
            raise RuntimeError(f"pgbench {key} exited {process.returncode}:\n{output[-2000:]}")
        for log in Path(folder).glob("log.*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():  # client, transaction, latency in µs, ...
                    run.latencies_ms.append(int(fields[2]) / 1000)
    return run


# Transfers per transaction of the batched database scenario (what group commit does for a process).
BATCH_ITEMS = 8


def _batch_entry_point_script(tenant: str, accounts: int, items: int = BATCH_ITEMS) -> str:
    """`items` random transfers in one call of payments_create_transfers_in (storage/group_commit.py's statement)."""
    return f"""with picks as (
    select 1 + floor(random() * {accounts})::int as a, floor(random() * {accounts - 1})::int as step
      from generate_series(1, {items})
), pairs as (
    select f.owner_user_id, f.account_id as source, t.account_id as target
      from picks p join bench_entry_accounts f on f.idx = p.a
      join bench_entry_accounts t on t.idx = 1 + (p.a + p.step) % {accounts}
), batch as (
    select array_agg(owner_user_id) as callers, array_agg(source) as sources, array_agg(target) as targets,
           count(*)::int as n
      from pairs
)
select count(*) from batch, payments_create_transfers_in('{tenant}'::uuid, batch.callers, array_fill(false, array[n]),
       batch.sources, batch.targets, array_fill(1::bigint, array[n]), array_fill('EUR'::text, array[n]),
       array_fill('pgbench'::text, array[n]),
       array_fill('emoney.payments.v1.PaymentsService/CreateTransfer'::text, array[n]),
       (select array_agg('pgbench-' || gen_random_uuid()) from generate_series(1, n)),
       (select array_agg(sha256(gen_random_uuid()::text::bytea)) from generate_series(1, n)));
"""


def database_scripts(tenant: str, accounts: int) -> dict[str, str]:
    return {"db_entry_point": _entry_point_script(tenant, accounts), "db_bare_statement": _bare_script(accounts),
            "db_entry_point_batched": _batch_entry_point_script(tenant, accounts)}


class DatabaseCounters:
    """WAL written, WAL fsyncs, commits and full-page images so far (pg_stat_wal, pg_stat_io,
    pg_stat_database), for the sampler: per scenario, WAL bytes and fsyncs per operation. Full-page images
    (a page's first change after a checkpoint writes the whole page) say how much of a scenario's WAL is
    owed to where a checkpoint fell, not to the operation."""

    def __init__(self, dsn: str) -> None:
        self._connection = psycopg.connect(dsn, autocommit=True)
        self._last: dict[str, float] = {}

    def __call__(self) -> dict[str, float]:
        try:
            row = self._connection.execute(
                """select (select wal_bytes from pg_stat_wal), (select wal_records from pg_stat_wal),
                          (select coalesce(sum(fsyncs), 0) from pg_stat_io where object = 'wal'),
                          (select xact_commit from pg_stat_database where datname = current_database()),
                          (select wal_fpi from pg_stat_wal)""").fetchone()
            self._last = {"wal_bytes": float(row[0]), "wal_records": float(row[1]), "wal_fsyncs": float(row[2]),
                          "commits": float(row[3]), "wal_fpi": float(row[4])}
        except psycopg.Error:
            pass  # the figures of the last good sample stand
        return dict(self._last)

    def close(self) -> None:
        self._connection.close()
