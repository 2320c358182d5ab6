"""Limits and malformed input at Envoy, on every face, through the real stack.

JSON clients get a clean 4xx with a google.rpc.Status JSON body, grpc-web and native clients the gRPC
status a gRPC library would give: never HTTP 500 or INTERNAL (which is what gRPC core answers for the
malformed headers and frames checked here when they reach it), never text/plain. The HTTP guard
(envoy/http_guard.lua) does most of this; native gRPC requests skip it.
"""

from __future__ import annotations

import base64
import json
import struct

import grpc
import pytest
import requests
from google.protobuf.internal.encoder import _VarintBytes

from localstack.envoy import MAX_REQUEST_BODY_BYTES
from tests.fixtures import grpc_web

TIMEOUT_S = 10.0
SERVER_INFO = "/emoney.platform.v1.PlatformService/GetServerInfo"
LOGIN = "/emoney.auth.v1.AuthService/Login"
LOGIN_ROUTE = "/v1/tenants/demo-city/sessions:login"
RESOURCE_EXHAUSTED, INVALID_ARGUMENT, UNIMPLEMENTED = 8, 3, 12


def login_body_of_size(size_bytes: int) -> bytes:
    """A JSON login body of exactly ``size_bytes`` bytes."""
    empty = json.dumps({"email": "a@b.example", "password": ""}).encode()
    return json.dumps({"email": "a@b.example", "password": "x" * (size_bytes - len(empty))}).encode()


def in_chunks(body: bytes, chunk_bytes: int = 65536):
    """An iterable body: `requests` sends it chunked, without a content-length."""
    return iter([body[offset : offset + chunk_bytes] for offset in range(0, len(body), chunk_bytes)])


def assert_json_status(response: requests.Response, http_status: int, code: int) -> dict:
    assert response.status_code == http_status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


def grpc_web_answer(response: requests.Response) -> tuple[int, str]:
    """(grpc-status, grpc-message) of a grpc-web answer, from the headers or the trailers frame."""
    assert response.status_code == 200, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/grpc-web"), response.headers
    body = response.content
    if response.headers["content-type"].startswith("application/grpc-web-text"):
        body = base64.b64decode(body)
    _, trailers = grpc_web.parse_frames(body)
    trailers = {**trailers, **{key: response.headers[key] for key in ("grpc-status", "grpc-message") if key in response.headers}}
    return int(trailers["grpc-status"]), trailers.get("grpc-message", "")


def post_grpc_web(envoy_url: str, path: str, body, headers: dict[str, str] | None = None,
                  content_type: str = grpc_web.GRPC_WEB_CONTENT_TYPE) -> requests.Response:
    return requests.post(f"{envoy_url}{path}", data=body, headers={"content-type": content_type, **(headers or {})},
                         timeout=TIMEOUT_S)


def login_frame(password_bytes: int) -> bytes:
    """A grpc-web frame holding a LoginRequest whose password (field 3) has this many bytes."""
    payload = b"\x1a" + _VarintBytes(password_bytes) + b"x" * password_bytes
    return b"\x00" + struct.pack(">I", len(payload)) + payload


# -- request bodies ------------------------------------------------------------------------------


def test_json_body_at_the_limit_reaches_the_server(envoy_url):
    """A body of exactly the limit is the server's to judge (here: wrong credentials, 401)."""
    response = requests.post(f"{envoy_url}{LOGIN_ROUTE}", data=login_body_of_size(MAX_REQUEST_BODY_BYTES),
                             headers={"content-type": "application/json"}, timeout=TIMEOUT_S)
    assert response.status_code == 401, response.text[:300]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_json_body_over_the_limit_is_413_json(envoy_url, chunked):
    """Over 1 MiB, Envoy answers 413 with a google.rpc.Status (RESOURCE_EXHAUSTED); the servers never see it."""
    body = login_body_of_size(2 * MAX_REQUEST_BODY_BYTES)
    response = requests.post(f"{envoy_url}{LOGIN_ROUTE}", data=in_chunks(body) if chunked else body,
                             headers={"content-type": "application/json"}, timeout=TIMEOUT_S)
    assert_json_status(response, 413, RESOURCE_EXHAUSTED)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_grpc_web_body_over_the_limit_is_resource_exhausted(envoy_url, chunked):
    body = login_frame(2 * MAX_REQUEST_BODY_BYTES)
    response = post_grpc_web(envoy_url, LOGIN, in_chunks(body) if chunked else body)
    status, message = grpc_web_answer(response)
    assert status == RESOURCE_EXHAUSTED, message
    assert str(MAX_REQUEST_BODY_BYTES) in message


def test_grpc_web_text_body_over_the_limit_is_resource_exhausted(envoy_url):
    """grpc-web-text is limited as sent (base64), and answered in base64 too."""
    body = base64.b64encode(login_frame(MAX_REQUEST_BODY_BYTES))
    status, _ = grpc_web_answer(post_grpc_web(envoy_url, LOGIN, body, content_type="application/grpc-web-text"))
    assert status == RESOURCE_EXHAUSTED


def test_native_message_over_the_limit_is_resource_exhausted(envoy_address):
    """Native gRPC skips the HTTP guard: the servers' own message limit (1 MiB) answers."""
    payload = b"\x1a" + _VarintBytes(2 * MAX_REQUEST_BODY_BYTES) + b"x" * (2 * MAX_REQUEST_BODY_BYTES)
    with grpc.insecure_channel(envoy_address) as channel:
        login = channel.unary_unary(LOGIN, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as failure:
            login(payload, timeout=TIMEOUT_S)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- headers gRPC core parses --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [("grpc-timeout", "abc"), ("grpc-timeout", ""), ("grpc-timeout", "123456789S"), ("grpc-timeout", "-1S"),
     ("x-anything-bin", "$$$"), ("grpc-trace-bin", "A"), ("x-trace-bin", "AQID*")],
)
def test_json_malformed_grpc_header_is_400_json(envoy_url, name, value):
    response = requests.get(f"{envoy_url}/v1/serverInfo", headers={name: value}, timeout=TIMEOUT_S)
    body = assert_json_status(response, 400, INVALID_ARGUMENT)
    assert name in body["message"]


