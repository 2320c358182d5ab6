"""Hostile input on the native gRPC face, through Envoy: every RPC of the contract, fuzzed.

For every method of every `emoney.*` service (read from the descriptor set, see strategies.py):
- request messages built from the descriptor with random field values, sent with the token of a random
  role (none, a garbage or a forged token, each user role, a terminal) and random metadata;
- malformed payloads (bytes that do not decode as the request type), sent with a raw channel;
- WatchPayments (a server stream) with a short deadline: opening it and cancelling is a success, a
  refusal must come promptly, and a stream that neither opens nor refuses before its deadline is a hang;
- calls that carry no request message, or two.

Whatever arrives, a call must answer within its deadline with a deliberate status: never INTERNAL,
UNKNOWN or DATA_LOSS (a bug), never DEADLINE_EXCEEDED (a hang), never UNAVAILABLE (a server down);
a success must decode as the response type; a forged token or none must never get through to an
authenticated method. Then the limits (message size, metadata size, page size, 100k-character strings)
answer with clear errors, the inputs the fuzzers once broke the servers with are replayed as plain
tests, and at the end both servers are SERVING and the ledger still balances.

Bounded and reproducible: a fixed number of examples per method, derandomized, no example database.
`EMONEY_FUZZ_EXAMPLES_SCALE` multiplies the number of examples (e.g. 10 for a long local run). What
was tried and what came back is written to test-artifacts/fuzz/native.json.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from interceptors.access_policy import allowed_roles, is_public
from tests.fuzz.strategies import (
    ROLES,
    FuzzWorld,
    Method,
    assert_stack_healthy_and_balanced,
    authorization_for,
    build_world,
    cached,
    grpc_metadata,
    malformed_payloads,
    method_id,
    methods,
    request_messages,
    role_strategy,
    varint,
    write_summary,
)

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ROOT / "test-artifacts" / "fuzz" / "native.json"

SCALE = float(os.environ.get("EMONEY_FUZZ_EXAMPLES_SCALE", "1"))
MESSAGE_EXAMPLES = max(1, int(40 * SCALE))
MALFORMED_EXAMPLES = max(1, int(15 * SCALE))
WATCH_EXAMPLES = max(1, int(40 * SCALE))
CALL_TIMEOUT_S = 5.0
WATCH_DEADLINE_S = 3.0
# A bug (INTERNAL, UNKNOWN, DATA_LOSS), a hang (DEADLINE_EXCEEDED) or a server away (UNAVAILABLE).
BAD_CODES = frozenset(
    {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS, grpc.StatusCode.DEADLINE_EXCEEDED,
     grpc.StatusCode.UNAVAILABLE}
)
MAX_PAGE_SIZE = 100  # domain/validation.py: larger page sizes are clamped to this

UNARY = [method for method in methods() if not method.client_streaming and not method.server_streaming]
STREAMING = [method for method in methods() if method.server_streaming and not method.client_streaming]
FUZZ_SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                           HealthCheck.filter_too_much],
)

# What was sent and what came back, per method: the figures for the README ("inputs tried").
TRIED: Counter = Counter()


@pytest.fixture(scope="module")
def world(stack) -> FuzzWorld:
    return build_world(stack)


@pytest.fixture(scope="module")
def channel(stack):
    with grpc.insecure_channel(stack.endpoints.envoy) as envoy_channel:
        yield envoy_channel


def allowed(method: Method) -> frozenset[str] | None:
    return None if is_public(method.path) else allowed_roles(method.path)


def metadata_for(data, role: str, world: FuzzWorld) -> list[tuple[str, str | bytes]]:
    entries = data.draw(grpc_metadata(), label="metadata")
    authorization = data.draw(authorization_for(role, world), label="authorization")
    if authorization is not None:
        entries.insert(0, ("authorization", authorization))
    return entries


def call_unary(channel: grpc.Channel, method: Method, payload: bytes, metadata) -> tuple[grpc.StatusCode, str, bytes | None, tuple]:
    rpc = channel.unary_unary(method.path, request_serializer=None, response_deserializer=None)
    try:
        response, call = rpc.with_call(payload, metadata=metadata, timeout=CALL_TIMEOUT_S)
        return grpc.StatusCode.OK, "", response, tuple(call.trailing_metadata() or ())
    except grpc.RpcError as error:
        return error.code(), error.details() or "", None, tuple(error.trailing_metadata() or ())


def call_stream(channel: grpc.Channel, method: Method, payload: bytes, metadata) -> tuple[grpc.StatusCode | str, str]:
    """Open a server stream with a short deadline. `OPENED` when the server sent its headers (it is
    subscribed; the call is then cancelled), else the status the stream ended with."""
    rpc = channel.unary_stream(method.path, request_serializer=None, response_deserializer=None)
    call = rpc(payload, metadata=metadata, timeout=WATCH_DEADLINE_S)
    try:
        call.initial_metadata()  # returns once headers arrive, or when the call ends without any
        if not call.done():
            return "OPENED", ""
        return call.code(), call.details() or ""
    finally:
        call.cancel()


def check_status(method: Method, role: str, code: grpc.StatusCode, details: str, trailing: tuple, sent: object) -> None:
    def where() -> str:
        return f"{method.path} as {role}: {code.name} {details[:300]!r}\nrequest: {repr(sent)[:600]}"

    assert code not in BAD_CODES, f"bad status from {where()}"
    # The client refused the answer's own headers or trailers (e.g. an error message quoting a huge input).
    assert not ("metadata size exceeds" in details and ":status" in details), f"answer too large to read: {where()}"
    if role in ("none", "garbage", "forged") and not is_public(method.path):
        assert code != grpc.StatusCode.OK, f"an authenticated method accepted {role} credentials: {where()}"
    for key, value in trailing:
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            assert status.code == code.value[0], f"status details disagree with the status: {where()}"


def record(method: Method, kind: str, code) -> None:
    name = code if isinstance(code, str) else code.name
    TRIED[(method_id(method), kind, name)] += 1


# -- random messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", UNARY, ids=method_id)
@settings(max_examples=MESSAGE_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_random_messages(method: Method, world: FuzzWorld, channel: grpc.Channel, data) -> None:
    role = data.draw(role_strategy(allowed(method)), label="role")
    message = world.protect(method.name, data.draw(request_messages(method, world), label="request"))
    metadata = metadata_for(data, role, world)
    code, details, response, trailing = call_unary(channel, method, message.SerializeToString(), metadata)
    record(method, "message", code)
    check_status(method, role, code, details, trailing, message)
    if response is not None:
        method.response_class.FromString(response)  # a success is a well-formed response


@pytest.mark.parametrize("method", UNARY + STREAMING, ids=method_id)
@settings(max_examples=MALFORMED_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_malformed_payloads(method: Method, world: FuzzWorld, channel: grpc.Channel, data) -> None:
    role = data.draw(role_strategy(allowed(method)), label="role")
    valid = request_messages(method, world).map(lambda message: message.SerializeToString())
    payload = world.protect_payload(method, data.draw(cached("malformed", method, world, lambda: malformed_payloads(valid)), label="payload"))
    metadata = metadata_for(data, role, world)
    if method.server_streaming:
        code, details = call_stream(channel, method, payload, metadata)
        record(method, "malformed", code)
        if code != "OPENED":
            check_status(method, role, code, details, (), payload)
        return
    code, details, _, trailing = call_unary(channel, method, payload, metadata)
    record(method, "malformed", code)
    check_status(method, role, code, details, trailing, payload)


@pytest.mark.parametrize("method", UNARY + STREAMING, ids=method_id)
def test_calls_without_exactly_one_request_message(method: Method, world: FuzzWorld, channel: grpc.Channel) -> None:
    """A client may end its request stream with no message at all (or send two) to a method that
    takes one. No message must be refused at once, not left open until the deadline (a hang that
    holds a server slot); a second message is ignored."""
    role = _preferred_role(method)
    for messages in ([], [b"", b""]):
        started = time.monotonic()
        if method.server_streaming:
            rpc = channel.stream_stream(method.path, request_serializer=None, response_deserializer=None)
            call = rpc(iter(messages), metadata=_auth(world, role), timeout=WATCH_DEADLINE_S)
            try:
                call.initial_metadata()
                code = "OPENED" if not call.done() else call.code()
            finally:
                call.cancel()
        else:
            rpc = channel.stream_unary(method.path, request_serializer=None, response_deserializer=None)
            try:
                rpc(iter(messages), metadata=_auth(world, role), timeout=CALL_TIMEOUT_S)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
        record(method, f"{len(messages)}-messages", code)
        assert code not in BAD_CODES, (method.path, len(messages), code)
        if not messages:
            assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), (method.path, code)
        assert time.monotonic() - started < 2.0, (method.path, len(messages), "slow")


# -- server streams ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", STREAMING, ids=method_id)
@settings(max_examples=WATCH_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_server_streams_open_or_refuse_promptly(method: Method, world: FuzzWorld, channel: grpc.Channel, data) -> None:
    """A stream either opens (headers: the server is subscribed) or is refused, before its deadline.
    DEADLINE_EXCEEDED *after* opening is the normal end of a watch; before it, the server hung."""
    role = data.draw(role_strategy(allowed(method)), label="role")
    message = data.draw(request_messages(method, world), label="request")
    metadata = metadata_for(data, role, world)
    started = time.monotonic()
    code, details = call_stream(channel, method, message.SerializeToString(), metadata)
    record(method, "stream", code)
    if code == "OPENED":
        assert role not in ("none", "garbage", "forged"), f"{method.path} opened for {role} credentials"
        return
    check_status(method, role, code, details, (), message)
    assert time.monotonic() - started < WATCH_DEADLINE_S


# -- limits ------------------------------------------------------------------------------------


def _preferred_role(method: Method) -> str:
    roles = allowed(method)
    if roles is None:
        return "none"
    for role in ("operator", "customer", "merchant", "terminal", "tenant_admin", "platform_admin"):
        if role in roles:
            return role
    raise AssertionError(f"nobody may call {method.path}")


def _auth(world: FuzzWorld, role: str) -> list[tuple[str, str]]:
    return [] if role == "none" else [("authorization", f"Bearer {world.tokens[role]}")]


def test_message_over_the_size_limit_is_refused_clearly(stack, world: FuzzWorld) -> None:
    """The servers take messages up to 1 MiB: 2 MiB is RESOURCE_EXHAUSTED, through Envoy and directly."""
    login = next(method for method in UNARY if method.name == "Login")
    payload = auth_pb2.LoginRequest(tenant="tenants/demo-city", email="a" * (2 << 20)).SerializeToString()
    for address in [stack.endpoints.envoy, *stack.endpoints.grpc_servers]:
        with grpc.insecure_channel(address) as direct:
            code, details, _, _ = call_unary(direct, login, payload, [])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (address, code, details)
        assert "larger than max" in details


def test_metadata_over_the_servers_limit_is_refused_clearly(stack, world: FuzzWorld) -> None:
    """Metadata above the servers' limit (17 KiB) is RESOURCE_EXHAUSTED, through Envoy and directly, answered
    by the servers' own check (gRPC core's limit sits higher)."""
    method = next(method for method in UNARY if method.name == "GetServerInfo")
    for address in [stack.endpoints.envoy, *stack.endpoints.grpc_servers]:
        with grpc.insecure_channel(address) as direct:
            code, details, _, _ = call_unary(direct, method, b"", [("x-padding", "a" * (24 * 1024))])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (address, code, details)
        assert "the request headers are larger than" in details


def test_metadata_over_envoys_limit_resets_only_that_call(stack, world: FuzzWorld) -> None:
    """Headers Envoy's codec refuses (more than 100; over 63 KiB) make it reset the stream before anything is
    routed: HTTP/2 has no way to answer a request whose headers it refused to read, so the client library
    reports the reset (RST_STREAM INTERNAL_ERROR → its own INTERNAL). A big header under that ceiling
    reaches a server, which answers RESOURCE_EXHAUSTED. The point here is that either costs one call,
    nothing more. Directly, the servers answer RESOURCE_EXHAUSTED."""
    method = next(method for method in UNARY if method.name == "GetServerInfo")
    oversized = {
        "one huge header": [("x-padding", "a" * (40 * 1024))],
        "too many headers": [(f"x-h{index}", "v") for index in range(150)],
    }
    with grpc.insecure_channel(stack.endpoints.envoy) as envoy:
        for label, metadata in oversized.items():
            code, details, _, _ = call_unary(envoy, method, b"", metadata)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED or (
                code == grpc.StatusCode.INTERNAL and "RST_STREAM" in details
            ), (label, code, details)
            # the same channel (connection) keeps working
            assert call_unary(envoy, method, b"", [])[0] == grpc.StatusCode.OK, label
    for address in stack.endpoints.grpc_servers:
        with grpc.insecure_channel(address) as direct:
            code, details, _, _ = call_unary(direct, method, b"", oversized["one huge header"])
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (address, code, details)


PAGED = [method for method in UNARY if "page_size" in method.input.fields_by_name]


@pytest.mark.parametrize("method", PAGED, ids=method_id)
def test_huge_page_size_is_clamped(method: Method, world: FuzzWorld, channel: grpc.Channel) -> None:
    role = _preferred_role(method)
    request = method.request_class(page_size=10**9)
    if "account" in method.input.fields_by_name:  # required by ListAccountEntries, a filter elsewhere
        request.account = world.names["accounts"][0]
    code, details, response, _ = call_unary(channel, method, request.SerializeToString(), _auth(world, role))
    assert code == grpc.StatusCode.OK, (method.path, role, code, details)
    reply = method.response_class.FromString(response)
    repeated = [field for field in reply.DESCRIPTOR.fields if field.is_repeated]
    assert repeated and all(len(getattr(reply, field.name)) <= MAX_PAGE_SIZE for field in repeated)
    negative = method.request_class(page_size=-1)
    code, _, _, _ = call_unary(channel, method, negative.SerializeToString(), _auth(world, role))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (method.path, code)


STRING_FIELDS = [
    (method, field.name)
    for method in UNARY + STREAMING
    for field in method.input.fields
    if field.type == field.TYPE_STRING and not field.is_repeated
]
CLEAR_ERRORS = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED,
     grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


@pytest.mark.parametrize(("method", "field_name"), STRING_FIELDS, ids=[f"{method_id(m)}.{f}" for m, f in STRING_FIELDS])
def test_100k_character_strings_are_refused(method: Method, field_name: str, world: FuzzWorld, channel: grpc.Channel) -> None:
    """Every string field has a limit: 100,000 characters (alone in the request) is a clear error, never stored."""
    role = _preferred_role(method)
    request = method.request_class()
    setattr(request, field_name, "a" * 50_000 + "é" * 50_000)
    payload = request.SerializeToString()
    if method.server_streaming:
        code, details = call_stream(channel, method, payload, _auth(world, role))
    else:
        code, details, _, _ = call_unary(channel, method, payload, _auth(world, role))
    assert code in CLEAR_ERRORS, (method.path, field_name, role, code, details[:200])


def test_repeated_field_with_100k_entries_is_refused(world: FuzzWorld, channel: grpc.Channel) -> None:
    method = next(method for method in UNARY if method.name == "CreateUser")
    request = admin_pb2.CreateUserRequest(email="fuzz-roles@example.org", display_name="Roles", roles=[auth_pb2.ROLE_CUSTOMER] * 100_000)
    code, details, _, _ = call_unary(channel, method, request.SerializeToString(), _auth(world, "operator"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)


# -- what the fuzzers found (each once answered INTERNAL, UNKNOWN or not at all) ----------------


def _method(name: str) -> Method:
    return next(method for method in UNARY + STREAMING if method.name == name)


def _timestamp_request(name: str, field: str, seconds: int, nanos: int = 0):
    method = _method(name)
    request = method.request_class(account="accounts/00000000-0000-0000-0000-000000000000")
    getattr(request, field).seconds = seconds
    getattr(request, field).nanos = nanos
    return method, request.SerializeToString()


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


FOUND = {
    # bytes that are not a protobuf message: gRPC answered UNKNOWN (HTTP 500 on the JSON face)
    "undecodable bytes": (_method("GetTenant"), b"\xff\xff\xff\xff", "none", grpc.StatusCode.INVALID_ARGUMENT),
    "string field not UTF-8": (_method("ListUsers"), b"\x22\x02\xff\xfe", "operator", grpc.StatusCode.INVALID_ARGUMENT),  # query
    # Timestamps outside 0001..9999: the conversion to datetime raised (INTERNAL)
    "start_time 2**62 s": (*_timestamp_request("ListAccountEntries", "start_time", 2**62), "operator", grpc.StatusCode.INVALID_ARGUMENT),
    "time -2**62 s, nanos -5": (*_timestamp_request("GetBalanceAt", "time", -(2**62), -5), "operator", grpc.StatusCode.INVALID_ARGUMENT),
    "end_time nanos 10**9": (*_timestamp_request("ListPayments", "end_time", 0, 10**9), "operator", grpc.StatusCode.INVALID_ARGUMENT),
    # a NUL character in a text value that reaches PostgreSQL: psycopg refused it (INTERNAL)
    "client_id NUL": (_method("LoginTerminal"), auth_pb2.LoginTerminalRequest(client_id="\x00", client_secret="0" * 10).SerializeToString(),
                      "none", grpc.StatusCode.INVALID_ARGUMENT),
    # an error quoting 40 KB of input: trailers beyond what clients accept (the client gave up reading them).
    # Roles were strings then; the same bytes now read as 40,000 packed enum values the contract does not know.
    "roles quoted in the error": (_method("CreateUser"), admin_pb2.CreateUserRequest(email="fuzz@example.org").SerializeToString()
                                  + b"".join(_length_delimited(3, b"r" * 4_000) for _ in range(10)),
                                  "operator", grpc.StatusCode.INVALID_ARGUMENT),
    # an enum number the contract does not know (proto3 enums are open): INVALID_ARGUMENT, not INTERNAL
    "unknown account kind": (_method("CreateAccount"), b"\x08\x63", "operator", grpc.StatusCode.INVALID_ARGUMENT),
    "negative payment status filter": (_method("ListPayments"), b"\x28" + varint(-1), "operator", grpc.StatusCode.INVALID_ARGUMENT),
}


@pytest.mark.parametrize("case", list(FOUND))
def test_inputs_the_fuzzers_found(case: str, world: FuzzWorld, channel: grpc.Channel) -> None:
    method, payload, role, expected = FOUND[case]
    code, details, _, trailing = call_unary(channel, method, payload, _auth(world, role))
    assert code == expected, (case, code, details)
    assert len(details.encode()) <= 512, (case, len(details))
    check_status(method, role, code, details, trailing, payload)


def test_health_watch_streams(stack) -> None:
    """grpc.health Watch (a handler that writes with context.write) answered INTERNAL through the interceptors."""
    for address in stack.endpoints.grpc_servers:
        with grpc.insecure_channel(address) as direct:
            watch = health_pb2_grpc.HealthStub(direct).Watch(health_pb2.HealthCheckRequest(), timeout=5)
            try:
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            finally:
                watch.cancel()


# -- afterwards --------------------------------------------------------------------------------


def test_servers_still_serving_and_ledger_balanced(stack, world: FuzzWorld) -> None:
    """Runs last in this file: both servers are up and SERVING (asked directly), and the ledger's
    invariants and the audit chain still hold for the tenant the fuzzers hammered."""
    assert_stack_healthy_and_balanced(stack)
    write_summary(SUMMARY, TRIED)


assert set(ROLES) >= {"none", "garbage", "forged", "customer", "operator", "terminal"}
