"""Identity levels, their value limits, and what a customer has used (tenant-scoped).

The limits are enforced by the ledger's own functions inside every movement (migrations/current/13_limits.sql);
this module writes the tenant's configuration (levels, limits, time zone, a customer's level) and reads it
back with the usage the ledger counted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from storage.unit_of_work import UnitOfWork

LIMIT_FIELDS = (
    "max_balance_minor", "max_payment_minor", "daily_sent_minor", "daily_received_minor",
    "monthly_sent_minor", "monthly_received_minor",
)


@dataclass(frozen=True)
class CurrencyLimits:
    currency: str
    max_balance_minor: int | None = None
    max_payment_minor: int | None = None
    daily_sent_minor: int | None = None
    daily_received_minor: int | None = None
    monthly_sent_minor: int | None = None
    monthly_received_minor: int | None = None

    def summary(self) -> dict[str, str | None]:
        """For the audit log: amounts as strings (JSON numbers lose precision past 2^53)."""
        return {"currency": self.currency, **{
            name: None if getattr(self, name) is None else str(getattr(self, name)) for name in LIMIT_FIELDS}}


@dataclass(frozen=True)
class IdentityLevel:
    code: str
    display_name: str
    rank: int
    limits: tuple[CurrencyLimits, ...] = field(default=())

    def summary(self) -> dict[str, object]:
        return {"level": self.code, "rank": self.rank, "limits": [limits.summary() for limits in self.limits]}


@dataclass(frozen=True)
class Usage:
    sent_today: int
    received_today: int
    sent_this_month: int
    received_this_month: int


async def list_levels(unit_of_work: UnitOfWork) -> list[IdentityLevel]:
    """Every level of the tenant, lowest rank first, with its limits by currency."""
    cursor = await unit_of_work.connection.execute(
        f"""select v.level_code, v.display_name, v.rank, l.currency, {", ".join("l." + name for name in LIMIT_FIELDS)}
              from identity_levels v left join level_limits l on l.tenant_id = v.tenant_id and l.level_code = v.level_code
             order by v.rank, l.currency"""
    )
    levels: dict[str, IdentityLevel] = {}
    for code, display_name, rank, currency, *amounts in await cursor.fetchall():
        level = levels.setdefault(code, IdentityLevel(code, display_name, rank))
        if currency is not None:
            levels[code] = IdentityLevel(code, display_name, rank, (*level.limits, CurrencyLimits(currency, *amounts)))
    return list(levels.values())


async def get_level(unit_of_work: UnitOfWork, code: str) -> IdentityLevel | None:
    return next((level for level in await list_levels(unit_of_work) if level.code == code), None)


async def put_level(unit_of_work: UnitOfWork, tenant_id: uuid.UUID, level: IdentityLevel) -> None:
    """Create the level or replace its name, rank and every limit."""
    connection = unit_of_work.connection
    await connection.execute(
        """insert into identity_levels (tenant_id, level_code, display_name, rank) values (%s, %s, %s, %s)
           on conflict (tenant_id, level_code) do update
              set display_name = excluded.display_name, rank = excluded.rank, updated_at = now()""",
        (tenant_id, level.code, level.display_name, level.rank),
    )
    await connection.execute("delete from level_limits where level_code = %s", (level.code,))
    for limits in level.limits:
        await connection.execute(
            f"""insert into level_limits (tenant_id, level_code, currency, {", ".join(LIMIT_FIELDS)})
                values (%s, %s, %s, {", ".join(["%s"] * len(LIMIT_FIELDS))})""",
            (tenant_id, level.code, limits.currency, *(getattr(limits, name) for name in LIMIT_FIELDS)),
        )


async def set_user_level(unit_of_work: UnitOfWork, user_id: uuid.UUID, code: str) -> str | None | bool:
    """Put the user at level `code`; their previous level (None: the lowest, implicitly), or False when the
    user does not exist."""
    cursor = await unit_of_work.connection.execute(
        """update users set level_code = %s, updated_at = now() where user_id = %s
           returning old.level_code""",
        (code, user_id),
    )
    row = await cursor.fetchone()
    return False if row is None else row[0]


async def settings(unit_of_work: UnitOfWork) -> tuple[str, str]:
    """The tenant's (time zone, language)."""
    cursor = await unit_of_work.connection.execute("select time_zone, language from tenants")
    row = await cursor.fetchone()
    return ("UTC", "en") if row is None else (row[0], row[1])


async def set_settings(unit_of_work: UnitOfWork, zone: str, language: str) -> tuple[str, str]:
    cursor = await unit_of_work.connection.execute(
        "update tenants set time_zone = %s, language = %s, updated_at = now() returning time_zone, language", (zone, language)
    )
    row = await cursor.fetchone()
    return row[0], row[1]


async def is_time_zone(unit_of_work: UnitOfWork, zone: str) -> bool:
    """Whether PostgreSQL knows the zone (what the ledger will count days in)."""
    cursor = await unit_of_work.connection.execute("select exists (select 1 from pg_timezone_names where name = %s)", (zone,))
    row = await cursor.fetchone()
    return bool(row[0])


async def usage(unit_of_work: UnitOfWork, subject: str, currency: str) -> Usage:
    cursor = await unit_of_work.connection.execute("select * from limits_usage_of(%s, %s)", (subject, currency))
    return Usage(*await cursor.fetchone())


async def customer_balance(unit_of_work: UnitOfWork, user_id: uuid.UUID, currency: str) -> int:
    """What the customer holds in `currency` over all their customer accounts (the balance limit's measure)."""
    cursor = await unit_of_work.connection.execute(
        "select ledger_customer_balance(ledger_current_tenant(), %s, %s)", (user_id, currency)
    )
    row = await cursor.fetchone()
    return row[0]
