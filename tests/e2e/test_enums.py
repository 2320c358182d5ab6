"""Kinds, statuses, roles and payment events are enums of the contract (server/servicers/enums.py maps them
to the domain's words), on every face:

- native gRPC and grpc-web: enum numbers; unset where a value is required is INVALID_ARGUMENT / REQUIRED
  naming the field, a number the contract does not know INVALID_ARGUMENT / NOT_ALLOWED — never INTERNAL;
- JSON: the value names, printed and accepted (in bodies and query parameters); the same refusals as
  HTTP 400, and a name the contract does not know (in a query parameter also an unknown number) is
  refused by Envoy before any server sees it;
- list filters: unset (or absent) lists every value.
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2
from tests.fixtures import grpc_web
from tests.fixtures.identity import admin_stub, bearer, error_reason, json_get, json_post, login_as, sign_up, unique_email
from tests.fixtures.ledger import accounts_stub, new_customer, new_shop, payment_code, payments_stub, request_id

INVALID_ARGUMENT = 3


@pytest.fixture
def channel(stack):
    with grpc.insecure_channel(stack.endpoints.envoy) as opened:
        yield opened


def _violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    bad_request = error_details_pb2.BadRequest()
    for detail in rpc_status.from_call(error).details:
        if detail.Unpack(bad_request):
            return [(violation.field, violation.reason) for violation in bad_request.field_violations]
    return []


def _json_violations(body: dict) -> list[tuple[str, str]]:
    return [
        (violation["field"], violation["reason"])
        for detail in body.get("details", []) if detail["@type"].endswith("/google.rpc.BadRequest")
        for violation in detail["fieldViolations"]
    ]


# -- native gRPC ------------------------------------------------------------------------------------


def test_native_unset_or_unknown_enums_are_invalid_argument_naming_the_field(stack, channel):
    customer = sign_up(stack.endpoints.envoy)[0].tokens.access_token
    operator = login_as(stack, "operator")
    accounts, payments, admin = accounts_stub(channel), payments_stub(channel), admin_stub(channel)
    cases = [
        (lambda: accounts.CreateAccount(accounts_pb2.CreateAccountRequest(kind=99, currency="EUR"), metadata=bearer(customer), timeout=10),
         ("kind", "NOT_ALLOWED")),
        (lambda: accounts.ListAccounts(accounts_pb2.ListAccountsRequest(status=42), metadata=bearer(operator), timeout=10),
         ("status", "NOT_ALLOWED")),
        (lambda: accounts.ListAccounts(accounts_pb2.ListAccountsRequest(kind=-7), metadata=bearer(operator), timeout=10),
         ("kind", "NOT_ALLOWED")),
        (lambda: payments.ListPayments(payments_pb2.ListPaymentsRequest(status=99), metadata=bearer(operator), timeout=10),
         ("status", "NOT_ALLOWED")),
        (lambda: admin.ListUsers(admin_pb2.ListUsersRequest(role=77), metadata=bearer(operator), timeout=10),
         ("role", "NOT_ALLOWED")),
        (lambda: admin.CreateUser(admin_pb2.CreateUserRequest(email=unique_email("enum"), display_name="E", roles=[auth_pb2.ROLE_UNSPECIFIED]),
                                  metadata=bearer(operator), timeout=10),
         ("roles", "NOT_ALLOWED")),
        (lambda: admin.CreateUser(admin_pb2.CreateUserRequest(email=unique_email("enum"), display_name="E", roles=[auth_pb2.ROLE_CUSTOMER, 12]),
                                  metadata=bearer(operator), timeout=10),
         ("roles", "NOT_ALLOWED")),
        (lambda: admin.CreateUser(admin_pb2.CreateUserRequest(email=unique_email("enum"), display_name="E"), metadata=bearer(operator), timeout=10),
         ("roles", "REQUIRED")),
    ]
    for call, violation in cases:
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (violation, refused.value.details())
        assert _violations(refused.value) == [violation], refused.value.details()


def test_native_a_float_account_is_not_for_opening(stack, channel):
    """A known kind that CreateAccount does not open: NOT_ALLOWED, and nothing is opened."""
    customer = sign_up(stack.endpoints.envoy)[0].tokens.access_token
    with pytest.raises(grpc.RpcError) as refused:
        accounts_stub(channel).CreateAccount(
            accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_SYSTEM_FLOAT, currency="EUR"), metadata=bearer(customer), timeout=10
        )
    assert _violations(refused.value) == [("kind", "NOT_ALLOWED")]
    owned = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=bearer(customer), timeout=10).accounts
    assert [account.kind for account in owned] == [accounts_pb2.ACCOUNT_KIND_CUSTOMER]  # only sign-up's


def test_an_unset_kind_opens_a_customer_account_in_the_tenants_currency(stack, channel, envoy_url):
    """`POST /v1/accounts {}` (and CreateAccount with nothing set) opens what a citizen needs."""
    customer = sign_up(stack.endpoints.envoy)[0].tokens.access_token
    native = accounts_stub(channel).CreateAccount(accounts_pb2.CreateAccountRequest(), metadata=bearer(customer), timeout=10)
    assert native.account.kind == accounts_pb2.ACCOUNT_KIND_CUSTOMER and native.account.currency == "EUR"
    over_json = json_post(envoy_url, "/v1/accounts", {}, customer)
    assert over_json.status_code == 200, over_json.text
    assert over_json.json()["account"]["kind"] == "ACCOUNT_KIND_CUSTOMER" and over_json.json()["account"]["currency"] == "EUR"
    unspecified = json_post(envoy_url, "/v1/accounts", {"kind": "ACCOUNT_KIND_UNSPECIFIED"}, customer)
    assert unspecified.status_code == 200 and unspecified.json()["account"]["kind"] == "ACCOUNT_KIND_CUSTOMER"
    owned = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=bearer(customer), timeout=10).accounts
    assert len(owned) == 4  # sign-up's and these three


def test_native_filters_by_enum_and_unset_lists_every_value(stack, channel):
    ana, shop = new_customer(stack, channel, funded_minor=3_000), new_shop(stack, channel)
    payments = payments_stub(channel)
    hold = payments.AuthorizePayment(
        payments_pb2.AuthorizePaymentRequest(request_id=request_id(), code=payment_code(channel, ana, 1_000), amount_minor=1_000, currency="EUR"),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment
    assert (hold.kind, hold.status) == (payments_pb2.PAYMENT_KIND_HOLD, payments_pb2.PAYMENT_STATUS_AUTHORIZED)

    def listed(status: int) -> dict[str, tuple[int, int]]:
        answer = payments.ListPayments(payments_pb2.ListPaymentsRequest(account=ana.account, status=status), metadata=bearer(ana.token), timeout=10)
        return {payment.name: (payment.kind, payment.status) for payment in answer.payments}

    every = listed(payments_pb2.PAYMENT_STATUS_UNSPECIFIED)
    assert sorted(every.values()) == sorted([
        (payments_pb2.PAYMENT_KIND_TOP_UP, payments_pb2.PAYMENT_STATUS_COMPLETED),
        (payments_pb2.PAYMENT_KIND_HOLD, payments_pb2.PAYMENT_STATUS_AUTHORIZED),
    ])
    assert list(listed(payments_pb2.PAYMENT_STATUS_AUTHORIZED)) == [hold.name]
    assert listed(payments_pb2.PAYMENT_STATUS_VOIDED) == {}

    operator = bearer(login_as(stack, "operator"))
    accounts = accounts_stub(channel)
    merchants = accounts.ListAccounts(accounts_pb2.ListAccountsRequest(kind=accounts_pb2.ACCOUNT_KIND_MERCHANT, page_size=100), metadata=operator, timeout=10)
    assert merchants.accounts and {account.kind for account in merchants.accounts} == {accounts_pb2.ACCOUNT_KIND_MERCHANT}
    floats = accounts.ListAccounts(accounts_pb2.ListAccountsRequest(kind=accounts_pb2.ACCOUNT_KIND_SYSTEM_FLOAT), metadata=operator, timeout=10)
    assert floats.accounts and all(account.owner == "" for account in floats.accounts)
    operators = admin_stub(channel).ListUsers(admin_pb2.ListUsersRequest(role=auth_pb2.ROLE_OPERATOR, page_size=100), metadata=operator, timeout=10)
    assert operators.users and all(auth_pb2.ROLE_OPERATOR in user.roles for user in operators.users)
    assert all(user.status == auth_pb2.USER_STATUS_ACTIVE for user in operators.users)


def test_grpc_web_unknown_enum_is_invalid_argument(stack, envoy_url):
    """The back office's face: the same refusal, as grpc-status 3 in the trailers."""
    result = grpc_web.call(
        envoy_url, "/emoney.accounts.v1.AccountsService/ListAccounts", accounts_pb2.ListAccountsRequest(status=5),
        token=login_as(stack, "operator"),
    )
    assert result.trailers.get("grpc-status") == str(INVALID_ARGUMENT), result.trailers


