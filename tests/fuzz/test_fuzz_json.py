"""Hostile input on the JSON face (and grpc-web), through Envoy with `requests`.

Every JSON route comes from the google.api.http annotations in the descriptor set; each is fuzzed with
its path template filled with random segments, random bodies (random JSON of every type, the request's
own fields with wrong types and extreme values, deep nesting, invalid JSON, invalid UTF-8, empty, up to
2 MiB), random query strings, random methods and random headers (authorization of every role and
garbage, content types, long headers). Random paths and methods that match no route are sent too, and
the grpc-web face gets random frames for every method.

Whatever arrives: an answer within the timeout, never HTTP 500 (a bug) nor 502/503/504 (a server or
upstream away, which must not happen here); every error is a JSON google.rpc.Status (application/json
with an integer `code`), never text/plain or HTML; every success is JSON. grpc-web answers carry a
grpc-status that is never INTERNAL, UNKNOWN or DATA_LOSS. At the end both servers are still SERVING
and the ledger balances.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections import Counter
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interceptors.access_policy import allowed_roles, is_public
from domain.config import MAX_REQUEST_HEADER_BYTES
from envoy_config.limits import MAX_REQUEST_HEADERS_KB
from envoy_config.routes import ENVOY_SERVED_PATHS
from tests.fuzz.strategies import (
    HTTP_METHODS,
    FuzzWorld,
    Method,
    assert_stack_healthy_and_balanced,
    build_world,
    cached,
    grpc_status_name,
    http_headers,
    json_bodies,
    malformed_payloads,
    method_id,
    methods,
    query_strings,
    random_paths,
    request_messages,
    role_strategy,
    route_paths,
    write_summary,
)

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ROOT / "test-artifacts" / "fuzz" / "json.json"

SCALE = float(os.environ.get("EMONEY_FUZZ_EXAMPLES_SCALE", "1"))
ROUTE_EXAMPLES = max(1, int(25 * SCALE))
RANDOM_PATH_EXAMPLES = max(1, int(200 * SCALE))
GRPC_WEB_EXAMPLES = max(1, int(8 * SCALE))
TIMEOUT_S = (3.0, 8.0)  # connect, read: no answer by then is a hang (requests raises, the test fails)
STREAM_TIMEOUT_S = (5.0, 4.0)
# 500: a bug (INTERNAL, UNKNOWN, DATA_LOSS); 502/503/504: no healthy upstream, a server away, a hang.
BAD_HTTP = frozenset({500, 502, 503, 504})
BAD_GRPC = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS", "DEADLINE_EXCEEDED", "UNAVAILABLE"})
# Envoy answers these paths itself (the API document and its page, the back office's files), not with a
# google.rpc.Status: the route map's (envoy_config/routes.py).
DOCUMENT_PATHS = ENVOY_SERVED_PATHS

ROUTED = [method for method in methods() if method.http is not None]
FUZZ_SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                           HealthCheck.filter_too_much],
)
TRIED: Counter = Counter()


@pytest.fixture(scope="module")
def world(stack) -> FuzzWorld:
    return build_world(stack)


@pytest.fixture(scope="module")
def http(envoy_url):
    with requests.Session() as session:
        yield session


def allowed(method: Method) -> frozenset[str] | None:
    return None if is_public(method.path) else allowed_roles(method.path)


def send(session: requests.Session, verb: str, url: str, headers: dict[str, str], body: bytes | None, stream: bool = False):
    """Send exactly this request: `requests` would otherwise re-quote the path and query."""
    request = requests.Request(verb, url, headers=headers, data=body)
    prepared = session.prepare_request(request)
    prepared.url = url
    return session.send(prepared, timeout=STREAM_TIMEOUT_S if stream else TIMEOUT_S, stream=stream, allow_redirects=False)


def check_response(response: requests.Response, verb: str, path: str, described: str, streaming: bool = False) -> None:
    status = response.status_code
    content_type = response.headers.get("content-type", "")
    where = f"{verb} {path[:300]} -> {status} {content_type!r}\n{described[:800]}"
    assert status not in BAD_HTTP, f"bad HTTP status: {where}\nbody: {response.content[:500]!r}"
    if verb == "HEAD" or status in (204, 304):
        return
    if path.split("?", 1)[0] in DOCUMENT_PATHS and status == 200:
        return
    if verb == "OPTIONS" and status == 200 and not response.content:
        return  # a CORS pre-flight answered by Envoy's CORS filter
    if streaming and status == 200:
        assert content_type.startswith(("application/x-ndjson", "application/json")), where
        return
    assert content_type.startswith("application/json"), f"not JSON: {where}\nbody: {response.content[:300]!r}"
    body = response.json()
    if status >= 400:
        assert isinstance(body, dict) and isinstance(body.get("code"), int) and body["code"] != 0, (
            f"error without a google.rpc.Status body: {where}\nbody: {response.content[:300]!r}"
        )
        assert isinstance(body.get("message", ""), str), where


def record(kind: str, label: str, status: int | str) -> None:
    TRIED[(label, kind, str(status))] += 1


def protect_route(method: Method, world: FuzzWorld, path: str, body: bytes | None) -> tuple[str, bytes | None]:
    """Destructive routes never reach the resources the rest of the run needs: the decoy instead."""
    if not world.reaches_protected(method.name, path + (body or b"").decode("utf-8", "replace")):
        return path, body
    (field_name, pattern), = method.http.variables()
    collection = pattern.split("/", 1)[0]
    decoy = next(name for name in world.decoys.values() if name.startswith(f"{collection}/"))
    return method.http.template.replace(f"{{{field_name}={pattern}}}", decoy), b"{}"


# -- every JSON route --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ROUTED, ids=method_id)
@settings(max_examples=ROUTE_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_json_routes(method: Method, world: FuzzWorld, http: requests.Session, envoy_url: str, data) -> None:
    role = data.draw(role_strategy(allowed(method)), label="role")
    path = data.draw(cached("route", method, world, lambda: route_paths(method, world)), label="path")
    query = data.draw(st.one_of(st.just(""), cached("query", method, world, lambda: query_strings(method, world))), label="query")
    verb = data.draw(st.one_of(st.just(method.http.verb.upper()), st.just(method.http.verb.upper()), st.sampled_from(HTTP_METHODS)), label="verb")
    body = None
    if verb not in ("GET", "HEAD") or data.draw(st.booleans(), label="body on GET"):
        body = data.draw(cached("body", method, world, lambda: json_bodies(method, world)), label="body")
    headers = data.draw(http_headers(world, role), label="headers")
    headers.setdefault("content-type", "application/json")
    path, body = protect_route(method, world, path, body)
    url = f"{envoy_url}{path}" + (f"?{query}" if query else "")
    streaming = method.server_streaming and verb == "GET"
    response = send(http, verb, url, headers, body, stream=streaming)
    try:
        record("route", method_id(method), response.status_code)
        described = f"role={role} headers={ {k: v[:80] for k, v in headers.items()} } body={(body or b'')[:300]!r}"
        if streaming and response.status_code == 200:
            check_response(response, verb, path, described, streaming=True)
        else:
            check_response(response, verb, path + (f"?{query}" if query else ""), described)
        if role in ("none", "garbage", "forged") and not is_public(method.path):
            assert not 200 <= response.status_code < 300 or verb in ("HEAD", "OPTIONS"), (
                f"{method.path} answered {response.status_code} to {role} credentials"
            )
    finally:
        response.close()


# -- anything else -----------------------------------------------------------------------------


@settings(max_examples=RANDOM_PATH_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_random_paths_methods_and_headers(world: FuzzWorld, http: requests.Session, envoy_url: str, data) -> None:
    path = data.draw(random_paths(), label="path")
    verb = data.draw(st.sampled_from(HTTP_METHODS), label="verb")
    role = data.draw(st.sampled_from(["none", "garbage", "customer", "operator"]), label="role")
    headers = data.draw(http_headers(world, role), label="headers")
    if data.draw(st.booleans(), label="pre-flight"):
        headers.update({"origin": "http://127.0.0.1:8080", "access-control-request-method": "POST"})
    body = data.draw(st.one_of(st.none(), st.sampled_from([b"{}", b"{", b"\xff", b"x" * 70_000])), label="body")
    if headers.get("content-type", "").startswith("application/grpc"):
        headers["content-type"] = "application/json"
    response = send(http, verb, f"{envoy_url}{path}", headers, body)
    try:
        record("random", "random-path", response.status_code)
        check_response(response, verb, path, f"role={role} headers={ {k: v[:80] for k, v in headers.items()} } body={(body or b'')[:100]!r}")
    finally:
        response.close()


# -- grpc-web ----------------------------------------------------------------------------------


def grpc_web_frame(payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def grpc_web_status(response: requests.Response) -> str | None:
    """grpc-status from the headers (trailers-only) or from the trailer frame at the end of the body."""
    if "grpc-status" in response.headers:
        return grpc_status_name(int(response.headers["grpc-status"]))
    body, offset = response.content, 0
    while offset + 5 <= len(body):
        flags = body[offset]
        (length,) = struct.unpack(">I", body[offset + 1 : offset + 5])
        chunk = body[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if flags & 0x80:
            for line in chunk.decode("latin-1").split("\r\n"):
                key, _, value = line.partition(":")
                if key.strip().lower() == "grpc-status":
                    return grpc_status_name(int(value.strip()))
    return None


@pytest.mark.parametrize("method", [m for m in methods() if not m.client_streaming], ids=method_id)
@settings(max_examples=GRPC_WEB_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_grpc_web_frames(method: Method, world: FuzzWorld, http: requests.Session, envoy_url: str, data) -> None:
    role = data.draw(role_strategy(allowed(method)), label="role")
    valid = request_messages(method, world).map(lambda message: world.protect(method.name, message).SerializeToString())
    kind = data.draw(st.sampled_from(["message", "malformed message", "broken frame"]), label="kind")
    if kind == "message":
        body = grpc_web_frame(data.draw(valid, label="message"))
    elif kind == "malformed message":
        payload = data.draw(cached("malformed", method, world, lambda: malformed_payloads(valid)), label="payload")
        body = grpc_web_frame(world.protect_payload(method, payload))
    else:  # a frame header that lies about its length, a trailer flag, compression flag, nothing at all
        body = data.draw(
            st.one_of(
                st.binary(max_size=40),
                # flags: message, trailers, unknown bits (0x01, "compressed", has its own test below)
                st.tuples(st.sampled_from([0, 2, 0x80, 0x81, 0xFF]), st.integers(0, 2**32 - 1), st.binary(max_size=20)).map(
                    lambda parts: bytes([parts[0]]) + struct.pack(">I", parts[1]) + parts[2]
                ),
            ),
            label="frame",
        )
    headers = data.draw(http_headers(world, role), label="headers")
    headers["content-type"] = data.draw(
        st.sampled_from(["application/grpc-web+proto", "application/grpc-web", "application/grpc-web-text"]), label="content-type"
    )
    if headers["content-type"].endswith("-text"):
        body = base64.b64encode(body)
    headers["x-grpc-web"] = "1"
    stream = method.server_streaming
    response = send(http, "POST", f"{envoy_url}{method.path}", headers, body, stream=stream)
    try:
        if stream and response.status_code == 200 and "grpc-status" not in response.headers:
            record("grpc-web", method_id(method), "OPENED")
            return  # the stream opened (headers sent once subscribed); closing it is enough
        status = grpc_web_status(response)
        record("grpc-web", method_id(method), status or response.status_code)
        where = f"{method.path} as {role} ({kind}): HTTP {response.status_code} grpc-status {status}\nbody: {body[:200]!r}"
        assert response.status_code not in BAD_HTTP, where
        assert status not in BAD_GRPC, where
    finally:
        response.close()


# -- limits ------------------------------------------------------------------------------------


def test_two_megabyte_body_is_refused_clearly(world: FuzzWorld, http: requests.Session, envoy_url: str) -> None:
    body = json.dumps({"email": "a" * (2 << 20), "displayName": "Big", "roles": ["ROLE_CUSTOMER"]}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {world.tokens['operator']}"}
    response = send(http, "POST", f"{envoy_url}/v1/users", headers, body)
    assert response.status_code in (400, 413, 429), response.status_code
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["code"] in (3, 8), response.text[:300]


def test_oversized_headers_are_refused_clearly(world: FuzzWorld, http: requests.Session, envoy_url: str) -> None:
    """Above MAX_REQUEST_HEADER_BYTES the HTTP guard answers, above Envoy's codec ceiling the codec: 431 with
    a JSON RESOURCE_EXHAUSTED either way."""
    for size in (MAX_REQUEST_HEADER_BYTES + 1, 24 * 1024, 40 * 1024, MAX_REQUEST_HEADERS_KB * 1024 + 1):
        headers = {"x-padding": "a" * size, "authorization": f"Bearer {world.tokens['operator']}"}
        response = send(http, "GET", f"{envoy_url}/v1/users", headers, None)
        assert response.status_code == 431, (size, response.status_code)
        assert response.headers["content-type"].startswith("application/json"), (size, response.headers)
        assert response.json()["code"] == 8, (size, response.text[:300])


def test_huge_page_size_is_clamped(world: FuzzWorld, http: requests.Session, envoy_url: str) -> None:
    headers = {"authorization": f"Bearer {world.tokens['operator']}"}
    for path, field in (("/v1/users", "users"), ("/v1/accounts", "accounts"), ("/v1/payments", "payments"), ("/v1/terminals", "terminals")):
        response = send(http, "GET", f"{envoy_url}{path}?pageSize=1000000000", headers, None)
        assert response.status_code == 200, (path, response.text[:300])
        assert len(response.json()[field]) <= 100
        too_big = send(http, "GET", f"{envoy_url}{path}?pageSize=99999999999999999999", headers, None)
        assert too_big.status_code == 400 and too_big.json()["code"] == 3, (path, too_big.text[:300])


def test_100k_character_strings_are_refused(world: FuzzWorld, http: requests.Session, envoy_url: str) -> None:
    long_text = "a" * 50_000 + "é" * 50_000
    cases = [
        ("/v1/tenants/demo-city/users:signUp", None, {"email": long_text + "@example.org", "password": "correct horse 1", "displayName": "X"}, 400),
        ("/v1/tenants/demo-city/users:signUp", None, {"email": "fuzz-long@example.org", "password": "correct horse 1", "displayName": long_text}, 400),
        ("/v1/users", "operator", {"email": "fuzz-long@example.org", "displayName": long_text, "roles": ["ROLE_CUSTOMER"]}, 400),
        ("/v1/tenants/demo-city/sessions:login", None, {"email": long_text, "password": "x"}, 401),
        ("/v1/transfers", "customer", {"requestId": long_text, "fromAccount": world.names["accounts"][0],
                                        "toAccount": world.names["accounts"][1], "amountMinor": "1", "currency": "EUR"}, 400),
    ]
    for path, role, body, expected in cases:
        headers = {"content-type": "application/json"}
        if role:
            headers["authorization"] = f"Bearer {world.tokens[role]}"
        response = send(http, "POST", f"{envoy_url}{path}", headers, json.dumps(body).encode())
        assert response.status_code == expected, (path, response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/json")
    # A 20,000-character path: Envoy passes it on in x-envoy-original-path too, so the servers' metadata
    # limit answers (RESOURCE_EXHAUSTED, 429) before the name check would (400); above 32 KiB Envoy: 431.
    for length in (2_000, 20_000, 40_000):
        response = send(http, "GET", f"{envoy_url}/v1/tenants/{'a' * length}", {}, None)
        assert response.status_code in (400, 429, 431), (length, response.status_code)
        assert response.headers["content-type"].startswith("application/json") and response.json()["code"] in (3, 8)


# -- headers that gRPC itself parses -------------------------------------------------------------

# A malformed value in a header gRPC core parses (what an HTTP client can send through Envoy, which
# passes client headers on as gRPC metadata).
MALFORMED_GRPC_HEADERS = [
    ("grpc-timeout", "abc"), ("grpc-timeout", ""), ("grpc-timeout", "-1S"), ("grpc-encoding", "zzz"),
    ("grpc-status", "abc"), ("grpc-previous-rpc-attempts", "x"), ("grpc-retry-pushback-ms", "x"),
    ("grpc-internal-encoding-request", "zz"), ("grpc-tags-bin", "$$"), ("grpc-trace-bin", "$$"), ("x-anything-bin", "$$$"),
]


def test_malformed_grpc_headers_fail_only_their_own_call(world: FuzzWorld, http: requests.Session, envoy_url: str, stack) -> None:
    """gRPC core remembers a header value it failed to parse in the connection's HPACK table and then
    failed later, unrelated calls that reuse the entry (grpc/grpc#34721): a single `grpc-timeout: abc`
    from one client broke every call with a deadline, on every face, for everyone behind that Envoy
    connection. The servers now keep no HPACK table for incoming headers, so it costs one call at most."""
    import grpc

    for name, value in MALFORMED_GRPC_HEADERS:
        for _ in range(2):  # round robin: both servers
            send(http, "GET", f"{envoy_url}/v1/serverInfo", {name: value}, None).close()
    failures = []
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        info = channel.unary_unary("/emoney.platform.v1.PlatformService/GetServerInfo", request_serializer=None, response_deserializer=None)
        for _ in range(6):
            try:
                info(b"", timeout=5, metadata=(("x-trace-bin", b"\x01\x02"), ("x-note", "abc")))
            except grpc.RpcError as error:
                failures.append(("native", error.code().name, error.details()))
            response = send(http, "GET", f"{envoy_url}/v1/serverInfo", {"x-note": "abc"}, None)
            if response.status_code != 200:
                failures.append(("json", response.status_code, response.text[:100]))
            web = send(http, "POST", f"{envoy_url}/emoney.platform.v1.PlatformService/GetServerInfo",
                       {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", "grpc-timeout": "5S"}, grpc_web_frame(b""))
            if grpc_web_status(web) != "OK":
                failures.append(("grpc-web", grpc_web_status(web), web.headers.get("grpc-message")))
    assert not failures, failures


def test_malformed_grpc_headers_from_http_clients_are_refused_clearly(http: requests.Session, envoy_url: str) -> None:
    """Envoy's HTTP guard refuses a malformed deadline or `*-bin` value (400) and drops the other gRPC
    protocol headers (the call goes through), so gRPC core never fails such a call as INTERNAL."""
    answers = {}
    for name, value in MALFORMED_GRPC_HEADERS:
        response = send(http, "GET", f"{envoy_url}/v1/serverInfo", {name: value}, None)
        answers[f"{name}: {value}"] = (response.status_code, response.headers.get("content-type", ""))
    assert all(status in (200, 400) and content_type.startswith("application/json")
               for status, content_type in answers.values()), answers


def test_grpc_web_frame_flagged_compressed_is_refused_clearly(http: requests.Session, envoy_url: str) -> None:
    response = send(http, "POST", f"{envoy_url}/emoney.platform.v1.PlatformService/GetServerInfo",
                    {"content-type": "application/grpc-web+proto"}, b"\x01" + struct.pack(">I", 0))
    assert grpc_web_status(response) == "INVALID_ARGUMENT", (grpc_web_status(response), response.content[-200:])


# -- afterwards --------------------------------------------------------------------------------


def test_servers_still_serving_and_ledger_balanced(stack, world: FuzzWorld) -> None:
    """Runs last in this file: both servers SERVING (asked directly), the ledger and audit chain intact."""
    assert_stack_healthy_and_balanced(stack)
    write_summary(SUMMARY, TRIED)
