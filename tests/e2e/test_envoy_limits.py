"""Limits and malformed input at Envoy, on every face, through the real stack.

JSON clients get a clean 4xx with a google.rpc.Status JSON body, grpc-web and native clients the gRPC
status a gRPC library would give: never HTTP 500 or INTERNAL (which is what gRPC core answers for the
malformed headers and frames checked here when they reach it), never text/plain. The HTTP guard
(envoy/http_guard.lua) does most of this; native gRPC requests skip it.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import struct

import grpc
import pytest
import requests
from google.protobuf.internal.encoder import _VarintBytes

from domain.config import MAX_REQUEST_HEADER_BYTES
from envoy_config.limits import MAX_REQUEST_BODY_BYTES, MAX_REQUEST_HEADERS_KB
from tests.fixtures import grpc_web
from localstack.health import envoy_upstreams
from tests.fixtures.http2 import Http2Connection

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


def http1_exchange(envoy_address: str, requests_to_send: list[tuple[str, str, bytes | None, dict[str, str]]]):
    """Send the requests one after another on ONE HTTP/1.1 connection; (response, body, the same
    connection?) for each. `http.client` would silently reconnect after a `connection: close`."""
    host, port = envoy_address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    answers, first_socket = [], None
    try:
        for method, path, body, headers in requests_to_send:
            connection.request(method, path, body=body, headers=headers)
            first_socket = first_socket or connection.sock
            same_connection = connection.sock is first_socket
            response = connection.getresponse()
            answers.append((response, response.read(), same_connection))
    finally:
        connection.close()
    return answers


def raw_http1(envoy_address: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 request (any bytes, also what `http.client` refuses to send): status, headers, body."""
    host, port = envoy_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as connection:
        connection.sendall(request)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, {key.lower(): value for key, value in response.getheaders()}, response.read()


EMPTY_FRAME = b"\x00" + struct.pack(">I", 0)
GRPC_WEB_HEADERS = {"content-type": grpc_web.GRPC_WEB_CONTENT_TYPE}
OVERSIZED_AUTHORIZATION = "Bearer " + "a" * 40_000  # over the limit, under Envoy's codec ceiling
PAST_THE_CEILING = "a" * (MAX_REQUEST_HEADERS_KB * 1024 + 1)


def test_json_headers_under_the_limit_reach_the_server(envoy_url):
    response = requests.get(f"{envoy_url}/v1/serverInfo", headers={"x-pad": "a" * (MAX_REQUEST_HEADER_BYTES - 1024)},
                            timeout=TIMEOUT_S)
    assert response.status_code == 200, response.text[:300]


def test_json_headers_over_the_limit_are_431_json_and_the_connection_stays(envoy_address):
    """The HTTP guard answers 431 with a google.rpc.Status naming the limit; the same HTTP/1.1
    connection then serves the client's next request."""
    (refused, body, _), (following, _, same_connection) = http1_exchange(envoy_address, [
        ("GET", "/v1/serverInfo", None, {"authorization": OVERSIZED_AUTHORIZATION}),
        ("GET", "/v1/serverInfo", None, {}),
    ])
    assert refused.status == 431 and refused.getheader("content-type").startswith("application/json"), body[:300]
    status = json.loads(body)
    assert status["code"] == RESOURCE_EXHAUSTED and str(MAX_REQUEST_HEADER_BYTES) in status["message"], status
    assert (following.status, same_connection) == (200, True)


def test_grpc_web_headers_over_the_limit_are_resource_exhausted_and_the_connection_stays(envoy_address):
    (refused, body, _), (following, following_body, same_connection) = http1_exchange(envoy_address, [
        ("POST", SERVER_INFO, EMPTY_FRAME, {**GRPC_WEB_HEADERS, "authorization": OVERSIZED_AUTHORIZATION}),
        ("POST", SERVER_INFO, EMPTY_FRAME, GRPC_WEB_HEADERS),
    ])
    assert refused.status == 200, body[:300]
    _, trailers = grpc_web.parse_frames(body)
    assert int(trailers["grpc-status"]) == RESOURCE_EXHAUSTED and str(MAX_REQUEST_HEADER_BYTES) in trailers["grpc-message"]
    assert (following.status, same_connection) == (200, True)
    assert grpc_web.parse_frames(following_body)[1]["grpc-status"] == "0"


@pytest.mark.parametrize("authorization_bytes", [18_000, 40_000, 60_000])
def test_native_headers_over_the_limit_are_resource_exhausted_and_the_channel_stays(envoy_address, authorization_bytes):
    """Native gRPC skips the HTTP guard: the server refuses, always (gRPC core alone would let the first
    calls of a new connection through, and refuse others only with some probability)."""
    with grpc.insecure_channel(envoy_address) as channel:
        info = channel.unary_unary(SERVER_INFO, request_serializer=None, response_deserializer=None)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as failure:
                info(b"", timeout=TIMEOUT_S, metadata=(("authorization", "Bearer " + "a" * authorization_bytes),))
            assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, failure.value
        info(b"", timeout=TIMEOUT_S)


