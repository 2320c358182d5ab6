"""Identity flows through every face: sign-up, login, refresh rotation, logout, terminals, passwords."""

from __future__ import annotations

import grpc
import pytest

from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from tests.fixtures import grpc_web
from tests.fixtures.errors import grpc_reason
from tests.fixtures.identity import (
    DEMO_TENANT,
    admin_stub,
    auth_stub,
    bearer,
    demo_user,
    error_reason,
    json_get,
    json_post,
    login_as,
    unique_email,
)


def test_json_sign_up_login_refresh_logout(envoy_url):
    """A citizen's whole session over JSON: sign up, log in, read themselves, refresh, log out."""
    email = unique_email()
    signed_up = json_post(
        envoy_url,
        "/v1/tenants/demo-city/users:signUp",
        {"email": email, "password": "a long passphrase", "displayName": "Json Person"},
    )
    assert signed_up.status_code == 200, signed_up.text
    assert signed_up.json()["user"]["roles"] == ["ROLE_CUSTOMER"]
    assert signed_up.json()["user"]["status"] == "USER_STATUS_ACTIVE"

    logged_in = json_post(envoy_url, "/v1/tenants/demo-city/sessions:login", {"email": email, "password": "a long passphrase"})
    assert logged_in.status_code == 200
    tokens = logged_in.json()["tokens"]
    assert tokens["tokenType"] == "Bearer"

    me = json_get(envoy_url, "/v1/currentUser", tokens["accessToken"])
    assert me.status_code == 200 and me.json()["user"]["email"] == email and me.json()["user"]["tenant"] == DEMO_TENANT

    refreshed = json_post(envoy_url, "/v1/sessions:refresh", {"refreshToken": tokens["refreshToken"]})
    assert refreshed.status_code == 200
    new_tokens = refreshed.json()["tokens"]
    assert new_tokens["refreshToken"] != tokens["refreshToken"]

    logged_out = json_post(envoy_url, "/v1/sessions:logout", {"refreshToken": new_tokens["refreshToken"]}, new_tokens["accessToken"])
    assert logged_out.status_code == 200
    after = json_get(envoy_url, "/v1/currentUser", new_tokens["accessToken"])
    assert after.status_code == 401 and error_reason(after.json()) == "TOKEN_REVOKED"
    assert json_post(envoy_url, "/v1/sessions:refresh", {"refreshToken": new_tokens["refreshToken"]}).status_code == 401


def test_refresh_token_reuse_revokes_the_family(envoy_url):
    """Replaying a used refresh token fails and also kills the token that replaced it."""
    email = unique_email()
    json_post(envoy_url, "/v1/tenants/demo-city/users:signUp", {"email": email, "password": "a long passphrase", "displayName": "P"})
    first = json_post(envoy_url, "/v1/tenants/demo-city/sessions:login", {"email": email, "password": "a long passphrase"}).json()
    second = json_post(envoy_url, "/v1/sessions:refresh", {"refreshToken": first["tokens"]["refreshToken"]}).json()

    replay = json_post(envoy_url, "/v1/sessions:refresh", {"refreshToken": first["tokens"]["refreshToken"]})
    assert replay.status_code == 401 and error_reason(replay.json()) == "REFRESH_TOKEN_REUSED"
    descendant = json_post(envoy_url, "/v1/sessions:refresh", {"refreshToken": second["tokens"]["refreshToken"]})
    assert descendant.status_code == 401 and error_reason(descendant.json()) == "REFRESH_TOKEN_INVALID"


