"""`make soak`: the bank workload under faults, on a throw-away stack, then the invariants.

    python -m tools.faults [--duration-s 300] [--faults kill_server,stop_s3,...] [--output-dir DIR]

Starts its own stack (PostgreSQL, Redis, OpenBao, SeaweedFS, two gRPC servers, Envoy) in a temporary
folder on free ports, signs up customers with funded accounts through the API, and runs the
workload (tools/faults/workload.py) while the injector (tools/faults/injector.py) breaks one part
after another. When the time is up the clients finish what they started, everything is healed and
the checks (tools/faults/checks.py) compare what clients were told with what was stored. Prints the
figures and writes them, with every check, to `<output-dir>/<name>.json`. Exit code 1 when a check
failed. The stack is stopped on every way out; its logs are kept next to the report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import grpc

from localstack.stack import ROOT, LocalStack
from tools.customers import TENANT, Customer, CustomerBatch, log_in_operator, open_customers
from tools.faults import checks as invariants
from tools.faults.injector import FAULT_KINDS, HA_FAULT_KINDS, FaultInjector, demo_tenant_id
from tools.faults.workload import CURRENCY, BankWorkload, Holder, monotonic_clock
from tools.interruption import EXIT_CODE, Interruption
from tools.throwaway import throwaway_stack

DEFAULT_OUTPUT = ROOT / "test-artifacts" / "faults"
PASSWORD = "bank workload battery staple"
SERVING_WITHIN_S = 60.0  # a fresh stack: Envoy and every server report SERVING within this


@dataclass
class SoakOptions:
    duration_s: float = 300.0  # the workload runs at least this long; faults go round until then
    faults: list[str] = field(default_factory=lambda: list(FAULT_KINDS))
    topology: str = "single"  # or "ha": Patroni and etcd (localstack/patroni.py); HA_FAULT_KINDS by default
    grpc_clients: int = 8
    json_clients: int = 4
    customers: int = 6
    accounts_per_customer: int = 2
    opening_balance_minor: int = 10_000
    max_amount_minor: int = 2_500
    outage_s: float = 6.0
    calm_s: float = 3.0
    give_up_s: float = 60.0
    seed: int = 1
    name: str = "soak"
    output_dir: Path = DEFAULT_OUTPUT


# -- the stack and the bank ----------------------------------------------------------------------


def open_bank(stack: LocalStack, options: SoakOptions) -> tuple[list[Holder], str]:
    """Customers signed up through the API, each account topped up by the demo operator; returns the
    holders and the operator's token."""
    batch = CustomerBatch(label="bank", count=options.customers, accounts_per_customer=options.accounts_per_customer,
                          opening_balance_minor=options.opening_balance_minor, currency=CURRENCY, password=PASSWORD)

    async def sign_up() -> tuple[list[Customer], str]:
        async with grpc.aio.insecure_channel(stack.endpoints.envoy) as channel:
            operator_token = await log_in_operator(channel, stack.demo)
            return await open_customers(channel, operator_token, batch), operator_token

    customers, operator_token = asyncio.run(sign_up())
    holders = [Holder(account, customer.email, PASSWORD, customer.token)
               for customer in customers for account in customer.accounts]
    return holders, operator_token


# -- the run ------------------------------------------------------------------------------------------


async def drive(workload: BankWorkload, injector: FaultInjector, options: SoakOptions) -> None:
    """Workload and faults side by side; the workload stops once the faults are done and the time is up."""
    stop = asyncio.Event()
    clients = asyncio.create_task(workload.run(stop))
    try:
        await asyncio.to_thread(injector.run, options.faults, options.duration_s)
        remaining_s = options.duration_s - injector.clock()
        if remaining_s > 0:
            await asyncio.sleep(remaining_s)
    finally:
        stop.set()
        await clients


