"""The contract's enums and the domain's lists of strings agree one to one, both ways
(server/servicers/enums.py): every domain string has its enum value and comes back from it, every enum
value but the zero one has its domain string, every enum of the contract has a table, and a table whose
two sides differ is refused. Input conversion: unset and unknown numbers are INVALID_ARGUMENT naming
the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from domain import ledger_rules, principal, statement_documents
from domain.errors import NOT_ALLOWED, REQUIRED, TOO_LONG, InvalidArgument
from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2
from server.servicers import enums
from server.servicers.enums import ENUM_MAPS, EnumMap

DESCRIPTOR_SET = Path(__file__).resolve().parents[2] / "generated" / "emoney.binpb"

# The domain's list each contract enum mirrors: the single source of the strings the database stores.
DOMAIN_LISTS = {
    "emoney.accounts.v1.AccountKind": ledger_rules.ACCOUNT_KINDS,
    "emoney.accounts.v1.AccountStatus": ledger_rules.ACCOUNT_STATUSES,
    "emoney.payments.v1.PaymentKind": ledger_rules.PAYMENT_KINDS,
    "emoney.payments.v1.PaymentStatus": ledger_rules.PAYMENT_STATUSES,
    "emoney.payments.v1.PaymentEventType": ledger_rules.PAYMENT_EVENTS,
    "emoney.auth.v1.Role": principal.USER_ROLES,
    "emoney.auth.v1.UserStatus": principal.USER_STATUSES,
    "emoney.auth.v1.TerminalStatus": principal.TERMINAL_STATUSES,
    "emoney.admin.v1.TenantStatus": principal.TENANT_STATUSES,
    "emoney.accounts.v1.StatementFormat": statement_documents.FORMATS,
    "emoney.accounts.v1.StatementExportState": statement_documents.EXPORT_STATES,
}


def contract_enums() -> dict[str, descriptor_pb2.EnumDescriptorProto]:
    """Every enum declared in the emoney.* files of the descriptor set `make proto` wrote."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file
    found: dict[str, descriptor_pb2.EnumDescriptorProto] = {}

    def walk(prefix: str, messages) -> None:
        for message in messages:
            for enum in message.enum_type:
                found[f"{prefix}.{message.name}.{enum.name}"] = enum
            walk(f"{prefix}.{message.name}", message.nested_type)

    for file in files:
        if file.package.startswith("emoney."):
            for enum in file.enum_type:
                found[f"{file.package}.{enum.name}"] = enum
            walk(file.package, file.message_type)
    return found


def test_every_contract_enum_has_a_table_and_a_domain_list():
    """A new enum in the contract fails here until it has its EnumMap (and its domain list here)."""
    assert set(contract_enums()) == set(ENUM_MAPS) == set(DOMAIN_LISTS)


@pytest.mark.parametrize("full_name", sorted(DOMAIN_LISTS))
def test_each_table_mirrors_its_domain_list(full_name):
    """The table is built from the domain's own list (the same strings, in the same order)."""
    assert ENUM_MAPS[full_name].domain_values == tuple(DOMAIN_LISTS[full_name])


@pytest.mark.parametrize("full_name", sorted(DOMAIN_LISTS))
def test_every_domain_string_maps_to_an_enum_value_and_back(full_name):
    mapping = ENUM_MAPS[full_name]
    numbers = [mapping.to_wire(value) for value in DOMAIN_LISTS[full_name]]
    assert 0 not in numbers and len(set(numbers)) == len(numbers)
    for value, number in zip(DOMAIN_LISTS[full_name], numbers):
        assert mapping.enum.Name(number) == mapping.prefix + value.upper()  # the mechanical rule
        assert mapping.to_domain(number) == value
        assert mapping.required(number, "field") == value == mapping.filter(number, "field")


@pytest.mark.parametrize("full_name", sorted(DOMAIN_LISTS))
def test_every_enum_value_maps_to_a_domain_string_and_back(full_name):
    """Both ways: no enum value (but the zero one, `<PREFIX>_UNSPECIFIED`) lacks its domain string."""
    mapping = ENUM_MAPS[full_name]
    values = contract_enums()[full_name].value
    assert [value.name for value in values if value.number == 0] == [mapping.prefix + "UNSPECIFIED"]
    for value in values:
        if value.number == 0:
            assert mapping.to_domain(0) is None
            continue
        domain_value = mapping.to_domain(value.number)
        assert domain_value in DOMAIN_LISTS[full_name], value.name
        assert mapping.to_wire(domain_value) == value.number