# -- JSON -------------------------------------------------------------------------------------------


def test_json_prints_enum_names(stack, channel, envoy_url):
    """Accounts, entries, payments, users, terminals and tenants show their kinds, statuses and roles by name."""
    token = sign_up(stack.endpoints.envoy)[0].tokens.access_token
    created = json_post(envoy_url, "/v1/accounts", {"kind": "ACCOUNT_KIND_CUSTOMER", "currency": "EUR"}, token)
    assert created.status_code == 200, created.text
    account = created.json()["account"]
    assert (account["kind"], account["status"]) == ("ACCOUNT_KIND_CUSTOMER", "ACCOUNT_STATUS_ACTIVE")

    operator = login_as(stack, "operator")
    payments_stub(channel).TopUp(
        payments_pb2.TopUpRequest(request_id=request_id(), account=account["name"], amount_minor=500, currency="EUR"),
        metadata=bearer(operator), timeout=10,
    )
    entries = json_get(envoy_url, f"/v1/{account['name']}/entries", token).json()["entries"]
    assert [entry["kind"] for entry in entries] == ["PAYMENT_KIND_TOP_UP"]
    listed = json_get(envoy_url, "/v1/payments", token, {"account": account["name"]}).json()["payments"]
    assert [(payment["kind"], payment["status"]) for payment in listed] == [("PAYMENT_KIND_TOP_UP", "PAYMENT_STATUS_COMPLETED")]

    me = json_get(envoy_url, "/v1/currentUser", token).json()["user"]
    assert (me["roles"], me["status"]) == (["ROLE_CUSTOMER"], "USER_STATUS_ACTIVE")
    terminals = json_get(envoy_url, "/v1/terminals", operator).json()["terminals"]
    assert terminals and {terminal["status"] for terminal in terminals} <= {"TERMINAL_STATUS_ACTIVE", "TERMINAL_STATUS_DISABLED"}
    assert "TERMINAL_STATUS_ACTIVE" in {terminal["status"] for terminal in terminals}
    tenants = json_get(envoy_url, "/v1/tenants", login_as(stack, "platform_admin")).json()["tenants"]
    assert "TENANT_STATUS_ACTIVE" in {tenant["status"] for tenant in tenants}
    assert {tenant["status"] for tenant in tenants} <= {"TENANT_STATUS_ACTIVE", "TENANT_STATUS_SUSPENDED"}


