"""The bank workload's checks (tools/faults/checks.py) catch what they are there to catch: each is fed a
history with one specific anomaly and must fail, and the clean history must pass."""

from __future__ import annotations

import uuid

from tools.faults.checks import check_answers, check_balances, check_faults, check_storage
from tools.faults.injector import FaultRecord
from tools.faults.workload import Attempt, BankWorkload, Holder, Transfer

OPENING_MINOR = 1_000


def bank(*transfers: Transfer) -> BankWorkload:
    holders = [Holder(f"accounts/{uuid.uuid4()}", f"person{n}@example.org", "pw", "token") for n in range(3)]
    workload = BankWorkload("127.0.0.1:1", "tenants/t", holders, lambda: 0.0, 1, 1, 100, 1.0, 1)
    workload.transfers.extend(transfers)
    return workload


def transfer(outcome: str, face: str = "grpc", amount_minor: int = 100, code: str = "OK") -> Transfer:
    payment_id = str(uuid.uuid4()) if outcome == "acknowledged" else ""
    return Transfer(str(uuid.uuid4()), face, 0, 1, amount_minor, 0.0, 1.0, outcome, payment_id,
                    "INSUFFICIENT_FUNDS" if outcome == "rejected" else "", [Attempt(1.0, face, code)])


def stored(workload: BankWorkload, item: Transfer, transfer_id: str | None = None) -> dict:
    account = lambda index: uuid.UUID(workload.holders[index].account.split("/")[1])  # noqa: E731
    return {"transfer_id": uuid.UUID(transfer_id or item.payment_id or str(uuid.uuid4())), "debit": account(item.from_index),
            "credit": account(item.to_index), "amount_minor": item.amount_minor}


def storage_failures(workload: BankWorkload, by_request: dict) -> set[str]:
    entries = {row["transfer_id"]: (2, 0) for rows in by_request.values() for row in rows}
    return {check.name for check in check_storage(workload, by_request, entries) if not check.ok}


def test_a_clean_history_passes():
    """Acknowledged stored once, refused not stored, given up stored once: every storage check holds."""
    acknowledged, refused, gave_up = transfer("acknowledged"), transfer("rejected", code="FAILED_PRECONDITION"), transfer("gave_up", code="UNAVAILABLE")
    workload = bank(acknowledged, refused, gave_up)
    by_request = {acknowledged.request_id: [stored(workload, acknowledged)], gave_up.request_id: [stored(workload, gave_up)]}
    assert storage_failures(workload, by_request) == set()
    balances = [OPENING_MINOR - 200, OPENING_MINOR + 200, OPENING_MINOR]
    assert all(check.ok for check in check_balances(workload, by_request, [OPENING_MINOR] * 3, balances))


def test_a_lost_acknowledged_transfer_fails():
    acknowledged = transfer("acknowledged")
    assert "every acknowledged transfer is stored exactly once, as acknowledged" in storage_failures(bank(acknowledged), {})


def test_an_acknowledged_transfer_stored_under_another_id_fails():
    acknowledged = transfer("acknowledged")
    workload = bank(acknowledged)
    by_request = {acknowledged.request_id: [stored(workload, acknowledged, transfer_id=str(uuid.uuid4()))]}
    assert "every acknowledged transfer is stored exactly once, as acknowledged" in storage_failures(workload, by_request)


def test_a_request_stored_twice_fails_even_unacknowledged():
    gave_up = transfer("gave_up", code="UNAVAILABLE")
    workload = bank(gave_up)
    by_request = {gave_up.request_id: [stored(workload, gave_up), stored(workload, gave_up)]}
    assert "no request id is stored twice (acknowledged or not)" in storage_failures(workload, by_request)


def test_a_refused_transfer_that_was_stored_fails():
    refused = transfer("rejected", code="FAILED_PRECONDITION")
    workload = bank(refused)
    assert "no transfer refused for good is stored" in storage_failures(workload, {refused.request_id: [stored(workload, refused)]})


def test_a_transfer_with_unbalanced_entries_fails():
    acknowledged = transfer("acknowledged")
    workload = bank(acknowledged)
    row = stored(workload, acknowledged)
    failures = {c.name for c in check_storage(workload, {acknowledged.request_id: [row]}, {row["transfer_id"]: (1, -100)}) if not c.ok}
    assert failures == {"every stored transfer has two entries summing to zero"}


def test_lost_money_a_negative_balance_and_a_phantom_movement_fail():
    workload = bank()
    failures = {c.name for c in check_balances(workload, {}, [OPENING_MINOR] * 3, [OPENING_MINOR, OPENING_MINOR - 1, OPENING_MINOR]) if not c.ok}
    assert "the total is conserved (minor units lost: 0)" in failures
    assert "each balance is its opening balance plus the stored transfers" in failures
    moved = {c.name for c in check_balances(workload, {}, [OPENING_MINOR] * 3, [-5, 2 * OPENING_MINOR + 5, OPENING_MINOR]) if not c.ok}
    assert moved == {"no balance is negative", "each balance is its opening balance plus the stored transfers"}


def test_internal_errors_give_ups_and_a_silent_face_fail():
    internal = transfer("acknowledged")
    internal.attempts.insert(0, Attempt(0.5, "grpc", "INTERNAL"))
    failures = {c.name for c in check_answers(bank(internal, transfer("gave_up", code="UNAVAILABLE"))) if not c.ok}
    assert failures == {"no INTERNAL, UNKNOWN or HTTP 500 answer", "every transfer was finally answered (no give-up)",
                        "both faces acknowledged transfers"}


def test_an_http_500_of_the_json_face_fails_whatever_code_its_body_named():
    """The JSON face's HTTP 500 is counted as HTTP_500, also when the workload filed it under a retryable code."""
    answered_500 = transfer("acknowledged", face="json")
    answered_500.attempts.insert(0, Attempt(0.5, "json", "UNAVAILABLE", http_status=500))
    answers = {c.name: c for c in check_answers(bank(answered_500, transfer("acknowledged")))}
    bugs = answers["no INTERNAL, UNKNOWN or HTTP 500 answer"]
    assert not bugs.ok and bugs.detail == "{'HTTP_500': 1}"
    assert all(check.ok for name, check in answers.items() if name != bugs.name)


def test_a_fault_with_a_problem_or_failed_payments_during_s3_outage_fails():
    failed_payment = transfer("acknowledged", face="json")
    failed_payment.attempts.insert(0, Attempt(0.5, "json", "UNAVAILABLE"))
    record = FaultRecord("stop_s3", "seaweedfs", started_s=0.0, healed_s=2.0, problems=["receipts stuck"])
    failures = {c.name for c in check_faults(bank(failed_payment), [record]) if not c.ok}
    assert failures == {"fault stop_s3 (seaweedfs) behaved as expected", "no payment attempt failed during stop_s3"}
