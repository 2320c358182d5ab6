"""The OpenAPI document against the real stack: Envoy serves it (and the /docs page), and every
operation it lists is a route Envoy serves, reaching our servers, with the security and the
parameters the document claims.

Every operation is called with a minimal request (placeholder UUIDs in the path, `{}` as body) as a
demo user whose role may call it. An answer proves the route when it is JSON, its status is one the
document lists, and it is a success shaped like the documented schema or an error from our server
(a google.rpc.Status carrying an ErrorInfo of the domain `emoney.dev`); never Envoy's
"Could not resolve ... to a method" 404.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
import requests

from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from interceptors.access_policy import METHOD_ROLES
from tests.fixtures.identity import login_as

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "generated" / "openapi.json"
ERROR_DOMAIN = "emoney.dev"
NO_ROUTE = "Could not resolve"
# Whose token calls an operation: the first of these roles the access policy allows.
ROLE_PREFERENCE = ("operator", "customer", "merchant", "platform_admin", "tenant_admin", "terminal")
STREAM_MEDIA_TYPE = "application/x-ndjson"
STREAM_READ_TIMEOUT_S = 3.0


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in sorted(document["paths"].items())
        for method, operation in sorted(item.items())
    ]


# Parametrised from the committed document; the tests check Envoy serves exactly that document.
OPERATIONS = _operations(json.loads(COMMITTED.read_text(encoding="utf-8")))
OPERATION_IDS = [operation["operationId"] for _, _, operation in OPERATIONS]


@pytest.fixture(scope="module")
def document(envoy_url) -> dict[str, Any]:
    response = requests.get(f"{envoy_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def token_for(stack):
    """A fresh access token for a demo role (fresh: an operation such as Logout may end a session)."""

    def token(role: str) -> str:
        if role != "terminal":
            return login_as(stack, role)
        terminal = stack.demo.terminal
        with grpc.insecure_channel(stack.endpoints.envoy) as channel:
            return auth_pb2_grpc.AuthServiceStub(channel).LoginTerminal(
                auth_pb2.LoginTerminalRequest(client_id=terminal.client_id, client_secret=terminal.client_secret), timeout=10
            ).tokens.access_token

    return token


def _is_streaming(operation: dict[str, Any]) -> bool:
    return STREAM_MEDIA_TYPE in operation["responses"]["200"]["content"]


def _role_for(operation: dict[str, Any]) -> str | None:
    if not operation["security"]:
        return None
    allowed = METHOD_ROLES[operation["x-grpc-method"]]
    return next(role for role in ROLE_PREFERENCE if role in allowed)


def _placeholder(schema: dict[str, Any]) -> str:
    if schema.get("format") == "date-time":
        return "2024-01-01T00:00:00Z"
    if schema.get("type") == "integer" or schema.get("format") in ("int64", "uint64"):
        return "1"
    return str(uuid.uuid4())


def _request_url(envoy_url: str, path: str, operation: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The URL with a random UUID for every path parameter, and placeholders for required query parameters."""
    url = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
    query = {
        parameter["name"]: _placeholder(parameter["schema"])
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and parameter.get("required")
    }
    return envoy_url + url, query


def _path_fields(operation: dict[str, Any]) -> set[str]:
    """Request fields filled from the path, as the path parameters' descriptions name them."""
    return {
        match
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
        for match in re.findall(r"request field `([^`]+)`", parameter["description"])
    }


def _call(method: str, url: str, operation: dict[str, Any], *, query: dict[str, str], headers: dict[str, str]
          ) -> tuple[requests.Response, Any]:
    """Call and parse: the JSON body, or for a stream its first line (None if the stream stays quiet)."""
    body = {"json": {}} if "requestBody" in operation else {}
    if not _is_streaming(operation):
        response = requests.request(method.upper(), url, params=query, headers=headers, timeout=30, **body)
        return response, response.json()
    with requests.request(method.upper(), url, params=query, headers=headers, stream=True,
                          timeout=(10, STREAM_READ_TIMEOUT_S), **body) as response:
        try:
            for line in response.iter_lines():
                if line.strip():
                    return response, json.loads(line)
        except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
            pass  # an open stream with no event yet
        return response, None


