"""The high-availability topology (EMONEY_TOPOLOGY=ha): PostgreSQL on three nodes under Patroni with etcd,
synchronous replication, three servers behind Envoy — and what it promises when the primary goes away.

Transfers run without pause while the primary's PostgreSQL is killed (-9) and, later, while Patroni
switches the primary over on purpose. A call that fails meanwhile must fail UNAVAILABLE (retryable),
and its retry with the same request_id must then succeed exactly once. Afterwards: every acknowledged
transfer is in the ledger once (RPO 0), the balances add up, the ledger reconciles and the audit chain
verifies. The time from the fault to the first transfer that succeeds again is printed (the README's
RTO figures come from `make soak`); here it must stay within Patroni's own bound, the leader key's ttl.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field

import grpc
import pytest
import requests

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.payments.v1 import payments_pb2
from localstack.patroni import DCS_SETTINGS
from localstack.processes import consecutive_free_ports, free_ports
from localstack.stack import HaPorts, LocalStack, StackOptions, StackPorts
from tests.conftest import running_stack
from tests.fixtures.identity import admin_stub, bearer, login_as
from tests.fixtures.ledger import (
    Holder, accounts_stub, balance, new_customer, new_shop, payment_code, payments_stub,
)

FUNDS_MINOR = 1_000_000
RETRY_FOR_S = 60.0


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory):
    envoy, admin, redis, openbao, s3, *servers = free_ports(8)
    options = StackOptions(
        state_dir=tmp_path_factory.mktemp("ha-stack"),
        ports=StackPorts(envoy=envoy, envoy_admin=admin, redis=redis, openbao=openbao, s3=s3, first_grpc=servers[0],
                         first_metrics=consecutive_free_ports(3)),
        topology="ha",
        ha_ports=HaPorts.free(),
        grpc_ports=servers,
        server_environment={"EMONEY_RATE_LIMITS": "credentials.address=100/s:1000"},
    )
    with running_stack(options, "ha-stack-logs", serving_within_s=60.0) as stack:
        yield stack


def _reads_by_where(stack: LocalStack) -> dict[str, int]:
    """emoney_database_reads_total summed over every server's metrics endpoint."""
    totals: dict[str, int] = {}
    for address in stack.endpoints.metrics:
        text = requests.get(f"http://{address}/metrics", timeout=5).text
        for served_by, count in re.findall(r'emoney_database_reads_total\{served_by="(\w+)"\} (\d+)', text):
            totals[served_by] = totals.get(served_by, 0) + int(count)
    return totals


