"""The bank workload on the high-availability topology (`make soak SOAK_ARGS="--topology ha"`, shorter):
Patroni with etcd, three servers, a SeaweedFS cluster — while the primary's PostgreSQL is killed, Patroni
switches over, an etcd member and a volume server are killed, and the faults of the single topology that
still apply happen too. The same invariants as on one node: nothing acknowledged is lost (RPO 0), nothing
is stored twice, money is conserved, the ledger reconciles and the audit chain verifies."""

from __future__ import annotations

import pytest

from tests.faults.test_bank_workload import ARTIFACTS, assert_every_invariant_holds, run_soak
from tools.faults.injector import HA_FAULT_KINDS

NAME = "make-test-ha"
RUN_TIMEOUT_S = 600
ARGS = ["--topology", "ha", "--duration-s", "30", "--outage-s", "4", "--calm-s", "2", "--grpc-clients", "4",
        "--json-clients", "2", "--give-up-s", "45", "--name", NAME, "--output-dir", str(ARTIFACTS)]
# A PostgreSQL failover is Patroni noticing (within its 1 s loop) and promoting; a client sees no
# transfer for a few seconds. The bound here is the leader key's ttl, what Patroni itself promises.
FAILOVER_BOUND_S = 20.0


@pytest.fixture(scope="module")
def report() -> dict:
    return run_soak(ARGS, NAME, RUN_TIMEOUT_S)


def test_every_ha_fault_was_injected_and_every_invariant_holds(report):
    assert set(report["figures"]["faults_by_kind"]) == set(HA_FAULT_KINDS)
    assert_every_invariant_holds(report)


@pytest.mark.parametrize("kind", ["kill_primary", "switchover"])
def test_a_postgres_failover_moves_the_primary_and_payments_resume_within_patronis_bound(report, kind):
    for fault in [fault for fault in report["faults"] if fault["kind"] == kind]:
        assert fault["observations"]["new_primary_after_s"] is not None, fault
        assert fault["observations"]["cluster_whole_again_after_s"] is not None, fault
        assert fault["longest_gap_without_a_transfer_s"] < FAILOVER_BOUND_S, fault
        # What failed meanwhile was retryable, and the retries were acknowledged (no give-up above).
        assert set(fault["failed_attempts_while_down"]) <= {
            "UNAVAILABLE/DATABASE_UNAVAILABLE", "FAILED_PRECONDITION/INSUFFICIENT_FUNDS", "DEADLINE_EXCEEDED",
        }, fault


def test_recovery_is_reported_per_fault_kind(report):
    recovery = report["recovery_by_kind"]
    assert set(recovery) == set(HA_FAULT_KINDS)
    for figures in recovery.values():
        assert figures["no_transfer_for_s_max"] >= figures["no_transfer_for_s_median"] >= 0
