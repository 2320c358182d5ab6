"""The OpenAPI document of the JSON face (tools/generate_openapi.py), checked against the contract.

Pure: reads generated/emoney.binpb and generated/openapi.json, no server. That Envoy really serves
what the document says is tests/e2e/test_openapi_routes.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import openapi_spec_validator
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from envoy_config.routes import API_PREFIX, DOCS_ROUTE, ENVOY_SERVED_PATHS
from interceptors.access_policy import PUBLIC_METHODS
from tools.generate_openapi import build_openapi, render_openapi

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR = ROOT / "generated" / "emoney.binpb"
COMMITTED = ROOT / "generated" / "openapi.json"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
LOWER_CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


@pytest.fixture(scope="module")
def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR.read_bytes())


@pytest.fixture(scope="module")
def document(descriptor_set) -> dict[str, Any]:
    return build_openapi(descriptor_set)


def _operations(document) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert method in HTTP_METHODS, (path, method)
            yield path, method, operation


def _http_rules(descriptor_set) -> dict[str, list[tuple[str, str, str]]]:
    """gRPC path -> [(http method, template, body)] of every emoney.* method with a google.api.http rule."""
    rules: dict[str, list[tuple[str, str, str]]] = {}
    for file in descriptor_set.file:
        if not file.package.startswith("emoney."):
            continue
        for service in file.service:
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                bindings = []
                for binding in [rule, *rule.additional_bindings]:
                    kind = binding.WhichOneof("pattern")
                    bindings.append((kind, getattr(binding, kind), binding.body))
                rules[f"/{file.package}.{service.name}/{method.name}"] = bindings
    return rules


def _template_regex(template: str) -> re.Pattern[str]:
    """How the transcoder matches a google.api.http template: `*` one segment, `**` the rest."""
    def variable(match: re.Match[str]) -> str:
        pattern = match.group(1).partition("=")[2] or "*"
        return "/".join("[^/]+" if s == "*" else ".+" if s == "**" else re.escape(s) for s in pattern.split("/"))

    pieces = re.split(r"(\{[^}]*\})", template)
    regex = "".join(variable(re.match(r"\{([^}]*)\}", p)) if p.startswith("{") else re.escape(p) for p in pieces)
    return re.compile(f"^{regex}$")


def _resolve(document, ref: str) -> dict[str, Any]:
    node: Any = document
    for key in ref.removeprefix("#/").split("/"):
        node = node[key]
    return node


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_every_http_bound_rpc_is_exactly_one_operation_per_binding(document, descriptor_set):
    rules = _http_rules(descriptor_set)
    assert rules, "no google.api.http rules found"
    seen: dict[str, int] = {}
    for _, _, operation in _operations(document):
        seen[operation["x-grpc-method"]] = seen.get(operation["x-grpc-method"], 0) + 1
    assert seen == {method: len(bindings) for method, bindings in rules.items()}
    operation_ids = [operation["operationId"] for _, _, operation in _operations(document)]
    assert len(operation_ids) == len(set(operation_ids))


def test_paths_match_what_the_transcoder_matches(document, descriptor_set):
    """Filling every path parameter with one segment gives a URL the rule's template matches."""
    rules = _http_rules(descriptor_set)
    for path, method, operation in _operations(document):
        url = re.sub(r"\{[^}]+\}", "some-id", path)
        assert any(
            kind == method and _template_regex(template).match(url)
            for kind, template, _ in rules[operation["x-grpc-method"]]
        ), (path, method, operation["x-grpc-method"])


def test_path_parameters_are_declared_and_in_the_path(document):
    for path, _, operation in _operations(document):
        in_path = re.findall(r"\{([^}]+)\}", path)
        declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert sorted(in_path) == sorted(declared), path
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["required"] is True
                assert parameter["description"]


def test_resource_name_paths_keep_the_collection_literal_and_custom_verbs():
    document = json.loads(COMMITTED.read_text())
    paths = document["paths"]
    assert "get" in paths["/v1/accounts/{accountId}"]
    assert "post" in paths["/v1/accounts/{accountId}:freeze"]
    assert "get" in paths["/v1/accounts/{accountId}/entries"]
    assert "get" in paths["/v1/tenants/{slug}"]
    assert "post" in paths["/v1/tenants/{slug}/sessions:login"]
    assert "get" in paths["/v1/payments:watch"]
    freeze = paths["/v1/accounts/{accountId}:freeze"]["post"]
    assert "`accounts/{accountId}`" in freeze["parameters"][0]["description"]
    assert "field `name`" in freeze["parameters"][0]["description"]


