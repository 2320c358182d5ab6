"""The demo story `make run` shows, played through the real API (native gRPC through Envoy):

Ana (a citizen) gets 50.00 topped up by the operator, makes a payment code, the
Corner Bakery's terminal charges 12.50 with it, the bakery refunds 2.50, and
Ana's statement is printed. Request ids are derived from the tenant, so a
restart replays the same calls and gets the same answers: nothing is paid twice.
"""

from __future__ import annotations

import uuid

import grpc

from emoney.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from emoney.payments.v1 import payments_pb2, payments_pb2_grpc
from localstack.provisioning import DEMO_TENANT_SLUG, DemoSeed
from domain.currencies import decimal_text

TIMEOUT_S = 10


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _request_id(seed: DemoSeed, step: str) -> str:
    return str(uuid.uuid5(seed.tenant_id, f"demo-story:{step}"))


def _login(auth, role: str, seed: DemoSeed) -> str:
    user = next(user for user in seed.users if user.role == role)
    response = auth.Login(
        auth_pb2.LoginRequest(tenant=f"tenants/{DEMO_TENANT_SLUG}", email=user.email, password=user.password), timeout=TIMEOUT_S
    )
    return response.tokens.access_token


def _own_account(accounts, token: str, kind: accounts_pb2.AccountKind.ValueType) -> str:
    listed = accounts.ListAccounts(accounts_pb2.ListAccountsRequest(kind=kind), metadata=_bearer(token), timeout=TIMEOUT_S)
    if listed.accounts:
        return listed.accounts[0].name
    created = accounts.CreateAccount(accounts_pb2.CreateAccountRequest(kind=kind, currency="EUR"), metadata=_bearer(token), timeout=TIMEOUT_S)
    return created.account.name


def play_demo_story(envoy_address: str, seed: DemoSeed) -> list[str]:
    """Run (or replay) the story; return the lines to print."""
    with grpc.insecure_channel(envoy_address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
        payments = payments_pb2_grpc.PaymentsServiceStub(channel)
        customer, merchant, operator = (_login(auth, role, seed) for role in ("customer", "merchant", "operator"))
        terminal = auth.LoginTerminal(
            auth_pb2.LoginTerminalRequest(client_id=seed.terminal.client_id, client_secret=seed.terminal.client_secret),
            timeout=TIMEOUT_S,
        ).tokens.access_token
        ana = _own_account(accounts, customer, accounts_pb2.ACCOUNT_KIND_CUSTOMER)
        bakery = _own_account(accounts, merchant, accounts_pb2.ACCOUNT_KIND_MERCHANT)
        payments.TopUp(
            payments_pb2.TopUpRequest(request_id=_request_id(seed, "top-up"), account=ana, amount_minor=5_000, currency="EUR"),
            metadata=_bearer(operator), timeout=TIMEOUT_S,
        )
        charged = _charge_once(payments, seed, customer, terminal, ana)
        payments.RefundPayment(
            payments_pb2.RefundPaymentRequest(request_id=_request_id(seed, "refund"), name=charged.name, amount_minor=250),
            metadata=_bearer(merchant), timeout=TIMEOUT_S,
        )
        statement = accounts.ListAccountEntries(
            accounts_pb2.ListAccountEntriesRequest(account=ana, page_size=10), metadata=_bearer(customer), timeout=TIMEOUT_S
        )
        final = accounts.GetAccount(accounts_pb2.GetAccountRequest(name=ana), metadata=_bearer(customer), timeout=TIMEOUT_S).account
    # Amounts with the decimals the server gives for the account's currency (EUR: 2), never a float.
    def money(amount_minor: int) -> str:
        return decimal_text(amount_minor, final.currency_minor_units)

    lines = [f"Demo story: Ana ({ana}) paid the Corner Bakery ({bakery}) at its terminal with a payment code:"]
    lines += [
        f"  {entry.create_time.ToDatetime():%Y-%m-%d %H:%M:%S}  {_kind_word(entry.kind):<8} {money(entry.amount_minor):>9} {final.currency}"
        f"  balance {money(entry.balance_after_minor):>9}"
        for entry in statement.entries
    ]
    lines.append(f"  available now: {money(final.available_minor)} {final.currency}")
    return lines


def _kind_word(kind: payments_pb2.PaymentKind.ValueType) -> str:
    """A payment kind as one short word for the banner: PAYMENT_KIND_TOP_UP → `top_up`."""
    return payments_pb2.PaymentKind.Name(kind).removeprefix("PAYMENT_KIND_").lower()


def _charge_once(payments, seed: DemoSeed, customer: str, terminal: str, account: str) -> payments_pb2.Payment:
    """The charge's request id is fixed; on a restart the code is gone, so find the original payment instead."""
    listed = payments.ListPayments(
        payments_pb2.ListPaymentsRequest(account=account, page_size=50), metadata=_bearer(customer), timeout=TIMEOUT_S
    )
    for payment in listed.payments:
        if payment.request_id == _request_id(seed, "charge"):
            return payment
    code = payments.CreatePaymentCode(
        payments_pb2.CreatePaymentCodeRequest(account=account, max_amount_minor=2_000, currency="EUR"),
        metadata=_bearer(customer), timeout=TIMEOUT_S,
    ).code
    return payments.ChargePaymentCode(
        payments_pb2.ChargePaymentCodeRequest(request_id=_request_id(seed, "charge"), code=code, amount_minor=1_250, currency="EUR"),
        metadata=_bearer(terminal), timeout=TIMEOUT_S,
    ).payment