@pytest.mark.parametrize("token", [None, "not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
def test_authenticated_methods_refuse_missing_or_bad_tokens(envoy_url, token):
    """No token, garbage, or `alg: none` → HTTP 401 with a JSON Status, never a 500."""
    response = json_get(envoy_url, "/v1/currentUser", token)
    assert response.status_code == 401
    assert response.json()["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]


def test_wrong_password_and_unknown_email_look_the_same(envoy_url, stack):
    """Login failures do not reveal whether the e-mail exists."""
    customer = demo_user(stack, "customer")
    wrong = json_post(envoy_url, "/v1/tenants/demo-city/sessions:login", {"email": customer.email, "password": "wrong password!"})
    unknown = json_post(envoy_url, "/v1/tenants/demo-city/sessions:login", {"email": unique_email(), "password": "wrong password!"})
    assert wrong.status_code == unknown.status_code == 401
    assert error_reason(wrong.json()) == error_reason(unknown.json()) == "INVALID_CREDENTIALS"
    assert wrong.json()["message"] == unknown.json()["message"]


def test_sign_up_rules(envoy_url, stack):
    """Weak passwords and bad e-mails are 400 with field violations; a taken e-mail is 409."""
    weak = json_post(envoy_url, "/v1/tenants/demo-city/users:signUp", {"email": "bad", "password": "password123", "displayName": ""})
    assert weak.status_code == 400
    fields = {(v["field"], v["reason"]) for d in weak.json()["details"] if "fieldViolations" in d for v in d["fieldViolations"]}
    assert fields == {("email", "INVALID_FORMAT"), ("password", "TOO_WEAK"), ("displayName", "REQUIRED")}
    taken = json_post(
        envoy_url,
        "/v1/tenants/demo-city/users:signUp",
        {"email": demo_user(stack, "customer").email, "password": "a long passphrase", "displayName": "Dup"},
    )
    assert taken.status_code == 409 and error_reason(taken.json()) == "EMAIL_TAKEN"


def test_nobody_can_sign_up_to_the_platform_tenant(envoy_url):
    """The platform administrators' tenant is invisible to the public directory."""
    response = json_post(envoy_url, "/v1/tenants/platform/users:signUp", {"email": unique_email(), "password": "a long passphrase", "displayName": "X"})
    assert response.status_code == 404


def test_change_password_signs_out_other_sessions(stack):
    """After ChangePassword the old password and old refresh tokens stop working; the new password works."""
    address = stack.endpoints.envoy
    email = unique_email()
    with grpc.insecure_channel(address) as channel:
        auth = auth_stub(channel)
        session = auth.SignUp(auth_pb2.SignUpRequest(tenant=DEMO_TENANT, email=email, password="first passphrase", display_name="C"), timeout=10)
        with pytest.raises(grpc.RpcError) as wrong:
            auth.ChangePassword(
                auth_pb2.ChangePasswordRequest(current_password="not it at all", new_password="second passphrase"),
                metadata=bearer(session.tokens.access_token), timeout=10,
            )
        assert wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT and grpc_reason(wrong.value) == "WRONG_PASSWORD"
        auth.ChangePassword(
            auth_pb2.ChangePasswordRequest(current_password="first passphrase", new_password="second passphrase"),
            metadata=bearer(session.tokens.access_token), timeout=10,
        )
        with pytest.raises(grpc.RpcError) as stale:
            auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=session.tokens.refresh_token), timeout=10)
        assert stale.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError):
            auth.Login(auth_pb2.LoginRequest(tenant=DEMO_TENANT, email=email, password="first passphrase"), timeout=10)
        auth.Login(auth_pb2.LoginRequest(tenant=DEMO_TENANT, email=email, password="second passphrase"), timeout=10)


