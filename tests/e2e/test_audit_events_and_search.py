"""ListAuditEvents and the ListUsers search through Envoy, natively and as JSON: a fresh tenant's log read
newest first in pages, filtered by actor, request id and period, kept to its tenant, refused to customers;
identity and access changes (tenant, users, terminals, passwords) audited like money; users found by a
fragment of their e-mail address or name."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from tests.fixtures.identity import admin_stub, auth_stub, bearer, create_tenant, demo_user, json_get, login, login_as, unique_email
from tests.fixtures.ledger import accounts_stub


@dataclass
class Town:
    """A fresh tenant whose whole audit log this module wrote: its creation by the platform administrator,
    five events by its admin (a user, three accounts, a freeze) and one by a customer (an account)."""

    admin_token: str
    admin: str  # users/{id}
    customer_token: str
    customer: str  # users/{id}
    frozen_account: str


@pytest.fixture(scope="module")
def channel(stack):
    with grpc.insecure_channel(stack.endpoints.envoy) as opened:
        yield opened


@pytest.fixture(scope="module")
def town(stack, channel) -> Town:
    created, admin_token = create_tenant(stack, "audit")
    admin, accounts = admin_stub(channel), accounts_stub(channel)
    customer = admin.CreateUser(
        admin_pb2.CreateUserRequest(email=unique_email("citizen"), display_name="Citizen", roles=[auth_pb2.ROLE_CUSTOMER]),
        metadata=bearer(admin_token), timeout=10,
    )
    opened = [
        accounts.CreateAccount(
            accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_CUSTOMER, currency="EUR", owner=customer.user.name),
            metadata=bearer(admin_token), timeout=10,
        ).account
        for _ in range(3)
    ]
    accounts.FreezeAccount(accounts_pb2.FreezeAccountRequest(name=opened[0].name), metadata=bearer(admin_token), timeout=10)
    customer_token = login(stack.endpoints.envoy, created.tenant.tenant.name, customer.user.email, customer.initial_password).tokens.access_token
    accounts.CreateAccount(accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_CUSTOMER, currency="EUR"), metadata=bearer(customer_token), timeout=10)
    return Town(admin_token, created.admin.name, customer_token, customer.user.name, opened[0].name)


def _list(channel, token: str, **fields) -> admin_pb2.ListAuditEventsResponse:
    return admin_stub(channel).ListAuditEvents(admin_pb2.ListAuditEventsRequest(**fields), metadata=bearer(token), timeout=10)


def _all_events(channel, token: str, page_size: int, **filters) -> list[admin_pb2.AuditEvent]:
    events, page_token = [], ""
    for _ in range(50):
        page = _list(channel, token, page_size=page_size, page_token=page_token, **filters)
        assert len(page.audit_events) <= page_size
        events += page.audit_events
        page_token = page.next_page_token
        if not page_token:
            return events
    raise AssertionError("paging did not end")


def _position(event: admin_pb2.AuditEvent) -> tuple:
    return (event.create_time.seconds, event.create_time.nanos, event.stripe, event.sequence)


def _reason(error: grpc.RpcError) -> str:
    info = error_details_pb2.ErrorInfo()
    detail = next(d for d in rpc_status.from_call(error).details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR))
    detail.Unpack(info)
    return info.reason


def test_pages_of_two_walk_the_whole_log_newest_first(channel, town):
    """Pages of two list each of the tenant's seven events once, newest first, the same as one big page."""
    paged = _all_events(channel, town.admin_token, page_size=2)
    whole = _list(channel, town.admin_token, page_size=100)
    assert [event.hash_hex for event in paged] == [event.hash_hex for event in whole.audit_events]
    assert whole.next_page_token == ""
    assert len(paged) == 7 and len({event.hash_hex for event in paged}) == 7
    assert [_position(event) for event in paged] == sorted((_position(event) for event in paged), reverse=True)
    newest = paged[0]
    assert (newest.actor, newest.method) == (town.customer, "/emoney.accounts.v1.AccountsService/CreateAccount")
    verified = admin_stub(channel).VerifyAuditChain(admin_pb2.VerifyAuditChainRequest(), metadata=bearer(town.admin_token), timeout=30)
    assert verified.ok and verified.events_checked == len(paged)


def test_an_event_says_who_did_what_to_which_account(channel, town):
    """The freeze is listed with its actor, method, request id, a JSON summary naming the account and a SHA-256 hash."""
    freezes = [event for event in _all_events(channel, town.admin_token, 100) if event.method.endswith("/FreezeAccount")]
    assert len(freezes) == 1
    freeze = freezes[0]
    assert freeze.actor == town.admin and freeze.request_id
    summary = json.loads(freeze.summary_json)
    assert isinstance(summary, dict) and town.frozen_account.split("/")[1] in freeze.summary_json
    assert len(bytes.fromhex(freeze.hash_hex)) == 32