@dataclass
class Payer:
    """Moves 1 minor unit at a time from one account to another until stopped; retries a failed call
    with the same request_id, as the terminal SDK does, and keeps what it was told."""

    channel: grpc.Channel
    source: Holder
    target: Holder
    acknowledged: list[str] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (when, status code)
    successes: list[tuple[float, float]] = field(default_factory=list)  # (attempt started, answered)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        stub = payments_stub(self.channel)
        try:
            while not self.stop.is_set():
                request_id = str(uuid.uuid4())
                request = payments_pb2.CreateTransferRequest(
                    request_id=request_id, from_account=self.source.account, to_account=self.target.account,
                    amount_minor=1, currency="EUR",
                )
                given_up_at = time.monotonic() + RETRY_FOR_S
                while True:
                    attempt_started = time.monotonic()
                    try:
                        stub.CreateTransfer(request, metadata=bearer(self.source.token), timeout=10)
                        break
                    except grpc.RpcError as error:
                        self.failures.append((time.monotonic(), error.code().name))
                        if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                            raise AssertionError(f"a failover call failed {error.code().name}: {error.details()}")
                        if time.monotonic() > given_up_at:
                            raise AssertionError(f"no success within {RETRY_FOR_S:.0f}s: {error.details()}")
                        time.sleep(0.1)
                self.acknowledged.append(request_id)
                self.successes.append((attempt_started, time.monotonic()))
        except BaseException as error:  # handed to the test
            self.error = error

    def first_success_after(self, instant: float, timeout_s: float) -> float:
        """Seconds from `instant` to the answer of the first successful attempt that started after it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            later = [answered for started, answered in self.successes if started > instant]
            if later:
                return later[0] - instant
            if self.error is not None:
                raise self.error
            time.sleep(0.05)
        raise AssertionError(f"no transfer succeeded within {timeout_s:.0f}s of the fault")


def _run_through(stack: LocalStack, fault) -> tuple[Payer, float, Holder, Holder]:
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        source = new_customer(stack, channel, funded_minor=FUNDS_MINOR)
        target = new_customer(stack, channel)
        payer = Payer(channel, source, target)
        worker = threading.Thread(target=payer.run, daemon=True)
        worker.start()
        try:
            while len(payer.acknowledged) < 20 and payer.error is None:
                time.sleep(0.05)
            fault()
            faulted_at = time.monotonic()  # when the fault has happened (finding the leader takes a moment)
            recovery_s = payer.first_success_after(faulted_at, timeout_s=DCS_SETTINGS["ttl"] + 10)
            # A little more traffic on the new primary.
            settled = len(payer.acknowledged)
            while len(payer.acknowledged) < settled + 20 and payer.error is None:
                time.sleep(0.05)
        finally:
            payer.stop.set()
            worker.join(timeout=RETRY_FOR_S + 15)
        assert payer.error is None, repr(payer.error)
        assert not worker.is_alive()
        return payer, recovery_s, source, target


def _check_ledger(stack: LocalStack, payer: Payer, source: Holder, target: Holder) -> None:
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        count = len(payer.acknowledged)
        # Every acknowledged transfer is there exactly once: the balances say so to the minor unit.
        assert balance(channel, target.token, target.account).balance_minor == count
        assert balance(channel, source.token, source.account).balance_minor == FUNDS_MINOR - count
        assert len(set(payer.acknowledged)) == count
        operator = login_as(stack, "tenant_admin")
        admin = admin_stub(channel)
        reconciled = admin.ReconcileLedger(admin_pb2.ReconcileLedgerRequest(), metadata=bearer(operator), timeout=30)
        assert reconciled.ok, reconciled
        verified = admin.VerifyAuditChain(admin_pb2.VerifyAuditChainRequest(), metadata=bearer(operator), timeout=30)
        assert verified.ok, verified


def test_the_ha_topology_has_a_leader_a_synchronous_standby_and_three_servers(ha_stack):
    roles = sorted(member["role"] for member in ha_stack.postgres.members())
    assert roles == ["leader", "replica", "sync_standby"]
    assert len(ha_stack.servers) == 3
    assert any("leader" in line for line in ha_stack.topology_lines())


def test_statements_are_read_on_a_standby_and_always_show_the_transfer_just_made(ha_stack):
    """Read-your-writes on replicas: each statement read right after a transfer shows it, whichever server
    and whichever standby answered; and most such reads were served by a standby (a read waits at most
    50 ms for the asynchronous standby to catch up, then runs on the primary: on a busy machine a few may)."""
    ha_stack.postgres.wait_ready(timeout_s=90)
    before = _reads_by_where(ha_stack)
    reads = 10
    with grpc.insecure_channel(ha_stack.endpoints.envoy) as channel:
        source, target = new_customer(ha_stack, channel, funded_minor=1_000), new_customer(ha_stack, channel)
        for made in range(1, reads + 1):
            payments_stub(channel).CreateTransfer(
                payments_pb2.CreateTransferRequest(request_id=str(uuid.uuid4()), from_account=source.account,
                                                   to_account=target.account, amount_minor=1, currency="EUR"),
                metadata=bearer(source.token), timeout=10)
            statement = accounts_stub(channel).ListAccountEntries(
                accounts_pb2.ListAccountEntriesRequest(account=target.account, page_size=100),
                metadata=bearer(target.token), timeout=10)
            assert [entry.balance_after_minor for entry in statement.entries] == list(range(1, made + 1))
    after = _reads_by_where(ha_stack)
    on_replica = after.get("replica", 0) - before.get("replica", 0)
    on_primary = after.get("primary", 0) - before.get("primary", 0)
    assert on_replica + on_primary >= reads
    assert on_replica * 2 >= reads, (on_replica, on_primary)


def test_killing_the_primary_loses_no_acknowledged_transfer(ha_stack):
    killed: list[str] = []
    payer, recovery_s, source, target = _run_through(
        ha_stack, lambda: killed.append(ha_stack.postgres.kill_leader_postgres().name)
    )
    failed = [code for _, code in payer.failures]
    print(f"\nprimary {killed[0]} killed: first transfer again after {recovery_s:.1f}s, "
          f"{len(failed)} failed calls meanwhile ({sorted(set(failed))})")
    assert set(failed) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert recovery_s < DCS_SETTINGS["ttl"]
    leader = ha_stack.postgres.leader()
    assert leader is not None and leader.name != killed[0]
    _check_ledger(ha_stack, payer, source, target)
    # Patroni brings the old primary back as a standby by itself.
    ha_stack.postgres.wait_ready(timeout_s=90)


def test_a_planned_switchover_loses_no_acknowledged_transfer(ha_stack):
    ha_stack.postgres.wait_ready(timeout_s=90)
    moved: list[tuple[str, str]] = []
    payer, recovery_s, source, target = _run_through(ha_stack, lambda: moved.append(ha_stack.postgres.switchover()))
    print(f"\nswitchover {moved[0][0]} -> {moved[0][1]}: first transfer again after {recovery_s:.1f}s, "
          f"{len(payer.failures)} failed calls meanwhile")
    assert recovery_s < DCS_SETTINGS["ttl"]
    ha_stack.postgres.wait_ready(timeout_s=90)
    leader = ha_stack.postgres.leader()
    assert leader is not None and leader.name == moved[0][1]
    _check_ledger(ha_stack, payer, source, target)


def test_a_payment_watch_says_it_was_interrupted_and_works_again_on_the_new_primary(ha_stack):
    """WatchPayments rides on LISTEN/NOTIFY, which only the primary serves: when the primary dies the stream
    ends UNAVAILABLE (events may have been missed), and a new watch sees the next payment."""
    ha_stack.postgres.wait_ready(timeout_s=90)
    with grpc.insecure_channel(ha_stack.endpoints.envoy) as channel:
        customer, shop = new_customer(ha_stack, channel, funded_minor=10_000), new_shop(ha_stack, channel)

        def watch_until_an_event(amount_minor: int) -> tuple[grpc.Future, payments_pb2.WatchPaymentsResponse]:
            stream = payments_stub(channel).WatchPayments(
                payments_pb2.WatchPaymentsRequest(), metadata=bearer(shop.terminal_token), timeout=60)
            stream.initial_metadata()  # the subscription exists once headers are back
            time.sleep(0.3)
            _charge(channel, shop, customer, amount_minor)
            return stream, next(stream)

        stream, first = watch_until_an_event(101)
        assert first.payment.amount_minor == 101
        ha_stack.postgres.kill_leader_postgres()
        with pytest.raises(grpc.RpcError) as ended:
            next(stream)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value.details()

        deadline = time.monotonic() + DCS_SETTINGS["ttl"] + 10
        while True:
            try:
                stream, again = watch_until_an_event(202)
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                assert time.monotonic() < deadline, "no watch on the new primary"
                time.sleep(0.5)
        assert again.payment.amount_minor == 202
        stream.cancel()


def _charge(channel, shop, customer, amount_minor: int) -> None:
    request = payments_pb2.ChargePaymentCodeRequest(
        request_id=str(uuid.uuid4()), code=payment_code(channel, customer, amount_minor),
        amount_minor=amount_minor, currency="EUR")
    deadline = time.monotonic() + RETRY_FOR_S
    while True:  # the terminal SDK's way: the same request id until it is answered
        try:
            payments_stub(channel).ChargePaymentCode(request, metadata=bearer(shop.terminal_token), timeout=10)
            return
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
