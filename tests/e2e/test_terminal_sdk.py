"""The terminal SDK (terminal_sdk) against the real stack through Envoy: login and token refresh, charge,
holds, refunds, idempotent retries after real network failures, disabled terminals, watch, and the CLI."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2
from terminal_sdk import TerminalClient, TerminalError
from tests.fixtures.identity import DEMO_TENANT, admin_stub, bearer, login, login_as, unique_email
from tests.fixtures.ledger import Holder, accounts_stub, balance, new_customer, payment_code
from tests.fixtures.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Till:
    """A merchant with a EUR account and a registered terminal whose credentials we hold."""

    merchant_token: str
    account: str
    terminal: str  # terminals/{id}
    client_id: str
    client_secret: str


@pytest.fixture
def channel(stack):
    with grpc.insecure_channel(stack.endpoints.envoy) as opened:
        yield opened


def new_till(stack, channel: grpc.Channel) -> Till:
    operator = login_as(stack, "operator")
    admin = admin_stub(channel)
    merchant = admin.CreateUser(
        admin_pb2.CreateUserRequest(email=unique_email("till"), display_name="Till Shop", roles=[auth_pb2.ROLE_MERCHANT]),
        metadata=bearer(operator), timeout=10,
    )
    token = login(stack.endpoints.envoy, DEMO_TENANT, merchant.user.email, merchant.initial_password).tokens.access_token
    account = accounts_stub(channel).CreateAccount(
        accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_MERCHANT, currency="EUR"), metadata=bearer(token), timeout=10
    ).account
    registered = admin.RegisterTerminal(
        admin_pb2.RegisterTerminalRequest(merchant=merchant.user.name, display_name="SDK till"), metadata=bearer(operator), timeout=10
    )
    return Till(token, account.name, registered.terminal.name, registered.terminal.client_id, registered.client_secret)


def client_for(till: Till, target: str, **options) -> TerminalClient:
    return TerminalClient(target, till.client_id, till.client_secret, **options)


def balance_of(channel: grpc.Channel, holder: Holder) -> int:
    return balance(channel, holder.token, holder.account).balance_minor


def payments_with_request_id(client: TerminalClient, request_id: str) -> list:
    return [payment for payment in client.list_payments(page_size=100) if payment.request_id == request_id]


class Proxy(TcpProxy):
    """The fixtures' TcpProxy, plus two things these tests need:

    - `disable()` also shuts the listening socket down: on Linux, closing a socket that another thread is
      blocked in accept() on leaves it listening, so a "disabled" proxy would still take one connection;
    - `reply_delay_s` delays only what flows back from the server, per chunk: the request arrives and
      commits at once, the reply comes too late — a real lost reply.
    """

    reply_delay_s = 0.0

    def disable(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
            except OSError:
                pass
        super().disable()

    def _pump(self, source: socket.socket, destination: socket.socket) -> None:
        try:
            from_server = source.getpeername()[:2] == self.target
        except OSError:
            return
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_server and self.reply_delay_s:
                    time.sleep(self.reply_delay_s)
                destination.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, destination):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _proxy_to(address: str) -> Proxy:
    host, _, port = address.rpartition(":")
    return Proxy(host, int(port))


def _retries_logged(caplog, code: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "terminal_sdk" and f"failed with {code}" in record.getMessage()]


def test_logs_in_and_charges_a_payment_code(stack, channel):
    """The SDK logs in with the terminal's credentials and charges a payment code into the merchant's account."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_till(stack, channel)
    with client_for(till, stack.endpoints.envoy) as client:
        assert client.terminal.name == till.terminal
        assert client.token_expire_time is not None
        payment = client.charge(payment_code(channel, ana, 2_000), 1_250, "EUR")
    assert (payment.kind, payment.status, payment.amount_minor, payment.terminal) == (
        payments_pb2.PAYMENT_KIND_PAYMENT, payments_pb2.PAYMENT_STATUS_COMPLETED, 1_250, till.terminal
    )
    assert payment.to_account == till.account and payment.request_id
    assert balance_of(channel, ana) == 3_750


