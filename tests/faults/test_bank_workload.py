"""The bank workload under every fault, on a stack of its own (it kills processes, so never the
session's shared stack): `python -m tools.faults` exactly as `make soak` runs it, only shorter.

Money: the total is conserved, no balance goes negative, every acknowledged transfer is stored
exactly once and nothing is stored twice, ReconcileLedger and VerifyAuditChain are clean, receipts
missed while S3 was down are written once it is back. Availability: health turns NOT_SERVING while
PostgreSQL or Redis is away and SERVING again without a restart; Envoy stops sending to a killed
server and sends to it again when it returns; payments go on while OpenBao or S3 is away.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "faults"
NAME = "make-test"
# Six faults of ~5 s each with calm and recovery in between, stack start-up and the checks: ~90 s here.
RUN_TIMEOUT_S = 420
ARGS = ["--duration-s", "30", "--outage-s", "4", "--calm-s", "2", "--grpc-clients", "4", "--json-clients", "2",
        "--give-up-s", "45", "--name", NAME, "--output-dir", str(ARTIFACTS)]
EVERY_FAULT = {"kill_server", "restart_postgres", "crash_postgres", "stop_redis", "stop_openbao", "stop_s3"}
REQUIRED_CHECKS = {
    "the total is conserved (minor units lost: 0)",
    "no balance is negative",
    "every acknowledged transfer is stored exactly once, as acknowledged",
    "no request id is stored twice (acknowledged or not)",
    "no transfer refused for good is stored",
    "each balance is its opening balance plus the stored transfers",
    "every stored transfer has two entries summing to zero",
    "ReconcileLedger reports no discrepancy",
    "VerifyAuditChain verifies every chain",
    "every stored transfer has its receipt in object storage",
    "receipts of payments made while S3 was down were written afterwards, correctly",
    "no INTERNAL, UNKNOWN or HTTP 500 answer",
    "every transfer was finally answered (no give-up)",
    "healed: every server SERVING",
    "healed: Envoy marks every server healthy",
}


@pytest.fixture(scope="module")
def report() -> dict:
    return run_soak(ARGS, NAME, RUN_TIMEOUT_S)


def run_soak(args: list[str], name: str, timeout_s: float) -> dict:
    """`python -m tools.faults` as `make soak` runs it; its JSON report, with its exit code and output."""
    completed = subprocess.run([sys.executable, "-m", "tools.faults", *args], cwd=ROOT, capture_output=True,
                               text=True, timeout=timeout_s)
    path = ARTIFACTS / f"{name}.json"
    assert path.exists(), completed.stdout[-4000:] + completed.stderr[-4000:]
    result = json.loads(path.read_text())
    result["exit_code"], result["output"] = completed.returncode, completed.stdout[-6000:]
    return result


def _faults(report: dict, kind: str) -> list[dict]:
    found = [fault for fault in report["faults"] if fault["kind"] == kind]
    assert found, f"fault {kind} was never injected"
    return found


def test_every_fault_was_injected_while_both_faces_moved_money(report):
    """Each kind of fault happened at least once, and clients on both faces had transfers acknowledged."""
    figures = report["figures"]
    assert set(figures["faults_by_kind"]) == EVERY_FAULT
    assert figures["acknowledged_by_face"].get("grpc", 0) > 0 and figures["acknowledged_by_face"].get("json", 0) > 0
    assert figures["transfers_retried"] > 0, "no fault ever made a client retry: the faults did not bite"


def test_money_is_conserved_and_every_invariant_holds(report):
    """Every check of the run holds; the required ones exist (a check silently dropped fails here too)."""
    assert_every_invariant_holds(report)


def assert_every_invariant_holds(report: dict) -> None:
    """Every check of a run holds, the required ones among them, nothing lost, stored twice or given up,
    and the run said so itself (exit code 0)."""
    checks = {check["name"]: check for check in report["checks"]}
    assert REQUIRED_CHECKS <= set(checks), REQUIRED_CHECKS - set(checks)
    failed = {name: check["detail"] for name, check in checks.items() if not check["ok"]}
    assert not failed, json.dumps(failed, indent=2)
    figures = report["figures"]
    assert figures["minor_units_lost"] == 0
    assert figures["minor_units_total_after"] == figures["minor_units_total_before"] > 0
    assert figures["stored_although_unacknowledged"] == 0
    assert figures["transfers_given_up"] == 0
    assert report["ok"] and report["exit_code"] == 0, report["output"]


def test_no_call_failed_with_a_bug_code(report):
    """Outages answer UNAVAILABLE (retryable); never INTERNAL, UNKNOWN or HTTP 500."""
    for face, codes in report["figures"]["errors_by_code"].items():
        assert not {"INTERNAL", "UNKNOWN"} & set(codes), (face, codes)
        assert set(codes) <= {"UNAVAILABLE", "FAILED_PRECONDITION", "DEADLINE_EXCEEDED", "CONNECTION_ERROR"}, (face, codes)


def test_envoy_stops_sending_to_a_killed_server_and_resumes(report):
    for fault in _faults(report, "kill_server"):
        seen = fault["observations"]
        assert seen["envoy_marked_unhealthy_after_s"] is not None
        assert seen["requests_routed_to_dead_server"] == 0
        assert seen["envoy_healthy_again_after_s"] is not None
        assert seen["requests_routed_in_2s_after_return"] > 0
        assert fault["acknowledged_while_down"] > 0, "the surviving server should have carried the traffic"


@pytest.mark.parametrize("kind", ["restart_postgres", "crash_postgres", "stop_redis"])
def test_health_follows_dependencies_and_pools_reconnect(report, kind):
    """NOT_SERVING on every server while the dependency is away, SERVING again afterwards, same processes."""
    for fault in _faults(report, kind):
        seen = fault["observations"]
        went_down = [value for key, value in seen.items() if key.startswith("not_serving_after_s")]
        came_back = [value for key, value in seen.items() if key.startswith("serving_again_after_s")]
        assert len(went_down) == 2 and None not in went_down, seen
        assert len(came_back) == 2 and None not in came_back, seen
        assert seen["server_pids_unchanged"] is True


def test_payments_go_on_without_openbao_and_s3_and_receipts_catch_up(report):
    openbao = _faults(report, "stop_openbao")[0]
    assert openbao["observations"]["sealed_after_restart"] is False
    assert set(openbao["observations"]["health_while_down"].values()) == {"SERVING"}
    for fault in (openbao, _faults(report, "stop_s3")[0]):
        assert fault["acknowledged_while_down"] > 0
        assert set(fault["failed_attempts_while_down"]) <= {"FAILED_PRECONDITION/INSUFFICIENT_FUNDS"}, fault
    s3 = _faults(report, "stop_s3")[0]["observations"]
    assert s3["receipts_pending_at_end_of_outage"] > 0, "no receipt waited for S3: the outage did not bite"
    assert s3["receipt_backlog_written_after_s"] is not None
