"""Who may do what: the role matrix, tenant isolation through the API, and suspension."""

from __future__ import annotations

import grpc
import pytest
import requests
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from tests.fixtures.identity import (
    admin_stub,
    auth_stub,
    bearer,
    create_tenant,
    demo_user,
    json_get,
    login,
    login_as,
    unique_email,
)

# Each admin RPC with an empty request: permission is checked before validation, so an allowed role
# gets past authorization (to INVALID_ARGUMENT, NOT_FOUND or success) and a refused one gets PERMISSION_DENIED.
ADMIN_CALLS = {
    "CreateTenant": admin_pb2.CreateTenantRequest(),
    "ListTenants": admin_pb2.ListTenantsRequest(),
    "SuspendTenant": admin_pb2.SuspendTenantRequest(),
    "ReactivateTenant": admin_pb2.ReactivateTenantRequest(),
    "CreateUser": admin_pb2.CreateUserRequest(),
    "ListUsers": admin_pb2.ListUsersRequest(),
    "RegisterTerminal": admin_pb2.RegisterTerminalRequest(),
    "DisableTerminal": admin_pb2.DisableTerminalRequest(),
    "ListTerminals": admin_pb2.ListTerminalsRequest(),
    "ListAuditEvents": admin_pb2.ListAuditEventsRequest(),
}
PLATFORM_METHODS = {"CreateTenant", "ListTenants", "SuspendTenant", "ReactivateTenant"}
# Methods a platform administrator shares with the back office, for the platform tenant itself.
PLATFORM_OWN_TENANT_METHODS = {"ListAuditEvents"}
BACK_OFFICE_METHODS = set(ADMIN_CALLS) - PLATFORM_METHODS
ALLOWED = {
    "customer": set(),
    "merchant": set(),
    "operator": BACK_OFFICE_METHODS,
    "tenant_admin": BACK_OFFICE_METHODS,
    "platform_admin": PLATFORM_METHODS | PLATFORM_OWN_TENANT_METHODS,
    "terminal": set(),
}


@pytest.fixture(scope="module")
def tokens(stack) -> dict[str, str]:
    found = {role: login_as(stack, role) for role in ["customer", "merchant", "operator", "tenant_admin", "platform_admin"]}
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        found["terminal"] = auth_stub(channel).LoginTerminal(
            auth_pb2.LoginTerminalRequest(client_id=stack.demo.terminal.client_id, client_secret=stack.demo.terminal.client_secret),
            timeout=10,
        ).tokens.access_token
    return found


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_role_matrix(stack, tokens, role):
    """Each role reaches exactly the admin methods the policy grants it; the rest are PERMISSION_DENIED."""
    reached = set()
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        admin = admin_stub(channel)
        for method, request in ADMIN_CALLS.items():
            try:
                getattr(admin, method)(request, metadata=bearer(tokens[role]), timeout=10)
                reached.add(method)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.PERMISSION_DENIED:
                    reached.add(method)
    assert reached == ALLOWED[role]


