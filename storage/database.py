"""The PostgreSQL connection pool the server uses (as the application role)."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from domain.config import Settings

RECONNECT_GIVE_UP_S = 8.0


def build_pool(settings: Settings, conninfo: str | None = None, name: str = "emoney") -> AsyncConnectionPool:
    """Build (but do not open) the pool; `open(wait=False)` lets the server start
    while PostgreSQL is still unreachable, reporting NOT_SERVING until it is. `conninfo`: another URL
    for the same role (the read pool's standbys); default DATABASE_URL."""
    return AsyncConnectionPool(
        conninfo=conninfo or settings.database_url,
        min_size=settings.database_pool_min_size,
        max_size=settings.database_pool_max_size,
        open=False,
        timeout=settings.database_acquire_timeout_s,
        # A broken connection is discarded on return and reconnected with a doubling delay (1, 2, 4, ... s)
        # for at most this long; then the attempt ends and the next caller (the health probe, every
        # second) starts a fresh one. Without this bound the delay kept doubling for the whole outage, so
        # a server stayed NOT_SERVING for about as long again after PostgreSQL was back (19 s after a
        # 40 s outage, found by tools/faults); now within a few seconds.
        reconnect_timeout=RECONNECT_GIVE_UP_S,
        kwargs={
            "autocommit": False,
            "connect_timeout": max(1, int(settings.database_connect_timeout_s)),
            "application_name": "emoney-server",
            # A limit on every statement: nothing holds a connection forever.
            "options": f"-c statement_timeout={settings.database_statement_timeout_ms}"
            " -c idle_in_transaction_session_timeout=30000",
        },
        name=name,
    )