def test_refund_and_get_payment(stack, channel):
    """A partial refund by the terminal that charged; get_payment shows it, list_payments pages through both."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_till(stack, channel)
    with client_for(till, stack.endpoints.envoy) as client:
        paid = client.charge(payment_code(channel, ana, 2_000), 2_000, "EUR")
        refund = client.refund(paid.name, 500)
        assert (refund.kind, refund.amount_minor, refund.related_payment) == (payments_pb2.PAYMENT_KIND_REFUND, 500, paid.name)
        again = client.get_payment(paid.name)
        assert again.refunded_minor == 500 and again.amount_minor == 2_000
        with pytest.raises(TerminalError) as too_much:
            client.refund(paid.name, 1_600)
        assert too_much.value.reason == "REFUND_EXCEEDS_PAYMENT" and too_much.value.request_id
        listed = {payment.name for payment in client.list_payments(page_size=1)}  # one per page: exercises paging
        # the status filter, as an enum value or by its name
        partly = {payment.name for payment in client.list_payments(status=payments_pb2.PAYMENT_STATUS_PARTIALLY_REFUNDED)}
        completed = {payment.name for payment in client.list_payments(status="PAYMENT_STATUS_COMPLETED")}
        with pytest.raises(ValueError):
            next(client.list_payments(status="completed"))  # not a name of the contract: refused before any call
    assert {paid.name, refund.name} <= listed
    assert paid.name in partly and refund.name not in partly
    assert refund.name in completed and paid.name not in completed
    assert balance_of(channel, ana) == 3_500


def test_authorize_capture_and_void(stack, channel):
    """A hold reserves funds, a partial capture takes part of it; another hold is voided and releases everything."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_till(stack, channel)
    with client_for(till, stack.endpoints.envoy) as client:
        hold = client.authorize(payment_code(channel, ana, 3_000), 3_000, "EUR", ttl_seconds=600)
        assert (hold.kind, hold.status, hold.amount_minor) == (payments_pb2.PAYMENT_KIND_HOLD, payments_pb2.PAYMENT_STATUS_AUTHORIZED, 3_000)
        assert balance(channel, ana.token, ana.account).available_minor == 2_000
        captured = client.capture(hold.name, 1_800)
        assert (captured.status, captured.captured_minor) == (payments_pb2.PAYMENT_STATUS_CAPTURED, 1_800)
        second = client.authorize(payment_code(channel, ana, 1_000), 1_000, "EUR")
        voided = client.void(second.name)
        assert voided.status == payments_pb2.PAYMENT_STATUS_VOIDED
    account = balance(channel, ana.token, ana.account)
    assert (account.balance_minor, account.held_minor, account.available_minor) == (3_200, 0, 3_200)


