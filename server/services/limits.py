"""Identity levels and value limits: the tenant's ladder (levels with limits per currency), a customer's place
on it, terminals' daily charge limits, the tenant's time zone, and a customer's standing.

The limits themselves are enforced by the ledger inside each movement (migrations/current/13_limits.sql,
refused with LIMIT_EXCEEDED); this service checks the configuration before storing it (the database checks
it again: tables' CHECKs and foreign keys) and audits every change in the tenant's chain.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.errors import INVALID_FORMAT, NOT_ALLOWED, OUT_OF_RANGE, REQUIRED, TOO_LONG, FieldViolation, NotFound
from domain.ledger_rules import currency_violations
from domain.principal import Principal
from domain.statement_documents import language_violations
from domain.validation import display_name_violations, invalid, parse_resource_id, raise_if_violations
from server.services import access
from server.services.changes import record_change
from server.services.transactions import Transactions
from storage import limits, terminals, users
from storage.limits import LIMIT_FIELDS, CurrencyLimits, IdentityLevel, Usage
from storage.terminals import TerminalRecord

LEVEL_CODE = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_LEVEL_NAME_LENGTH = 100
MAX_RANK = 1000
MAX_LEVEL_CURRENCIES = 20
# A limit is an amount like any other (bigint in the database); this bound keeps sums of a month of them far
# from overflowing.
MAX_LIMIT_MINOR = 10**15
MAX_REASON_LENGTH = 200
MAX_TIME_ZONE_LENGTH = 64


@dataclass(frozen=True)
class Standing:
    """One currency's limits, with what was used and what is left (None: no such limit)."""

    limits: CurrencyLimits
    usage: Usage
    balance_minor: int

    def remaining(self, limit: int | None, used: int) -> int | None:
        return None if limit is None else max(limit - used, 0)


@dataclass(frozen=True)
class CustomerLimits:
    level: IdentityLevel | None
    standings: list[Standing]
    time_zone: str


def level_violations(level: IdentityLevel, field: str = "identity_level") -> list[FieldViolation]:
    violations = []
    if not level.code:
        violations.append(FieldViolation(f"{field}.code", "is required", REQUIRED))
    elif not LEVEL_CODE.fullmatch(level.code):
        violations.append(FieldViolation(f"{field}.code", "must be 1 to 32 of a-z, 0-9 and _, starting with a letter", INVALID_FORMAT))
    violations += display_name_violations(level.display_name, f"{field}.display_name")
    if len(level.display_name.strip()) > MAX_LEVEL_NAME_LENGTH:
        violations.append(FieldViolation(f"{field}.display_name", f"must be at most {MAX_LEVEL_NAME_LENGTH} characters", TOO_LONG))
    if not 0 <= level.rank <= MAX_RANK:
        violations.append(FieldViolation(f"{field}.rank", f"must be between 0 and {MAX_RANK}", OUT_OF_RANGE))
    if len(level.limits) > MAX_LEVEL_CURRENCIES:
        violations.append(FieldViolation(f"{field}.limits", f"must name at most {MAX_LEVEL_CURRENCIES} currencies", TOO_LONG))
    seen: set[str] = set()
    for index, currency_limits in enumerate(level.limits):
        path = f"{field}.limits[{index}]"
        violations += currency_violations(currency_limits.currency, f"{path}.currency")
        if currency_limits.currency in seen:
            violations.append(FieldViolation(f"{path}.currency", "is named twice", NOT_ALLOWED))
        seen.add(currency_limits.currency)
        for name in LIMIT_FIELDS:
            amount = getattr(currency_limits, name)
            if amount is not None and not 0 <= amount <= MAX_LIMIT_MINOR:
                violations.append(FieldViolation(f"{path}.{name}", f"must be between 0 and {MAX_LIMIT_MINOR}", OUT_OF_RANGE))
    return violations


def _time_zone_violations(zone: str) -> list[FieldViolation]:
    description = "must be an IANA time zone name, such as America/Sao_Paulo or UTC"
    if not zone:
        return [FieldViolation("time_zone", "is required", REQUIRED)]
    if len(zone) > MAX_TIME_ZONE_LENGTH:
        return [FieldViolation("time_zone", description, TOO_LONG)]
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return [FieldViolation("time_zone", description, INVALID_FORMAT)]
    return []


