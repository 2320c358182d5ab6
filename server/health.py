"""grpc.health.v1 with real per-service status.

Each service declares the dependencies it needs. A background task probes
PostgreSQL and Redis every `health_probe_interval_s`; a service is SERVING only
while all its dependencies answer, and the overall status ("") only while every
dependency answers. Envoy's active health check reads the overall status, so a
server that lost its database stops receiving traffic and gets it back when the
pools reconnect — without a restart.

Advisory checks are reported under their own health service name only, never in the overall status:
`emoney.backups` is NOT_SERVING while the backup agent fails, is behind or is not heard from, and a
server keeps taking payments meanwhile (a backup that cannot reach the object store must not stop them).
Its figures are also metrics (`emoney_backup_*`, interceptors/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Mapping

from grpc_health.v1 import health, health_pb2
from psycopg_pool import AsyncConnectionPool

from interceptors.metrics import MetricsRegistry
from storage.backup_status import read_backup_status
from storage.redis_store import RedisClient, ping

logger = logging.getLogger("emoney.health")

Probe = Callable[[], Awaitable[bool]]
OVERALL = ""
# A dependency not reachable yet right after start is expected: the pool opens once the database
# password has been read from the secrets store. Only a dependency that goes away after being up, or
# is still away this long after start, is worth a warning.
STARTUP_GRACE_S = 30.0
BACKUPS_SERVICE = "emoney.backups"
# The agent passes every 10 s (localstack/backup.py SHIP_EVERY_S); a status older than this means it is
# not running, or cannot reach the database.
BACKUP_STATUS_STALE_S = 60.0
# WAL segments waiting in the spool: each is up to 16 MiB of ledger that exists on one machine only.
BACKUP_BACKLOG_LIMIT = 8


def postgres_probe(pool: AsyncConnectionPool, timeout_s: float) -> Probe:
    async def probe() -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                async with pool.connection() as connection:
                    await connection.execute("select 1")
            return True
        except Exception:  # any failure, including a timeout, means "not reachable"
            return False

    return probe


def redis_probe(client: RedisClient, timeout_s: float) -> Probe:
    """Up while Redis answers PING; on a cluster, while every master does (every key can be served)."""

    async def probe() -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                return await ping(client)
        except Exception:  # any failure, including a timeout, means "not reachable"
            return False

    return probe


def backup_probe(pool: AsyncConnectionPool, timeout_s: float, metrics: MetricsRegistry) -> Probe:
    """Up while the backup agent's last pass (storage/backup_status.py) is recent, succeeded, and left
    fewer than BACKUP_BACKLOG_LIMIT segments in the spool. Publishes the figures as metrics either way."""

    async def probe() -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                async with pool.connection() as connection:
                    status = await read_backup_status(connection)
        except Exception:  # any failure, including a timeout, means "not known"
            status = None
        metrics.backup = status
        return (status is not None and status.age_s(status.checked_at) <= BACKUP_STATUS_STALE_S
                and status.last_error is None and status.wal_backlog < BACKUP_BACKLOG_LIMIT)

    return probe


class HealthReporter:
    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        probes: Mapping[str, Probe],
        service_dependencies: Mapping[str, tuple[str, ...]],
        interval_s: float,
        advisory: Mapping[str, Probe] | None = None,
    ) -> None:
        self._servicer = servicer
        self._probes = dict(probes)
        self._advisory = dict(advisory or {})
        self._service_dependencies = dict(service_dependencies)
        self._interval_s = interval_s
        self._last_up: dict[str, bool] = {}
        self._stopping = False
        self._started_at = time.monotonic()
        # Dependencies past their start-up: up once, or reported late once. Then only changes are logged.
        self._past_start_up: set[str] = set()

    async def set_all_not_serving(self) -> None:
        for service in [OVERALL, *self._service_dependencies, *self._advisory]:
            await self._servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def enter_shutdown(self) -> None:
        """From now on everything reports NOT_SERVING, so Envoy drains this server."""
        self._stopping = True
        await self._servicer.enter_graceful_shutdown()

    async def probe_once(self) -> dict[str, bool]:
        checks = {**self._probes, **self._advisory}
        up = dict(zip(checks, await asyncio.gather(*(probe() for probe in checks.values()))))
        for name, is_up in up.items():
            if name in self._advisory:
                self._log_advisory_change(name, self._last_up.get(name), is_up)
            else:
                self._log_change(name, self._last_up.get(name), is_up)
        self._last_up = up
        if not self._stopping:
            await self._publish(up)
        return up

    @staticmethod
    def _log_advisory_change(name: str, was_up: bool | None, is_up: bool) -> None:
        if is_up and was_up is not True:
            logger.info("%s is serving", name)
        elif not is_up and was_up is True:
            logger.warning("%s is not serving", name)

    def _log_change(self, name: str, was_up: bool | None, is_up: bool) -> None:
        """Up: INFO. Down after having been up: WARNING. Not up yet after start: INFO, then one WARNING if
        it has still never been up STARTUP_GRACE_S after start."""
        if is_up:
            if was_up is not True:
                logger.info("dependency %s is up", name)
            self._past_start_up.add(name)
        elif was_up is True:
            logger.warning("dependency %s is down", name)
        elif was_up is None:
            logger.info("waiting for dependency %s", name)
        elif name not in self._past_start_up and time.monotonic() - self._started_at > STARTUP_GRACE_S:
            self._past_start_up.add(name)
            logger.warning("dependency %s still not reachable %.0f s after start", name, STARTUP_GRACE_S)

    async def _publish(self, up: Mapping[str, bool]) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        for service, dependencies in self._service_dependencies.items():
            await self._servicer.set(service, serving if all(up[d] for d in dependencies) else not_serving)
        for service in self._advisory:
            await self._servicer.set(service, serving if up[service] else not_serving)
        await self._servicer.set(OVERALL, serving if all(up[name] for name in self._probes) else not_serving)

    async def run(self) -> None:
        while True:
            await self.probe_once()
            await asyncio.sleep(self._interval_s)