def test_the_json_face_lists_the_same_events(channel, town, envoy_url):
    """GET /v1/auditEvents answers the same events as the native call, in camelCase JSON with the summary as text."""
    native = _list(channel, town.admin_token, page_size=3)
    response = json_get(envoy_url, "/v1/auditEvents", town.admin_token, {"pageSize": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [event["hashHex"] for event in body["auditEvents"]] == [event.hash_hex for event in native.audit_events]
    assert body["nextPageToken"]
    assert isinstance(json.loads(body["auditEvents"][0]["summaryJson"]), dict)
    second = json_get(envoy_url, "/v1/auditEvents", town.admin_token, {"pageSize": 3, "pageToken": body["nextPageToken"]}).json()
    third = json_get(envoy_url, "/v1/auditEvents", town.admin_token, {"pageSize": 3, "pageToken": second["nextPageToken"]}).json()
    assert len(second["auditEvents"]) == 3 and len(third["auditEvents"]) == 1 and third.get("nextPageToken", "") == ""


def test_filters_by_actor_request_id_and_period(channel, town, envoy_url):
    """actor, request_id, start_time (inclusive) and end_time (exclusive) each narrow the list to what they name."""
    everything = _all_events(channel, town.admin_token, 100)
    assert [e.actor for e in _all_events(channel, town.admin_token, 2, actor=town.customer)] == [town.customer]
    assert {e.actor for e in _all_events(channel, town.admin_token, 2, actor=town.admin)} == {town.admin}
    assert len(_all_events(channel, town.admin_token, 2, actor=town.admin)) == 5
    assert _list(channel, town.admin_token, actor="users/" + str(uuid.uuid4())).audit_events == []

    chosen = everything[2]
    by_request = _list(channel, town.admin_token, request_id=chosen.request_id).audit_events
    assert [event.hash_hex for event in by_request] == [chosen.hash_hex]

    pivot = chosen.create_time
    since = _all_events(channel, town.admin_token, 2, start_time=pivot)
    before = _all_events(channel, town.admin_token, 2, end_time=pivot)
    assert [e.hash_hex for e in since] == [e.hash_hex for e in everything if _position(e)[:2] >= (pivot.seconds, pivot.nanos)]
    assert [e.hash_hex for e in before] == [e.hash_hex for e in everything if _position(e)[:2] < (pivot.seconds, pivot.nanos)]
    assert chosen.hash_hex in {e.hash_hex for e in since} and chosen.hash_hex not in {e.hash_hex for e in before}

    as_json = json_get(envoy_url, "/v1/auditEvents", town.admin_token, {"actor": town.customer}).json()
    assert [event["actor"] for event in as_json["auditEvents"]] == [town.customer]
    future = json_get(envoy_url, "/v1/auditEvents", town.admin_token, {"startTime": "2999-01-01T00:00:00Z"}).json()
    assert future.get("auditEvents", []) == []


def _summaries(events: list[admin_pb2.AuditEvent], method_suffix: str) -> list[dict]:
    return [json.loads(event.summary_json) for event in events if event.method.endswith(method_suffix)]


def test_identity_and_access_changes_are_audited_without_personal_data(stack, channel, envoy_url):
    """Creating the tenant and a user, signing up, registering and disabling a terminal, changing a password,
    suspending and reactivating the tenant: each is an event in the tenant's chain with its actor and the
    status before and after, naming resources and roles but never an e-mail address, a display name or a
    secret; a repeat that changes nothing is no event; the chain verifies."""
    created, admin_token = create_tenant(stack, "changes")
    tenant_name, admin_name = created.tenant.tenant.name, created.admin.name
    platform_user = demo_user(stack, "platform_admin")
    platform_login = login(stack.endpoints.envoy, f"tenants/{platform_user.tenant}", platform_user.email, platform_user.password)
    platform_token, platform_subject = platform_login.tokens.access_token, platform_login.user.name
    admin, auth = admin_stub(channel), auth_stub(channel)
    merchant = admin.CreateUser(
        admin_pb2.CreateUserRequest(email=unique_email("shop"), display_name="Corner Shop Secretname", roles=[auth_pb2.ROLE_MERCHANT]),
        metadata=bearer(admin_token), timeout=10)
    terminal = admin.RegisterTerminal(
        admin_pb2.RegisterTerminalRequest(merchant=merchant.user.name, display_name="Till Secretname"),
        metadata=bearer(admin_token), timeout=10)
    for _ in range(2):  # the second disable changes nothing: no second event
        admin.DisableTerminal(admin_pb2.DisableTerminalRequest(name=terminal.terminal.name), metadata=bearer(admin_token), timeout=10)
    citizen_email = unique_email("citizen")
    citizen = auth.SignUp(auth_pb2.SignUpRequest(tenant=tenant_name, email=citizen_email, password="correct horse battery",
                                                 display_name="Citizen Secretname"), timeout=10)
    auth.ChangePassword(auth_pb2.ChangePasswordRequest(current_password="correct horse battery",
                                                       new_password="another horse battery"),
                        metadata=bearer(citizen.tokens.access_token), timeout=10)
    for _ in range(2):  # likewise a repeated suspension
        admin.SuspendTenant(admin_pb2.SuspendTenantRequest(name=tenant_name), metadata=bearer(platform_token), timeout=10)
    admin.ReactivateTenant(admin_pb2.ReactivateTenantRequest(name=tenant_name), metadata=bearer(platform_token), timeout=10)

    events = _all_events(channel, admin_token, 100)
    by_method = {event.method.rsplit("/", 1)[1]: event for event in events}
    assert set(by_method) == {"CreateTenant", "CreateUser", "RegisterTerminal", "DisableTerminal", "SignUp",
                              "ChangePassword", "SuspendTenant", "ReactivateTenant"}
    # Nine: signing up is two events in one transaction, the user and the account the ledger opened for them.
    assert len(events) == 9
    signed_up = [json.loads(event.summary_json)["after"] for event in events if event.method.endswith("/SignUp")]
    assert len(signed_up) == 2 and {"user": citizen.user.name, "roles": ["customer"]} in signed_up
    [opened] = [summary for summary in signed_up if "user" not in summary]
    assert opened["ownerUserId"] == citizen.user.name.removeprefix("users/") and opened["kind"] == "customer", opened
    assert by_method["CreateTenant"].actor == platform_subject
    assert json.loads(by_method["CreateTenant"].summary_json)["after"]["admin"] == admin_name
    assert json.loads(by_method["CreateUser"].summary_json)["after"] == {"user": merchant.user.name, "roles": ["merchant"]}
    assert by_method["CreateUser"].actor == admin_name
    registered = json.loads(by_method["RegisterTerminal"].summary_json)["after"]
    assert (registered["terminal"], registered["merchant"]) == (terminal.terminal.name, merchant.user.name)
    disabled = json.loads(by_method["DisableTerminal"].summary_json)
    assert (disabled["before"]["status"], disabled["after"]["status"]) == ("active", "disabled")
    assert by_method["SignUp"].actor == by_method["ChangePassword"].actor == citizen.user.name
    assert [(summary["before"]["status"], summary["after"]["status"])
            for suffix in ("/SuspendTenant", "/ReactivateTenant") for summary in _summaries(events, suffix)] == [
        ("active", "suspended"), ("suspended", "active")]
    assert {by_method[name].actor for name in ("SuspendTenant", "ReactivateTenant")} == {platform_subject}
    everything = "".join(event.summary_json for event in events)
    for private in (citizen_email, merchant.user.email, created.admin.email, "Secretname", terminal.client_secret,
                    "correct horse", "another horse"):
        assert private not in everything, private
    verified = admin.VerifyAuditChain(admin_pb2.VerifyAuditChainRequest(), metadata=bearer(admin_token), timeout=30)
    assert verified.ok and verified.events_checked == 9


def test_another_tenant_sees_none_of_these_events(stack, channel, town):
    """Tenant B's administrator and the demo tenant's operator see none of the fresh tenant's events, even by its actor."""
    ours = {event.hash_hex for event in _all_events(channel, town.admin_token, 100)}
    _, tenant_b_admin = create_tenant(stack, "other")
    assert {event.hash_hex for event in _all_events(channel, tenant_b_admin, 100)}.isdisjoint(ours)
    assert _list(channel, tenant_b_admin, actor=town.admin).audit_events == []
    demo_operator = login_as(stack, "operator")
    assert _list(channel, demo_operator, actor=town.admin).audit_events == []
    assert _list(channel, demo_operator, actor=town.customer).audit_events == []


def test_customers_are_refused(channel, town, envoy_url):
    """A customer may not read the audit log: PERMISSION_DENIED natively, 403 as JSON."""
    with pytest.raises(grpc.RpcError) as raised:
        _list(channel, town.customer_token)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert json_get(envoy_url, "/v1/auditEvents", town.customer_token).status_code == 403


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"page_token": "not-a-token"}, "INVALID_PAGE_TOKEN"),
        # A well-formed token of another listing (ListUsers' keys) is not this listing's token.
        ({"page_token": "eyJjcmVhdGVkIjoiMjAyNC0wMS0wMVQwMDowMDowMCswMDowMCIsImlkIjoiMDAwIn0"}, "INVALID_PAGE_TOKEN"),
        ({"page_token": "eyJjcmVhdGVkIjoieCIsInN0cmlwZSI6IjAiLCJzZXF1ZW5jZSI6IjEifQ"}, "INVALID_PAGE_TOKEN"),
        ({"actor": "u" * 201}, "TOO_LONG"),
        ({"request_id": "r" * 101}, "TOO_LONG"),
        ({"page_size": -1}, "OUT_OF_RANGE"),
        ({"start_time": timestamp_pb2.Timestamp(seconds=10**12)}, "OUT_OF_RANGE"),
    ],
    ids=["garbage-token", "other-listing-token", "bad-time-token", "long-actor", "long-request-id", "negative-size", "time-out-of-range"],
)
def test_bad_requests_are_invalid_argument(channel, town, fields, reason):
    """Tokens not made by this listing and oversized filters are INVALID_ARGUMENT with a reason saying which."""
    with pytest.raises(grpc.RpcError) as raised:
        _list(channel, town.admin_token, **fields)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _reason(raised.value) == reason


