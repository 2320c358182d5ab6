"""The contract's enums ⇄ the domain's strings: one table, used by the servicers at the edge.

The domain and the database keep their lower-case strings ('customer', 'partially_refunded'); the
contract has AIP-126 enums (`AccountKind.ACCOUNT_KIND_CUSTOMER`). The mapping is mechanical: an enum
value's name is its enum's prefix (the zero value's name without `UNSPECIFIED`) followed by the
domain string in upper case, so `ACCOUNT_KIND_SYSTEM_FLOAT` ⇄ "system_float". A new value is one
proto entry plus one string in the domain's list; `EnumMap` refuses, when the server starts, an enum
and a domain list that do not match one to one (tests/unit/test_enum_mapping.py checks every table).

On input, the zero value is "not set" (REQUIRED where a value is needed, or "all" in a list filter)
and a number the contract does not know (proto3 enums are open) is NOT_ALLOWED; both are
INVALID_ARGUMENT naming the field, never INTERNAL.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from domain import ledger_rules, principal, statement_documents
from domain.errors import NOT_ALLOWED, REQUIRED, TOO_LONG
from domain.validation import invalid
from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2

UNSPECIFIED_SUFFIX = "UNSPECIFIED"
# A repeated enum field is read whole before it is checked: this bounds the work (CreateUser takes at
# most 4 roles; the service layer says so with its own message).
MAX_REPEATED_ENUM_VALUES = 100


class EnumMap:
    """One contract enum and the domain's list of the same values, both ways."""

    def __init__(self, enum: EnumTypeWrapper, domain_values: Sequence[str]) -> None:
        descriptor: EnumDescriptor = enum.DESCRIPTOR
        zero = descriptor.values_by_number.get(0)
        if zero is None or not zero.name.endswith("_" + UNSPECIFIED_SUFFIX):
            raise ValueError(f"{descriptor.full_name}: the zero value must be <PREFIX>_{UNSPECIFIED_SUFFIX}")
        self.enum = enum
        self.full_name = descriptor.full_name
        self.prefix = zero.name.removesuffix(UNSPECIFIED_SUFFIX)
        self.unspecified_name = zero.name
        self.domain_values = tuple(domain_values)
        names = {value.name: value.number for value in descriptor.values if value.number != 0}
        wanted = {self.wire_name_of(value): value for value in self.domain_values}
        missing = sorted(set(wanted) - set(names))
        extra = sorted(set(names) - set(wanted))
        if missing or extra or len(wanted) != len(self.domain_values):
            raise ValueError(
                f"{self.full_name} and its domain list {self.domain_values} do not match one to one: "
                f"no enum value for {missing or 'none'}, no domain string for {extra or 'none'}"
            )
        self._to_wire = {value: names[name] for name, value in wanted.items()}
        self._to_domain = {number: value for value, number in self._to_wire.items()}
        self.wire_names = tuple(self.wire_name_of(value) for value in self.domain_values)

    def wire_name_of(self, domain_value: str) -> str:
        return self.prefix + domain_value.upper()

    def to_wire(self, domain_value: str) -> int:
        """The enum number of a domain string (a string outside the domain's list is a bug: ValueError)."""
        try:
            return self._to_wire[domain_value]
        except KeyError:
            raise ValueError(f"{domain_value!r} is no {self.full_name}") from None

    def to_wire_list(self, domain_values: Iterable[str]) -> list[int]:
        return [self.to_wire(value) for value in domain_values]

    def to_domain(self, number: int) -> str | None:
        """The domain string of an enum number; None for the zero value and unknown numbers."""
        return self._to_domain.get(number)

    def _not_allowed(self, field: str, number: int):
        return invalid(field, NOT_ALLOWED, f"must be one of {', '.join(self.wire_names)} (got {number})")

    def required(self, number: int, field: str) -> str:
        """A field that must be set: its domain string. Unset is REQUIRED, an unknown number NOT_ALLOWED."""
        if number == 0:
            raise invalid(field, REQUIRED, f"is required (not {self.unspecified_name})")
        value = self._to_domain.get(number)
        if value is None:
            raise self._not_allowed(field, number)
        return value

    def filter(self, number: int, field: str) -> str | None:
        """A list filter: None (every value) when unset, else its domain string; an unknown number is NOT_ALLOWED."""
        if number == 0:
            return None
        value = self._to_domain.get(number)
        if value is None:
            raise self._not_allowed(field, number)
        return value

    def required_list(self, numbers: Sequence[int], field: str) -> list[str]:
        """A repeated field: each entry's domain string. The zero value or an unknown number is NOT_ALLOWED
        (an entry is there, so it is not missing); an empty list is left to the caller's rules."""
        if len(numbers) > MAX_REPEATED_ENUM_VALUES:
            raise invalid(field, TOO_LONG, f"must have at most {MAX_REPEATED_ENUM_VALUES} entries")
        values = []
        for number in numbers:
            value = self._to_domain.get(number)
            if value is None:
                raise self._not_allowed(field, number)
            values.append(value)
        return values


ACCOUNT_KIND = EnumMap(accounts_pb2.AccountKind, ledger_rules.ACCOUNT_KINDS)
ACCOUNT_STATUS = EnumMap(accounts_pb2.AccountStatus, ledger_rules.ACCOUNT_STATUSES)
PAYMENT_KIND = EnumMap(payments_pb2.PaymentKind, ledger_rules.PAYMENT_KINDS)
PAYMENT_STATUS = EnumMap(payments_pb2.PaymentStatus, ledger_rules.PAYMENT_STATUSES)
PAYMENT_EVENT_TYPE = EnumMap(payments_pb2.PaymentEventType, ledger_rules.PAYMENT_EVENTS)
ROLE = EnumMap(auth_pb2.Role, principal.USER_ROLES)
USER_STATUS = EnumMap(auth_pb2.UserStatus, principal.USER_STATUSES)
TERMINAL_STATUS = EnumMap(auth_pb2.TerminalStatus, principal.TERMINAL_STATUSES)
TENANT_STATUS = EnumMap(admin_pb2.TenantStatus, principal.TENANT_STATUSES)

# Every enum of the contract, by full name (a unit test checks none is missing).
STATEMENT_FORMAT = EnumMap(accounts_pb2.StatementFormat, statement_documents.FORMATS)
STATEMENT_EXPORT_STATE = EnumMap(accounts_pb2.StatementExportState, statement_documents.EXPORT_STATES)
ENUM_MAPS: dict[str, EnumMap] = {
    mapping.full_name: mapping
    for mapping in (ACCOUNT_KIND, ACCOUNT_STATUS, PAYMENT_KIND, PAYMENT_STATUS, PAYMENT_EVENT_TYPE, ROLE, USER_STATUS,
                    TERMINAL_STATUS, TENANT_STATUS, STATEMENT_FORMAT, STATEMENT_EXPORT_STATE)
}