def test_public_operations_have_no_security_and_the_others_need_a_bearer_token(document):
    public_seen = set()
    for path, _, operation in _operations(document):
        if operation["x-grpc-method"] in PUBLIC_METHODS:
            assert operation["security"] == [], path
            public_seen.add(operation["x-grpc-method"])
        else:
            assert operation["security"] == [{"bearerAuth": []}], path
    assert public_seen == {m for m in PUBLIC_METHODS if m.startswith("/emoney.")}
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")


def test_get_operations_take_the_other_fields_as_lower_camel_query_parameters(document):
    entries = document["paths"]["/v1/accounts/{accountId}/entries"]["get"]
    query = {p["name"]: p for p in entries["parameters"] if p["in"] == "query"}
    assert set(query) == {"pageSize", "pageToken", "startTime", "endTime"}
    assert query["startTime"]["schema"] == {"type": "string", "format": "date-time"}
    assert query["pageSize"]["schema"] == {"type": "integer", "format": "int32"}
    balance_at = document["paths"]["/v1/accounts/{accountId}:balanceAt"]["get"]
    (time,) = [p for p in balance_at["parameters"] if p["in"] == "query"]
    assert (time["name"], time["required"], time["schema"]["format"]) == ("time", True, "date-time")
    for _, method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query":
                assert method == "get" or "requestBody" not in operation
                assert all(LOWER_CAMEL.match(part) for part in parameter["name"].split(".")), parameter["name"]


