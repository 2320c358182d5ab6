"""The currencies money may be held in: ISO 4217 currencies, each with its number of minor units.

The list is the `iso4217` package's (the ISO 4217 maintenance agency's table, pinned in
requirements.txt), not ours to keep by hand. A currency must have a minor-unit exponent: the codes
ISO lists without one are refused — precious metals (XAU, XAG, XPT, XPD), bond-market and
special-drawing units (XBA-XBD, XDR, XSU, XUA), the testing code XTS and XXX ("no currency"): none is
money a wallet can hold in whole minor units. Fund codes that have an exponent (CLF, UYW: 4) are kept.

The database holds the same list (table `currencies`, filled from here by storage/migrate.py on every
run) and refuses an account in any other code.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

import iso4217

CURRENCY_MINOR_UNITS: Mapping[str, int] = MappingProxyType(
    {currency.code: currency.exponent for currency in iso4217.Currency if currency.exponent is not None}
)


def is_currency(code: object) -> bool:
    """Is `code` an ISO 4217 currency money may be held in (exactly, e.g. "EUR"; not "eur" or "EUR\\n")?"""
    return isinstance(code, str) and code in CURRENCY_MINOR_UNITS


def minor_units(code: str) -> int | None:
    """Decimals of the currency (EUR 2, JPY 0, BHD 3); None for a code that is no such currency (an
    account opened before currencies were checked)."""
    return CURRENCY_MINOR_UNITS.get(code)


def decimal_text(amount_minor: int, minor_units: int) -> str:
    """Minor units as a decimal string for people: (1250, 2) -> "12.50", (1250, 0) -> "1250",
    (-5, 3) -> "-0.005". Integer arithmetic only, never a float."""
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**minor_units)
    return f"{sign}{whole}.{fraction:0{minor_units}d}" if minor_units else f"{sign}{whole}"
