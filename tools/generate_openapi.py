"""Build the OpenAPI 3.1 document of the JSON face from the descriptor set.

`make proto` (tools/generate_protos.py) calls `write_openapi` right after it wrote
`generated/emoney.binpb`, so `generated/openapi.json` is regenerated, committed and
freshness-checked with the rest of `generated/`. Envoy serves it at `/openapi.json`
(and a browsable page at `/docs`).

What this document and Envoy's configuration must agree on comes from the one route map,
envoy_config/routes.py: the packages documented (the ones the transcoder serves), the document's
file name, the server URL (the prefix that goes to the gRPC servers), and the paths Envoy answers
itself, which no GET binding may take (it would never be reached).

The document describes what Envoy's gRPC-JSON transcoder serves, not an idealised REST API:

- One operation per `google.api.http` binding (additional bindings included) of every
  `emoney.*` service; `operationId` is `<Service>_<Method>`, `x-grpc-method` the gRPC path.
- Path parameters. A binding such as `/v1/{name=accounts/*}:freeze` matches one URL segment
  per `*`, so it becomes `/v1/accounts/{accountId}:freeze`: the literal collection segment
  stays in the path and each `*` becomes one parameter. The parameter is named after the
  resource-name pattern the field's comment documents (`accounts/{account_id}` ->
  `accountId`; `tenants/{slug}` -> `slug`), else after the collection (`accounts` ->
  `accountId`). The transcoder puts the whole matched text (`accounts/<id>`) into the
  request field, which each parameter's description names. Custom verbs (`:freeze`) stay
  literal.
- Query parameters: for a binding without `body: "*"`, every request field that is neither
  bound to the path nor the body, by its lowerCamel JSON name (nested messages flattened as
  `a.b`; Timestamp as an RFC 3339 string).
- Request bodies for `body: "*"` (the message less the path-bound fields: the transcoder
  refuses a field given both ways) or `body: "<field>"`.
- Schemas (components/schemas, named by the full proto name) for every message of the
  `emoney.*` files and everything they reference, plus google.rpc.Status with its
  ErrorInfo, BadRequest and RetryInfo details. proto3 JSON mapping: lowerCamel names,
  64-bit integers as strings, Timestamp as date-time, bytes as base64, enums as names (a
  string schema with `enum` listing every value name, each value's comment in the description
  and, in the same order, in `x-enum-descriptions`);
  `OUTPUT_ONLY` fields are readOnly, `REQUIRED` fields are required; oneofs are named in
  the descriptions and in `x-oneof`.
- Errors: every operation lists the HTTP statuses the transcoder maps gRPC codes to (and
  the ones Envoy answers itself), each with a google.rpc.Status JSON body.
- Security: bearer JWT on every operation except the public methods of
  interceptors/access_policy.py (those have `security: []`).
- Server streaming (`WatchPayments`): `application/x-ndjson`, one JSON object per line.

Output is deterministic (sorted keys, stable lists), so a fresh generation equals the
committed file byte for byte.

    python tools/generate_openapi.py [--descriptor generated/emoney.binpb] [--output generated/openapi.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `interceptors` lives at the repository root
    sys.path.insert(0, str(ROOT))

from google.api import annotations_pb2, field_behavior_pb2  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402

from domain.failures import CATALOGUE  # noqa: E402
from envoy_config.routes import (  # noqa: E402
    API_PREFIX,
    ENVOY_SERVED_METHODS,
    ENVOY_SERVED_PATHS,
    OPENAPI_NAME,
    SERVICE_PACKAGE_PREFIX,
)
from interceptors.access_policy import PUBLIC_METHODS  # noqa: E402

DESCRIPTOR_NAME = "emoney.binpb"
OPENAPI_VERSION = "3.1.0"
API_VERSION = "v1"
SECURITY_SCHEME = "bearerAuth"
STATUS_SCHEMA = "google.rpc.Status"
# Error details the servers send (interceptors/error_mapping.py), documented on google.rpc.Status.
ERROR_DETAIL_TYPES = ("google.rpc.ErrorInfo", "google.rpc.BadRequest", "google.rpc.RetryInfo")
STREAM_MEDIA_TYPE = "application/x-ndjson"

# HTTP statuses an operation can answer with a google.rpc.Status body: the transcoder's
# mapping of every gRPC code (google/rpc/code.proto), and what Envoy answers itself.
ERROR_STATUSES: dict[int, str] = {
    400: "INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE: a malformed request (also bad JSON or a "
         "query parameter of the wrong type, answered by Envoy) or a business rule that refuses it.",
    401: "UNAUTHENTICATED: no, an expired or a revoked access token, or wrong credentials.",
    403: "PERMISSION_DENIED: the caller's roles do not allow this method.",
    404: "NOT_FOUND: no such resource visible to the caller (also: no API method at this path and HTTP method).",
    409: "ALREADY_EXISTS or ABORTED: e.g. a `requestId` reused with a different request, or a concurrent change.",
    413: "RESOURCE_EXHAUSTED: the request body is too large (answered by Envoy).",
    429: "RESOURCE_EXHAUSTED: a rate limit was hit; `details` carry a google.rpc.RetryInfo.",
    500: "INTERNAL, UNKNOWN or DATA_LOSS: an unexpected failure; the message carries only the request id.",
    501: "UNIMPLEMENTED: the method is not implemented by this server.",
    503: "UNAVAILABLE: a dependency or the server is unavailable; retry (with the same `requestId`).",
    504: "DEADLINE_EXCEEDED: the call took too long.",
}



def _reasons_for(http_status: int) -> str:
    """The ErrorInfo reasons answered with this HTTP status, from the failure catalogue (domain/failures.py)."""
    reasons = sorted(failure.reason for failure in CATALOGUE if failure.http_status == http_status)
    return f"\n\nErrorInfo reasons: {', '.join(f'`{reason}`' for reason in reasons)}." if reasons else ""


_F = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[int, dict[str, Any]] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_INT64: {"type": "string", "format": "int64"},
    _F.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _F.TYPE_SINT64: {"type": "string", "format": "int64"},
    _F.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _F.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    _F.TYPE_INT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    _F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "format": "byte", "contentEncoding": "base64"},
}

# Well-known types have their own JSON forms; they are inlined, not components.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    "google.protobuf.FloatValue": {"type": "number", "format": "float"},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "int64", "minimum": 0},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte", "contentEncoding": "base64"},
}
_ANY_SCHEMA = {
    "type": "object",
    "description": "A message of any type: `@type` names it (`type.googleapis.com/<full.Name>`), "
                   "the other properties are that message's JSON fields.",
    "properties": {"@type": {"type": "string"}},
    "required": ["@type"],
    "additionalProperties": True,
}

# SourceCodeInfo path components (descriptor.proto field numbers).
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_SERVICE_METHOD = 2
_ENUM_VALUE = 2

_HTTP_VERBS = ("get", "put", "post", "delete", "patch")


@dataclass
class _Message:
    descriptor: descriptor_pb2.DescriptorProto
    comment: str
    field_comments: dict[str, str]
    oneof_comments: dict[int, str]


@dataclass
class _Enum:
    descriptor: descriptor_pb2.EnumDescriptorProto
    comment: str
    value_comments: dict[str, str]


class _Catalog:
    """Every message and enum of a descriptor set by full name, with their comments."""

    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.files = list(descriptor_set.file)
        self.messages: dict[str, _Message] = {}
        self.enums: dict[str, _Enum] = {}
        for file in self.files:
            comments = _comments(file)
            prefix = f"{file.package}." if file.package else ""
            for index, message in enumerate(file.message_type):
                self._add_message(prefix + message.name, message, (_FILE_MESSAGE, index), comments)
            for index, enum in enumerate(file.enum_type):
                self._add_enum(prefix + enum.name, enum, (_FILE_ENUM, index), comments)

    def _add_message(self, name: str, message: descriptor_pb2.DescriptorProto, path: tuple[int, ...],
                     comments: dict[tuple[int, ...], str]) -> None:
        self.messages[name] = _Message(
            descriptor=message,
            comment=comments.get(path, ""),
            field_comments={field.name: comments.get((*path, _MESSAGE_FIELD, i), "") for i, field in enumerate(message.field)},
            oneof_comments={i: comments.get((*path, _MESSAGE_ONEOF, i), "") for i in range(len(message.oneof_decl))},
        )
        for index, nested in enumerate(message.nested_type):
            self._add_message(f"{name}.{nested.name}", nested, (*path, _MESSAGE_NESTED, index), comments)
        for index, enum in enumerate(message.enum_type):
            self._add_enum(f"{name}.{enum.name}", enum, (*path, _MESSAGE_ENUM, index), comments)

    def _add_enum(self, name: str, enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...],
                  comments: dict[tuple[int, ...], str]) -> None:
        self.enums[name] = _Enum(
            descriptor=enum,
            comment=comments.get(path, ""),
            value_comments={value.name: comments.get((*path, _ENUM_VALUE, i), "") for i, value in enumerate(enum.value)},
        )

    def message(self, type_name: str) -> _Message:
        return self.messages[type_name.lstrip(".")]

    def is_map(self, field: descriptor_pb2.FieldDescriptorProto) -> bool:
        return (field.type == _F.TYPE_MESSAGE and field.label == _F.LABEL_REPEATED
                and self.message(field.type_name).descriptor.options.map_entry)


def _clean_comment(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.splitlines()]
    return "\n".join(line.rstrip() for line in lines).strip()


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {
        tuple(location.path): _clean_comment(location.leading_comments)
        for location in file.source_code_info.location
        if location.leading_comments.strip()
    }


def _summary(comment: str) -> str:
    first_paragraph = comment.split("\n\n", 1)[0].replace("\n", " ")
    match = re.match(r"(.+?\.)(\s|$)", first_paragraph)
    return (match.group(1) if match else first_paragraph).strip()


def _lower_camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _singular(collection: str) -> str:
    if collection.endswith("ies"):
        return collection[:-3] + "y"
    if collection.endswith("s") and not collection.endswith("ss"):
        return collection[:-1]
    return collection


def _behaviors(field: descriptor_pb2.FieldDescriptorProto) -> set[int]:
    return set(field.options.Extensions[field_behavior_pb2.field_behavior])


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _with_description(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description} if description else dict(schema)


class _SchemaBuilder:
    """components/schemas: messages and enums reachable from the roots, by full proto name."""

    def __init__(self, catalog: _Catalog) -> None:
        self.catalog = catalog
        self.schemas: dict[str, dict[str, Any]] = {}
        self._pending: list[str] = []

    # -- references ------------------------------------------------------------------------

    def require(self, full_name: str) -> None:
        if full_name not in self.schemas and full_name not in self._pending:
            self._pending.append(full_name)

    def type_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        """The schema of one value of ``field`` (ignoring repetition)."""
        if field.type in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
            name = field.type_name.lstrip(".")
            if name in _WELL_KNOWN:
                return dict(_WELL_KNOWN[name])
            if name == "google.protobuf.Any":
                return dict(_ANY_SCHEMA)
            self.require(name)
            return _ref(name)
        if field.type == _F.TYPE_ENUM:
            name = field.type_name.lstrip(".")
            self.require(name)
            return _ref(name)
        return dict(_SCALARS[field.type])

    def field_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if self.catalog.is_map(field):
            entry = self.catalog.message(field.type_name).descriptor
            value = next(f for f in entry.field if f.name == "value")
            return {"type": "object", "additionalProperties": self.type_schema(value)}
        schema = self.type_schema(field)
        if field.label == _F.LABEL_REPEATED:
            return {"type": "array", "items": schema}
        return schema

    # -- components ------------------------------------------------------------------------

    def build(self) -> dict[str, dict[str, Any]]:
        while self._pending:
            name = self._pending.pop(0)
            if name in self.schemas:
                continue
            if name in self.catalog.enums:
                self.schemas[name] = self._enum_schema(name)
            else:
                self.schemas[name] = self.message_schema(name)
        if STATUS_SCHEMA in self.schemas:
            self._document_error_details()
        return self.schemas

    def _enum_schema(self, name: str) -> dict[str, Any]:
        """JSON names the values (the transcoder prints names and reads names or numbers); each value's
        comment is listed in the description and in `x-enum-descriptions` (what generators read)."""
        enum = self.catalog.enums[name]
        names = [value.name for value in enum.descriptor.value]
        notes = [" ".join(enum.value_comments.get(value, "").split()) for value in names]
        listing = "\n".join(f"- `{value}`: {note}" if note else f"- `{value}`" for value, note in zip(names, notes))
        schema: dict[str, Any] = {"type": "string", "enum": names, "x-enum-descriptions": notes}
        return _with_description(schema, "\n\n".join(filter(None, [enum.comment, listing])))

    def message_schema(self, name: str, *, omit: Iterable[str] = ()) -> dict[str, Any]:
        message = self.catalog.messages[name]
        omitted = set(omit)
        properties: dict[str, Any] = {}
        required: list[str] = []
        oneofs: dict[str, list[str]] = {}
        for field in message.descriptor.field:
            if field.name in omitted:
                continue
            description = message.field_comments.get(field.name, "")
            in_real_oneof = field.HasField("oneof_index") and not field.proto3_optional
            if in_real_oneof:
                oneof = message.descriptor.oneof_decl[field.oneof_index]
                members = [
                    other.json_name for other in message.descriptor.field
                    if other.HasField("oneof_index") and other.oneof_index == field.oneof_index
                ]
                oneofs.setdefault(oneof.name, members)
                note = (f"Member of the oneof `{oneof.name}`: at most one of "
                        + ", ".join(f"`{member}`" for member in members) + " is set.")
                description = f"{description}\n\n{note}" if description else note
            schema = _with_description(self.field_schema(field), description)
            behaviors = _behaviors(field)
            if field_behavior_pb2.OUTPUT_ONLY in behaviors:
                schema["readOnly"] = True
            if field_behavior_pb2.INPUT_ONLY in behaviors:
                schema["writeOnly"] = True
            if field_behavior_pb2.REQUIRED in behaviors:
                required.append(field.json_name)
            properties[field.json_name] = schema
        description = message.comment
        if oneofs:
            lines = []
            for index, oneof in enumerate(message.descriptor.oneof_decl):
                if oneof.name in oneofs:
                    comment = message.oneof_comments.get(index, "")
                    members = ", ".join(f"`{member}`" for member in oneofs[oneof.name])
                    lines.append(f"Oneof `{oneof.name}` ({members}): at most one is set." + (f" {comment}" if comment else ""))
            description = "\n\n".join(filter(None, [description, *lines]))
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if description:
            schema["description"] = description
        if required:
            schema["required"] = required
        if oneofs:
            schema["x-oneof"] = oneofs
        return schema

    def _document_error_details(self) -> None:
        """google.rpc.Status.details: the detail messages the servers send, each with `@type`."""
        variants = [
            {
                "allOf": [
                    _ref(name),
                    {
                        "type": "object",
                        "properties": {"@type": {"type": "string", "const": f"type.googleapis.com/{name}"}},
                        "required": ["@type"],
                    },
                ]
            }
            for name in ERROR_DETAIL_TYPES
            if name in self.schemas
        ]
        status = self.schemas[STATUS_SCHEMA]
        details = status["properties"]["details"]
        details["items"] = {"anyOf": [*variants, dict(_ANY_SCHEMA)]}
        details["description"] = (
            "Machine-readable details, each a JSON object whose `@type` names its message: "
            "`google.rpc.ErrorInfo` (always, with an UPPER_SNAKE `reason` and the domain `emoney.dev`), "
            "`google.rpc.BadRequest` (the fields at fault) and `google.rpc.RetryInfo` (when to retry). "
            "Errors answered by Envoy itself (unknown route, malformed JSON, no healthy server) have none."
        )
        status["description"] = (
            "The error body of every failed call: the gRPC status code, a developer-facing message and details. "
            "The HTTP status is the one the gRPC code maps to (NOT_FOUND -> 404, ...).\n\n" + status.get("description", "")
        ).strip()


# -- path templates -----------------------------------------------------------------------------


@dataclass
class _Variable:
    field_path: str  # proto field path, e.g. "name" or "parent.name"
    segments: list[str]  # pattern segments, e.g. ["accounts", "*"]


def _parse_template(template: str) -> tuple[list[str | _Variable], str]:
    """Split a google.api.http path template into literal text and variables; return the verb too."""
    verb = ""
    colon = template.rfind(":")
    if colon > max(template.rfind("}"), template.rfind("/")):
        template, verb = template[:colon], template[colon + 1:]
    pieces: list[str | _Variable] = []
    for literal, variable in re.findall(r"([^{]*)(\{[^}]*\})?", template):
        if literal:
            pieces.append(literal)
        if variable:
            field_path, _, pattern = variable[1:-1].partition("=")
            pieces.append(_Variable(field_path.strip(), (pattern or "*").split("/")))
    return pieces, verb


def _resolve_field(catalog: _Catalog, message_name: str, field_path: str) -> tuple[descriptor_pb2.FieldDescriptorProto, str]:
    """The field at a dotted proto path and its comment."""
    message = catalog.messages[message_name]
    parts = field_path.split(".")
    for index, part in enumerate(parts):
        field = next(f for f in message.descriptor.field if f.name == part)
        if index == len(parts) - 1:
            return field, message.field_comments.get(part, "")
        message = catalog.message(field.type_name)
    raise KeyError(field_path)


def _json_path(catalog: _Catalog, message_name: str, field_path: str) -> str:
    names = []
    message = catalog.messages[message_name]
    for part in field_path.split("."):
        field = next(f for f in message.descriptor.field if f.name == part)
        names.append(field.json_name)
        if field.type == _F.TYPE_MESSAGE:
            message = catalog.message(field.type_name)
    return ".".join(names)


@dataclass
class _PathParameter:
    name: str
    field_json_path: str
    resource_template: str  # the field's value, e.g. "accounts/{accountId}"
    multi_segment: bool
    comment: str


def _openapi_path(catalog: _Catalog, request_name: str, template: str) -> tuple[str, list[_PathParameter], set[str]]:
    """OpenAPI path, its parameters and the top-level request fields bound to the path."""
    pieces, verb = _parse_template(template)
    parameters: list[_PathParameter] = []
    bound: set[str] = set()
    path = ""
    for piece in pieces:
        if isinstance(piece, str):
            path += piece
            continue
        field, comment = _resolve_field(catalog, request_name, piece.field_path)
        json_path = _json_path(catalog, request_name, piece.field_path)
        bound.add(piece.field_path.split(".")[0])
        rendered_segments: list[str] = []
        variable_parameters: list[tuple[str, bool]] = []
        previous = ""
        for segment in piece.segments:
            if segment in ("*", "**"):
                documented = re.search(rf"`{re.escape(previous)}/\{{(\w+)\}}", comment) if previous else None
                if documented:
                    name = _lower_camel(documented.group(1))
                elif previous:
                    name = _singular(previous) + "Id"
                else:
                    name = json_path.replace(".", "_")
                taken = {p.name for p in parameters} | {n for n, _ in variable_parameters}
                base, counter = name, 2
                while name in taken:
                    name, counter = f"{base}{counter}", counter + 1
                variable_parameters.append((name, segment == "**"))
                rendered_segments.append("{" + name + "}")
            else:
                rendered_segments.append(segment)
            previous = segment
        resource_template = "/".join(rendered_segments)
        path += resource_template
        for name, multi in variable_parameters:
            parameters.append(_PathParameter(name, json_path, resource_template, multi, comment))
    if verb:
        path += ":" + verb
    return path, parameters, bound


# -- operations -----------------------------------------------------------------------------------


def _bindings(rule: Any) -> list[tuple[str, str, str]]:
    """(http method, path template, body) of a rule and its additional bindings."""
    found = []
    for binding in [rule, *rule.additional_bindings]:
        pattern = binding.WhichOneof("pattern")
        if pattern is None:
            continue
        if pattern == "custom":
            found.append((binding.custom.kind.lower(), binding.custom.path, binding.body))
        else:
            found.append((pattern, getattr(binding, pattern), binding.body))
    return found


def _query_parameters(builder: _SchemaBuilder, message_name: str, exclude: set[str], prefix: str = "",
                      seen: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Query parameters for the fields of a message not bound to the path or the body."""
    catalog = builder.catalog
    message = catalog.messages[message_name]
    parameters: list[dict[str, Any]] = []
    for field in message.descriptor.field:
        if not prefix and field.name in exclude:
            continue
        name = prefix + field.json_name
        comment = message.field_comments.get(field.name, "")
        is_message = field.type in (_F.TYPE_MESSAGE, _F.TYPE_GROUP)
        type_name = field.type_name.lstrip(".")
        if catalog.is_map(field) or (is_message and field.label == _F.LABEL_REPEATED and type_name not in _WELL_KNOWN):
            continue  # not expressible as query parameters
        if is_message and type_name not in _WELL_KNOWN:
            if type_name in seen or type_name == "google.protobuf.Any":
                continue
            parameters += _query_parameters(builder, type_name, exclude, f"{name}.", (*seen, message_name))
            continue
        schema = builder.field_schema(field)
        parameter: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
        if field.type == _F.TYPE_MESSAGE and type_name == "google.protobuf.Timestamp":
            comment = f"{comment} An RFC 3339 time, e.g. `2024-05-01T12:00:00Z`.".strip()
        if comment:
            parameter["description"] = comment
        if field_behavior_pb2.REQUIRED in _behaviors(field) and not prefix:
            parameter["required"] = True
        if schema.get("type") == "array":
            parameter["explode"] = True
            parameter["style"] = "form"
        parameters.append(parameter)
    return parameters


