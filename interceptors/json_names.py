"""Errors name fields the way the caller wrote them.

The service layer names fields in proto spelling (`display_name`, `from_account`): what native gRPC
and grpc-web clients see in their generated code. A call that Envoy transcoded from JSON wrote
`displayName` and `fromAccount`, so its error says so too: the field of each BadRequest violation,
the violation's description and the status message. The JSON name of a field is its `json_name` in
the request type's descriptor, the name Envoy's transcoder itself reads and prints.

Envoy's transcoder adds `x-envoy-original-path` (the client's HTTP path) to every call it makes from
a JSON request, and strips that header from what clients send (`internal_only_headers` in the Envoy
configuration); grpc-web and native calls never carry it.
"""

from __future__ import annotations

import functools
import re

from google.protobuf import any_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor
from google.rpc import error_details_pb2, status_pb2

TRANSCODED_FROM_JSON_HEADER = "x-envoy-original-path"
# How deep nested request messages are searched for field names: far deeper than any request nests.
MAX_NESTING = 8
# Methods remembered (each a name table and a pattern): every method of the contract, with room.
MAX_METHODS_REMEMBERED = 256


@functools.lru_cache(maxsize=MAX_METHODS_REMEMBERED)
def _json_names(method: str) -> tuple[dict[str, str], re.Pattern[str] | None]:
    """Proto name → JSON name of every field of the method's request (nested messages included) whose
    two names differ, and a pattern finding those proto names as whole words. KeyError (not remembered)
    for a method whose descriptor is not loaded."""
    request_type = descriptor_pool.Default().FindMethodByName(method.lstrip("/").replace("/", ".")).input_type
    names: dict[str, str] = {}
    pending: list[tuple[Descriptor, int]] = [(request_type, 0)]
    seen: set[str] = set()
    while pending:
        message, depth = pending.pop()
        if message.full_name in seen or depth > MAX_NESTING:
            continue
        seen.add(message.full_name)
        for field in message.fields:
            if field.name != field.json_name:
                names[field.name] = field.json_name
            if field.message_type is not None:
                pending.append((field.message_type, depth + 1))
    if not names:
        return names, None
    # \b treats `_` as part of a word: `display_name` is not found inside `admin_display_name`.
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    return names, re.compile(rf"\b({alternatives})\b")


def spelled_for_json(status: status_pb2.Status, method: str) -> status_pb2.Status:
    """`status` with every field of `method`'s request named by its JSON name (`displayName`)."""
    try:
        names, pattern = _json_names(method)
    except KeyError:
        return status
    if pattern is None:
        return status

    def respell(text: str) -> str:
        return pattern.sub(lambda found: names[found.group(1)], text)

    spelled = status_pb2.Status(code=status.code, message=respell(status.message))
    for detail in status.details:
        if not detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            spelled.details.append(detail)
            continue
        bad_request = error_details_pb2.BadRequest()
        detail.Unpack(bad_request)
        for violation in bad_request.field_violations:
            violation.field = respell(violation.field)
            violation.description = respell(violation.description)
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        spelled.details.append(packed)
    return spelled