def figures(workload: BankWorkload, faults, duration_s: float, initial: list[int], balances: list[int] | None) -> dict:
    transfers = workload.transfers
    outcomes = Counter(transfer.outcome for transfer in transfers)
    errors: dict[str, Counter] = {"grpc": Counter(), "json": Counter()}
    reasons: Counter = Counter()
    for transfer in transfers:
        for attempt in transfer.attempts:
            if attempt.code != "OK":
                errors[attempt.face][attempt.code] += 1
                if attempt.reason:
                    reasons[attempt.reason] += 1
    return {
        "duration_s": round(duration_s, 1),
        "accounts": len(workload.holders),
        "transfers_attempted": len(transfers),
        "transfers_acknowledged": outcomes["acknowledged"],
        "transfers_refused": outcomes["rejected"],
        "transfers_given_up": outcomes["gave_up"],
        "transfers_retried": sum(len(transfer.attempts) > 1 for transfer in transfers),
        "acknowledged_after_retry": sum(len(t.attempts) > 1 and t.outcome == "acknowledged" for t in transfers),
        "attempts": sum(len(transfer.attempts) for transfer in transfers),
        "acknowledged_by_face": dict(Counter(t.face for t in transfers if t.outcome == "acknowledged")),
        "acknowledged_per_s": round(outcomes["acknowledged"] / duration_s, 1) if duration_s else 0,
        "faults_injected": len(faults),
        "faults_by_kind": dict(Counter(record.kind for record in faults)),
        "errors_by_code": {face: dict(counter) for face, counter in errors.items()},
        "errors_by_reason": dict(reasons),
        "minor_units_total_before": sum(initial),
        "minor_units_total_after": None if balances is None else sum(balances),
        "minor_units_lost": None if balances is None else sum(initial) - sum(balances),
    }


def fault_summaries(workload: BankWorkload, faults) -> list[dict]:
    summaries = []
    for record in faults:
        window = invariants.attempts_between(workload, record.started_s, record.healed_s)
        summaries.append({
            **asdict(record),
            "acknowledged_while_down": sum(attempt.code == "OK" for attempt in window),
            "failed_attempts_while_down": dict(Counter(_label(attempt) for attempt in window if attempt.code != "OK")),
            "first_transfer_after_s": first_transfer_after(workload, record.started_s),
            "longest_gap_without_a_transfer_s": longest_gap(workload, record.started_s, record.recovered_s),
            # Calls that failed for the fault (business refusals such as INSUFFICIENT_FUNDS are answers).
            "failed_calls": sum(1 for attempt in invariants.attempts_between(workload, record.started_s, record.recovered_s)
                                if attempt.code not in ("OK", "FAILED_PRECONDITION")),
        })
    return summaries


def first_transfer_after(workload: BankWorkload, fault_s: float) -> float | None:
    """Seconds from the fault to the first acknowledged transfer that started after it (a retry may
    answer it)."""
    answered = [transfer.finished_s for transfer in workload.transfers
                if transfer.outcome == "acknowledged" and transfer.started_s > fault_s]
    return round(min(answered) - fault_s, 2) if answered else None


def longest_gap(workload: BankWorkload, start_s: float, end_s: float) -> float:
    """The longest time without any acknowledged transfer between the fault and full recovery: how long
    clients could not pay, as they saw it (a fault whose effect comes later, such as a switchover that
    Patroni carries out a moment after the request, is measured all the same)."""
    moments = sorted(t.finished_s for t in workload.transfers
                     if t.outcome == "acknowledged" and start_s <= t.finished_s <= end_s)
    points = [start_s, *moments, end_s]
    return round(max(later - earlier for earlier, later in zip(points, points[1:])), 2)


def recovery_by_kind(summaries: list[dict]) -> dict[str, dict]:
    """Per fault kind: median and max of the time to the first transfer, and the failed calls meanwhile."""
    kinds: dict[str, list[dict]] = {}
    for summary in summaries:
        kinds.setdefault(summary["kind"], []).append(summary)
    result = {}
    for kind, items in kinds.items():
        gaps = [item["longest_gap_without_a_transfer_s"] for item in items]
        result[kind] = {
            "faults": len(items),
            "no_transfer_for_s_median": statistics.median(gaps),
            "no_transfer_for_s_max": max(gaps),
            "failed_calls_median": statistics.median(item["failed_calls"] for item in items),
            "failed_calls_max": max(item["failed_calls"] for item in items),
        }
    return result