def _path_parameter(parameter: _PathParameter) -> dict[str, Any]:
    if parameter.multi_segment:
        schema = {"type": "string"}
        note = "May contain `/` (the template matches several segments)."
    else:
        schema = {"type": "string", "pattern": "^[^/]+$"}
        note = "One path segment."
    description = (
        f"`{{{parameter.name}}}` of the resource name `{parameter.resource_template}`, which the method receives "
        f"as the request field `{parameter.field_json_path}`. {note}"
    )
    if parameter.comment and not re.fullmatch(r"`[^`]*`\.?", parameter.comment):
        description += f"\n\nField `{parameter.field_json_path}`: {parameter.comment}"
    return {"name": parameter.name, "in": "path", "required": True, "schema": schema, "description": description}


def _error_responses() -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in ERROR_STATUSES}


def _operation(builder: _SchemaBuilder, package: str, service: descriptor_pb2.ServiceDescriptorProto,
               method: descriptor_pb2.MethodDescriptorProto, comment: str, http_method: str, template: str,
               body: str, operation_id: str) -> tuple[str, dict[str, Any]]:
    catalog = builder.catalog
    request_name = method.input_type.lstrip(".")
    response_name = method.output_type.lstrip(".")
    grpc_path = f"/{package}.{service.name}/{method.name}"
    path, path_parameters, bound = _openapi_path(catalog, request_name, template)
    builder.require(request_name)
    builder.require(response_name)

    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [service.name],
        "x-grpc-method": grpc_path,
    }
    if comment:
        operation["summary"] = _summary(comment)
        operation["description"] = comment
    parameters = [_path_parameter(parameter) for parameter in path_parameters]
    if body == "*":
        if bound:
            body_name = f"{request_name}Body"
            if body_name in catalog.messages:
                raise ValueError(f"schema name {body_name} is taken by a message")
            schema = builder.message_schema(request_name, omit=bound)
            schema["description"] = (
                f"{request_name} without the fields taken from the path (" + ", ".join(f"`{_lower_camel(f)}`" for f in sorted(bound))
                + ").\n\n" + schema.get("description", "")
            ).strip()
            builder.schemas[body_name] = schema
        else:
            body_name = request_name
            schema = builder.message_schema(request_name)
        operation["requestBody"] = {
            "required": bool(schema.get("required")),
            "content": {"application/json": {"schema": _ref(body_name)}},
        }
    else:
        exclude = set(bound)
        if body:
            field, field_comment = _resolve_field(catalog, request_name, body)
            exclude.add(body)
            operation["requestBody"] = {
                "required": True,
                "description": field_comment or f"The request field `{field.json_name}`.",
                "content": {"application/json": {"schema": builder.field_schema(field)}},
            }
        parameters += _query_parameters(builder, request_name, exclude)
    if parameters:
        operation["parameters"] = parameters

    if method.server_streaming:
        success = {
            "description": (
                "A server stream: newline-delimited JSON, one object per line, sent as events happen until the "
                f"call ends; each line is a `{response_name}`. Envoy labels the response `content-type: "
                "application/json`. The response starts (HTTP 200) before the call's outcome is known, so an "
                "error of the call, even one found before the first message (UNAUTHENTICATED, NOT_FOUND, ...), "
                "arrives as a last line holding a `google.rpc.Status`; the error statuses below are for what "
                "Envoy answers itself. The schema is that of one line."
            ),
            "content": {STREAM_MEDIA_TYPE: {"schema": {"anyOf": [_ref(response_name), _ref(STATUS_SCHEMA)]}}},
        }
        operation["x-grpc-server-streaming"] = True
    else:
        success = {"description": "Success.", "content": {"application/json": {"schema": _ref(response_name)}}}
    operation["responses"] = {"200": success, **_error_responses()}
    operation["security"] = [] if grpc_path in PUBLIC_METHODS else [{SECURITY_SCHEME: []}]
    return path, {http_method: operation}


