"""Tenant resource names are parsed strictly, with field violations for the caller."""

from __future__ import annotations

import pytest

from domain.errors import InvalidArgument
from domain.resource_names import parse_tenant_name


@pytest.mark.parametrize("name", ["tenants/demo-city", "tenants/abc", "tenants/a1-b2-c3"])
def test_valid_names_give_the_slug(name):
    """Well-formed names return their slug."""
    assert parse_tenant_name(name) == name.split("/", 1)[1]


@pytest.mark.parametrize(
    "name",
    ["", "demo-city", "tenant/demo-city", "tenants/", "tenants/ab", "tenants/Demo", "tenants/-demo", "tenants/demo-",
     "tenants/de--mo", "tenants/demo/city", "tenants/" + "a" * 64, "x" * 300],
)
def test_malformed_names_are_invalid_argument_on_the_name_field(name):
    """Anything else is INVALID_ARGUMENT with a violation on `name`."""
    with pytest.raises(InvalidArgument) as raised:
        parse_tenant_name(name)
    assert raised.value.violations[0].field == "name"
    assert raised.value.reason == "INVALID_RESOURCE_NAME"
