"""`make bench` works end to end (a smoke run of seconds; the figures themselves are not judged here),
and Ctrl-C stops it without leaving a process behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {
    "bare_noop",
    "bare_transfer",
    "db_bare_statement",
    "db_entry_point",
    "db_entry_point_batched",
    "baseline_envoy",
    "baseline_direct",
    "p2p_grpc",
    "p2p_grpc_fixed_rate",
    "p2p_json",
    "hot_merchant",
    "terminal_charge",
    "statement",
    "login",
}
SMOKE_TIMEOUT_S = 240


def test_bench_smoke_reports_every_scenario(tmp_path: Path) -> None:
    output_dir = tmp_path / "bench"
    completed = subprocess.run(
        [sys.executable, "-m", "tools.bench.run", "--smoke", "--output-dir", str(output_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output

    report = json.loads((output_dir / "bench.json").read_text())
    results = {result["key"]: result for result in report["scenarios"]}
    assert set(results) == SCENARIOS, output
    for key, result in results.items():
        assert result["requests"] > 0, f"{key}: {result}"
        assert result["requests_per_s"] > 0, f"{key}: {result}"
        assert result["errors"] == 0, f"{key}: {result}\n{output}"
        assert result["p99_ms"] is not None and result["p50_ms"] <= result["p99_ms"], f"{key}: {result}"
        if result["reference"] is not None:
            assert result["ratio_to_reference"] is not None, f"{key}: {result}"
    # Every ratio is against a reference measured in the same run: the bare no-op and transfer behind the
    # same Envoy, and the bare statement in the database alone.
    for reference in ("bare_noop", "bare_transfer", "db_bare_statement"):
        assert results[reference]["ratio_to_reference"] == 1.0, results[reference]
    assert results["p2p_grpc"]["reference"] == "bare_transfer" and results["baseline_envoy"]["reference"] == "bare_noop"
    assert results["db_entry_point"]["reference"] == "db_bare_statement"
    # The batched scenario counts transfers (8 per pgbench transaction), not transactions.
    batched = results["db_entry_point_batched"]
    assert batched["transfers_per_transaction"] == 8 and batched["requests"] % 8 == 0, batched
    # The database's own counters (flushed by PostgreSQL about once a second, so a 1 s smoke window may
    # miss one scenario's share): every scenario that writes reports them, and together they saw the writes.
    writers = [results[key]["per_operation"] for key in ("bare_transfer", "p2p_grpc", "db_bare_statement", "db_entry_point")]
    for figures in writers:
        assert set(figures) == {"wal_bytes", "wal_records", "wal_fpi", "wal_fsyncs", "commits",
                                "database_cpu_ms"}, figures
    assert sum(figures["wal_bytes"] for figures in writers) > 0 and sum(figures["commits"] for figures in writers) > 0
    assert results["terminal_charge"]["setup_call"]["count"] > 0
    assert report["machine"]["cores"] >= 1 and report["machine"]["memory_bytes"] > 0
    assert report["server_rss_mib"] and all(values["max_mib"] > 0 for values in report["server_rss_mib"].values())
    assert (output_dir / "bench.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "| scenario |" in (output_dir / "bench.md").read_text()
    assert "| scenario |" in completed.stdout


def test_bench_smoke_on_the_high_availability_topology(tmp_path: Path) -> None:
    """`--topology ha`: the same scenarios against three PostgreSQL nodes under Patroni with synchronous
    replication, at least three servers (and as many bare ones), the nodes' CPU counted as PostgreSQL's."""
    output_dir = tmp_path / "bench-ha"
    completed = subprocess.run(
        [sys.executable, "-m", "tools.bench.run", "--smoke", "--topology", "ha", "--only", "p2p_grpc,db_entry_point_batched",
         "--output-dir", str(output_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    report = json.loads((output_dir / "bench.json").read_text())
    assert report["settings"]["topology"] == "ha" and report["settings"]["server_processes"] >= 3, report["settings"]
    results = {result["key"]: result for result in report["scenarios"]}
    assert set(results) == {"bare_transfer", "p2p_grpc", "db_bare_statement", "db_entry_point_batched"}, output
    for key, result in results.items():
        assert result["requests"] > 0 and result["errors"] == 0, f"{key}: {result}\n{output}"
    p2p = results["p2p_grpc"]
    assert p2p["cpu_cores_used"]["postgres"] > 0 and "etcd + patroni" in p2p["cpu_cores_used"], p2p["cpu_cores_used"]
    assert "synchronous replication" in (output_dir / "bench.md").read_text()


def test_per_call_costs_are_measured_for_each_variant() -> None:
    """`python -m tools.bench.per_call`: a fresh server per variant, its CPU per call measured (not judged)."""
    variants = ["bare", "pipeline", "+log", "+gates", "+ratelimit-alone", "+ratelimit"]
    completed = subprocess.run(
        [sys.executable, "-m", "tools.bench.per_call", "--seconds", "1", "--concurrency", "2", *variants],
        cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[3:5] for line in completed.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| variant")}
    assert list(rows) == variants, completed.stdout
    for variant, (calls, cpu_us) in rows.items():
        assert int(calls.strip().replace(",", "")) > 0 and float(cpu_us.strip().replace(",", "")) > 0, (variant, calls, cpu_us)


def test_bench_interrupted_leaves_no_process(tmp_path: Path) -> None:
    log_path = tmp_path / "bench.log"
    with log_path.open("w") as log:
        bench = subprocess.Popen(
            [sys.executable, "-m", "tools.bench.run", "--smoke", "--output-dir", str(tmp_path / "bench")],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        # Interrupt while k6 runs its first scenario: the stack is up and a k6 process is alive.
        deadline = time.monotonic() + SMOKE_TIMEOUT_S
        descendants: list[psutil.Process] = []
        while time.monotonic() < deadline and bench.poll() is None:
            descendants = psutil.Process(bench.pid).children(recursive=True)
            if any(_name(child) == "k6" for child in descendants):
                break
            time.sleep(0.2)
        assert bench.poll() is None, log_path.read_text()
        assert descendants, log_path.read_text()
        bench.send_signal(signal.SIGINT)
        assert bench.wait(timeout=120) == 130, log_path.read_text()
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, f"left behind: {[(process.pid, _name(process)) for process in alive]}\n{log_path.read_text()}"


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""
