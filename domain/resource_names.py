"""Parsing of AIP-122 resource names, with the field violations callers see."""

from __future__ import annotations

import re

from domain.errors import INVALID_FORMAT, REQUIRED, TOO_LONG, FieldViolation, InvalidArgument

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
MAX_RESOURCE_NAME_LENGTH = 256


def parse_tenant_name(name: str, field: str = "name") -> str:
    """`tenants/{slug}` → slug, or INVALID_ARGUMENT naming the field."""
    if len(name) > MAX_RESOURCE_NAME_LENGTH:
        raise _invalid(field, TOO_LONG, f"must be at most {MAX_RESOURCE_NAME_LENGTH} characters")
    collection, separator, slug = name.partition("/")
    if not name:
        raise _invalid(field, REQUIRED, "is required, for example `tenants/demo-city`")
    if collection != "tenants" or not separator:
        raise _invalid(field, INVALID_FORMAT, "must have the form `tenants/{slug}`")
    if not SLUG_PATTERN.match(slug) or "--" in slug:
        raise _invalid(
            field, INVALID_FORMAT,
            "slug must be 3-63 lower-case letters, digits or single inner hyphens, for example `demo-city`",
        )
    return slug


def _invalid(field: str, violation_reason: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        message=f"{field} {description}",
        reason="INVALID_RESOURCE_NAME",
        violations=[FieldViolation(field, description, violation_reason)],
    )