def test_json_accepts_names_in_bodies_and_query_parameters(stack, envoy_url):
    operator = login_as(stack, "operator")
    made = json_post(envoy_url, "/v1/users", {"email": unique_email("json-enum"), "displayName": "Json Shop", "roles": ["ROLE_MERCHANT"]}, operator)
    assert made.status_code == 200, made.text
    assert made.json()["user"]["roles"] == ["ROLE_MERCHANT"]
    merchants = json_get(envoy_url, "/v1/users", operator, {"role": "ROLE_MERCHANT", "pageSize": "100"}).json()["users"]
    assert merchants and all("ROLE_MERCHANT" in user["roles"] for user in merchants)
    frozen = json_get(envoy_url, "/v1/accounts", operator, {"status": "ACCOUNT_STATUS_FROZEN", "pageSize": "100"}).json()["accounts"]
    assert all(account["status"] == "ACCOUNT_STATUS_FROZEN" for account in frozen)
    # UNSPECIFIED, by name or by leaving the parameter out, lists every status.
    by_number = json_get(envoy_url, "/v1/accounts", operator, {"status": "2", "pageSize": "100"}).json()["accounts"]  # 2: FROZEN
    assert by_number == frozen
    every = json_get(envoy_url, "/v1/payments", operator, {"status": "PAYMENT_STATUS_UNSPECIFIED", "pageSize": "100"})
    assert every.status_code == 200, every.text
    assert every.json()["payments"] == json_get(envoy_url, "/v1/payments", operator, {"pageSize": "100"}).json()["payments"]