def test_bad_requests_are_400_as_json(town, envoy_url):
    """On the JSON face the same refusals are 400 with a google.rpc.Status body."""
    for params in ({"pageToken": "not-a-token"}, {"actor": "u" * 201}, {"requestId": "r" * 101}):
        response = json_get(envoy_url, "/v1/auditEvents", town.admin_token, params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["code"] == 3


# -- ListUsers search ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def people(stack, channel) -> tuple[str, dict[str, admin_pb2.CreateUserResponse]]:
    """A fresh tenant with three people whose names and addresses differ in known ways."""
    _, admin_token = create_tenant(stack, "search")
    tag = uuid.uuid4().hex[:8]
    wanted = {
        "quartz": ("Zoë Quartzmann", f"zq-{tag}@example.org", [auth_pb2.ROLE_CUSTOMER]),
        "quarry": ("Bakery Quarry", f"shop-{tag}@quarry.example", [auth_pb2.ROLE_MERCHANT]),
        "other": ("Olga Other", f"olga_{tag}@example.org", [auth_pb2.ROLE_CUSTOMER]),
    }
    made = {
        key: admin_stub(channel).CreateUser(
            admin_pb2.CreateUserRequest(email=email, display_name=name, roles=roles), metadata=bearer(admin_token), timeout=10
        )
        for key, (name, email, roles) in wanted.items()
    }
    return admin_token, made


def _search(channel, token: str, query: str, **fields) -> list[str]:
    response = admin_stub(channel).ListUsers(admin_pb2.ListUsersRequest(query=query, page_size=100, **fields), metadata=bearer(token), timeout=10)
    return [user.email for user in response.users]


def test_search_matches_a_fragment_of_name_or_email_ignoring_case(channel, people):
    """query finds users by a case-insensitive fragment of the display name or e-mail address, with the role filter."""
    token, made = people
    assert _search(channel, token, "QUARTZ") == [made["quartz"].user.email]
    assert _search(channel, token, "quar") == [made["quartz"].user.email, made["quarry"].user.email]
    assert _search(channel, token, "quar", role=auth_pb2.ROLE_MERCHANT) == [made["quarry"].user.email]
    assert _search(channel, token, "@QUARRY.example") == [made["quarry"].user.email]
    assert _search(channel, token, "  olga ") == [made["other"].user.email]
    assert _search(channel, token, "nobody-is-called-this") == []


def test_search_treats_like_wildcards_literally(channel, people):
    """`%` and `_` match only themselves: `_` finds the one address containing it, `%` finds no one."""
    token, made = people
    assert _search(channel, token, "%") == []
    assert _search(channel, token, "a_") == [made["other"].user.email]


def test_search_as_json_and_limits(channel, people, envoy_url):
    """GET /v1/users?query= searches the same way; a query over 100 characters is INVALID_ARGUMENT (400 as JSON)."""
    token, made = people
    response = json_get(envoy_url, "/v1/users", token, {"query": "quartzMANN"})
    assert response.status_code == 200, response.text
    assert [user["email"] for user in response.json()["users"]] == [made["quartz"].user.email]
    with pytest.raises(grpc.RpcError) as raised:
        _search(channel, token, "q" * 101)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert json_get(envoy_url, "/v1/users", token, {"query": "q" * 101}).status_code == 400


def test_search_stays_in_the_tenant(stack, channel, people):
    """The demo tenant's operator searching for these people's names finds none of them."""
    _, made = people
    operator = login_as(stack, "operator")
    found = _search(channel, operator, "quartzmann")
    assert made["quartz"].user.email not in found and found == []
