"""The ledger through the API: the citizen-pays-at-a-terminal story, idempotency, holds, refunds,
freezing, statements, and tenant isolation — natively and as JSON."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emoney.accounts.v1 import accounts_pb2
from emoney.payments.v1 import payments_pb2
from tests.fixtures.identity import bearer, create_tenant, error_reason, json_get, json_post, login_as, sign_up
from tests.fixtures.ledger import accounts_stub, balance, new_customer, new_shop, payment_code, payments_stub, request_id
from tests.fixtures.errors import grpc_reason


@pytest.fixture
def channel(stack):
    with grpc.insecure_channel(stack.endpoints.envoy) as opened:
        yield opened


def test_citizen_pays_at_a_terminal_gets_a_refund_and_sees_the_statement(stack, channel):
    """Top-up 100.00; code charged 12.50 by a terminal; merchant refunds 2.50; balances and statement agree."""
    ana = new_customer(stack, channel, funded_minor=10_000)
    shop = new_shop(stack, channel)
    code = payment_code(channel, ana, max_amount_minor=2_000)
    charged = payments_stub(channel).ChargePaymentCode(
        payments_pb2.ChargePaymentCodeRequest(request_id=request_id(), code=code, amount_minor=1_250, currency="EUR"),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment
    assert (charged.kind, charged.status, charged.amount_minor, charged.terminal) == (
        payments_pb2.PAYMENT_KIND_PAYMENT, payments_pb2.PAYMENT_STATUS_COMPLETED, 1_250, shop.terminal
    )

    refund = payments_stub(channel).RefundPayment(
        payments_pb2.RefundPaymentRequest(request_id=request_id(), name=charged.name, amount_minor=250),
        metadata=bearer(shop.token), timeout=10,
    ).payment
    assert refund.kind == payments_pb2.PAYMENT_KIND_REFUND and refund.related_payment == charged.name

    assert balance(channel, ana.token, ana.account).balance_minor == 10_000 - 1_250 + 250
    assert balance(channel, shop.token, shop.account).balance_minor == 1_250 - 250
    entries = accounts_stub(channel).ListAccountEntries(
        accounts_pb2.ListAccountEntriesRequest(account=ana.account), metadata=bearer(ana.token), timeout=10
    ).entries
    assert [(e.kind, e.amount_minor, e.balance_after_minor) for e in entries] == [
        (payments_pb2.PAYMENT_KIND_TOP_UP, 10_000, 10_000), (payments_pb2.PAYMENT_KIND_PAYMENT, -1_250, 8_750),
        (payments_pb2.PAYMENT_KIND_REFUND, 250, 9_000),
    ]
    refreshed = payments_stub(channel).GetPayment(payments_pb2.GetPaymentRequest(name=charged.name), metadata=bearer(ana.token), timeout=10)
    assert (refreshed.payment.status, refreshed.payment.refunded_minor) == (payments_pb2.PAYMENT_STATUS_PARTIALLY_REFUNDED, 250)


def test_a_payment_code_works_once(stack, channel):
    """A second charge of the same code (new request id) is refused; the customer pays once."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    code = payment_code(channel, ana, 1_000)
    charge = lambda: payments_stub(channel).ChargePaymentCode(  # noqa: E731 - a retry of the same call
        payments_pb2.ChargePaymentCodeRequest(request_id=request_id(), code=code, amount_minor=500, currency="EUR"),
        metadata=bearer(shop.terminal_token), timeout=10,
    )
    charge()
    with pytest.raises(grpc.RpcError) as again:
        charge()
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION and grpc_reason(again.value) == "PAYMENT_CODE_USED"
    assert balance(channel, ana.token, ana.account).balance_minor == 4_500


