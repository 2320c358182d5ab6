"""The backup agent's last pass, as it left it in `backup_status` (migration 0015): read by every server's
health probe, written by the agent (localstack/backup.py) with the owner's rights."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection, Connection


@dataclass(frozen=True)
class BackupStatus:
    checked_at: datetime
    last_success_at: datetime | None
    last_base_backup_at: datetime | None
    last_base_backup_label: str | None
    last_error: str | None
    wal_backlog: int
    # The database's clock when it was read, so that ages never mix two machines' clocks.
    now: datetime

    def age_s(self, instant: datetime | None) -> float | None:
        return None if instant is None else max(0.0, (self.now - instant).total_seconds())


SELECT = """select checked_at, last_success_at, last_base_backup_at, last_base_backup_label, last_error,
                   wal_backlog, now() from backup_status"""

UPSERT = """insert into backup_status as status (checked_at, last_success_at, last_base_backup_at,
                                                 last_base_backup_label, last_error, wal_backlog)
            values (now(), case when %(ok)s then now() end, %(backup_at)s, %(backup_label)s, %(error)s, %(backlog)s)
            on conflict (singleton) do update set
                checked_at = excluded.checked_at,
                last_success_at = coalesce(excluded.last_success_at, status.last_success_at),
                last_base_backup_at = coalesce(excluded.last_base_backup_at, status.last_base_backup_at),
                last_base_backup_label = coalesce(excluded.last_base_backup_label, status.last_base_backup_label),
                last_error = excluded.last_error,
                wal_backlog = excluded.wal_backlog"""


async def read_backup_status(connection: AsyncConnection) -> BackupStatus | None:
    row = await (await connection.execute(SELECT)).fetchone()
    return None if row is None else BackupStatus(*row)


def record_backup_pass(connection: Connection, *, error: str | None, backlog: int,
                       backup_at: datetime | None = None, backup_label: str | None = None) -> None:
    connection.execute(UPSERT, {"ok": error is None, "error": None if error is None else error[:2000],
                                "backlog": backlog, "backup_at": backup_at, "backup_label": backup_label})