def test_bodies_are_the_request_less_the_path_fields(document):
    schemas = document["components"]["schemas"]
    capture = document["paths"]["/v1/payments/{paymentId}:capture"]["post"]
    body = _resolve(document, capture["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert set(body["properties"]) == {"requestId", "amountMinor"}
    assert body["required"] == ["requestId", "amountMinor"]
    assert "name" in schemas["emoney.payments.v1.CapturePaymentRequest"]["properties"]
    transfer = document["paths"]["/v1/transfers"]["post"]
    assert transfer["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/emoney.payments.v1.CreateTransferRequest"
    }
    assert transfer["requestBody"]["required"] is True
    for _, method, operation in _operations(document):
        if method == "get":
            assert "requestBody" not in operation


def test_schemas_follow_the_proto3_json_mapping(document):
    schemas = document["components"]["schemas"]
    account = schemas["emoney.accounts.v1.Account"]["properties"]
    assert account["balanceMinor"]["type"] == "string" and account["balanceMinor"]["format"] == "int64"
    assert account["createTime"]["format"] == "date-time" and account["createTime"]["type"] == "string"
    assert account["balanceMinor"]["readOnly"] is True and "readOnly" not in account["owner"]
    assert account["name"]["description"].startswith("Resource name")
    receipt = schemas["emoney.payments.v1.GetReceiptResponse"]["properties"]
    assert receipt["content"]["format"] == "byte"
    assert schemas["emoney.payments.v1.CreateTransferRequest"]["required"] == [
        "requestId", "fromAccount", "toAccount", "amountMinor", "currency"
    ]
    current_user = schemas["emoney.auth.v1.GetCurrentUserResponse"]
    assert current_user["x-oneof"] == {"caller": ["user", "terminal"]}
    assert "oneof `caller`" in current_user["properties"]["user"]["description"]
    for name, schema in schemas.items():
        assert name.startswith(("emoney.", "google.rpc.")), name
        for property_name in schema.get("properties", {}):
            assert LOWER_CAMEL.match(property_name), (name, property_name)


def test_every_message_of_the_contract_has_a_schema(document, descriptor_set):
    schemas = document["components"]["schemas"]
    for file in descriptor_set.file:
        if file.package.startswith("emoney."):
            for message in file.message_type:
                assert f"{file.package}.{message.name}" in schemas


def _enum_fields(descriptor_set) -> Iterator[tuple[str, descriptor_pb2.FieldDescriptorProto]]:
    """(message full name, field) of every enum-typed field of the emoney.* messages."""
    for file in descriptor_set.file:
        if file.package.startswith("emoney."):
            for message in file.message_type:
                for field in message.field:
                    if field.type == descriptor_pb2.FieldDescriptorProto.TYPE_ENUM:
                        yield f"{file.package}.{message.name}", field


def test_enums_are_their_value_names(document, descriptor_set):
    """Every enum field (kinds, statuses, roles, payment events) refers to a string schema whose `enum` lists
    the value names, as the JSON face prints them, with each value's comment; none is a bare string."""
    schemas = document["components"]["schemas"]
    enums = {
        f"{file.package}.{enum.name}": [value.name for value in enum.value]
        for file in descriptor_set.file if file.package.startswith("emoney.") for enum in file.enum_type
    }
    fields = list(_enum_fields(descriptor_set))
    assert {field.type_name.lstrip(".") for _, field in fields} == set(enums)  # every enum is used
    for message_name, field in fields:
        schema = schemas[message_name]["properties"][field.json_name]
        if field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED:
            assert schema["type"] == "array", (message_name, field.name)
            schema = schema["items"]
        assert schema["$ref"] == f"#/components/schemas/{field.type_name.lstrip('.')}", (message_name, field.name)
    for name, values in enums.items():
        schema = schemas[name]
        assert (schema["type"], schema["enum"]) == ("string", values), name
        assert values[0].endswith("_UNSPECIFIED")
        assert len(schema["x-enum-descriptions"]) == len(values) and all(schema["x-enum-descriptions"]), name
        assert all(f"`{value}`" in schema["description"] for value in values), name
    account = schemas["emoney.accounts.v1.Account"]["properties"]
    assert account["kind"]["$ref"].endswith("/emoney.accounts.v1.AccountKind")
    assert "ACCOUNT_KIND_CUSTOMER" in schemas["emoney.accounts.v1.AccountKind"]["enum"]
    list_accounts = document["paths"]["/v1/accounts"]["get"]["parameters"]
    kind = next(parameter for parameter in list_accounts if parameter["name"] == "kind")
    assert kind["schema"] == {"$ref": "#/components/schemas/emoney.accounts.v1.AccountKind"}


def test_descriptions_come_from_the_proto_comments(document):
    get_account = document["paths"]["/v1/accounts/{accountId}"]["get"]
    assert get_account["summary"].startswith("GetAccount returns an account")
    assert "available balance" in get_account["description"]
    tags = {tag["name"]: tag for tag in document["tags"]}
    assert "double-entry ledger" in tags["PaymentsService"]["description"]
    assert all(operation.get("description") for _, _, operation in _operations(document))


def test_errors_are_google_rpc_status_with_documented_details(document):
    status = document["components"]["schemas"]["google.rpc.Status"]
    variants = status["properties"]["details"]["items"]["anyOf"]
    detail_types = {v["allOf"][1]["properties"]["@type"]["const"] for v in variants if "allOf" in v}
    assert detail_types == {f"type.googleapis.com/google.rpc.{name}" for name in ("ErrorInfo", "BadRequest", "RetryInfo")}
    for _, _, operation in _operations(document):
        errors = {code: response for code, response in operation["responses"].items() if code != "200"}
        assert {"400", "401", "403", "404", "409", "429", "500", "503"} <= set(errors)
        for response in errors.values():
            resolved = _resolve(document, response["$ref"])
            assert resolved["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/google.rpc.Status"}


def test_server_streaming_is_newline_delimited_json(document):
    watch = document["paths"]["/v1/payments:watch"]["get"]
    assert list(watch["responses"]["200"]["content"]) == ["application/x-ndjson"]
    assert watch["x-grpc-server-streaming"] is True
    for _, _, operation in _operations(document):
        if operation is not watch:
            assert list(operation["responses"]["200"]["content"]) == ["application/json"]


def test_every_reference_resolves(document):
    for node in _walk(document):
        if isinstance(node, dict) and "$ref" in node:
            assert isinstance(_resolve(document, node["$ref"]), dict), node["$ref"]


def test_document_is_deterministic_and_the_committed_copy_is_fresh():
    first, second = render_openapi(DESCRIPTOR), render_openapi(DESCRIPTOR)
    assert first == second
    assert first == json.dumps(json.loads(first), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert COMMITTED.read_text(encoding="utf-8") == first, "generated/openapi.json is stale: run `make proto`"


def test_document_is_valid_openapi(document):
    """The generated document passes the OpenAPI specification validator."""
    openapi_spec_validator.validate(document)


def test_document_and_envoy_share_the_route_map(document):
    """envoy_config/routes.py: the API's paths are under the prefix Envoy sends to the servers, and no GET
    operation sits on a path Envoy answers itself (the document, its page, the back office's files)."""
    assert document["servers"][0]["url"] == API_PREFIX
    assert all(path.startswith(API_PREFIX) for path in document["paths"])
    assert not [path for path, item in document["paths"].items() if path in ENVOY_SERVED_PATHS and "get" in item]


def test_a_get_binding_on_a_path_envoy_answers_itself_is_refused(descriptor_set):
    changed = descriptor_pb2.FileDescriptorSet()
    changed.CopyFrom(descriptor_set)
    rule = next(
        method.options.Extensions[annotations_pb2.http]
        for file in changed.file if file.package.startswith("emoney.")
        for service in file.service
        for method in service.method
        if method.options.HasExtension(annotations_pb2.http) and method.options.Extensions[annotations_pb2.http].get
    )
    rule.get = DOCS_ROUTE
    with pytest.raises(ValueError, match="answered by Envoy itself"):
        build_openapi(changed)