def test_a_table_whose_sides_differ_is_refused():
    """An enum value without its domain string, or a domain string without its value, stops the server
    at import (the tables are built at module level)."""
    with pytest.raises(ValueError, match="ACCOUNT_KIND_SYSTEM_FLOAT"):
        EnumMap(accounts_pb2.AccountKind, ("customer", "merchant"))
    with pytest.raises(ValueError, match="ACCOUNT_KIND_DORMANT"):
        EnumMap(accounts_pb2.AccountKind, (*ledger_rules.ACCOUNT_KINDS, "dormant"))
    with pytest.raises(ValueError, match="one to one"):
        EnumMap(accounts_pb2.AccountKind, (*ledger_rules.ACCOUNT_KINDS, "customer"))


def test_a_domain_string_outside_the_list_is_a_bug_not_a_zero():
    with pytest.raises(ValueError):
        enums.ACCOUNT_STATUS.to_wire("dormant")


def _violation(caught: pytest.ExceptionInfo[InvalidArgument]) -> tuple[str, str]:
    (violation,) = caught.value.violations
    return violation.field, violation.reason


def test_unset_where_required_is_required():
    with pytest.raises(InvalidArgument) as caught:
        enums.ACCOUNT_KIND.required(accounts_pb2.ACCOUNT_KIND_UNSPECIFIED, "kind")
    assert _violation(caught) == ("kind", REQUIRED) and caught.value.reason == REQUIRED


@pytest.mark.parametrize("mapping", [enums.ACCOUNT_KIND, enums.ACCOUNT_STATUS, enums.PAYMENT_STATUS, enums.ROLE])
def test_an_unknown_number_is_not_allowed_and_names_the_values(mapping):
    with pytest.raises(InvalidArgument) as caught:
        mapping.required(99, "field")
    assert _violation(caught) == ("field", NOT_ALLOWED)
    assert all(name in caught.value.violations[0].description for name in mapping.wire_names)
    with pytest.raises(InvalidArgument) as caught:
        mapping.filter(-1, "field")
    assert _violation(caught) == ("field", NOT_ALLOWED)


def test_an_unset_filter_is_every_value():
    assert enums.PAYMENT_STATUS.filter(payments_pb2.PAYMENT_STATUS_UNSPECIFIED, "status") is None
    assert enums.ACCOUNT_KIND.filter(accounts_pb2.ACCOUNT_KIND_UNSPECIFIED, "kind") is None
    assert enums.ROLE.filter(auth_pb2.ROLE_UNSPECIFIED, "role") is None


def test_repeated_roles():
    assert enums.ROLE.required_list([auth_pb2.ROLE_MERCHANT, auth_pb2.ROLE_CUSTOMER], "roles") == ["merchant", "customer"]
    assert enums.ROLE.required_list([], "roles") == []  # the service layer says an empty list is REQUIRED
    for bad in ([auth_pb2.ROLE_CUSTOMER, auth_pb2.ROLE_UNSPECIFIED], [114] * 40_000):
        with pytest.raises(InvalidArgument) as caught:
            enums.ROLE.required_list(bad, "roles")
        assert _violation(caught)[1] in (NOT_ALLOWED, TOO_LONG)
        assert len(str(caught.value.message)) < 300  # never quotes the whole input


def test_messages_carry_enum_values():
    """The converters put the contract's numbers into messages (spot check of each message's fields)."""
    assert admin_pb2.TenantSummary(status=enums.TENANT_STATUS.to_wire("suspended")).status == admin_pb2.TENANT_STATUS_SUSPENDED
    assert payments_pb2.Payment(kind=enums.PAYMENT_KIND.to_wire("top_up")).kind == payments_pb2.PAYMENT_KIND_TOP_UP
    assert accounts_pb2.Entry(kind=enums.PAYMENT_KIND.to_wire("capture")).kind == payments_pb2.PAYMENT_KIND_CAPTURE