class LimitsService:
    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    # -- the back office ----------------------------------------------------------------------------

    async def list_levels(self, caller: Principal) -> tuple[list[IdentityLevel], str, str]:
        """The ladder, the tenant's time zone and its language."""
        async with self._transactions.read(caller.tenant_id) as unit_of_work:
            zone, language = await limits.settings(unit_of_work)
            return await limits.list_levels(unit_of_work), zone, language

    async def set_level(self, caller: Principal, level: IdentityLevel) -> IdentityLevel:
        level = IdentityLevel(level.code, level.display_name.strip(), level.rank, level.limits)
        raise_if_violations(level_violations(level))
        async with self._transactions.change(caller.tenant_id) as unit_of_work:
            before = await limits.get_level(unit_of_work, level.code)
            await limits.put_level(unit_of_work, caller.tenant_id, level)
            stored = await limits.get_level(unit_of_work, level.code)
            assert stored is not None
            await record_change(unit_of_work, caller.subject, None if before is None else before.summary(), stored.summary())
            await unit_of_work.commit()
        return stored

    async def set_user_level(self, caller: Principal, user_name: str, code: str, reason: str) -> tuple[str, str]:
        """(previous level, new level); the previous is the lowest level's code when none was assigned."""
        user_id = parse_resource_id(user_name, "users", "user")
        reason = reason.strip()
        if not code:
            raise invalid("level", REQUIRED, "is required")
        if not reason:
            raise invalid("reason", REQUIRED, "is required: say why the level changes")
        if len(reason) > MAX_REASON_LENGTH or not reason.isprintable():
            raise invalid("reason", TOO_LONG if len(reason) > MAX_REASON_LENGTH else INVALID_FORMAT,
                          f"must be 1 to {MAX_REASON_LENGTH} printable characters")
        async with self._transactions.change(caller.tenant_id) as unit_of_work:
            ladder = await limits.list_levels(unit_of_work)
            if all(level.code != code for level in ladder):
                raise NotFound(message=f"the tenant has no identity level {code!r}", reason="LEVEL_NOT_FOUND")
            previous = await limits.set_user_level(unit_of_work, user_id, code)
            if previous is False:
                raise NotFound(message="user not found", reason="USER_NOT_FOUND")
            previous = previous or ladder[0].code  # none assigned: the lowest
            await record_change(unit_of_work, caller.subject, {"user": f"users/{user_id}", "level": previous},
                                {"user": f"users/{user_id}", "level": code, "reason": reason})
            await unit_of_work.commit()
        return previous, code

    async def set_terminal_limit(self, caller: Principal, terminal_name: str, limit_minor: int | None) -> TerminalRecord:
        terminal_id = parse_resource_id(terminal_name, "terminals", "terminal")
        if limit_minor is not None and not 0 <= limit_minor <= MAX_LIMIT_MINOR:
            raise invalid("daily_charge_limit_minor", OUT_OF_RANGE, f"must be between 0 and {MAX_LIMIT_MINOR}")
        async with self._transactions.change(caller.tenant_id) as unit_of_work:
            changed = await terminals.set_daily_charge_limit(unit_of_work, terminal_id, limit_minor)
            if changed is None:
                raise NotFound(message="terminal not found", reason="TERMINAL_NOT_FOUND")
            terminal, previous = changed
            name = f"terminals/{terminal_id}"
            await record_change(unit_of_work, caller.subject,
                                {"terminal": name, "dailyChargeLimitMinor": None if previous is None else str(previous)},
                                {"terminal": name, "dailyChargeLimitMinor": None if limit_minor is None else str(limit_minor)})
            await unit_of_work.commit()
        return terminal

    async def update_settings(self, caller: Principal, zone: str, language: str) -> tuple[str, str]:
        """Set the time zone and/or the language (an empty one is left as it is); the settings after."""
        zone, language = zone.strip(), language.strip()
        raise_if_violations((_time_zone_violations(zone) if zone else []) + language_violations(language))
        async with self._transactions.change(caller.tenant_id) as unit_of_work:
            if zone and not await limits.is_time_zone(unit_of_work, zone):
                raise invalid("time_zone", INVALID_FORMAT, "is not a time zone the database knows")
            before = await limits.settings(unit_of_work)
            after = await limits.set_settings(unit_of_work, zone or before[0], language or before[1])
            if after != before:
                await record_change(unit_of_work, caller.subject, {"timeZone": before[0], "language": before[1]},
                                    {"timeZone": after[0], "language": after[1]})
            await unit_of_work.commit()
        return after

    # -- the customer ---------------------------------------------------------------------------------

    async def customer_limits(self, principal: Principal) -> CustomerLimits:
        user_id = access.caller_user_id(principal)
        if user_id is None:
            raise invalid("caller", NOT_ALLOWED, "limits are a customer's: a terminal has none of its own")
        async with self._transactions.read(principal.tenant_id) as unit_of_work:
            zone, _ = await limits.settings(unit_of_work)
            level = await _level_of(unit_of_work, user_id)
            standings = []
            for currency_limits in (level.limits if level else ()):
                usage = await limits.usage(unit_of_work, f"users/{user_id}", currency_limits.currency)
                balance = await limits.customer_balance(unit_of_work, user_id, currency_limits.currency)
                standings.append(Standing(currency_limits, usage, balance))
        return CustomerLimits(level, standings, zone)


async def _level_of(unit_of_work, user_id: uuid.UUID) -> IdentityLevel | None:
    """The user's level: the one assigned, else the lowest; None when the tenant has no levels."""
    levels = await limits.list_levels(unit_of_work)
    user = await users.get(unit_of_work, user_id)
    code = None if user is None else user.level_code
    return next((level for level in levels if level.code == code), levels[0] if levels else None)
