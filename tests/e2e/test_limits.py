"""Identity levels and value limits through the whole stack (issue 15, item 1): a tenant's ladder, customers
on it, limits enforced by the ledger inside every movement — under concurrency, on every face — holds that
count when made and give back when voided, terminals' daily charge limits, and every change audited."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import grpc
import pytest

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.fixtures.identity import admin_stub, auth_stub, bearer, create_tenant, error_reason, json_post, login, sign_up, unique_email
from tests.fixtures.errors import error_info
from tests.fixtures.ledger import Holder, accounts_stub, balance, payments_stub, request_id

BASIC = admin_pb2.IdentityLevel(code="basic", display_name="Basic", rank=0, limits=[admin_pb2.LevelLimits(
    currency="EUR", max_balance_minor=100_000, max_payment_minor=5_000, daily_sent_minor=10_000,
    daily_received_minor=150_000, monthly_sent_minor=30_000)])
FULL = admin_pb2.IdentityLevel(code="full", display_name="Full (ID checked)", rank=10, limits=[admin_pb2.LevelLimits(
    currency="EUR", daily_sent_minor=1_000_000)])


@dataclass
class Town:
    slug: str
    admin_token: str


@pytest.fixture(scope="module")
def town(stack) -> Town:
    created, admin_token = create_tenant(stack, "limits")
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        admin = admin_stub(channel)
        for level in (FULL, BASIC):
            admin.SetIdentityLevel(admin_pb2.SetIdentityLevelRequest(identity_level=level), metadata=bearer(admin_token), timeout=10)
    return Town(created.tenant.tenant.slug, admin_token)


def citizen(stack, town: Town, channel, funded_minor: int = 0) -> Holder:
    session, _ = sign_up(stack.endpoints.envoy, tenant=f"tenants/{town.slug}")
    token = session.tokens.access_token
    [account] = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=bearer(token), timeout=10).accounts
    if funded_minor:
        payments_stub(channel).TopUp(
            payments_pb2.TopUpRequest(request_id=request_id(), account=account.name, amount_minor=funded_minor, currency="EUR"),
            metadata=bearer(town.admin_token), timeout=10,
        )
    return Holder(token, account.name, session.user.name)


def limits_of(channel, holder: Holder) -> accounts_pb2.GetLimitsResponse:
    return accounts_stub(channel).GetLimits(accounts_pb2.GetLimitsRequest(), metadata=bearer(holder.token), timeout=10)


def refusal(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    info = error_info(error)
    return error.code(), info.reason, dict(info.metadata)


def transfer(channel, payer: Holder, payee: Holder, amount_minor: int) -> payments_pb2.CreateTransferResponse:
    return payments_stub(channel).CreateTransfer(payments_pb2.CreateTransferRequest(
        request_id=request_id(), from_account=payer.account, to_account=payee.account, amount_minor=amount_minor, currency="EUR",
    ), metadata=bearer(payer.token), timeout=10)


def test_a_new_customer_starts_at_the_lowest_level_and_reads_what_is_left(stack, town, channel):
    ana = citizen(stack, town, channel, funded_minor=20_000)
    standing = limits_of(channel, ana)
    assert (standing.level, standing.level_display_name, standing.time_zone) == ("basic", "Basic", "UTC")
    [eur] = standing.standings
    assert (eur.currency, eur.limits.daily_sent_minor, eur.limits.daily_received_minor) == ("EUR", 10_000, 150_000)
    assert (eur.received_today_minor, eur.daily_received_remaining_minor, eur.balance_remaining_minor) == (20_000, 130_000, 80_000)
    assert (eur.sent_today_minor, eur.daily_sent_remaining_minor, eur.monthly_sent_remaining_minor) == (0, 10_000, 30_000)
    assert not eur.HasField("monthly_received_remaining_minor")  # the level has no such limit


async def test_of_twenty_simultaneous_payments_exactly_those_within_the_daily_limit_succeed(stack, town, channel):
    """20 × 700 at once against a 10,000 daily limit: exactly 14 succeed, whatever server each lands on and
    however the group commit batches them; the others are LIMIT_EXCEEDED naming the limit; nothing else moved."""
    ana, bruno = citizen(stack, town, channel, funded_minor=50_000), citizen(stack, town, channel)
    async with grpc.aio.insecure_channel(stack.endpoints.envoy) as aio_channel:
        stub = payments_pb2_grpc.PaymentsServiceStub(aio_channel)
        calls = [stub.CreateTransfer(payments_pb2.CreateTransferRequest(
            request_id=request_id(), from_account=ana.account, to_account=bruno.account, amount_minor=700, currency="EUR",
        ), metadata=bearer(ana.token), timeout=20) for _ in range(20)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    refused = [refusal(outcome) for outcome in outcomes if isinstance(outcome, grpc.RpcError)]
    assert len(outcomes) - len(refused) == 14, refused
    assert all(code == grpc.StatusCode.FAILED_PRECONDITION and reason == "LIMIT_EXCEEDED" and meta["limit"] == "DAILY_SENT"
               and meta["currency"] == "EUR" and meta["limitMinor"] == "10000" for code, reason, meta in refused), refused
    assert {meta["remainingMinor"] for _, _, meta in refused} <= {"200"}
    assert balance(channel, ana.token, ana.account).balance_minor == 50_000 - 14 * 700
    assert balance(channel, bruno.token, bruno.account).balance_minor == 14 * 700
    [eur] = limits_of(channel, ana).standings
    assert (eur.sent_today_minor, eur.daily_sent_remaining_minor) == (9_800, 200)


def test_a_payment_over_the_maximum_is_refused_on_the_json_face_with_what_is_left(stack, town, channel, envoy_url):
    ana, bruno = citizen(stack, town, channel, funded_minor=20_000), citizen(stack, town, channel)
    response = json_post(envoy_url, "/v1/transfers", {
        "requestId": request_id(), "fromAccount": ana.account, "toAccount": bruno.account, "amountMinor": "5001", "currency": "EUR",
    }, token=ana.token)
    assert response.status_code == 400, response.text
    body = response.json()
    assert error_reason(body) == "LIMIT_EXCEEDED"
    info = next(detail for detail in body["details"] if detail["@type"].endswith("ErrorInfo"))
    assert info["metadata"] == {"limit": "MAX_PAYMENT", "currency": "EUR", "limitMinor": "5000", "remainingMinor": "5000"}
    assert balance(channel, ana.token, ana.account).balance_minor == 20_000
    assert limits_of(channel, ana).standings[0].sent_today_minor == 0


def test_the_balance_limit_refuses_a_top_up_that_would_pass_it(stack, town, channel):
    ana = citizen(stack, town, channel, funded_minor=55_000)
    with pytest.raises(grpc.RpcError) as raised:
        payments_stub(channel).TopUp(
            payments_pb2.TopUpRequest(request_id=request_id(), account=ana.account, amount_minor=50_000, currency="EUR"),
            metadata=bearer(town.admin_token), timeout=10,
        )
    code, reason, meta = refusal(raised.value)
    assert (code, reason, meta["limit"], meta["remainingMinor"]) == (grpc.StatusCode.FAILED_PRECONDITION, "LIMIT_EXCEEDED", "MAX_BALANCE", "45000")
    assert balance(channel, ana.token, ana.account).balance_minor == 55_000


def test_raising_a_customers_level_lifts_the_limit_at_once_and_is_audited_with_the_reason(stack, town, channel):
    ana, bruno = citizen(stack, town, channel, funded_minor=20_000), citizen(stack, town, channel)
    with pytest.raises(grpc.RpcError) as raised:
        transfer(channel, ana, bruno, 6_000)
    assert refusal(raised.value)[1] == "LIMIT_EXCEEDED"
    admin = admin_stub(channel)
    changed = admin.SetUserLevel(admin_pb2.SetUserLevelRequest(user=ana.user, level="full", reason="passport checked at the desk"),
                                 metadata=bearer(town.admin_token), timeout=10)
    assert (changed.previous_level, changed.level) == ("basic", "full")
    assert transfer(channel, ana, bruno, 6_000).payment.amount_minor == 6_000
    assert limits_of(channel, ana).level == "full"
    [listed] = [user for user in admin.ListUsers(admin_pb2.ListUsersRequest(page_size=100), metadata=bearer(town.admin_token), timeout=10).users
                if user.name == ana.user]
    assert listed.level == "full"
    events = admin.ListAuditEvents(admin_pb2.ListAuditEventsRequest(page_size=50), metadata=bearer(town.admin_token), timeout=10).audit_events
    [event] = [event for event in events if event.method.endswith("/SetUserLevel")]
    summary = json.loads(event.summary_json)
    assert summary == {"before": {"user": ana.user, "level": "basic"},
                       "after": {"user": ana.user, "level": "full", "reason": "passport checked at the desk"}}
    with pytest.raises(grpc.RpcError) as raised:
        admin.SetUserLevel(admin_pb2.SetUserLevelRequest(user=ana.user, level="platinum", reason="x"), metadata=bearer(town.admin_token), timeout=10)
    assert refusal(raised.value)[:2] == (grpc.StatusCode.NOT_FOUND, "LEVEL_NOT_FOUND")


def test_a_hold_counts_when_made_a_void_gives_it_back_and_a_terminal_keeps_to_its_daily_limit(stack, town, channel):
    ana = citizen(stack, town, channel, funded_minor=20_000)
    shop = _shop(stack, town, channel)
    code = payments_stub(channel).CreatePaymentCode(
        payments_pb2.CreatePaymentCodeRequest(account=ana.account, max_amount_minor=5_000, currency="EUR"), metadata=bearer(ana.token), timeout=10,
    ).code
    held = payments_stub(channel).AuthorizePayment(payments_pb2.AuthorizePaymentRequest(
        request_id=request_id(), code=code, amount_minor=4_000, currency="EUR"), metadata=bearer(shop["terminal_token"]), timeout=10).payment
    assert limits_of(channel, ana).standings[0].sent_today_minor == 4_000
    payments_stub(channel).VoidPayment(payments_pb2.VoidPaymentRequest(request_id=request_id(), name=held.name),
                                       metadata=bearer(shop["terminal_token"]), timeout=10)
    assert limits_of(channel, ana).standings[0].sent_today_minor == 0

    terminal = admin_stub(channel).SetTerminalLimit(admin_pb2.SetTerminalLimitRequest(
        terminal=shop["terminal"], daily_charge_limit_minor=3_000), metadata=bearer(town.admin_token), timeout=10).terminal
    assert terminal.daily_charge_limit_minor == 3_000
    code = payments_stub(channel).CreatePaymentCode(
        payments_pb2.CreatePaymentCodeRequest(account=ana.account, max_amount_minor=5_000, currency="EUR"), metadata=bearer(ana.token), timeout=10,
    ).code
    with pytest.raises(grpc.RpcError) as raised:
        payments_stub(channel).ChargePaymentCode(payments_pb2.ChargePaymentCodeRequest(
            request_id=request_id(), code=code, amount_minor=3_500, currency="EUR"), metadata=bearer(shop["terminal_token"]), timeout=10)
    code_, reason, meta = refusal(raised.value)
    assert (code_, reason, meta["limit"], meta["remainingMinor"]) == (grpc.StatusCode.FAILED_PRECONDITION, "LIMIT_EXCEEDED", "TERMINAL_DAILY_CHARGE", "3000")
    charged = payments_stub(channel).ChargePaymentCode(payments_pb2.ChargePaymentCodeRequest(
        request_id=request_id(), code=code, amount_minor=3_000, currency="EUR"), metadata=bearer(shop["terminal_token"]), timeout=10)
    assert charged.payment.amount_minor == 3_000
    assert balance(channel, ana.token, ana.account).balance_minor == 17_000


def test_the_tenants_rules_are_its_administrators_and_are_checked(stack, town, channel):
    admin = admin_stub(channel)
    updated = admin.UpdateTenantSettings(admin_pb2.UpdateTenantSettingsRequest(time_zone="America/Sao_Paulo"),
                                         metadata=bearer(town.admin_token), timeout=10)
    assert (updated.time_zone, updated.language) == ("America/Sao_Paulo", "en")
    listed = admin.ListIdentityLevels(admin_pb2.ListIdentityLevelsRequest(), metadata=bearer(town.admin_token), timeout=10)
    assert listed.time_zone == "America/Sao_Paulo" and [level.code for level in listed.identity_levels] == ["basic", "full"]
    assert listed.identity_levels[0] == BASIC
    for bad in (admin_pb2.UpdateTenantSettingsRequest(time_zone="Mars/Olympus_Mons"),
                admin_pb2.UpdateTenantSettingsRequest(language="fr"), admin_pb2.UpdateTenantSettingsRequest(time_zone="x" * 65)):
        with pytest.raises(grpc.RpcError) as raised:
            admin.UpdateTenantSettings(bad, metadata=bearer(town.admin_token), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_levels = [
        admin_pb2.IdentityLevel(code="Bad Code", display_name="x", rank=1),
        admin_pb2.IdentityLevel(code="neg", display_name="x", rank=1, limits=[admin_pb2.LevelLimits(currency="EUR", daily_sent_minor=-1)]),
        admin_pb2.IdentityLevel(code="twice", display_name="x", rank=1, limits=[admin_pb2.LevelLimits(currency="EUR"), admin_pb2.LevelLimits(currency="EUR")]),
        admin_pb2.IdentityLevel(code="nocur", display_name="x", rank=1, limits=[admin_pb2.LevelLimits(currency="XXX")]),
    ]
    for level in bad_levels:
        with pytest.raises(grpc.RpcError) as raised:
            admin.SetIdentityLevel(admin_pb2.SetIdentityLevelRequest(identity_level=level), metadata=bearer(town.admin_token), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, level
    operator = _user(stack, town, channel, auth_pb2.ROLE_OPERATOR)
    with pytest.raises(grpc.RpcError) as raised:
        admin.SetIdentityLevel(admin_pb2.SetIdentityLevelRequest(identity_level=BASIC), metadata=bearer(operator), timeout=10)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    admin.UpdateTenantSettings(admin_pb2.UpdateTenantSettingsRequest(time_zone="UTC"), metadata=bearer(town.admin_token), timeout=10)


def _user(stack, town: Town, channel, role) -> str:
    created = admin_stub(channel).CreateUser(
        admin_pb2.CreateUserRequest(email=unique_email("staff"), display_name="Staff", roles=[role]), metadata=bearer(town.admin_token), timeout=10,
    )
    return login(stack.endpoints.envoy, f"tenants/{town.slug}", created.user.email, created.initial_password).tokens.access_token


def _shop(stack, town: Town, channel) -> dict[str, str]:
    admin = admin_stub(channel)
    created = admin.CreateUser(admin_pb2.CreateUserRequest(email=unique_email("shop"), display_name="Shop", roles=[auth_pb2.ROLE_MERCHANT]),
                               metadata=bearer(town.admin_token), timeout=10)
    token = login(stack.endpoints.envoy, f"tenants/{town.slug}", created.user.email, created.initial_password).tokens.access_token
    accounts_stub(channel).CreateAccount(accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_MERCHANT, currency="EUR"),
                                         metadata=bearer(token), timeout=10)
    registered = admin.RegisterTerminal(admin_pb2.RegisterTerminalRequest(merchant=created.user.name, display_name="Till"),
                                        metadata=bearer(town.admin_token), timeout=10)
    terminal_token = auth_stub(channel).LoginTerminal(auth_pb2.LoginTerminalRequest(
        client_id=registered.terminal.client_id, client_secret=registered.client_secret), timeout=10).tokens.access_token
    return {"terminal_token": terminal_token, "terminal": registered.terminal.name}
