"""User repository (tenant-scoped: the unit of work's tenant is the only one visible)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.unit_of_work import UnitOfWork

_COLUMNS = "user_id, email, display_name, password_hash, roles, status, created_at, level_code"


@dataclass(frozen=True)
class UserRecord:
    user_id: uuid.UUID
    email: str
    display_name: str
    password_hash: str | None
    roles: list[str]
    status: str
    created_at: datetime
    level_code: str | None = None  # None: the tenant's lowest identity level


async def find_by_email(unit_of_work: UnitOfWork, email: str) -> UserRecord | None:
    cursor = await unit_of_work.connection.execute(f"select {_COLUMNS} from users where email = %s", (email,))
    row = await cursor.fetchone()
    return None if row is None else UserRecord(*row)


async def find_by_phone(unit_of_work: UnitOfWork, phone_e164: str) -> UserRecord | None:
    cursor = await unit_of_work.connection.execute(f"select {_COLUMNS} from users where phone_e164 = %s", (phone_e164,))
    row = await cursor.fetchone()
    return None if row is None else UserRecord(*row)


@dataclass(frozen=True)
class Payee:
    display_name: str
    account_id: uuid.UUID


async def find_payee(unit_of_work: UnitOfWork, email: str | None, phone_e164: str | None, currency: str) -> Payee | None:
    """The active customer account in `currency` of the active person with this e-mail or phone, or None
    (unknown and not payable alike)."""
    cursor = await unit_of_work.connection.execute(
        """select u.display_name, a.account_id
             from users u join accounts a on a.tenant_id = u.tenant_id and a.owner_user_id = u.user_id
            where (u.email = %s or u.phone_e164 = %s) and u.status = 'active'
              and a.kind = 'customer' and a.status = 'active' and a.currency = %s
            order by a.created_at, a.account_id limit 1""",
        (email, phone_e164, currency),
    )
    row = await cursor.fetchone()
    return None if row is None else Payee(*row)


async def get(unit_of_work: UnitOfWork, user_id: uuid.UUID) -> UserRecord | None:
    cursor = await unit_of_work.connection.execute(f"select {_COLUMNS} from users where user_id = %s", (user_id,))
    row = await cursor.fetchone()
    return None if row is None else UserRecord(*row)


async def insert(
    unit_of_work: UnitOfWork,
    tenant_id: uuid.UUID,
    email: str,
    display_name: str,
    password_hash: str,
    roles: list[str],
    phone_e164: str | None = None,
) -> UserRecord:
    cursor = await unit_of_work.connection.execute(
        f"""insert into users (tenant_id, email, display_name, password_hash, roles, phone_e164)
            values (%s, %s, %s, %s, %s, %s) returning {_COLUMNS}""",
        (tenant_id, email, display_name, password_hash, roles, phone_e164),
    )
    return UserRecord(*await cursor.fetchone())


async def set_password_hash(unit_of_work: UnitOfWork, user_id: uuid.UUID, password_hash: str) -> None:
    await unit_of_work.connection.execute(
        "update users set password_hash = %s, updated_at = now() where user_id = %s", (password_hash, user_id)
    )


async def list_page(
    unit_of_work: UnitOfWork, after: tuple[datetime, uuid.UUID] | None, limit: int, role: str | None, query: str | None = None
) -> list[UserRecord]:
    """Oldest first, keyset-paginated on (created_at, user_id); `query` is a case-insensitive substring of
    the e-mail address or display name. A substring has no B-tree index to use: the search walks the
    tenant's users in keyset order until the page is full, which stays cheap at a tenant's scale of people."""
    conditions, parameters = [], []
    if after is not None:
        conditions.append("(created_at, user_id) > (%s, %s)")
        parameters += list(after)
    if role:
        conditions.append("%s = any(roles)")
        parameters.append(role)
    if query:
        conditions.append("(email ilike %s escape '\\' or display_name ilike %s escape '\\')")
        pattern = "%" + _escape_like(query) + "%"
        parameters += [pattern, pattern]
    where = f"where {' and '.join(conditions)}" if conditions else ""
    cursor = await unit_of_work.connection.execute(
        f"select {_COLUMNS} from users {where} order by created_at, user_id limit %s", (*parameters, limit)
    )
    return [UserRecord(*row) for row in await cursor.fetchall()]


def _escape_like(text: str) -> str:
    """`text` matched literally inside a LIKE pattern whose escape character is a backslash."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