def test_operators_cannot_create_operators_but_tenant_admins_can(stack, tokens):
    """Finer rule: an operator may grant customer/merchant only."""
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        admin = admin_stub(channel)
        request = admin_pb2.CreateUserRequest(email=unique_email("op"), display_name="Op", roles=[auth_pb2.ROLE_OPERATOR])
        with pytest.raises(grpc.RpcError) as refused:
            admin.CreateUser(request, metadata=bearer(tokens["operator"]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        created = admin.CreateUser(request, metadata=bearer(tokens["tenant_admin"]), timeout=10)
        assert list(created.user.roles) == [auth_pb2.ROLE_OPERATOR] and created.initial_password


def test_permission_denied_is_403_on_the_json_face(envoy_url, tokens):
    """A customer calling a back-office route gets HTTP 403 with a JSON Status."""
    response = json_get(envoy_url, "/v1/users", tokens["customer"])
    assert response.status_code == 403
    assert response.json()["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]


@pytest.fixture(scope="module")
def other_tenant(stack):
    """Tenant B, with its own admin; used against tenant A (demo-city)'s objects."""
    created, admin_token = create_tenant(stack, "beta")
    return created, admin_token


def test_cross_tenant_matrix(stack, tokens, other_tenant):
    """Tenant B's administrator cannot see or touch any of tenant A's users, terminals or sessions."""
    _, tenant_b_admin = other_tenant
    demo_operator = tokens["operator"]
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        admin, auth = admin_stub(channel), auth_stub(channel)
        tenant_a_users = admin.ListUsers(admin_pb2.ListUsersRequest(page_size=100), metadata=bearer(demo_operator), timeout=10).users
        tenant_a_terminals = admin.ListTerminals(admin_pb2.ListTerminalsRequest(page_size=100), metadata=bearer(demo_operator), timeout=10).terminals
        merchant_a = next(user for user in tenant_a_users if auth_pb2.ROLE_MERCHANT in user.roles)

        seen_by_b = admin.ListUsers(admin_pb2.ListUsersRequest(page_size=100), metadata=bearer(tenant_b_admin), timeout=10).users
        assert {user.name for user in seen_by_b}.isdisjoint({user.name for user in tenant_a_users})
        assert admin.ListTerminals(admin_pb2.ListTerminalsRequest(), metadata=bearer(tenant_b_admin), timeout=10).terminals == []

        for call in (
            lambda: admin.DisableTerminal(admin_pb2.DisableTerminalRequest(name=tenant_a_terminals[0].name), metadata=bearer(tenant_b_admin), timeout=10),
            lambda: admin.RegisterTerminal(admin_pb2.RegisterTerminalRequest(merchant=merchant_a.name, display_name="Stolen"), metadata=bearer(tenant_b_admin), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                call()
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND  # not PERMISSION_DENIED: no existence oracle

        # Nothing changed in tenant A: its terminal still logs in.
        auth.LoginTerminal(
            auth_pb2.LoginTerminalRequest(client_id=stack.demo.terminal.client_id, client_secret=stack.demo.terminal.client_secret), timeout=10
        )
        # A's refresh token is useless to B's session.
        customer = demo_user(stack, "customer")
        a_session = login(stack.endpoints.envoy, "tenants/demo-city", customer.email, customer.password)
        with pytest.raises(grpc.RpcError) as logout:
            auth.Logout(auth_pb2.LogoutRequest(refresh_token=a_session.tokens.refresh_token), metadata=bearer(tenant_b_admin), timeout=10)
        assert logout.value.code() == grpc.StatusCode.UNAUTHENTICATED
        auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=a_session.tokens.refresh_token), timeout=10)


def test_tenant_admin_cannot_log_in_to_another_tenant(stack, other_tenant):
    """Credentials are per tenant: B's admin e-mail and password do not open tenant A."""
    created, _ = other_tenant
    with pytest.raises(grpc.RpcError) as raised:
        login(stack.endpoints.envoy, "tenants/demo-city", created.admin.email, created.admin_initial_password)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_suspension_stops_tokens_at_once_and_reactivation_restores_logins(stack, tokens, envoy_url):
    """A suspended tenant's live tokens fail on the next call; its users cannot log in; reactivating undoes it."""
    created, tenant_admin_token = create_tenant(stack, "gamma")
    slug = created.tenant.tenant.slug
    assert json_get(envoy_url, "/v1/users", tenant_admin_token).status_code == 200
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        admin = admin_stub(channel)
        suspended = admin.SuspendTenant(admin_pb2.SuspendTenantRequest(name=f"tenants/{slug}"), metadata=bearer(tokens["platform_admin"]), timeout=10)
        assert suspended.tenant.status == admin_pb2.TENANT_STATUS_SUSPENDED
        response = json_get(envoy_url, "/v1/users", tenant_admin_token)
        assert response.status_code == 401
        info = next(d for d in response.json()["details"] if d["@type"].endswith("ErrorInfo"))
        assert info["reason"] == "TENANT_SUSPENDED"
        with pytest.raises(grpc.RpcError):
            login(stack.endpoints.envoy, f"tenants/{slug}", created.admin.email, created.admin_initial_password)
        assert requests.get(f"{envoy_url}/v1/tenants/{slug}", timeout=10).status_code == 404

        admin.ReactivateTenant(admin_pb2.ReactivateTenantRequest(name=f"tenants/{slug}"), metadata=bearer(tokens["platform_admin"]), timeout=10)
        fresh = login(stack.endpoints.envoy, f"tenants/{slug}", created.admin.email, created.admin_initial_password)
        assert json_get(envoy_url, "/v1/users", fresh.tokens.access_token).status_code == 200


def test_platform_admin_lists_tenants_with_status(stack, tokens):
    """ListTenants shows every tenant, paginated by slug."""
    names, token = [], ""
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        for _ in range(50):
            page = admin_stub(channel).ListTenants(
                admin_pb2.ListTenantsRequest(page_size=2, page_token=token), metadata=bearer(tokens["platform_admin"]), timeout=10
            )
            names += [summary.tenant.slug for summary in page.tenants]
            token = page.next_page_token
            if not token:
                break
    assert "demo-city" in names and names == sorted(names) and len(names) == len(set(names))


def test_suspending_the_platform_tenant_is_refused(stack, tokens):
    """The platform cannot lock itself out."""
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            admin_stub(channel).SuspendTenant(
                admin_pb2.SuspendTenantRequest(name="tenants/platform"), metadata=bearer(tokens["platform_admin"]), timeout=10
            )
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_details_pb2.ErrorInfo()
    assert rpc_status.from_call(raised.value).details[0].Unpack(info) and info.reason == "PLATFORM_TENANT"