def test_same_request_id_after_a_lost_reply_charges_once(stack, channel):
    """Sending the same charge again with its request id (as after a lost reply) returns the same payment; one debit."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_till(stack, channel)
    code, request_id = payment_code(channel, ana, 1_000), str(uuid.uuid4())
    with client_for(till, stack.endpoints.envoy) as client:
        first = client.charge(code, 1_000, "EUR", request_id=request_id)
        second = client.charge(code, 1_000, "EUR", request_id=request_id)
        assert first == second and first.request_id == request_id
        assert len(payments_with_request_id(client, request_id)) == 1
        with pytest.raises(TerminalError) as reused:
            client.charge(code, 999, "EUR", request_id=request_id)
    assert (reused.value.code, reused.value.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    assert balance_of(channel, ana) == 4_000


def test_charge_retried_after_unavailable_succeeds_once(stack, channel, caplog):
    """With the network down (proxy off) the charge fails UNAVAILABLE and is retried; back up after ~1 s, it pays once."""
    caplog.set_level(logging.WARNING, logger="terminal_sdk")
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_till(stack, channel)
    code = payment_code(channel, ana, 1_500)
    proxy = _proxy_to(stack.endpoints.envoy)
    proxy.enable()
    try:
        with client_for(till, f"127.0.0.1:{proxy.port}", max_attempts=8, backoff_s=0.2, max_backoff_s=1.0) as client:
            client.login()  # the channel is connected and holds a token
            proxy.disable()  # listener closed, live connection cut
            outcome: dict = {}
            charger = threading.Thread(target=lambda: outcome.update(payment=client.charge(code, 1_500, "EUR")))
            charger.start()
            time.sleep(1.0)
            proxy.enable()
            charger.join(timeout=15)
            assert not charger.is_alive() and "payment" in outcome
            payment = outcome["payment"]
            assert payment.status == payments_pb2.PAYMENT_STATUS_COMPLETED and payment.amount_minor == 1_500
            assert len(payments_with_request_id(client, payment.request_id)) == 1
    finally:
        proxy.disable()
    assert _retries_logged(caplog, "UNAVAILABLE"), "the charge should have been retried"
    assert balance_of(channel, ana) == 3_500


def test_charge_retried_after_deadline_exceeded_replays_the_committed_payment(stack, channel, caplog):
    """The server commits but the reply arrives after the deadline; the retry (same request id) gets the same payment."""
    caplog.set_level(logging.WARNING, logger="terminal_sdk")
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_till(stack, channel)
    code = payment_code(channel, ana, 1_500)
    proxy = _proxy_to(stack.endpoints.envoy)
    proxy.enable()
    try:
        with client_for(till, f"127.0.0.1:{proxy.port}", default_timeout_s=1.5, backoff_s=0.2) as client:
            client.login()
            proxy.reply_delay_s = 2.0  # the next reply chunk is held back past the 1.5 s deadline
            threading.Timer(0.8, lambda: setattr(proxy, "reply_delay_s", 0.0)).start()  # later chunks flow again
            payment = client.charge(code, 1_500, "EUR")
            assert payment.status == payments_pb2.PAYMENT_STATUS_COMPLETED
            assert len(payments_with_request_id(client, payment.request_id)) == 1
    finally:
        proxy.disable()
    timed_out = _retries_logged(caplog, "DEADLINE_EXCEEDED")
    assert timed_out, "the first attempt should have timed out"
    # The payment was committed by the first attempt (before it timed out): the retry replayed it.
    assert payment.create_time.ToNanoseconds() / 1e9 < timed_out[0].created
    assert balance_of(channel, ana) == 3_500


def test_token_refreshed_before_expiry_and_after_refusal(stack, channel):
    """A token about to expire is replaced by a new login before the call; a token the server refuses is
    replaced once, transparently."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_till(stack, channel)
    with client_for(till, stack.endpoints.envoy) as client:
        client.login()
        first_token = client._token
        client._refresh_at = time.monotonic() - 1  # the client believes the token expires within its margin
        client.charge(payment_code(channel, ana, 500), 500, "EUR")
        second_token = client._token
        assert second_token and second_token != first_token

        client._token = "not-a-jwt"  # the server refuses it (TOKEN_INVALID): log in again, call again
        assert client.get_payment(client.charge(payment_code(channel, ana, 500), 500, "EUR").name).amount_minor == 500
        assert client._token not in ("not-a-jwt", second_token)
    assert balance_of(channel, ana) == 4_000