def test_terminal_lifecycle_natively(stack):
    """Operator registers a terminal for a merchant; it logs in with its secret; disabling it stops its
    current token at once and refuses new logins."""
    address = stack.endpoints.envoy
    operator = login_as(stack, "operator")
    with grpc.insecure_channel(address) as channel:
        admin, auth = admin_stub(channel), auth_stub(channel)
        merchant = admin.CreateUser(
            admin_pb2.CreateUserRequest(email=unique_email("shop"), display_name="Shop", roles=[auth_pb2.ROLE_MERCHANT]),
            metadata=bearer(operator), timeout=10,
        ).user
        registered = admin.RegisterTerminal(
            admin_pb2.RegisterTerminalRequest(merchant=merchant.name, display_name="Till 7"), metadata=bearer(operator), timeout=10
        )
        assert registered.client_secret and registered.terminal.client_id.startswith("term_")
        listed = admin.ListTerminals(admin_pb2.ListTerminalsRequest(page_size=100), metadata=bearer(operator), timeout=10)
        assert registered.terminal.name in {terminal.name for terminal in listed.terminals}
        assert all(not hasattr(terminal, "client_secret") for terminal in listed.terminals)

        terminal_login = auth.LoginTerminal(
            auth_pb2.LoginTerminalRequest(client_id=registered.terminal.client_id, client_secret=registered.client_secret), timeout=10
        )
        terminal_token = terminal_login.tokens.access_token
        assert terminal_login.tokens.refresh_token == ""
        me = auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(terminal_token), timeout=10)
        assert me.terminal.name == registered.terminal.name

        with pytest.raises(grpc.RpcError) as wrong_secret:
            auth.LoginTerminal(auth_pb2.LoginTerminalRequest(client_id=registered.terminal.client_id, client_secret="x" * 43), timeout=10)
        assert wrong_secret.value.code() == grpc.StatusCode.UNAUTHENTICATED

        admin.DisableTerminal(admin_pb2.DisableTerminalRequest(name=registered.terminal.name), metadata=bearer(operator), timeout=10)
        with pytest.raises(grpc.RpcError) as disabled:
            auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(terminal_token), timeout=10)
        assert disabled.value.code() == grpc.StatusCode.UNAUTHENTICATED and grpc_reason(disabled.value) == "PRINCIPAL_DISABLED"
        with pytest.raises(grpc.RpcError) as refused:
            auth.LoginTerminal(
                auth_pb2.LoginTerminalRequest(client_id=registered.terminal.client_id, client_secret=registered.client_secret), timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_demo_terminal_logs_in(stack):
    """The seeded demo terminal's printed credentials work."""
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        response = auth_stub(channel).LoginTerminal(
            auth_pb2.LoginTerminalRequest(client_id=stack.demo.terminal.client_id, client_secret=stack.demo.terminal.client_secret),
            timeout=10,
        )
    assert response.terminal.display_name == "Corner Bakery till 1"


def test_grpc_web_login_and_authenticated_call(envoy_url, stack):
    """The back office's face: log in and call an authenticated method over grpc-web with the bearer header."""
    operator = demo_user(stack, "operator")
    login = grpc_web.call(
        envoy_url, "/emoney.auth.v1.AuthService/Login",
        auth_pb2.LoginRequest(tenant=DEMO_TENANT, email=operator.email, password=operator.password),
    )
    assert login.trailers.get("grpc-status") == "0"
    token = auth_pb2.LoginResponse.FromString(login.messages[0]).tokens.access_token
    listed = grpc_web.call(
        envoy_url, "/emoney.admin.v1.AdminService/ListUsers", admin_pb2.ListUsersRequest(page_size=2), token=token
    )
    assert listed.trailers.get("grpc-status") == "0"
    page = admin_pb2.ListUsersResponse.FromString(listed.messages[0])
    assert len(page.users) == 2 and page.next_page_token
    assert {user.tenant for user in page.users} == {DEMO_TENANT}


def test_list_users_pages_through_everyone_once(stack):
    """Keyset pagination returns every user exactly once, and a forged page token is INVALID_ARGUMENT."""
    operator = login_as(stack, "operator")
    seen, token = [], ""
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        admin = admin_stub(channel)
        for _ in range(100):
            page = admin.ListUsers(admin_pb2.ListUsersRequest(page_size=3, page_token=token), metadata=bearer(operator), timeout=10)
            seen += [user.name for user in page.users]
            token = page.next_page_token
            if not token:
                break
        assert len(seen) == len(set(seen)) >= 4
        with pytest.raises(grpc.RpcError) as forged:
            admin.ListUsers(admin_pb2.ListUsersRequest(page_token="bm90LWEtdG9rZW4"), metadata=bearer(operator), timeout=10)
        assert forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT
