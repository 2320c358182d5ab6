"""Phone numbers: parsed, validated and stored in E.164 (`+5511912345678`) with Google's libphonenumber
rules (the maintained `phonenumbers` package): a number must be written in international form (a leading
`+` and the country code), since a tenant may serve people from several countries."""

from __future__ import annotations

import phonenumbers

from domain.errors import INVALID_FORMAT, TOO_LONG, FieldViolation

# Generous for any spelling of a number (spaces, dashes, brackets); E.164 itself is at most 16 characters.
MAX_PHONE_INPUT_LENGTH = 32


def e164(text: str, field: str = "phone_number") -> tuple[str | None, list[FieldViolation]]:
    """(the number in E.164, []) or (None, the violation)."""
    description = "must be a valid phone number in international form, such as +55 11 91234-5678"
    if len(text) > MAX_PHONE_INPUT_LENGTH:
        return None, [FieldViolation(field, description, TOO_LONG)]
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None, [FieldViolation(field, description, INVALID_FORMAT)]
    if not phonenumbers.is_valid_number(number):
        return None, [FieldViolation(field, description, INVALID_FORMAT)]
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), []