def test_disabled_terminal_gets_principal_disabled(stack, channel):
    """Once the operator disables the terminal its calls fail with PRINCIPAL_DISABLED (no silent re-login)."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_till(stack, channel)
    with client_for(till, stack.endpoints.envoy) as client:
        client.charge(payment_code(channel, ana, 500), 500, "EUR")
        admin_stub(channel).DisableTerminal(
            admin_pb2.DisableTerminalRequest(name=till.terminal), metadata=bearer(login_as(stack, "operator")), timeout=10
        )
        code = payment_code(channel, ana, 500)
        with pytest.raises(TerminalError) as refused:
            client.charge(code, 500, "EUR")
    assert (refused.value.code, refused.value.reason) == (grpc.StatusCode.UNAUTHENTICATED, "PRINCIPAL_DISABLED")
    assert refused.value.request_id
    assert balance_of(channel, ana) == 4_500


def test_watch_yields_the_next_charge(stack, channel):
    """watch() streams this terminal's next charge as it commits; cancel() ends the iteration cleanly."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_till(stack, channel)
    with client_for(till, stack.endpoints.envoy) as client:
        events = client.watch()
        time.sleep(0.3)  # the server subscribes right after sending the stream's headers
        charged = client.charge(payment_code(channel, ana, 700), 700, "EUR")
        received: dict = {}
        reader = threading.Thread(target=lambda: received.update(event=next(events)), daemon=True)
        reader.start()
        reader.join(timeout=10)
        events.cancel()
        assert list(events) == []
    event = received["event"]
    assert (event.event, event.payment.name, event.payment.amount_minor) == (payments_pb2.PAYMENT_EVENT_TYPE_CREATED, charged.name, 700)


def _cli(args: list[str], secret: str | None, **kwargs) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EMONEY_TERMINAL_")}
    if secret is not None:
        env["EMONEY_TERMINAL_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "terminal_sdk", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=30, **kwargs,
    )


def test_cli_charges_with_the_secret_from_the_environment(stack, channel):
    """`python -m terminal_sdk ... charge` reads the secret from $EMONEY_TERMINAL_SECRET and prints the payment as JSON;
    `list` prints one JSON line per payment; a refused charge exits 1 with the reason on stderr."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_till(stack, channel)
    code = payment_code(channel, ana, 1_250)
    common = ["--target", stack.endpoints.envoy, "--client-id", till.client_id]
    done = _cli([*common, "charge", "--code", code, "--amount-minor", "1250", "--currency", "EUR"], till.client_secret)
    assert done.returncode == 0, done.stderr
    payment = json.loads(done.stdout)
    assert (payment["kind"], payment["status"], payment["amountMinor"], payment["terminal"]) == (
        "PAYMENT_KIND_PAYMENT", "PAYMENT_STATUS_COMPLETED", "1250", till.terminal
    )
    assert till.client_secret not in done.stdout + done.stderr

    listed = _cli([*common, "list", "--limit", "1"], till.client_secret)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == [payment["name"]]
    for status, expected in (("completed", [payment["name"]]), ("PAYMENT_STATUS_REFUNDED", [])):
        filtered = _cli([*common, "list", "--status", status], till.client_secret)
        assert filtered.returncode == 0, filtered.stderr
        assert [json.loads(line)["name"] for line in filtered.stdout.splitlines()] == expected
    bad_status = _cli([*common, "list", "--status", "spent"], till.client_secret)
    assert bad_status.returncode == 2 and "not a payment status" in bad_status.stderr

    refused = _cli([*common, "charge", "--code", code, "--amount-minor", "1250", "--currency", "EUR"], till.client_secret)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "FAILED_PRECONDITION" in refused.stderr and "PAYMENT_CODE_USED" in refused.stderr
    assert balance_of(channel, ana) == 3_750


def test_cli_usage_errors_exit_2(stack):
    """A missing required option, an unknown command, or no secret available are usage errors: exit status 2."""
    common = ["--target", stack.endpoints.envoy, "--client-id", "term_x"]
    missing_amount = _cli([*common, "charge", "--code", "ABC", "--currency", "EUR"], "secret")
    assert missing_amount.returncode == 2 and "--amount-minor" in missing_amount.stderr
    assert _cli([*common, "teleport"], "secret").returncode == 2
    no_secret = _cli([*common, "get", "--payment", "payments/x"], None)
    assert no_secret.returncode == 2 and "EMONEY_TERMINAL_SECRET" in no_secret.stderr