def soak(options: SoakOptions) -> dict:
    """One whole run; returns the report (also written as JSON). Never raises for a failed check."""
    output_dir = Path(options.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="emoney-faults-"))
    stack = throwaway_stack(work_dir / "stack", server_processes=2, topology=options.topology)
    started = time.monotonic()
    report: dict = {"name": options.name, "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "options": {**asdict(options), "output_dir": str(output_dir)}}
    try:
        _log(f"{options.name}: starting a stack in {work_dir} ...")
        stack.start()
        stack.wait_until_serving(SERVING_WITHIN_S)
        holders, operator_token = open_bank(stack, options)
        initial = [options.opening_balance_minor] * len(holders)
        _log(f"{options.name}: stack up and {len(holders)} accounts opened in {time.monotonic() - started:.0f}s; "
             f"workload for {options.duration_s:g}s with faults {','.join(options.faults)}")
        clock = monotonic_clock()
        workload = BankWorkload(stack.endpoints.envoy, TENANT, holders, clock, options.grpc_clients, options.json_clients,
                                options.max_amount_minor, options.give_up_s, options.seed)
        injector = FaultInjector(stack, clock, options.outage_s, options.calm_s)
        asyncio.run(drive(workload, injector, options))
        duration_s = clock()
        _log(f"{options.name}: workload done after {duration_s:.0f}s ({len(injector.records)} faults); healing and checking ...")
        checks = invariants.wait_healed(stack)
        by_request, entries = invariants.stored_transfers(stack, [t.request_id for t in workload.transfers])
        balances = invariants.api_balances(stack.endpoints.envoy, workload)
        reconciled, audit = invariants.ledger_reports(stack.endpoints.envoy, operator_token)
        s3_windows = [(r.started_s, r.healed_s) for r in injector.records if r.kind == "stop_s3"]
        paid_during_outage = [t for t in workload.transfers if t.outcome == "acknowledged"
                              and any(start <= t.finished_s <= end for start, end in s3_windows)]
        checks += invariants.check_storage(workload, by_request, entries)
        checks += invariants.check_balances(workload, by_request, initial, balances)
        checks += invariants.check_ledger_reports(reconciled, audit)
        if s3_windows:
            checks += invariants.check_receipts(stack, demo_tenant_id(stack), by_request, paid_during_outage)
        checks += invariants.check_faults(workload, injector.records)
        checks += invariants.check_answers(workload)
        report["figures"] = figures(workload, injector.records, duration_s, initial, balances)
        report["figures"]["stored_although_unacknowledged"] = sum(
            1 for t in workload.transfers if t.outcome != "acknowledged" and by_request.get(t.request_id))
        report["faults"] = fault_summaries(workload, injector.records)
        report["recovery_by_kind"] = recovery_by_kind(report["faults"])
        report["checks"] = invariants.checks_as_dicts(checks)
        report["ok"] = all(check.ok for check in checks)
    except BaseException as error:
        report["ok"] = False
        report["error"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        report["wall_clock_s"] = round(time.monotonic() - started, 1)
        stack.stop()
        log_dir = output_dir / f"{options.name}-logs"
        shutil.rmtree(log_dir, ignore_errors=True)
        if stack.log_dir.exists():
            shutil.copytree(stack.log_dir, log_dir, dirs_exist_ok=True)
        shutil.rmtree(work_dir, ignore_errors=True)
        (output_dir / f"{options.name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _label(attempt) -> str:
    return f"{attempt.code}/{attempt.reason}" if attempt.reason else attempt.code


def print_report(report: dict) -> None:
    numbers = report.get("figures", {})
    print(f"\n{report['name']}: {'OK' if report.get('ok') else 'FAILED'} in {report.get('wall_clock_s')}s wall clock")
    for key, value in numbers.items():
        print(f"  {key:<32} {value}")
    for fault in report.get("faults", []):
        print(f"  fault {fault['kind']:<17} {fault['target']:<32} down {fault['healed_s'] - fault['started_s']:5.1f}s  "
              f"acknowledged meanwhile {fault['acknowledged_while_down']:>5}  failed attempts {fault['failed_attempts_while_down']}")
    for kind, recovery in report.get("recovery_by_kind", {}).items():
        print(f"  recovery {kind:<18} no transfer for at most: median {recovery['no_transfer_for_s_median']}s, "
              f"max {recovery['no_transfer_for_s_max']}s; failed calls: median {recovery['failed_calls_median']}, "
              f"max {recovery['failed_calls_max']} ({recovery['faults']} faults)")
    for check in report.get("checks", []):
        print(f"  [{'ok' if check['ok'] else 'FAIL'}] {check['name']}" + ("" if check["ok"] else f": {check['detail']}"))


def _log(message: str) -> None:
    print(message, flush=True)


# -- command line -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> SoakOptions:
    defaults = SoakOptions()
    parser = argparse.ArgumentParser(prog="python -m tools.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=defaults.duration_s)
    parser.add_argument("--topology", choices=("single", "ha"), default=defaults.topology)
    parser.add_argument("--faults", default=None,
                        help=f"comma-separated; single: {','.join(FAULT_KINDS)} (default all); ha: {','.join(HA_FAULT_KINDS)} (default all)")
    parser.add_argument("--grpc-clients", type=int, default=defaults.grpc_clients)
    parser.add_argument("--json-clients", type=int, default=defaults.json_clients)
    parser.add_argument("--customers", type=int, default=defaults.customers)
    parser.add_argument("--accounts-per-customer", type=int, default=defaults.accounts_per_customer)
    parser.add_argument("--outage-s", type=float, default=defaults.outage_s)
    parser.add_argument("--calm-s", type=float, default=defaults.calm_s)
    parser.add_argument("--give-up-s", type=float, default=defaults.give_up_s)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--name", default=defaults.name)
    parser.add_argument("--output-dir", type=Path, default=defaults.output_dir)
    args = parser.parse_args(argv)
    allowed = HA_FAULT_KINDS if args.topology == "ha" else FAULT_KINDS
    kinds = [kind for kind in (args.faults if args.faults is not None else ",".join(allowed)).split(",") if kind]
    if unknown := set(kinds) - set(allowed):
        parser.error(f"unknown faults: {sorted(unknown)}")
    if min(args.grpc_clients, args.json_clients, args.customers, args.accounts_per_customer) < 1 or args.duration_s <= 0:
        parser.error("counts must be at least 1 and the duration positive")
    if args.customers * args.accounts_per_customer < 2:
        parser.error("a bank needs at least two accounts")
    return SoakOptions(
        duration_s=args.duration_s, faults=kinds, grpc_clients=args.grpc_clients, json_clients=args.json_clients,
        customers=args.customers, accounts_per_customer=args.accounts_per_customer, outage_s=args.outage_s,
        calm_s=args.calm_s, give_up_s=args.give_up_s, seed=args.seed, name=args.name, output_dir=args.output_dir,
        topology=args.topology,
    )


def main(argv: list[str] | None = None) -> int:
    interruption = Interruption().install()
    options = parse_args(argv)
    try:
        with interruption.interruptible():
            report = soak(options)
    except KeyboardInterrupt:
        pass
    if interruption.happened:
        print("\nsoak: interrupted; the stack was stopped", file=sys.stderr)
        return EXIT_CODE
    print_report(report)
    print(f"\nreport: {Path(options.output_dir).resolve() / (options.name + '.json')}")
    return 0 if report["ok"] else 1