@pytest.mark.parametrize(
    ("method", "path", "role", "body", "query", "violation"),
    [
        ("post", "/v1/accounts", "customer", {"kind": 99, "currency": "EUR"}, None, ("kind", "NOT_ALLOWED")),
        ("post", "/v1/users", "operator", {"email": "x-enum@example.org", "displayName": "X", "roles": ["ROLE_UNSPECIFIED"]}, None,
         ("roles", "NOT_ALLOWED")),
        ("post", "/v1/users", "operator", {"email": "z-enum@example.org", "displayName": "Z", "roles": ["ROLE_CUSTOMER", 12]}, None,
         ("roles", "NOT_ALLOWED")),
    ],
)
def test_json_unset_or_unknown_numbers_are_400_naming_the_field(stack, envoy_url, method, path, role, body, query, violation):
    token = sign_up(stack.endpoints.envoy)[0].tokens.access_token if role == "customer" else login_as(stack, role)
    response = json_post(envoy_url, path, body, token) if method == "post" else json_get(envoy_url, path, token, query)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["code"] == INVALID_ARGUMENT and _json_violations(payload) == [violation], payload


@pytest.mark.parametrize(
    ("method", "path", "body", "query"),
    [
        ("post", "/v1/accounts", {"kind": "customer", "currency": "EUR"}, None),  # the old string, not a name of the contract
        ("post", "/v1/accounts", {"kind": "ACCOUNT_KIND_DORMANT", "currency": "EUR"}, None),
        ("post", "/v1/users", {"email": "y-enum@example.org", "displayName": "Y", "roles": ["operator"]}, None),
        ("get", "/v1/payments", None, {"status": "completed"}),
        ("get", "/v1/accounts", None, {"kind": "ACCOUNT_STATUS_ACTIVE"}),  # a name of another enum
        # In a query parameter the transcoder takes a number only when the enum has it.
        ("get", "/v1/accounts", None, {"status": "42"}),
        ("get", "/v1/users", None, {"role": "77"}),
    ],
)
def test_json_unknown_names_are_refused_by_envoy(stack, envoy_url, method, path, body, query):
    """A name the contract does not know (or, in a query parameter, a number it does not know) never reaches
    a server: Envoy's transcoder answers 400 (INVALID_ARGUMENT, reason MALFORMED_REQUEST)."""
    token = login_as(stack, "operator")
    response = json_post(envoy_url, path, body, token) if method == "post" else json_get(envoy_url, path, token, query)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["code"] == INVALID_ARGUMENT and error_reason(payload) == "MALFORMED_REQUEST", payload
