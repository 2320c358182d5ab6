"""Input rules shared by services: every string and page has a limit, every failure names its field."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Sequence, TypeVar

from domain.errors import (
    INVALID_FORMAT, OUT_OF_RANGE, REQUIRED, TOO_LONG, FieldViolation, InvalidArgument,
)

MAX_EMAIL_LENGTH = 254
MAX_DISPLAY_NAME_LENGTH = 200
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE_TOKEN_LENGTH = 512
# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
_EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
Row = TypeVar("Row")


def invalid(field: str, violation_reason: str, description: str, reason: str = "") -> InvalidArgument:
    """INVALID_ARGUMENT for one bad field; its ErrorInfo reason is `reason`, else the violation's."""
    return InvalidArgument(
        message=f"{field} {description}", reason=reason, violations=[FieldViolation(field, description, violation_reason)]
    )


def raise_if_violations(violations: list[FieldViolation], reason: str = "") -> None:
    if violations:
        message = "; ".join(f"{violation.field} {violation.description}" for violation in violations)
        raise InvalidArgument(message=message, reason=reason, violations=violations)


def required_violations(**fields: str) -> list[FieldViolation]:
    """REQUIRED for each named field that is empty, e.g. `required_violations(email=email, password=password)`."""
    return [FieldViolation(name, "is required", REQUIRED) for name, value in fields.items() if not value]


def email_violations(email: str, field: str = "email") -> list[FieldViolation]:
    if not email:
        return [FieldViolation(field, "is required", REQUIRED)]
    if len(email) > MAX_EMAIL_LENGTH:
        return [FieldViolation(field, f"must be an e-mail address of at most {MAX_EMAIL_LENGTH} characters", TOO_LONG)]
    if not _EMAIL_PATTERN.match(email):
        return [FieldViolation(field, f"must be an e-mail address of at most {MAX_EMAIL_LENGTH} characters", INVALID_FORMAT)]
    return []


def normalize_email(email: str) -> str:
    return email.strip().lower()


def display_name_violations(display_name: str, field: str = "display_name") -> list[FieldViolation]:
    stripped = display_name.strip()
    description = f"must be 1 to {MAX_DISPLAY_NAME_LENGTH} printable characters"
    if not stripped:
        return [FieldViolation(field, "is required", REQUIRED)]
    if len(stripped) > MAX_DISPLAY_NAME_LENGTH:
        return [FieldViolation(field, description, TOO_LONG)]
    if any(ord(character) < 32 for character in stripped):
        return [FieldViolation(field, description, INVALID_FORMAT)]
    return []


def page_size(requested: int, field: str = "page_size") -> int:
    """AIP-158: 0 means the default; above the maximum is clamped; negative is an error."""
    if requested < 0:
        raise invalid(field, OUT_OF_RANGE, "must not be negative")
    return DEFAULT_PAGE_SIZE if requested == 0 else min(requested, MAX_PAGE_SIZE)


def optional_timestamp(message, field: str) -> datetime | None:
    """A Timestamp field as an aware datetime (None when unset); out of Timestamp's range → INVALID_ARGUMENT."""
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    if not MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS or not 0 <= value.nanos <= 999_999_999:
        raise invalid(field, OUT_OF_RANGE, "must be a time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
    return value.ToDatetime(timezone.utc)


def parse_resource_id(name: str, collection: str, field: str = "name") -> uuid.UUID:
    """`{collection}/{uuid}` → UUID."""
    prefix = f"{collection}/"
    if not name:
        raise invalid(field, REQUIRED, f"is required, for example `{collection}/<uuid>`", "INVALID_RESOURCE_NAME")
    if len(name) > 100 or not name.startswith(prefix):
        raise invalid(field, INVALID_FORMAT, f"must have the form `{collection}/<uuid>`", "INVALID_RESOURCE_NAME")
    try:
        return uuid.UUID(name[len(prefix):])
    except ValueError:
        raise invalid(field, INVALID_FORMAT, f"must have the form `{collection}/<uuid>`", "INVALID_RESOURCE_NAME") from None


def encode_page_token(values: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_page_token(token: str, keys: tuple[str, ...], field: str = "page_token") -> dict[str, str] | None:
    """Empty → None (first page). Anything not produced by `encode_page_token` → INVALID_ARGUMENT."""
    if not token:
        return None
    try:
        if len(token) > MAX_PAGE_TOKEN_LENGTH:
            raise ValueError
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(decoded, dict) or set(decoded) != set(keys) or not all(isinstance(v, str) for v in decoded.values()):
            raise ValueError
        return decoded
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_page_token(field) from None


def bad_page_token(field: str = "page_token") -> InvalidArgument:
    return invalid(field, INVALID_FORMAT, "is not a token returned by the previous page", "INVALID_PAGE_TOKEN")


def keyset_page(rows: Sequence[Row], limit: int, position: Callable[[Row], dict[str, str]]) -> tuple[list[Row], str]:
    """One page of a keyset listing fetched with `limit + 1` rows: the first `limit` rows, and the token
    of the next page (the last returned row's `position`), or "" when there is no more."""
    if len(rows) <= limit:
        return list(rows), ""
    return list(rows[:limit]), encode_page_token(position(rows[limit - 1]))


def created_position(id_key: str, id_attribute: str) -> Callable[[Any], dict[str, str]]:
    """The (created_at, id) keyset position of a row, as `keyset_after(token, id_key)` reads it back."""
    return lambda row: {"created": row.created_at.isoformat(), id_key: str(getattr(row, id_attribute))}


def keyset_position(token: str, parts: dict[str, Callable[[str], Any]]) -> tuple | None:
    """Decode the keyset position `keyset_page` wrote into a page token: each part, in order, through its
    converter. None for the first page; a part that does not convert is INVALID_PAGE_TOKEN."""
    decoded = decode_page_token(token, tuple(parts))
    if decoded is None:
        return None
    try:
        return tuple(convert(decoded[key]) for key, convert in parts.items())
    except ValueError:
        raise bad_page_token() from None


def keyset_after(token: str, id_key: str) -> tuple[datetime, uuid.UUID] | None:
    """Decode a (created_at, id) keyset position from a page token."""
    return keyset_position(token, {"created": datetime.fromisoformat, id_key: uuid.UUID})