@pytest.mark.parametrize(
    "name, value",
    [("grpc-status", "abc"), ("grpc-encoding", "zzz"), ("grpc-previous-rpc-attempts", "x"),
     ("grpc-retry-pushback-ms", "x"), ("grpc-internal-encoding-request", "zz"), ("grpc-tags-bin", "AQI")],
)
def test_json_other_grpc_headers_are_dropped(envoy_url, name, value):
    """gRPC protocol headers a JSON client has no use for never reach the servers: the call just works."""
    response = requests.get(f"{envoy_url}/v1/serverInfo", headers={name: value}, timeout=TIMEOUT_S)
    assert response.status_code == 200, response.text[:300]


def test_json_valid_grpc_timeout_and_binary_headers_pass(envoy_url):
    response = requests.get(f"{envoy_url}/v1/serverInfo", timeout=TIMEOUT_S,
                            headers={"grpc-timeout": "5S", "x-trace-bin": "AQI", "x-other-bin": "AQIDBA=="})
    assert response.status_code == 200, response.text[:300]


@pytest.mark.parametrize(
    "headers, code",
    [({"grpc-timeout": "abc"}, INVALID_ARGUMENT), ({"x-anything-bin": "$$$"}, INVALID_ARGUMENT),
     ({"grpc-encoding": "zzz"}, UNIMPLEMENTED)],
    ids=["grpc-timeout", "bin", "grpc-encoding"],
)
def test_grpc_web_malformed_grpc_header_is_refused_clearly(envoy_url, headers, code):
    empty_frame = b"\x00" + struct.pack(">I", 0)
    status, message = grpc_web_answer(post_grpc_web(envoy_url, SERVER_INFO, empty_frame, headers))
    assert status == code, message


def test_grpc_web_with_a_deadline_still_works(envoy_url):
    empty_frame = b"\x00" + struct.pack(">I", 0)
    status, message = grpc_web_answer(post_grpc_web(envoy_url, SERVER_INFO, empty_frame, {"grpc-timeout": "5S"}))
    assert status == 0, message


# -- grpc-web frames -----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/grpc-web+proto", "application/grpc-web-text"])
def test_grpc_web_frame_flagged_compressed_without_encoding_is_invalid_argument(envoy_url, content_type):
    body = b"\x01" + struct.pack(">I", 0)
    if "text" in content_type:
        body = base64.b64encode(body)
    status, message = grpc_web_answer(post_grpc_web(envoy_url, SERVER_INFO, body, content_type=content_type))
    assert status == INVALID_ARGUMENT, message
    assert "compressed" in message


# -- headers too large ---------------------------------------------------------------------------


def test_json_headers_over_envoys_limit_are_431_json(envoy_url):
    response = requests.get(f"{envoy_url}/v1/serverInfo", headers={"x-pad": "a" * 40_000}, timeout=TIMEOUT_S)
    assert_json_status(response, 431, RESOURCE_EXHAUSTED)


def test_native_metadata_over_the_servers_limit_is_resource_exhausted(envoy_address):
    with grpc.insecure_channel(envoy_address) as channel:
        info = channel.unary_unary(SERVER_INFO, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as failure:
            info(b"", timeout=TIMEOUT_S, metadata=(("x-pad", "a" * 24_000),))
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_native_headers_over_envoys_limit_fail_only_that_call(envoy_address):
    """Past Envoy's 32 KiB, HTTP/2 leaves Envoy no way to answer in-band: it resets the stream (the
    client sees INTERNAL, from RST_STREAM) or, for a huge block, the connection. The call fails at once,
    and the channel's next call succeeds."""
    with grpc.insecure_channel(envoy_address) as channel:
        info = channel.unary_unary(SERVER_INFO, request_serializer=None, response_deserializer=None)
        for pad_bytes in (40_000, 100_000):
            with pytest.raises(grpc.RpcError) as failure:
                info(b"", timeout=TIMEOUT_S, metadata=(("x-pad", "a" * pad_bytes),))
            assert failure.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE), failure.value
            info(b"", timeout=TIMEOUT_S)


# -- routes, methods and bodies Envoy cannot map --------------------------------------------------


def test_unknown_route_is_404_json(envoy_url):
    assert_json_status(requests.get(f"{envoy_url}/v2/nothing", timeout=TIMEOUT_S), 404, 5)


def test_wrong_http_method_is_404_json(envoy_url):
    """GET /v1/serverInfo exists; DELETE does not: no API method there, a JSON 404 (not text/plain)."""
    assert_json_status(requests.delete(f"{envoy_url}/v1/serverInfo", timeout=TIMEOUT_S), 404, 5)


@pytest.mark.parametrize("body", [b"{not json", b'{"email": 5}', b"[1, 2]", b"\xff\xfe"], ids=["syntax", "type", "array", "utf8"])
def test_malformed_json_is_400_json(envoy_url, body):
    response = requests.post(f"{envoy_url}{LOGIN_ROUTE}", data=body, headers={"content-type": "application/json"},
                             timeout=TIMEOUT_S)
    assert_json_status(response, 400, INVALID_ARGUMENT)
