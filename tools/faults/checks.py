"""After the faults, with everything healed: what the clients were told against what was stored.

Every check is a `Check(name, ok, detail)`; the run fails when any is not ok. The database is read as
the PostgreSQL superuser (all tenants, no row-level security), balances through the public API as
each account's owner, receipts straight from object storage.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import grpc
import psycopg

from emoney.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from emoney.admin.v1 import admin_pb2, admin_pb2_grpc
from localstack.stack import LocalStack
from storage.receipts import parse_bundle
from tools.faults.injector import (
    ENVOY_WITHIN_S,
    RECEIPTS_WITHIN_S,
    RECOVERY_WITHIN_S,
    SERVING,
    FaultRecord,
    envoy_hosts,
    health,
    pending_receipts,
    superuser_dsn,
    wait_until,
)
from tools.faults.workload import Attempt, BankWorkload, Transfer

# Failures that are never acceptable, whatever the fault: a bug, not an outage. HTTP_500 is any HTTP 500
# of the JSON face, whatever gRPC code its body named (the workload files it under that code: INTERNAL
# when the body names none).
BUG_CODES = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS", "HTTP_500"})
# Faults during which payments must go on without a single failed attempt.
PAYMENTS_UNAFFECTED_BY = ("stop_openbao", "stop_s3", "kill_etcd_member", "kill_volume_server")
RECEIPT_CONTENT_SAMPLE = 50
CALL_TIMEOUT_S = 10.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def wait_healed(stack: LocalStack) -> list[Check]:
    """Every server SERVING, Envoy sending to all of them, every receipt written."""
    servers = stack.endpoints.grpc_servers
    serving = {address: wait_until(lambda: health(address) == SERVING, RECOVERY_WITHIN_S) for address in servers}
    envoy = wait_until(lambda: all(envoy_hosts(stack).get(a, {}).get("healthy") for a in servers), ENVOY_WITHIN_S)
    receipts = wait_until(lambda: pending_receipts(stack) == 0, RECEIPTS_WITHIN_S)
    return [
        Check("healed: every server SERVING", all(value is not None for value in serving.values()), f"seconds: {serving}"),
        Check("healed: Envoy marks every server healthy", envoy is not None, f"hosts: {envoy_hosts(stack)}"),
        Check("healed: every receipt written", receipts is not None, f"pending: {pending_receipts(stack)}"),
    ]


def stored_transfers(stack: LocalStack, request_ids: list[str]) -> tuple[dict[str, list[dict]], dict[uuid.UUID, tuple[int, int]]]:
    """request_id -> stored transfers with it; transfer_id -> (entry count, entry sum)."""
    with psycopg.connect(superuser_dsn(stack), connect_timeout=5) as connection:
        rows = connection.execute(
            """select request_id, transfer_id, debit_account_id, credit_account_id, amount_minor
                 from transfers where request_id = any(%s)""",
            (request_ids,),
        ).fetchall()
        transfer_ids = [row[1] for row in rows]
        entries = connection.execute(
            """select transfer_id, count(*), sum(amount_minor) from ledger_entries
                where transfer_id = any(%s) group by transfer_id""",
            (transfer_ids,),
        ).fetchall()
    by_request: dict[str, list[dict]] = defaultdict(list)
    for request_id, transfer_id, debit, credit, amount in rows:
        by_request[request_id].append({"transfer_id": transfer_id, "debit": debit, "credit": credit, "amount_minor": amount})
    return by_request, {transfer_id: (count, int(total)) for transfer_id, count, total in entries}


def api_balances(envoy: str, workload: BankWorkload) -> list[int]:
    with grpc.insecure_channel(envoy) as channel:
        stub = accounts_pb2_grpc.AccountsServiceStub(channel)
        return [
            stub.GetAccount(
                accounts_pb2.GetAccountRequest(name=holder.account),
                metadata=(("authorization", f"Bearer {holder.token}"),), timeout=CALL_TIMEOUT_S,
            ).account.balance_minor
            for holder in workload.holders
        ]


def ledger_reports(envoy: str, operator_token: str) -> tuple[admin_pb2.ReconcileLedgerResponse, admin_pb2.VerifyAuditChainResponse]:
    metadata = (("authorization", f"Bearer {operator_token}"),)
    with grpc.insecure_channel(envoy) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        reconciled = admin.ReconcileLedger(admin_pb2.ReconcileLedgerRequest(), metadata=metadata, timeout=60)
        audit = admin.VerifyAuditChain(admin_pb2.VerifyAuditChainRequest(), metadata=metadata, timeout=60)
    return reconciled, audit


def check_storage(
    workload: BankWorkload, by_request: dict[str, list[dict]], entries: dict[uuid.UUID, tuple[int, int]]
) -> list[Check]:
    account_ids = [uuid.UUID(holder.account.split("/", 1)[1]) for holder in workload.holders]
    wrong_acknowledged, twice, rejected_stored = [], [], []
    for transfer in workload.transfers:
        stored = by_request.get(transfer.request_id, [])
        if len(stored) > 1:
            twice.append(transfer.request_id)
        if transfer.outcome == "acknowledged":
            expected = {"transfer_id": uuid.UUID(transfer.payment_id), "debit": account_ids[transfer.from_index],
                        "credit": account_ids[transfer.to_index], "amount_minor": transfer.amount_minor}
            if stored != [expected]:
                wrong_acknowledged.append({"request_id": transfer.request_id, "stored": len(stored)})
        elif transfer.outcome == "rejected" and stored:
            rejected_stored.append(transfer.request_id)
    stored_ids = [row["transfer_id"] for rows in by_request.values() for row in rows]
    unbalanced = [str(transfer_id) for transfer_id in stored_ids if entries.get(transfer_id) != (2, 0)]
    acknowledged = sum(transfer.outcome == "acknowledged" for transfer in workload.transfers)
    return [
        Check("every acknowledged transfer is stored exactly once, as acknowledged", not wrong_acknowledged,
              f"{acknowledged} acknowledged; wrong: {wrong_acknowledged[:5]}"),
        Check("no request id is stored twice (acknowledged or not)", not twice, f"stored twice: {twice[:5]}"),
        Check("no transfer refused for good is stored", not rejected_stored, f"stored: {rejected_stored[:5]}"),
        Check("every stored transfer has two entries summing to zero", not unbalanced, f"unbalanced: {unbalanced[:5]}"),
    ]


def check_balances(
    workload: BankWorkload, by_request: dict[str, list[dict]], initial_minor: list[int], balances: list[int]
) -> list[Check]:
    index_of = {uuid.UUID(holder.account.split("/", 1)[1]): index for index, holder in enumerate(workload.holders)}
    model = list(initial_minor)
    for rows in by_request.values():
        for row in rows:
            model[index_of[row["debit"]]] -= row["amount_minor"]
            model[index_of[row["credit"]]] += row["amount_minor"]
    return [
        Check("the total is conserved (minor units lost: 0)", sum(balances) == sum(initial_minor),
              f"before {sum(initial_minor)}, after {sum(balances)}"),
        Check("no balance is negative", min(balances) >= 0, f"lowest {min(balances)}"),
        Check("each balance is its opening balance plus the stored transfers", model == balances,
              f"differences: {[(i, m, b) for i, (m, b) in enumerate(zip(model, balances)) if m != b][:5]}"),
    ]


def check_receipts(stack: LocalStack, tenant_id: uuid.UUID, by_request: dict[str, list[dict]],
                   during_outage: list[Transfer]) -> list[Check]:
    """Every stored workload transfer has its receipt in object storage (archived by the writer in a
    bundle, storage/receipts.py); a sample of those paid while S3 was down is read back from there and
    matches the payment."""
    seaweedfs = stack.seaweedfs
    assert seaweedfs is not None
    client = seaweedfs.client()
    prefix = f"tenants/{tenant_id}/receipts/bundles/"
    archived: dict[str, bytes] = {}
    for item in client.list_objects(seaweedfs.bucket, prefix=prefix, recursive=True):
        response = client.get_object(seaweedfs.bucket, item.object_name)
        try:
            archived.update(parse_bundle(response.read()))
        finally:
            response.close()
            response.release_conn()
    stored = {str(row["transfer_id"]): row for rows in by_request.values() for row in rows}
    missing = [payment_id for payment_id in stored if payment_id not in archived]
    mismatched = []
    sample = [transfer for transfer in during_outage if transfer.outcome == "acknowledged"][:RECEIPT_CONTENT_SAMPLE]
    for transfer in sample:
        document = json.loads(archived.get(transfer.payment_id, b"{}"))
        if document.get("paymentId") != transfer.payment_id or document.get("amountMinor") != transfer.amount_minor:
            mismatched.append(transfer.payment_id)
    return [
        Check("every stored transfer has its receipt in object storage", not missing,
              f"{len(stored)} stored, {len(missing)} missing: {missing[:5]}"),
        Check("receipts of payments made while S3 was down were written afterwards, correctly",
              bool(sample) and not mismatched,
              f"{len(sample)} read back, mismatched: {mismatched[:5]}"),
    ]


def check_faults(workload: BankWorkload, faults: list[FaultRecord]) -> list[Check]:
    checks = [Check(f"fault {record.kind} ({record.target}) behaved as expected", not record.problems,
                    "; ".join(record.problems) or json.dumps(record.observations, default=str))
              for record in faults]
    for record in faults:
        window = attempts_between(workload, record.started_s, record.healed_s)
        acknowledged = sum(attempt.code == "OK" for attempt in window)
        if record.kind in PAYMENTS_UNAFFECTED_BY + ("kill_server",):
            checks.append(Check(f"payments went on during {record.kind}", acknowledged > 0,
                                f"{acknowledged} acknowledged while it lasted"))
        if record.kind in PAYMENTS_UNAFFECTED_BY:
            failed = Counter(f"{attempt.face} {attempt.code}/{attempt.reason} at {attempt.at_s:.1f}s"
                             for attempt in window if attempt.code not in ("OK", "FAILED_PRECONDITION"))
            checks.append(Check(f"no payment attempt failed during {record.kind}", not failed, f"failed: {dict(failed)}"))
    return checks


def bug_code(attempt: Attempt) -> str | None:
    """The code of BUG_CODES the attempt's answer is counted under, or None when it is not a bug."""
    code = "HTTP_500" if attempt.http_status == 500 else attempt.code
    return code if code in BUG_CODES else None


