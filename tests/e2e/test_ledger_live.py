"""The live side of the ledger: WatchPayments on every face, receipts in object storage, holds that
expire by themselves, and the operator's audit-chain and reconciliation reports."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import psycopg
import pytest
import requests

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2, admin_pb2_grpc
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.fixtures import grpc_web
from tests.fixtures.identity import bearer, create_tenant, login_as
from localstack import provisioning
from localstack.health import wait_for_serving
from localstack.processes import free_ports
from tests.fixtures.ledger import accounts_stub, balance, new_customer, new_shop, payment_code, payments_stub, request_id
from tests.fixtures.errors import error_info


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def channel(stack):
    with grpc.insecure_channel(stack.endpoints.envoy) as opened:
        yield opened


def _charge(channel, shop, customer, amount_minor: int) -> payments_pb2.Payment:
    return payments_stub(channel).ChargePaymentCode(
        payments_pb2.ChargePaymentCodeRequest(request_id=request_id(), code=payment_code(channel, customer, amount_minor), amount_minor=amount_minor, currency="EUR"),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment


async def test_watch_delivers_a_payment_committed_after_the_stream_opened(stack, channel):
    """A terminal's WatchPayments stream (native gRPC through Envoy) receives its next charge as it commits."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    async with grpc.aio.insecure_channel(stack.endpoints.envoy) as watch_channel:
        stream = payments_pb2_grpc.PaymentsServiceStub(watch_channel).WatchPayments(
            payments_pb2.WatchPaymentsRequest(), metadata=bearer(shop.terminal_token), timeout=30
        )
        await stream.initial_metadata()  # the subscription exists once headers are back
        await asyncio.sleep(0.3)
        charged = await asyncio.to_thread(_charge, channel, shop, ana, 321)
        event = await asyncio.wait_for(stream.read(), timeout=10)
        stream.cancel()
    assert (event.event, event.payment.name, event.payment.amount_minor) == (payments_pb2.PAYMENT_EVENT_TYPE_CREATED, charged.name, 321)


async def test_the_back_offices_watch_names_who_paid_whom_and_a_terminals_does_not(stack, channel):
    """The operator's live feed carries the parties' and the terminal's names (back office callers only);
    the terminal's own stream of the same charge carries none."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    async with grpc.aio.insecure_channel(stack.endpoints.envoy) as watch_channel:
        stub = payments_pb2_grpc.PaymentsServiceStub(watch_channel)
        operator = stub.WatchPayments(payments_pb2.WatchPaymentsRequest(account=shop.account),
                                      metadata=bearer(login_as(stack, "operator")), timeout=30)
        terminal = stub.WatchPayments(payments_pb2.WatchPaymentsRequest(), metadata=bearer(shop.terminal_token), timeout=30)
        await asyncio.gather(operator.initial_metadata(), terminal.initial_metadata())
        await asyncio.sleep(0.3)
        charged = await asyncio.to_thread(_charge, channel, shop, ana, 222)
        seen_by_operator = await asyncio.wait_for(operator.read(), timeout=10)
        seen_by_terminal = await asyncio.wait_for(terminal.read(), timeout=10)
        operator.cancel()
        terminal.cancel()
    assert seen_by_operator.payment.name == seen_by_terminal.payment.name == charged.name
    named = seen_by_operator.payment
    assert (named.from_display_name, named.to_display_name, named.terminal_display_name) == ("Test Person", "Shop", "Till")
    bare = seen_by_terminal.payment
    assert (bare.from_display_name, bare.to_display_name, bare.terminal_display_name) == ("", "", "")


def test_watch_streams_newline_delimited_json(stack, channel, envoy_url):
    """On the JSON face, GET /v1/payments:watch is a stream of one JSON object per line."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    lines: list[str] = []
    with requests.get(f"{envoy_url}/v1/payments:watch", params={"account": shop.account},
                      headers={"authorization": f"Bearer {shop.token}"}, stream=True, timeout=20) as response:
        assert response.status_code == 200
        charger = threading.Timer(0.5, _charge, args=(channel, shop, ana, 111))
        charger.start()
        for line in response.iter_lines():
            if line.strip():
                lines.append(line.decode())
                break
        charger.join()
    event = json.loads(lines[0].lstrip("[,").rstrip(",]"))
    assert event["event"] == "PAYMENT_EVENT_TYPE_CREATED" and event["payment"]["amountMinor"] == "111"
    assert (event["payment"]["kind"], event["payment"]["status"]) == ("PAYMENT_KIND_PAYMENT", "PAYMENT_STATUS_COMPLETED")


def test_watch_over_grpc_web(stack, channel, envoy_url):
    """The back office's live feed: WatchPayments over grpc-web delivers a framed event."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    operator = login_as(stack, "operator")
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", "authorization": f"Bearer {operator}"}
    body = grpc_web.frame(payments_pb2.WatchPaymentsRequest(account=ana.account))
    with requests.post(f"{envoy_url}/emoney.payments.v1.PaymentsService/WatchPayments", data=body, headers=headers, stream=True, timeout=20) as response:
        charger = threading.Timer(0.5, _charge, args=(channel, shop, ana, 222))
        charger.start()
        buffer = b""
        for chunk in response.iter_content(chunk_size=None):
            buffer += chunk
            messages, _ = grpc_web.parse_frames(buffer)
            if messages:
                break
        charger.join()
    event = payments_pb2.WatchPaymentsResponse.FromString(messages[0])
    assert event.payment.amount_minor == 222 and event.payment.from_account == ana.account


def test_a_customer_cannot_watch_someone_elses_account(stack, channel):
    """Watching an account the caller cannot see is NOT_FOUND, not a silent stream."""
    ana, bruno = new_customer(stack, channel), new_customer(stack, channel)
    stream = payments_stub(channel).WatchPayments(payments_pb2.WatchPaymentsRequest(account=bruno.account), metadata=bearer(ana.token), timeout=10)
    with pytest.raises(grpc.RpcError) as raised:
        next(iter(stream))
    assert raised.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)


def test_receipts_are_stored_per_tenant_and_readable_by_the_payer(stack, channel):
    """A completed payment's receipt is returned to the payer (integer minor units), stored under the tenant's
    prefix, and another tenant's token cannot reach it."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    charged = _charge(channel, shop, ana, 1_234)
    receipt = payments_stub(channel).GetReceipt(payments_pb2.GetReceiptRequest(payment=charged.name), metadata=bearer(ana.token), timeout=10)
    document = json.loads(receipt.content)
    assert (document["amountMinor"], document["amount"], document["currency"]) == (1_234, "12.34", "EUR")
    assert receipt.content_type == "application/json"
    if receipt.download_url:
        assert f"tenants/{stack.demo.tenant_id}/receipts/" in receipt.download_url
        assert requests.get(receipt.download_url, timeout=10).content == receipt.content
    _, other_admin = create_tenant(stack, "rcpt")
    with pytest.raises(grpc.RpcError) as raised:
        payments_stub(channel).GetReceipt(payments_pb2.GetReceiptRequest(payment=charged.name), metadata=bearer(other_admin), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_receipt_links_use_the_public_object_store_address(stack, channel, tmp_path):
    """A server with EMONEY_S3_PUBLIC_URL (apps reach the store as `localhost`, the servers as 127.0.0.1)
    hands out receipt links on that address, and the link reads the receipt there."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    charged = _charge(channel, shop, ana, 321)
    s3_port = stack.endpoints.s3_endpoint.rsplit(":", 1)[1]
    (grpc_port,) = free_ports(1)
    environment = stack.server_environment(f"127.0.0.1:{grpc_port}")
    environment["EMONEY_S3_PUBLIC_URL"] = f"http://localhost:{s3_port}"
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "server"], env=environment, cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for_serving(f"127.0.0.1:{grpc_port}", 30.0)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as direct:
            receipt = payments_stub(direct).GetReceipt(
                payments_pb2.GetReceiptRequest(payment=charged.name), metadata=bearer(ana.token), timeout=10
            )
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    assert receipt.download_url.startswith(f"http://localhost:{s3_port}/"), receipt.download_url
    assert requests.get(receipt.download_url, timeout=10).content == receipt.content


def _tenant_dsn(stack) -> str:
    credentials = provisioning.load_or_create_credentials(stack.state_dir / "database-credentials.json")
    return stack.postgres.dsn(provisioning.DATABASE_NAME, provisioning.OWNER_ROLE, credentials.owner_password)


def test_an_expired_hold_releases_itself_without_anyone_calling(stack, channel):
    """A hold past its expiry is released by the servers' background task: available balance comes back."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    hold = payments_stub(channel).AuthorizePayment(
        payments_pb2.AuthorizePaymentRequest(request_id=request_id(), code=payment_code(channel, ana, 2_000), amount_minor=2_000, currency="EUR", ttl_seconds=60),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment
    assert balance(channel, ana.token, ana.account).available_minor == 3_000
    # Time travel, as the schema owner: the hold was made two minutes ago and expired one minute ago.
    with psycopg.connect(_tenant_dsn(stack)) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(stack.demo.tenant_id),))
        connection.execute(
            "update holds set created_at = now() - interval '2 minutes', expires_at = now() - interval '1 minute' where hold_id = %s",
            (hold.payment_id,),
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and balance(channel, ana.token, ana.account).available_minor != 5_000:
        time.sleep(0.2)
    assert balance(channel, ana.token, ana.account).available_minor == 5_000
    status = payments_stub(channel).GetPayment(payments_pb2.GetPaymentRequest(name=hold.name), metadata=bearer(ana.token), timeout=10)
    assert status.payment.status == payments_pb2.PAYMENT_STATUS_EXPIRED


def test_reconciliation_and_audit_chain_report_corruption(stack, channel):
    """A fresh tenant reconciles clean and its audit chain verifies; after the owner role corrupts a balance
    and edits an audit event, both reports name the damage."""
    created, admin_token = create_tenant(stack, "audit")
    tenant_id = created.tenant.tenant.tenant_id
    admin = admin_pb2_grpc.AdminServiceStub(channel)


    account = accounts_stub(channel).CreateAccount(
        accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_CUSTOMER, currency="EUR", owner=created.admin.name), metadata=bearer(admin_token), timeout=10
    ).account
    payments_stub(channel).TopUp(
        payments_pb2.TopUpRequest(request_id=request_id(), account=account.name, amount_minor=700, currency="EUR"), metadata=bearer(admin_token), timeout=10
    )
    assert admin.ReconcileLedger(admin_pb2.ReconcileLedgerRequest(), metadata=bearer(admin_token), timeout=30).ok
    verified = admin.VerifyAuditChain(admin_pb2.VerifyAuditChainRequest(), metadata=bearer(admin_token), timeout=30)
    assert verified.ok and verified.events_checked >= 2

    with psycopg.connect(stack.postgres.dsn("emoney")) as connection:  # superuser: bypasses the append-only triggers
        connection.execute("set session_replication_role = replica")
        connection.execute("update accounts set balance_minor = balance_minor + 1 where account_id = %s", (account.account_id,))
        connection.execute(
            "update audit_events set summary = jsonb_set(summary, '{tampered}', 'true') where tenant_id = %s"
            " and (stripe, sequence) = (select stripe, sequence from audit_events where tenant_id = %s order by created_at limit 1)",
            (tenant_id, tenant_id),
        )
    report = admin.ReconcileLedger(admin_pb2.ReconcileLedgerRequest(), metadata=bearer(admin_token), timeout=30)
    assert not report.ok
    assert any(d.check == "BALANCE_MISMATCH" and d.subject == account.account_id for d in report.discrepancies)
    broken = admin.VerifyAuditChain(admin_pb2.VerifyAuditChainRequest(), metadata=bearer(admin_token), timeout=30)
    assert not broken.ok and broken.broken_links[0].problem == "HASH_MISMATCH"



def test_stream_errors_keep_their_http_status_on_the_json_face(envoy_url):
    """WatchPayments without a token is HTTP 401 with a JSON Status, not a 200 carrying an error."""
    response = requests.get(f"{envoy_url}/v1/payments:watch", timeout=10)
    assert response.status_code == 401
    assert response.json()["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]


async def test_a_transfer_to_a_merchant_is_a_payment_announced_with_its_receipt_and_replayed_as_created(stack, channel):
    """CreateTransfer (one SQL round trip, migrations/0007): paying a merchant account is a `payment`, the
    merchant's watch stream gets it as it commits, the servers archive its receipt (read from its row), and a
    retry after a refund returns byte for byte the reply of the first call (status completed, nothing
    refunded), with no second movement."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    request = payments_pb2.CreateTransferRequest(
        request_id=request_id(), from_account=ana.account, to_account=shop.account, amount_minor=700, currency="EUR"
    )
    async with grpc.aio.insecure_channel(stack.endpoints.envoy) as watch_channel:
        stream = payments_pb2_grpc.PaymentsServiceStub(watch_channel).WatchPayments(
            payments_pb2.WatchPaymentsRequest(account=shop.account), metadata=bearer(shop.token), timeout=30
        )
        await stream.initial_metadata()
        await asyncio.sleep(0.3)
        first = await asyncio.to_thread(
            lambda: payments_stub(channel).CreateTransfer(request, metadata=bearer(ana.token), timeout=10)
        )
        event = await asyncio.wait_for(stream.read(), timeout=10)
        stream.cancel()
    assert (first.payment.kind, first.payment.status, first.payment.amount_minor) == (
        payments_pb2.PAYMENT_KIND_PAYMENT, payments_pb2.PAYMENT_STATUS_COMPLETED, 700
    )
    assert (event.event, event.payment.name) == (payments_pb2.PAYMENT_EVENT_TYPE_CREATED, first.payment.name)
    payment_id = first.payment.name.removeprefix("payments/")
    deadline = time.monotonic() + 15
    with psycopg.connect(_tenant_dsn(stack), autocommit=True) as connection:  # the servers' writers archive it
        while connection.execute("select count(*) from receipts_pending() where transfer_id = %s", (payment_id,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the receipt was not written within 15 s"
            time.sleep(0.1)
    payments_stub(channel).RefundPayment(
        payments_pb2.RefundPaymentRequest(request_id=request_id(), name=first.payment.name, amount_minor=200),
        metadata=bearer(shop.token), timeout=10,
    )
    again = payments_stub(channel).CreateTransfer(request, metadata=bearer(ana.token), timeout=10)
    assert again.SerializeToString(deterministic=True) == first.SerializeToString(deterministic=True)
    assert balance(channel, ana.token, ana.account).balance_minor == 5_000 - 700 + 200


def test_every_payment_code_rule_refuses_clearly_and_moves_nothing(stack, channel):
    """Redeeming a code (one SQL call, migrations/0008): unknown, above its maximum, in another currency,
    expired, or at a terminal whose merchant has no account — each a clear refusal, nothing moved, the
    code still usable when it was not the code's fault."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    code = payment_code(channel, ana, 1_000)

    def charge(code_text: str, amount_minor: int, currency: str = "EUR", token: str = shop.terminal_token):
        return payments_stub(channel).ChargePaymentCode(
            payments_pb2.ChargePaymentCodeRequest(request_id=request_id(), code=code_text, amount_minor=amount_minor, currency=currency),
            metadata=bearer(token), timeout=10,
        )

    expectations = [
        (lambda: charge("ABCDEFGHJKLMNPQR", 100), grpc.StatusCode.NOT_FOUND, "PAYMENT_CODE_NOT_FOUND"),
        (lambda: charge(code, 1_001), grpc.StatusCode.FAILED_PRECONDITION, "AMOUNT_EXCEEDS_CODE"),
        (lambda: charge(code, 100, "USD"), grpc.StatusCode.INVALID_ARGUMENT, "CURRENCY_MISMATCH"),
    ]
    for call, status, reason in expectations:
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert (refused.value.code(), error_info(refused.value).reason) == (status, reason)
    with pytest.raises(grpc.RpcError) as above:
        charge(code, 1_001)
    assert error_info(above.value).metadata["maxAmountMinor"] == "1000"

    # A terminal of a merchant without a merchant account: the code stays unused.
    operator = login_as(stack, "operator")
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    bare = admin.CreateUser(admin_pb2.CreateUserRequest(email=f"bare-{request_id()[:8]}@shop.example", display_name="Bare", roles=[auth_pb2.ROLE_MERCHANT]),
                            metadata=bearer(operator), timeout=10)
    registered = admin.RegisterTerminal(admin_pb2.RegisterTerminalRequest(merchant=bare.user.name, display_name="Till"),
                                        metadata=bearer(operator), timeout=10)
    from emoney.auth.v1 import auth_pb2_grpc

    bare_terminal = auth_pb2_grpc.AuthServiceStub(channel).LoginTerminal(
        auth_pb2.LoginTerminalRequest(client_id=registered.terminal.client_id, client_secret=registered.client_secret), timeout=10
    ).tokens.access_token
    with pytest.raises(grpc.RpcError) as missing:
        charge(code, 100, token=bare_terminal)
    assert (missing.value.code(), error_info(missing.value).reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MERCHANT_ACCOUNT_MISSING")
    assert balance(channel, ana.token, ana.account).balance_minor == 5_000

    # Expired: the code's validity moved into the past (as the superuser).
    expiring = payment_code(channel, ana, 1_000)
    with psycopg.connect(stack.postgres.dsn("emoney")) as connection:
        moved = connection.execute(
            "update payment_codes set created_at = now() - interval '2 minutes', expires_at = now() - interval '1 minute'"
            " where used_at is null and code_hash = %s",
            (hashlib.sha256(expiring.encode()).digest(),),
        ).rowcount
    assert moved == 1
    with pytest.raises(grpc.RpcError) as expired:
        charge(expiring, 100)
    assert (expired.value.code(), error_info(expired.value).reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_CODE_EXPIRED")

    # The first code, refused above for reasons of the request, still pays once.
    assert charge(code, 1_000).payment.status == payments_pb2.PAYMENT_STATUS_COMPLETED
    assert balance(channel, ana.token, ana.account).balance_minor == 4_000


def test_an_authorization_retried_after_its_capture_replays_as_created(stack, channel):
    """AuthorizePayment retried with the same request_id after a capture: the same reply as the first
    call (authorized, nothing captured), and no second hold."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    request = payments_pb2.AuthorizePaymentRequest(
        request_id=request_id(), code=payment_code(channel, ana, 2_000), amount_minor=2_000, currency="EUR"
    )
    first = payments_stub(channel).AuthorizePayment(request, metadata=bearer(shop.terminal_token), timeout=10)
    payments_stub(channel).CapturePayment(
        payments_pb2.CapturePaymentRequest(request_id=request_id(), name=first.payment.name, amount_minor=1_500),
        metadata=bearer(shop.terminal_token), timeout=10,
    )
    again = payments_stub(channel).AuthorizePayment(request, metadata=bearer(shop.terminal_token), timeout=10)
    assert again.SerializeToString(deterministic=True) == first.SerializeToString(deterministic=True)
    assert first.payment.status == payments_pb2.PAYMENT_STATUS_AUTHORIZED
    account = balance(channel, ana.token, ana.account)
    assert (account.balance_minor, account.held_minor) == (3_500, 0)