def _schema(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for key in node["$ref"].removeprefix("#/").split("/"):
            target = target[key]
        node = target
    return node


def _undocumented_keys(document: dict[str, Any], value: Any, schema: dict[str, Any], where: str = "") -> Iterator[str]:
    """Keys of a JSON value that its schema does not declare (recursively through objects and arrays), and
    enum values (kinds, statuses, roles: names on the JSON face) that their schema does not list."""
    schema = _schema(document, schema)
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}={value!r}"
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                yield f"{where}.{key}"
            else:
                yield from _undocumented_keys(document, item, schema["properties"][key], f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            yield from _undocumented_keys(document, item, schema["items"], f"{where}[]")


def _assert_error_from_our_server(payload: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    assert set(payload) <= {"code", "message", "details"} and payload["code"] != 0, payload
    assert NO_ROUTE not in payload["message"], payload
    infos = [detail for detail in payload["details"] if detail["@type"].endswith("/google.rpc.ErrorInfo")]
    assert infos and infos[0]["domain"] == ERROR_DOMAIN, f"not answered by our server: {payload}"
    # A placeholder id in the path makes a well-formed resource name: the path must never be the bad field.
    path_fields = _path_fields(operation)
    for detail in payload["details"]:
        if detail["@type"].endswith("/google.rpc.BadRequest"):
            for violation in detail["fieldViolations"]:
                assert violation["field"] not in path_fields, payload
    return infos[0]


# -- the document and the page, served by Envoy ---------------------------------------------------


def test_openapi_document_is_served_as_committed(envoy_url):
    response = requests.get(f"{envoy_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == COMMITTED.read_bytes()
    assert response.json()["openapi"].startswith("3.")


def test_docs_page_is_served_and_self_contained(envoy_url):
    response = requests.get(f"{envoy_url}/docs", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'fetch("/openapi.json")' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must load nothing from elsewhere"
    assert "<script src" not in page
    assert "connect-src 'self'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("method, path", [("POST", "/docs"), ("DELETE", "/openapi.json"), ("GET", "/docs/extra")])
def test_other_requests_to_the_document_paths_stay_json_not_found(envoy_url, method, path):
    response = requests.request(method, f"{envoy_url}{path}", timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert NO_ROUTE in response.json()["message"]


def test_served_document_lists_the_operations_these_tests_walk(document):
    assert [operation["operationId"] for _, _, operation in _operations(document)] == OPERATION_IDS


# -- every operation is routed, as documented ------------------------------------------------------


@pytest.mark.parametrize("path, method, operation", OPERATIONS, ids=OPERATION_IDS)
def test_every_documented_operation_reaches_our_server(envoy_url, document, token_for, path, method, operation):
    role = _role_for(operation)
    headers = {"authorization": f"Bearer {token_for(role)}"} if role else {}
    url, query = _request_url(envoy_url, path, operation)
    response, payload = _call(method, url, operation, query=query, headers=headers)

    assert str(response.status_code) in operation["responses"], (response.status_code, payload)
    assert response.headers["content-type"].split(";")[0] in ("application/json", STREAM_MEDIA_TYPE)
    if payload is None:  # a stream that is open and quiet: Envoy routed it to a server, which keeps it
        assert _is_streaming(operation) and response.status_code == 200
        return
    is_error = response.status_code != 200 or (_is_streaming(operation) and set(payload) == {"code", "message", "details"})
    if is_error:
        _assert_error_from_our_server(payload, operation)
    else:
        media = STREAM_MEDIA_TYPE if _is_streaming(operation) else "application/json"
        schema = operation["responses"]["200"]["content"][media]["schema"]
        schema = schema["anyOf"][0] if "anyOf" in schema else schema
        assert not list(_undocumented_keys(document, payload, schema)), payload


@pytest.mark.parametrize("path, method, operation", OPERATIONS, ids=OPERATION_IDS)
def test_documented_security_is_what_the_server_demands(envoy_url, path, method, operation):
    """Without a token, secured operations answer UNAUTHENTICATED (CREDENTIALS_MISSING); public ones never do."""
    url, query = _request_url(envoy_url, path, operation)
    response, payload = _call(method, url, operation, query=query, headers={})
    assert payload is not None, "an unauthenticated stream must be refused, not held open"
    assert str(response.status_code) in operation["responses"]
    if operation["security"]:
        info = _assert_error_from_our_server(payload, operation)
        assert (payload["code"], info["reason"]) == (16, "CREDENTIALS_MISSING"), payload
        if not _is_streaming(operation):
            assert response.status_code == 401
    elif response.status_code != 200:
        info = _assert_error_from_our_server(payload, operation)
        assert info["reason"] != "CREDENTIALS_MISSING", payload


TYPED_QUERY_PARAMETERS = [
    (path, operation, parameter)
    for path, method, operation in OPERATIONS
    if method == "get"
    for parameter in operation.get("parameters", [])
    if parameter["in"] == "query"
    and (parameter["schema"].get("type") == "integer" or parameter["schema"].get("format") in ("date-time", "int64"))
]


def _snake(name: str) -> str:
    return ".".join(re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), part) for part in name.split("."))


@pytest.mark.parametrize(
    "path, operation, parameter", TYPED_QUERY_PARAMETERS,
    ids=[f"{operation['operationId']}.{parameter['name']}" for _, operation, parameter in TYPED_QUERY_PARAMETERS],
)
def test_documented_query_parameters_are_fields_envoy_knows(envoy_url, path, operation, parameter):
    """Envoy ignores unknown query parameters, so a known one shows itself by refusing a value of the wrong type."""
    url, query = _request_url(envoy_url, path, operation)
    response, payload = _call("get", url, operation, query={**query, parameter["name"]: "not-a-value"}, headers={})
    assert response.status_code == 400, payload
    assert response.headers["content-type"] == "application/json"
    assert payload["code"] == 3 and payload["message"].startswith(f"{_snake(parameter['name'])}:"), payload