def test_terminal_retry_with_the_same_request_id_never_charges_twice(stack, channel):
    """The same ChargePaymentCode sent three times (a flaky network) charges once and answers the same payment."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    code = payment_code(channel, ana, 1_000)
    request = payments_pb2.ChargePaymentCodeRequest(request_id=request_id(), code=code, amount_minor=700, currency="EUR")
    answers = [
        payments_stub(channel).ChargePaymentCode(request, metadata=bearer(shop.terminal_token), timeout=10).payment
        for _ in range(3)
    ]
    assert len({answer.name for answer in answers}) == 1
    assert balance(channel, ana.token, ana.account).balance_minor == 4_300


def test_transfer_idempotency_and_reuse_with_a_different_request(stack, channel):
    """Same request_id + same transfer → same payment, one movement; same id + other amount → 409 REQUEST_ID_REUSED."""
    ana, bruno = new_customer(stack, channel, funded_minor=3_000), new_customer(stack, channel)
    identifier = request_id()
    send = lambda amount: payments_stub(channel).CreateTransfer(  # noqa: E731
        payments_pb2.CreateTransferRequest(request_id=identifier, from_account=ana.account, to_account=bruno.account, amount_minor=amount, currency="EUR"),
        metadata=bearer(ana.token), timeout=10,
    ).payment
    assert send(1_000).name == send(1_000).name
    with pytest.raises(grpc.RpcError) as reused:
        send(999)
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS and grpc_reason(reused.value) == "REQUEST_ID_REUSED"
    assert balance(channel, bruno.token, bruno.account).balance_minor == 1_000


def test_json_transfer_and_its_errors(stack, channel, envoy_url):
    """Over JSON: a transfer works (int64 as strings); no funds is 400 INSUFFICIENT_FUNDS; missing request_id is 400."""
    ana, bruno = new_customer(stack, channel, funded_minor=1_000), new_customer(stack, channel)
    body = {"requestId": request_id(), "fromAccount": ana.account, "toAccount": bruno.account, "amountMinor": "600", "currency": "EUR"}
    ok = json_post(envoy_url, "/v1/transfers", body, ana.token)
    assert ok.status_code == 200 and ok.json()["payment"]["amountMinor"] == "600"
    broke = json_post(envoy_url, "/v1/transfers", {**body, "requestId": request_id()}, ana.token)
    assert broke.status_code == 400 and error_reason(broke.json()) == "INSUFFICIENT_FUNDS"
    no_id = json_post(envoy_url, "/v1/transfers", {**body, "requestId": ""}, ana.token)
    assert no_id.status_code == 400
    assert balance(channel, ana.token, ana.account).balance_minor == 400


def test_holds_reserve_then_capture_part_and_release_the_rest(stack, channel):
    """Authorize 30.00: available drops, ledger balance does not; capture 20.00; a second capture is refused."""
    ana, shop = new_customer(stack, channel, funded_minor=10_000), new_shop(stack, channel)
    code = payment_code(channel, ana, 5_000)
    hold = payments_stub(channel).AuthorizePayment(
        payments_pb2.AuthorizePaymentRequest(request_id=request_id(), code=code, amount_minor=3_000, currency="EUR"),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment
    reserved = balance(channel, ana.token, ana.account)
    assert (reserved.balance_minor, reserved.held_minor, reserved.available_minor) == (10_000, 3_000, 7_000)
    captured = payments_stub(channel).CapturePayment(
        payments_pb2.CapturePaymentRequest(request_id=request_id(), name=hold.name, amount_minor=2_000),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment
    assert (captured.status, captured.captured_minor) == (payments_pb2.PAYMENT_STATUS_CAPTURED, 2_000)
    after = balance(channel, ana.token, ana.account)
    assert (after.balance_minor, after.held_minor, after.available_minor) == (8_000, 0, 8_000)
    with pytest.raises(grpc.RpcError) as twice:
        payments_stub(channel).VoidPayment(
            payments_pb2.VoidPaymentRequest(request_id=request_id(), name=hold.name), metadata=bearer(shop.terminal_token), timeout=10
        )
    assert twice.value.code() == grpc.StatusCode.FAILED_PRECONDITION and grpc_reason(twice.value) == "HOLD_ALREADY_RESOLVED"


def test_refunds_never_exceed_the_payment(stack, channel):
    """Refunding 8.00 then 3.00 of a 10.00 payment: the second is refused; 2.00 more is fine."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    paid = payments_stub(channel).ChargePaymentCode(
        payments_pb2.ChargePaymentCodeRequest(request_id=request_id(), code=payment_code(channel, ana, 1_000), amount_minor=1_000, currency="EUR"),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment
    refund = lambda amount: payments_stub(channel).RefundPayment(  # noqa: E731
        payments_pb2.RefundPaymentRequest(request_id=request_id(), name=paid.name, amount_minor=amount), metadata=bearer(shop.token), timeout=10
    )
    refund(800)
    with pytest.raises(grpc.RpcError) as too_much:
        refund(300)
    assert grpc_reason(too_much.value) == "REFUND_EXCEEDS_PAYMENT"
    refund(200)
    assert balance(channel, ana.token, ana.account).balance_minor == 5_000


