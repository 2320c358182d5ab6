"""The same contract through every face: native gRPC (direct and via Envoy), JSON over HTTP, grpc-web."""

from __future__ import annotations

import base64
import subprocess

import grpc
import pytest
import requests
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from emoney.platform.v1 import platform_pb2, platform_pb2_grpc
from tests.fixtures import grpc_web
from tests.fixtures.identity import error_reason, json_post, login_as, unique_email
from tests.fixtures.tools import grpcurl_binary


async def test_health_is_serving_per_service_directly(direct_channel):
    """Once PostgreSQL and Redis answer, overall and per-service health report SERVING."""
    stub = health_pb2_grpc.HealthStub(direct_channel)
    for service in ["", "emoney.auth.v1.AuthService", "emoney.platform.v1.PlatformService"]:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_health_of_unknown_service_is_not_found(direct_channel):
    """Health for a service the server does not have answers NOT_FOUND, per the health protocol."""
    stub = health_pb2_grpc.HealthStub(direct_channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Check(health_pb2.HealthCheckRequest(service="emoney.nope.v1.Nope"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("through", ["direct", "envoy"])
def test_reflection_lists_the_services(stack, through):
    """`grpcurl -plaintext ADDRESS list` names our services, directly and through Envoy."""
    address = stack.endpoints.grpc_servers[0] if through == "direct" else stack.endpoints.envoy
    listing = subprocess.run(
        [grpcurl_binary(), "-plaintext", address, "list"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    assert {"emoney.auth.v1.AuthService", "emoney.platform.v1.PlatformService", "grpc.health.v1.Health"} <= set(listing)


@pytest.mark.parametrize("through", ["direct", "envoy"])
def test_grpcurl_describe_shows_the_contracts_comments(stack, through):
    """Reflection serves the descriptors with their source info: `grpcurl describe` prints the .proto's
    comments on a method and on a message's fields, not only their signatures."""
    address = stack.endpoints.grpc_servers[0] if through == "direct" else stack.endpoints.envoy

    def describe(symbol: str) -> str:
        completed = subprocess.run(
            [grpcurl_binary(), "-plaintext", address, "describe", symbol], capture_output=True, text=True, timeout=30
        )
        assert completed.returncode == 0, completed.stderr
        return completed.stdout

    method = describe("emoney.payments.v1.PaymentsService.CreateTransfer")
    assert "CreateTransfer sends money from one of the caller's accounts to another" in method
    assert "rpc CreateTransfer ( .emoney.payments.v1.CreateTransferRequest )" in method
    message = describe("emoney.payments.v1.CreateTransferRequest")
    assert "The caller's account to debit: `accounts/{account_id}`." in message
    assert "grpc.health.v1.Health" in describe("grpc.health.v1.Health")  # files outside the contract still resolve
    missing = subprocess.run(
        [grpcurl_binary(), "-plaintext", address, "describe", "emoney.payments.v1.PaymentsService.NoSuchMethod"],
        capture_output=True, text=True, timeout=30,
    )
    assert missing.returncode != 0 and "not found" in missing.stderr.lower()


def test_grpcurl_calls_the_sample_rpc_through_envoy(stack):
    """The README's grpcurl call works: GetServerInfo through Envoy, answered as JSON by grpcurl."""
    completed = subprocess.run(
        [grpcurl_binary(), "-plaintext", stack.endpoints.envoy, "emoney.platform.v1.PlatformService/GetServerInfo"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert '"version": "0.1.0"' in completed.stdout


@pytest.mark.parametrize("through", ["direct", "envoy"])
async def test_get_server_info_natively(stack, through):
    """GetServerInfo answers over native gRPC, with the request id echoed in the trailing metadata."""
    address = stack.endpoints.grpc_servers[0] if through == "direct" else stack.endpoints.envoy
    async with grpc.aio.insecure_channel(address) as channel:
        call = platform_pb2_grpc.PlatformServiceStub(channel).GetServerInfo(
            platform_pb2.GetServerInfoRequest(), timeout=5, metadata=(("x-request-id", "test-request-000001"),)
        )
        response = await call
        trailing = dict(await call.trailing_metadata())
    assert response.version == "0.1.0"
    assert "emoney.auth.v1.AuthService" in response.services
    assert response.server_time.seconds >= response.start_time.seconds > 0
    if through == "direct":
        assert trailing["x-request-id"] == "test-request-000001"
    else:
        # Envoy replaces client request ids with its own (it does not trust callers); one is always there.
        assert len(trailing["x-request-id"]) >= 8


async def test_envoy_spreads_calls_over_both_servers(envoy_channel):
    """Envoy balances over every healthy server process."""
    stub = platform_pb2_grpc.PlatformServiceStub(envoy_channel)
    instances = set()
    for _ in range(40):
        instances.add((await stub.GetServerInfo(platform_pb2.GetServerInfoRequest(), timeout=5)).instance_id)
    assert len(instances) == 2


async def test_get_tenant_natively(envoy_channel):
    """GetTenant finds the seeded demo tenant through Envoy over native gRPC."""
    response = await auth_pb2_grpc.AuthServiceStub(envoy_channel).GetTenant(
        auth_pb2.GetTenantRequest(name="tenants/demo-city"), timeout=5
    )
    assert response.tenant.display_name == "Demo City"
    assert response.tenant.default_currency == "EUR"
    assert response.tenant.name == "tenants/demo-city"


async def test_not_found_carries_error_info_natively(envoy_channel):
    """An unknown tenant is NOT_FOUND with a google.rpc.ErrorInfo reason in the status details."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await auth_pb2_grpc.AuthServiceStub(envoy_channel).GetTenant(
            auth_pb2.GetTenantRequest(name="tenants/no-such-city"), timeout=5
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    status = rpc_status.from_call(raised.value)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "TENANT_NOT_FOUND" and info.domain == "emoney.dev"


async def test_invalid_argument_carries_field_violation_natively(direct_channel):
    """A malformed tenant name is INVALID_ARGUMENT with a BadRequest naming the field."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await auth_pb2_grpc.AuthServiceStub(direct_channel).GetTenant(auth_pb2.GetTenantRequest(name="Bad Name"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    assert bad_request.field_violations[0].field == "name"


def test_json_server_info(envoy_url):
    """GET /v1/serverInfo answers JSON with lowerCamelCase field names."""
    response = requests.get(f"{envoy_url}/v1/serverInfo", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["version"] == "0.1.0" and "instanceId" in body and "startTime" in body


def test_json_ignores_unknown_query_parameters(envoy_url):
    """Unknown query parameters are ignored, not rejected (mobile apps add their own)."""
    response = requests.get(f"{envoy_url}/v1/serverInfo", params={"utm_source": "app", "cacheBust": "1"}, timeout=10)
    assert response.status_code == 200


def test_json_get_tenant(envoy_url):
    """GET /v1/tenants/demo-city returns the public tenant profile."""
    response = requests.get(f"{envoy_url}/v1/tenants/demo-city", timeout=10)
    assert response.status_code == 200
    assert response.json()["tenant"]["displayName"] == "Demo City"


def test_json_not_found_is_404_with_status_body(envoy_url):
    """NOT_FOUND reaches JSON clients as HTTP 404 and a google.rpc.Status body with ErrorInfo."""
    response = requests.get(f"{envoy_url}/v1/tenants/no-such-city", timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert "no-such-city" in body["message"]
    info = next(detail for detail in body["details"] if detail["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["reason"] == "TENANT_NOT_FOUND"


def test_json_invalid_argument_is_400_with_field_violations(envoy_url):
    """INVALID_ARGUMENT reaches JSON clients as HTTP 400 with the BadRequest field violations."""
    response = requests.get(f"{envoy_url}/v1/tenants/Not_A_Slug", timeout=10)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    bad_request = next(detail for detail in body["details"] if detail["@type"].endswith("google.rpc.BadRequest"))
    assert bad_request["fieldViolations"][0]["field"] == "name"


BAD_SIGN_UP = {"email": "bad-sign-up@demo-city.example", "password": "short", "displayName": ""}


def _bad_request(details: list) -> list:
    return next(detail for detail in details if detail["@type"].endswith("google.rpc.BadRequest"))["fieldViolations"]


def test_json_field_violations_name_fields_as_json_with_a_reason_each(envoy_url):
    """A JSON client wrote `displayName`: the 400 names `displayName` (violation and message), each
    violation has a machine-readable reason, and ErrorInfo's reason is the first violation's."""
    response = json_post(envoy_url, "/v1/tenants/demo-city/users:signUp", BAD_SIGN_UP)
    assert response.status_code == 400, response.text
    body = response.json()
    assert [(violation["field"], violation["reason"]) for violation in _bad_request(body["details"])] == [
        ("password", "TOO_SHORT"), ("displayName", "REQUIRED"),
    ]
    assert "displayName is required" in body["message"] and "display_name" not in body["message"]
    assert error_reason(body) == "TOO_SHORT"


def test_json_transfer_names_from_account_as_written(envoy_url, stack):
    """CreateTransfer with a malformed `fromAccount` names `fromAccount` (INVALID_FORMAT), not `from_account`;
    ErrorInfo keeps its domain reason."""
    token = login_as(stack, "customer")
    body = {"fromAccount": "nope", "toAccount": "accounts/x", "amountMinor": "5", "currency": "EUR", "requestId": "r-1"}
    response = json_post(envoy_url, "/v1/transfers", body, token)
    assert response.status_code == 400, response.text
    assert [(violation["field"], violation["reason"]) for violation in _bad_request(response.json()["details"])] == [
        ("fromAccount", "INVALID_FORMAT"),
    ]
    assert response.json()["message"].startswith("fromAccount must have the form")
    assert error_reason(response.json()) == "INVALID_RESOURCE_NAME"


@pytest.mark.parametrize("face", ["native", "grpc-web"])
def test_native_and_grpc_web_keep_proto_field_names(envoy_url, stack, face):
    """gRPC and grpc-web clients use generated code with proto names: `display_name` there."""
    request = auth_pb2.SignUpRequest(tenant="tenants/demo-city", email=BAD_SIGN_UP["email"], password="short")
    if face == "native":
        with grpc.insecure_channel(stack.endpoints.envoy) as channel, pytest.raises(grpc.RpcError) as raised:
            auth_pb2_grpc.AuthServiceStub(channel).SignUp(request, timeout=10)
        status = rpc_status.from_call(raised.value)
    else:
        result = grpc_web.call(envoy_url, "/emoney.auth.v1.AuthService/SignUp", request)
        status = status_pb2.Status.FromString(base64.b64decode(result.trailers["grpc-status-details-bin"] + "=="))
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    assert [(violation.field, violation.reason) for violation in bad_request.field_violations] == [
        ("password", "TOO_SHORT"), ("display_name", "REQUIRED"),
    ]
    assert "display_name is required" in status.message


def test_json_unknown_body_fields_are_ignored_as_the_readme_says(envoy_url):
    """proto3 JSON mapping, and no Envoy switch refuses it: an unknown field (`phone`) is dropped and the
    sign-up succeeds (README, JSON conventions). If this ever fails, the README must change with it."""
    body = {"email": unique_email("phone"), "password": "correct horse battery", "displayName": "Phone", "phone": "+5511"}
    response = json_post(envoy_url, "/v1/tenants/demo-city/users:signUp", body)
    assert response.status_code == 200, response.text
    assert "+5511" not in response.text


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/v1/sessions:logout", ["refreshToken"]),
        ("/v1/sessions:refresh", ["refreshToken"]),
        ("/v1/tenants/demo-city/sessions:login", ["email", "password"]),
        ("/v1/terminalSessions:login", ["clientId", "clientSecret"]),
    ],
)
def test_json_session_calls_with_empty_bodies_name_the_missing_fields(envoy_url, stack, path, fields):
    """`POST /v1/sessions:logout` with `{}` is 400 naming `refreshToken` as REQUIRED, not "the refresh token
    is not valid"; the same for refresh and both logins."""
    response = json_post(envoy_url, path, {}, login_as(stack, "customer"))
    assert response.status_code == 400, response.text
    violations = _bad_request(response.json()["details"])
    assert [(violation["field"], violation["reason"]) for violation in violations] == [(field, "REQUIRED") for field in fields]
    assert error_reason(response.json()) == "REQUIRED"


def test_json_unknown_route_is_404_json(envoy_url):
    """A path no RPC maps to gets a JSON 404 with an ErrorInfo reason, never an HTML or text page."""
    response = requests.get(f"{envoy_url}/v1/nothing/here", timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert error_reason(response.json()) == "METHOD_NOT_FOUND"


def test_grpc_web_server_info(envoy_url):
    """GetServerInfo over grpc-web (what the back office's browser client sends) through Envoy."""
    result = grpc_web.call(envoy_url, "/emoney.platform.v1.PlatformService/GetServerInfo", platform_pb2.GetServerInfoRequest())
    assert result.http_status == 200
    assert result.trailers.get("grpc-status") == "0"
    response = platform_pb2.GetServerInfoResponse.FromString(result.messages[0])
    assert response.version == "0.1.0"


def test_grpc_web_error_status(envoy_url):
    """A grpc-web call that fails carries grpc-status NOT_FOUND to the browser."""
    result = grpc_web.call(envoy_url, "/emoney.auth.v1.AuthService/GetTenant", auth_pb2.GetTenantRequest(name="tenants/nowhere"))
    assert result.trailers.get("grpc-status") == str(grpc.StatusCode.NOT_FOUND.value[0])


def test_cors_preflight_allows_only_the_back_office_origin(stack, envoy_url):
    """CORS preflight succeeds for the configured back-office origin and not for another site."""
    allowed = f"http://127.0.0.1:{stack.options.ports.envoy}"
    headers = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-grpc-web,authorization",
    }
    good = requests.options(
        f"{envoy_url}/emoney.platform.v1.PlatformService/GetServerInfo", headers={**headers, "origin": allowed}, timeout=10
    )
    assert good.headers.get("access-control-allow-origin") == allowed
    evil = requests.options(
        f"{envoy_url}/emoney.platform.v1.PlatformService/GetServerInfo",
        headers={**headers, "origin": "http://evil.example"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in evil.headers