@pytest.mark.parametrize("content_type", ["application/json", grpc_web.GRPC_WEB_CONTENT_TYPE])
def test_http1_headers_past_envoys_ceiling_are_431_with_a_grpc_status(envoy_address, content_type):
    """Past the codec's ceiling Envoy answers before it knows the content type: a JSON google.rpc.Status
    for JSON clients, and grpc-status / grpc-message headers that grpc-web clients read."""
    status, headers, body = raw_http1(envoy_address, (
        f"POST {SERVER_INFO} HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\ncontent-length: 5\r\n"
        f"x-pad: {PAST_THE_CEILING}\r\n\r\n"
    ).encode() + EMPTY_FRAME)
    assert status == 431 and json.loads(body)["code"] == RESOURCE_EXHAUSTED, body[:300]
    assert headers["grpc-status"] == str(RESOURCE_EXHAUSTED) and headers["grpc-message"], headers


def test_native_headers_past_envoys_ceiling_fail_only_that_call(envoy_address):
    """Past Envoy's codec ceiling HTTP/2 leaves Envoy no way to answer in-band: it resets the stream (the
    client sees INTERNAL, from RST_STREAM) or, for one field past HTTP/2's 64 KiB, the connection
    (UNAVAILABLE). The call fails at once, and the channel's next call succeeds."""
    half = "a" * (MAX_REQUEST_HEADERS_KB * 512 + 1)
    with grpc.insecure_channel(envoy_address) as channel:
        info = channel.unary_unary(SERVER_INFO, request_serializer=None, response_deserializer=None)
        for metadata in ((("x-pad", half), ("x-pad2", half)), (("x-pad", "a" * 100_000),)):
            with pytest.raises(grpc.RpcError) as failure:
                info(b"", timeout=TIMEOUT_S, metadata=metadata)
            assert failure.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE), failure.value
            info(b"", timeout=TIMEOUT_S)


# -- malformed headers ---------------------------------------------------------------------------


def test_a_refused_http1_request_keeps_its_connection(envoy_address):
    """The HTTP guard's 400 (here: a malformed grpc-timeout) no longer closes the connection."""
    (refused, body, _), (following, _, same_connection) = http1_exchange(envoy_address, [
        ("GET", "/v1/serverInfo", None, {"grpc-timeout": "abc"}),
        ("GET", "/v1/serverInfo", None, {}),
    ])
    assert refused.status == 400 and json.loads(body)["code"] == INVALID_ARGUMENT
    assert (following.status, same_connection) == (200, True)


@pytest.mark.parametrize("header", [b"x-a: a\x01b", b"authorization: Bearer a\x7fb", b"x a: b"], ids=["control", "delete", "name"])
def test_http1_malformed_header_is_400_with_a_grpc_status(envoy_address, header):
    """A header the HTTP/1 codec cannot accept: 400, a JSON INVALID_ARGUMENT, and grpc-status for grpc-web clients."""
    status, headers, body = raw_http1(envoy_address, (
        f"POST {SERVER_INFO} HTTP/1.1\r\nhost: x\r\ncontent-type: {grpc_web.GRPC_WEB_CONTENT_TYPE}\r\n"
        "content-length: 5\r\n"
    ).encode() + header + b"\r\n\r\n" + EMPTY_FRAME)
    assert status == 400 and json.loads(body)["code"] == INVALID_ARGUMENT, body[:300]
    assert headers["grpc-status"] == str(INVALID_ARGUMENT), headers


NATIVE_REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", SERVER_INFO.encode()), (b":authority", b"x"),
                  (b"content-type", b"application/grpc"), (b"te", b"trailers")]


@pytest.mark.parametrize("header", [(b"x-a", b"a\x01b"), (b"x-a", b"a\x00b"), (b"X-Upper", b"b"), (b"connection", b"keep-alive")],
                         ids=["control", "nul", "upper-case", "connection"])
def test_http2_malformed_header_resets_only_its_stream(envoy_address, header):
    """HTTP/2 gives Envoy no way to answer a header its codec refuses but to reset the stream: that one
    call fails, and the connection (everyone's calls on it) carries on."""
    with Http2Connection(envoy_address) as connection:
        refused = connection.request([*NATIVE_REQUEST, header], EMPTY_FRAME)
        assert refused.reset_code is not None and refused.goaway_code is None, refused
        following = connection.request(NATIVE_REQUEST, EMPTY_FRAME)
    assert following.headers[":status"] == "200" and following.trailers.get("grpc-status") == "0", following


def test_native_requests_without_te_trailers_are_served_and_eject_no_server(stack, envoy_address):
    """A raw HTTP/2 request without gRPC's `te: trailers` used to be reset by the server, which Envoy counted as
    a gateway failure: a dozen such unauthenticated requests took servers out of rotation for 10 s. Envoy
    now sends the header itself; the calls are answered and every server stays in rotation."""
    request = [header for header in NATIVE_REQUEST if header[0] != b"te"]
    with Http2Connection(envoy_address) as connection:
        answers = [connection.request(request, EMPTY_FRAME) for _ in range(12)]
    assert all(answer.trailers.get("grpc-status") == "0" for answer in answers), answers[-1]
    upstreams = envoy_upstreams(stack.endpoints.envoy_admin)
    assert upstreams and all(host["healthy"] for host in upstreams.values()), upstreams


def test_http2_json_headers_over_the_limit_are_431_json_and_the_connection_stays(envoy_address):
    request = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/v1/serverInfo"), (b":authority", b"x")]
    with Http2Connection(envoy_address) as connection:
        refused = connection.request([*request, (b"authorization", OVERSIZED_AUTHORIZATION.encode())])
        following = connection.request(request)
    assert refused.headers[":status"] == "431" and json.loads(refused.body)["code"] == RESOURCE_EXHAUSTED, refused
    assert following.headers[":status"] == "200", following


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