def test_frozen_accounts_neither_send_nor_receive(stack, channel):
    """After FreezeAccount, transfers from and to it are FAILED_PRECONDITION ACCOUNT_FROZEN; unfreezing restores them."""
    operator = login_as(stack, "operator")
    ana, bruno = new_customer(stack, channel, funded_minor=2_000), new_customer(stack, channel, funded_minor=2_000)
    accounts_stub(channel).FreezeAccount(accounts_pb2.FreezeAccountRequest(name=bruno.account), metadata=bearer(operator), timeout=10)
    send = lambda sender, receiver: payments_stub(channel).CreateTransfer(  # noqa: E731
        payments_pb2.CreateTransferRequest(request_id=request_id(), from_account=sender.account, to_account=receiver.account, amount_minor=100, currency="EUR"),
        metadata=bearer(sender.token), timeout=10,
    )
    for sender, receiver in ((ana, bruno), (bruno, ana)):
        with pytest.raises(grpc.RpcError) as frozen:
            send(sender, receiver)
        assert frozen.value.code() == grpc.StatusCode.FAILED_PRECONDITION and grpc_reason(frozen.value) == "ACCOUNT_FROZEN"
    accounts_stub(channel).UnfreezeAccount(accounts_pb2.UnfreezeAccountRequest(name=bruno.account), metadata=bearer(operator), timeout=10)
    send(ana, bruno)