def build_openapi(descriptor_set: descriptor_pb2.FileDescriptorSet) -> dict[str, Any]:
    """The OpenAPI document (a dict) of every google.api.http binding of the emoney.* services."""
    catalog = _Catalog(descriptor_set)
    builder = _SchemaBuilder(catalog)
    paths: dict[str, dict[str, Any]] = {}
    tags: list[dict[str, Any]] = []
    tag_names: set[str] = set()
    operation_ids: set[str] = set()
    for file in sorted(catalog.files, key=lambda f: f.name):
        if not file.package.startswith(SERVICE_PACKAGE_PREFIX):
            continue
        comments = _comments(file)
        for message in file.message_type:
            builder.require(f"{file.package}.{message.name}")
        for service_index, service in enumerate(file.service):
            if service.name in tag_names:
                raise ValueError(f"two services named {service.name}: tags would collide")
            tag_names.add(service.name)
            tag = {"name": service.name, "x-grpc-service": f"{file.package}.{service.name}"}
            service_comment = comments.get((_FILE_SERVICE, service_index), "")
            if service_comment:
                tag["description"] = service_comment
            tags.append(tag)
            for method_index, method in enumerate(service.method):
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                comment = comments.get((_FILE_SERVICE, service_index, _SERVICE_METHOD, method_index), "")
                for binding_index, (http_method, template, body) in enumerate(_bindings(method.options.Extensions[annotations_pb2.http])):
                    if http_method not in _HTTP_VERBS:
                        raise ValueError(f"{method.name}: HTTP method {http_method!r} has no OpenAPI operation")
                    operation_id = f"{service.name}_{method.name}" + (f"_{binding_index + 1}" if binding_index else "")
                    if operation_id in operation_ids:
                        raise ValueError(f"duplicate operationId {operation_id}")
                    operation_ids.add(operation_id)
                    path, operation = _operation(builder, file.package, service, method, comment, http_method, template, body, operation_id)
                    if path in ENVOY_SERVED_PATHS and http_method.upper() in ENVOY_SERVED_METHODS:
                        raise ValueError(f"{http_method.upper()} {path} ({operation_id}) is answered by Envoy itself "
                                         "(envoy_config/routes.py): the method would never be reached")
                    existing = paths.setdefault(path, {})
                    if http_method in existing:
                        raise ValueError(f"{http_method.upper()} {path} is bound twice")
                    existing.update(operation)
    for name in ERROR_DETAIL_TYPES + (STATUS_SCHEMA,):
        if name in catalog.messages:
            builder.require(name)
    schemas = builder.build()

    error_responses = {
        f"Error{status}": {
            "description": description + _reasons_for(status),
            "content": {"application/json": {"schema": _ref(STATUS_SCHEMA)}},
        }
        for status, description in ERROR_STATUSES.items()
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "e-Money API (JSON over HTTP)",
            "version": API_VERSION,
            "description": (
                "The JSON face of the e-Money platform, served by Envoy's gRPC-JSON transcoder in front of the gRPC "
                "servers. Generated from the protobuf contract by `make proto`; do not edit.\n\n"
                "- Field names are lowerCamelCase; requests may also use the proto names.\n"
                "- 64-bit integers (e.g. `amountMinor`, minor units of `currency`) are JSON strings.\n"
                "- Times are RFC 3339 strings (`2024-05-01T12:00:00Z`).\n"
                "- Fields with default values are always present in responses; unknown query parameters are ignored.\n"
                "- Resource names travel whole in request and response fields (`accounts/{id}`); in a URL the "
                "collection is a literal path segment followed by the id parameter, e.g. `GET /v1/accounts/{accountId}`.\n"
                "- Errors are a `google.rpc.Status` with the HTTP status of the gRPC code and details "
                "(`google.rpc.ErrorInfo` with an UPPER_SNAKE `reason`, `google.rpc.BadRequest`, `google.rpc.RetryInfo`).\n"
                "- Log in with `POST /v1/tenants/{slug}/sessions:login`, then send "
                "`authorization: Bearer <tokens.accessToken>`.\n"
                "- Money-moving calls take a client `requestId` (idempotency key): retry with the same one."
            ),
        },
        "servers": [{"url": API_PREFIX, "description": "The Envoy listener that serves this document"}],
        "tags": sorted(tags, key=lambda tag: tag["name"]),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": error_responses,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from a login (`tokens.accessToken`), valid for about 10 minutes.",
                }
            },
        },
    }


def render_openapi(descriptor_path: Path) -> str:
    """The document as deterministic JSON text (sorted keys, two-space indent, final newline)."""
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor_path).read_bytes())
    return json.dumps(build_openapi(descriptor_set), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_openapi(descriptor_path: Path, output_path: Path) -> None:
    Path(output_path).write_text(render_openapi(descriptor_path), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--descriptor", type=Path, default=ROOT / "generated" / DESCRIPTOR_NAME)
    parser.add_argument("--output", type=Path, default=ROOT / "generated" / OPENAPI_NAME)
    arguments = parser.parse_args(argv)
    write_openapi(arguments.descriptor, arguments.output)
    print(f"wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