def check_answers(workload: BankWorkload) -> list[Check]:
    codes = (bug_code(attempt) for transfer in workload.transfers for attempt in transfer.attempts)
    bugs = Counter(code for code in codes if code is not None)
    gave_up = [transfer.request_id for transfer in workload.transfers if transfer.outcome == "gave_up"]
    business = Counter(transfer.reason for transfer in workload.transfers if transfer.outcome == "rejected")
    return [
        Check("no INTERNAL, UNKNOWN or HTTP 500 answer", not bugs, f"{dict(bugs)}"),
        Check("every transfer was finally answered (no give-up)", not gave_up, f"gave up: {gave_up[:5]}"),
        Check("refusals are business refusals only", set(business) <= {"INSUFFICIENT_FUNDS"}, f"{dict(business)}"),
        Check("both faces acknowledged transfers",
              {transfer.face for transfer in workload.transfers if transfer.outcome == "acknowledged"} == {"grpc", "json"},
              ""),
    ]


def check_ledger_reports(reconciled: admin_pb2.ReconcileLedgerResponse, audit: admin_pb2.VerifyAuditChainResponse) -> list[Check]:
    return [
        Check("ReconcileLedger reports no discrepancy", reconciled.ok and not reconciled.discrepancies,
              f"{reconciled.transfers_checked} transfers, {reconciled.entries_checked} entries; "
              f"{[(d.check, d.subject) for d in reconciled.discrepancies[:5]]}"),
        Check("VerifyAuditChain verifies every chain", audit.ok and not audit.broken_links,
              f"{audit.events_checked} events in {audit.stripes_checked} chains"),
    ]


def attempts_between(workload: BankWorkload, start_s: float, end_s: float):
    return [attempt for transfer in workload.transfers for attempt in transfer.attempts if start_s <= attempt.at_s <= end_s]


def checks_as_dicts(checks: list[Check]) -> list[dict]:
    return [asdict(check) for check in checks]