def test_a_payment_code_only_for_ones_own_active_account_in_its_currency(stack, channel, envoy_url):
    """CreatePaymentCode (one SQL statement, payments_create_code_in): another customer's account and an unknown
    one are NOT_FOUND alike, a wrong currency is INVALID_ARGUMENT naming `currency` (HTTP 400 on the JSON face),
    a frozen account FAILED_PRECONDITION ACCOUNT_FROZEN; a good code expires its lifetime after now and is
    charged once."""
    ana, bruno, shop = new_customer(stack, channel, funded_minor=1_000), new_customer(stack, channel), new_shop(stack, channel)
    make = lambda account, currency="EUR", token=ana.token: payments_stub(channel).CreatePaymentCode(  # noqa: E731
        payments_pb2.CreatePaymentCodeRequest(account=account, max_amount_minor=500, currency=currency, ttl_seconds=60),
        metadata=bearer(token), timeout=10,
    )
    for account in (bruno.account, f"accounts/{uuid.uuid4()}"):
        with pytest.raises(grpc.RpcError) as hidden:
            make(account)
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND and grpc_reason(hidden.value) == "ACCOUNT_NOT_FOUND"
    with pytest.raises(grpc.RpcError) as mismatch:
        make(ana.account, "USD")
    assert mismatch.value.code() == grpc.StatusCode.INVALID_ARGUMENT and grpc_reason(mismatch.value) == "CURRENCY_MISMATCH"
    assert _field_violations(mismatch.value) == ["currency"]
    over_json = json_post(envoy_url, "/v1/paymentCodes", {"account": ana.account, "maxAmountMinor": "500", "currency": "USD"}, ana.token)
    assert over_json.status_code == 400 and error_reason(over_json.json()) == "CURRENCY_MISMATCH", over_json.text

    before = datetime.now(timezone.utc)
    made = make(ana.account)
    after = datetime.now(timezone.utc)
    expiry = made.expire_time.ToDatetime(tzinfo=timezone.utc)
    assert before + timedelta(seconds=59) <= expiry <= after + timedelta(seconds=61), (before, expiry, after)
    charged = payments_stub(channel).ChargePaymentCode(
        payments_pb2.ChargePaymentCodeRequest(request_id=request_id(), code=made.code, amount_minor=500, currency="EUR"),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment
    assert charged.amount_minor == 500 and balance(channel, ana.token, ana.account).balance_minor == 500

    operator = login_as(stack, "operator")
    accounts_stub(channel).FreezeAccount(accounts_pb2.FreezeAccountRequest(name=ana.account), metadata=bearer(operator), timeout=10)
    with pytest.raises(grpc.RpcError) as frozen:
        make(ana.account)
    assert frozen.value.code() == grpc.StatusCode.FAILED_PRECONDITION and grpc_reason(frozen.value) == "ACCOUNT_FROZEN"


def test_customers_cannot_move_or_see_other_peoples_money(stack, channel):
    """Sending from someone else's account or reading it answers NOT_FOUND (no existence oracle)."""
    ana, bruno = new_customer(stack, channel, funded_minor=1_000), new_customer(stack, channel, funded_minor=1_000)
    with pytest.raises(grpc.RpcError) as read:
        accounts_stub(channel).GetAccount(accounts_pb2.GetAccountRequest(name=bruno.account), metadata=bearer(ana.token), timeout=10)
    assert read.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as steal:
        payments_stub(channel).CreateTransfer(
            payments_pb2.CreateTransferRequest(request_id=request_id(), from_account=bruno.account, to_account=ana.account, amount_minor=500, currency="EUR"),
            metadata=bearer(ana.token), timeout=10,
        )
    assert steal.value.code() == grpc.StatusCode.NOT_FOUND
    assert balance(channel, bruno.token, bruno.account).balance_minor == 1_000


def test_a_statement_is_seen_by_its_owner_and_the_back_office_only(stack, channel):
    """ListAccountEntries reads the account and the page in one round trip and checks visibility after:
    another customer's account and an unknown one are NOT_FOUND alike, with no entry in the answer; the
    owner and an operator see the same page."""
    ana, bruno = new_customer(stack, channel, funded_minor=1_000), new_customer(stack, channel, funded_minor=700)
    payments_stub(channel).CreateTransfer(
        payments_pb2.CreateTransferRequest(request_id=request_id(), from_account=bruno.account, to_account=ana.account,
                                           amount_minor=200, currency="EUR"),
        metadata=bearer(bruno.token), timeout=10,
    )
    statement = lambda account, token: accounts_stub(channel).ListAccountEntries(  # noqa: E731
        accounts_pb2.ListAccountEntriesRequest(account=account, page_size=10), metadata=bearer(token), timeout=10,
    )
    for account in (bruno.account, f"accounts/{uuid.uuid4()}"):
        with pytest.raises(grpc.RpcError) as hidden:
            statement(account, ana.token)
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND and grpc_reason(hidden.value) == "ACCOUNT_NOT_FOUND"
    own = statement(ana.account, ana.token)
    assert [(entry.amount_minor, entry.balance_after_minor) for entry in own.entries] == [(1_000, 1_000), (200, 1_200)]
    assert statement(ana.account, login_as(stack, "operator")) == own


def test_another_tenant_sees_and_touches_nothing(stack, channel):
    """Tenant B's operator cannot read, top up or freeze tenant A's account: NOT_FOUND, and nothing changes."""
    ana = new_customer(stack, channel, funded_minor=1_000)
    _, tenant_b_admin = create_tenant(stack, "ledgerb")
    calls = [
        lambda: accounts_stub(channel).GetAccount(accounts_pb2.GetAccountRequest(name=ana.account), metadata=bearer(tenant_b_admin), timeout=10),
        lambda: accounts_stub(channel).FreezeAccount(accounts_pb2.FreezeAccountRequest(name=ana.account), metadata=bearer(tenant_b_admin), timeout=10),
        lambda: payments_stub(channel).TopUp(
            payments_pb2.TopUpRequest(request_id=request_id(), account=ana.account, amount_minor=100, currency="EUR"),
            metadata=bearer(tenant_b_admin), timeout=10,
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    account = balance(channel, ana.token, ana.account)
    assert (account.balance_minor, account.status) == (1_000, accounts_pb2.ACCOUNT_STATUS_ACTIVE)


def test_sign_up_opens_the_citizens_account_in_the_tenants_currency(stack, channel, envoy_url):
    """A new citizen can be paid at once: sign-up opened their customer account in the tenant's currency."""
    created, admin = create_tenant(stack, "brl", currency="BRL")
    session, _ = sign_up(stack.endpoints.envoy, tenant=created.tenant.tenant.name)
    token = session.tokens.access_token
    owned = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=bearer(token), timeout=10).accounts
    assert [(account.kind, account.currency, account.balance_minor, account.status) for account in owned] == [
        (accounts_pb2.ACCOUNT_KIND_CUSTOMER, "BRL", 0, accounts_pb2.ACCOUNT_STATUS_ACTIVE)]
    payments_stub(channel).TopUp(
        payments_pb2.TopUpRequest(request_id=request_id(), account=owned[0].name, amount_minor=500, currency="BRL"),
        metadata=bearer(admin), timeout=10)
    assert balance(channel, token, owned[0].name).balance_minor == 500
    # The same over JSON: the account is listed for the citizen.
    listed = json_get(envoy_url, "/v1/accounts", token).json()["accounts"]
    assert [account["name"] for account in listed] == [owned[0].name]


def test_withdraw_close_and_balance_at(stack, channel):
    """Cash-out to zero, then CloseAccount; closing with money in it is refused; GetBalanceAt sees the past."""
    operator = login_as(stack, "operator")
    ana = new_customer(stack, channel, funded_minor=900)
    funded_at = timestamp_pb2.Timestamp()
    funded_at.GetCurrentTime()
    with pytest.raises(grpc.RpcError) as not_empty:
        accounts_stub(channel).CloseAccount(accounts_pb2.CloseAccountRequest(name=ana.account), metadata=bearer(operator), timeout=10)
    assert grpc_reason(not_empty.value) == "ACCOUNT_NOT_EMPTY"
    withdrawn = payments_stub(channel).Withdraw(
        payments_pb2.WithdrawRequest(request_id=request_id(), account=ana.account, amount_minor=900, currency="EUR"),
        metadata=bearer(operator), timeout=10,
    ).payment
    assert (withdrawn.kind, withdrawn.from_account) == (payments_pb2.PAYMENT_KIND_WITHDRAWAL, ana.account)
    closed = accounts_stub(channel).CloseAccount(accounts_pb2.CloseAccountRequest(name=ana.account), metadata=bearer(operator), timeout=10)
    assert closed.account.status == accounts_pb2.ACCOUNT_STATUS_CLOSED
    past = accounts_stub(channel).GetBalanceAt(
        accounts_pb2.GetBalanceAtRequest(account=ana.account, time=funded_at), metadata=bearer(ana.token), timeout=10
    )
    assert (past.balance_minor, past.currency) == (900, "EUR")
    assert balance(channel, ana.token, ana.account).balance_minor == 0


def test_list_payments_filters_and_visibility(stack, channel):
    """ListPayments: a terminal sees only its own charges; a customer filters by account; status filters work."""
    ana, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    other_shop = new_shop(stack, channel)
    charged = payments_stub(channel).ChargePaymentCode(
        payments_pb2.ChargePaymentCodeRequest(request_id=request_id(), code=payment_code(channel, ana, 500), amount_minor=500, currency="EUR"),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment
    mine = payments_stub(channel).ListPayments(payments_pb2.ListPaymentsRequest(), metadata=bearer(shop.terminal_token), timeout=10)
    assert [p.name for p in mine.payments] == [charged.name]
    theirs = payments_stub(channel).ListPayments(payments_pb2.ListPaymentsRequest(), metadata=bearer(other_shop.terminal_token), timeout=10)
    assert theirs.payments == []
    by_account = payments_stub(channel).ListPayments(
        payments_pb2.ListPaymentsRequest(account=ana.account, status=payments_pb2.PAYMENT_STATUS_COMPLETED), metadata=bearer(ana.token), timeout=10
    )
    assert {p.kind for p in by_account.payments} == {payments_pb2.PAYMENT_KIND_TOP_UP, payments_pb2.PAYMENT_KIND_PAYMENT}
    refunded_only = payments_stub(channel).ListPayments(
        payments_pb2.ListPaymentsRequest(account=ana.account, status=payments_pb2.PAYMENT_STATUS_REFUNDED), metadata=bearer(ana.token), timeout=10
    )
    assert refunded_only.payments == []


def _field_violations(error: grpc.RpcError) -> list[str]:
    bad_request = error_details_pb2.BadRequest()
    for detail in rpc_status.from_call(error).details:
        if detail.Unpack(bad_request):
            return [violation.field for violation in bad_request.field_violations]
    return []


def _json_violations(body: dict) -> list[tuple[str, str]]:
    """(field, reason) of each BadRequest field violation of a JSON google.rpc.Status body."""
    return [
        (violation["field"], violation["reason"])
        for detail in body["details"] if detail["@type"].endswith("/google.rpc.BadRequest")
        for violation in detail["fieldViolations"]
    ]


@pytest.mark.parametrize("currency", ["ABC", "XAU", "XTS", "XXX"])
def test_an_account_in_a_code_that_is_no_currency_is_refused(stack, channel, envoy_url, currency):
    """Three capital letters are not enough: ABC exists nowhere, and metals, XTS and XXX have no minor units.
    INVALID_ARGUMENT naming `currency` natively, HTTP 400 on the JSON face."""
    session, _ = sign_up(stack.endpoints.envoy)
    token = session.tokens.access_token
    with pytest.raises(grpc.RpcError) as refused:
        accounts_stub(channel).CreateAccount(
            accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_CUSTOMER, currency=currency), metadata=bearer(token), timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _field_violations(refused.value) == ["currency"]
    over_json = json_post(envoy_url, "/v1/accounts", {"kind": "ACCOUNT_KIND_CUSTOMER", "currency": currency}, token)
    assert over_json.status_code == 400 and over_json.json()["code"] == 3, over_json.text
    assert _json_violations(over_json.json()) == [("currency", "INVALID_FORMAT")], over_json.text
    listed = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=bearer(token), timeout=10)
    assert [account.currency for account in listed.accounts] == ["EUR"]  # only the one sign-up opened


def test_an_account_says_how_many_decimals_its_currency_has(stack, channel, envoy_url):
    """JPY 0, EUR 2, BHD 3: in the reply to CreateAccount and GetAccount, natively and as JSON."""
    session, _ = sign_up(stack.endpoints.envoy)
    token = session.tokens.access_token
    for currency, decimals in (("JPY", 0), ("EUR", 2), ("BHD", 3)):
        created = accounts_stub(channel).CreateAccount(
            accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_CUSTOMER, currency=currency), metadata=bearer(token), timeout=10
        ).account
        assert created.HasField("currency_minor_units") and created.currency_minor_units == decimals, created
        over_json = json_get(envoy_url, f"/v1/{created.name}", token).json()["account"]
        assert (over_json["currency"], over_json["currencyMinorUnits"]) == (currency, decimals)
