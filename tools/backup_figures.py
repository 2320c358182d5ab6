"""Backup and restore figures (README "Backups and point-in-time restore"): base backup duration and size,
restore duration, for the demo database and for one with many transfers (`--transfers 1000000`).

The transfers are made by the ledger's own entry point (`payments_create_transfer_in`, what CreateTransfer
runs), called in server-side loops of 10,000 per transaction to save a million network round trips; every
one is a real transfer with its entries, audit event, idempotency key and receipt request.

    python -m tools.backup_figures --transfers 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psycopg

from localstack.backup import restore, ship_wal, take_backup
from localstack.provisioning import DATABASE_NAME
from tools.customers import Customer, CustomerBatch, log_in_operator, open_customers
from tools.throwaway import throwaway_stack

BATCH = 10_000


def account_pairs(stack, pairs: int) -> list[tuple[str, str]]:
    """Pairs of customers' accounts of the demo tenant, opened and funded through the API."""
    async def open_them() -> list[Customer]:
        async with grpc.aio.insecure_channel(stack.endpoints.envoy) as channel:
            operator = await log_in_operator(channel, stack.demo)
            batch = CustomerBatch("figures", 2 * pairs, 1, 1_000, "EUR", "figures password 1")
            return await open_customers(channel, operator, batch)

    ids = [customer.accounts[0].removeprefix("accounts/") for customer in asyncio.run(open_them())]
    return list(zip(ids[0::2], ids[1::2]))


def make_all(dsn: str, pairs: list[tuple[str, str]], count: int) -> float:
    """`count` transfers over the pairs, one session per pair (the machine's cores); seconds taken."""
    started = time.monotonic()
    share = count // len(pairs)
    with ThreadPoolExecutor(max_workers=len(pairs)) as executor:
        list(executor.map(lambda job: make_transfers(dsn, job[1], share, offset=job[0] * share), enumerate(pairs)))
    return time.monotonic() - started


def make_transfers(dsn: str, accounts: tuple[str, str], count: int, offset: int = 0) -> float:
    """`count` transfers of 1 cent back and forth between two accounts; seconds taken."""
    started = time.monotonic()
    ana, bakery = accounts
    with psycopg.connect(dsn, autocommit=True) as connection:
        tenant = connection.execute("select tenant_id from tenants where slug = 'demo-city'").fetchone()[0]
        owners = dict(connection.execute("select account_id::text, owner_user_id from accounts where account_id = any(%s::uuid[])",
                                         ([ana, bakery],)).fetchall())
        for first in range(offset, offset + count, BATCH):
            size = min(BATCH, offset + count - first)
            connection.execute(
                f"""do $$ begin
                      for i in {first}..{first + size - 1} loop
                        perform payments_create_transfer_in(
                          '{tenant}',
                          case when i % 2 = 0 then '{owners[ana]}'::uuid else '{owners[bakery]}'::uuid end, false,
                          case when i % 2 = 0 then '{ana}'::uuid else '{bakery}'::uuid end,
                          case when i % 2 = 0 then '{bakery}'::uuid else '{ana}'::uuid end,
                          1, 'EUR', 'backup-figures', 'emoney.payments.v1.PaymentsService/CreateTransfer',
                          'figures-' || i, sha256(('figures-' || i)::bytea));
                      end loop; end $$""")
            print(f"  {first + size - offset:,} of {count:,} transfers ({time.monotonic() - started:.0f}s)", flush=True)
    return time.monotonic() - started


def measure(stack, label: str) -> dict:
    target = stack.backup_target()
    with psycopg.connect(target.primary_dsn(DATABASE_NAME)) as connection:
        transfers = connection.execute("select count(*) from transfers").fetchone()[0]
        size = connection.execute("select pg_database_size(current_database())").fetchone()[0]
    meta = take_backup(target)
    ship_wal(Path(target.spool_dir), target.repository())
    into = Path(tempfile.mkdtemp(prefix="emoney-figures-")) / "restored"
    restored = restore(target, None, into, stack.log_dir)
    restored.stop()
    shutil.rmtree(into.parent, ignore_errors=True)
    return {"database": label, "transfers": transfers, "database_mib": round(size / 2**20, 1),
            "backup_s": meta.duration_s, "backup_mib": round(meta.size_bytes / 2**20, 1),
            "restore_s": restored.duration_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.backup_figures")
    parser.add_argument("--transfers", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="emoney-backup-figures-"))
    stack = throwaway_stack(work / "stack", server_processes=1)
    rows = []
    try:
        stack.start()
        stack.wait_until_serving(60)
        rows.append(measure(stack, "demo"))
        made = make_all(stack.backup_target().primary_dsn(DATABASE_NAME), account_pairs(stack, 2), args.transfers)
        print(f"made {args.transfers:,} transfers in {made:.0f}s ({args.transfers / made:,.0f}/s)")
        rows.append(measure(stack, f"+{args.transfers:,} transfers"))
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("| database | transfers | size (MiB) | full backup | backup size (MiB, gzip) | restore (download, recover) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['database']} | {row['transfers']:,} | {row['database_mib']} | {row['backup_s']:.1f} s | "
              f"{row['backup_mib']} | {row['restore_s']:.1f} s |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
