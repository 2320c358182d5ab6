"""The composition root: builds pools, clients, services and the gRPC server.

Nothing is built at import time. `Application.start()` opens the pools without
waiting for the dependencies (so health can report NOT_SERVING while they are
away), and `Application.stop()` drains in-flight calls before closing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from dataclasses import dataclass, field
from typing import Any, Coroutine
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from psycopg_pool import AsyncConnectionPool

from emoney.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from emoney.admin.v1 import admin_pb2, admin_pb2_grpc
from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from emoney.payments.v1 import payments_pb2, payments_pb2_grpc
from emoney.platform.v1 import platform_pb2, platform_pb2_grpc
from interceptors import build_interceptors
from interceptors.admission import Admission
from interceptors.metrics import MetricsRegistry
from interceptors.rate_limit import RateLimitPolicy
from domain.config import parse_trusted_proxies
from server.background import HoldExpirer, RequestKeyJanitor
from domain.config import Settings
from server.payment_events import PaymentEventHub
from server.health import BACKUPS_SERVICE, HealthReporter, backup_probe, postgres_probe, redis_probe
from server.instance import ServerInstance
from server.logs import redact_url
from server.metrics_endpoint import serve_metrics
from domain.passwords import PasswordHasher
from server.reflection import enable_documented_reflection
from server.servicers.accounts import AccountsServicer
from server.servicers.admin import AdminServicer
from server.servicers.auth import AuthServicer
from server.servicers.payments import PaymentsServicer
from server.servicers.platform import PlatformServicer
from server.services.accounts import AccountsService
from server.services.administration import AdministrationService
from server.services.limits import LimitsService
from server.services.statements import StatementExportWorker, StatementsService
from server.services.payments import PaymentsService
from server.services.identity import IdentityService
from server.services.transactions import Transactions
from server.services.tenants import TenantDirectory
from domain.tokens import KeyRing, KeyRingRefresher, TokenService
from storage import tenants as tenant_repository
from storage.database import build_pool
from storage.object_store import ObjectStore, build_object_store
from storage.rate_limits import RateLimiter
from storage.receipts import ReceiptWriter
from storage.redis_store import RedisClient, build_redis
from storage.secrets import SecretsStore, build_secrets
from storage.sessions import SessionStore
from storage.signing_keys import SigningKeyStore
from storage.group_commit import ChargeGroupCommit, CodeGroupCommit, TransferGroupCommit
from storage.unit_of_work import UnitOfWorkFactory

logger = logging.getLogger("emoney.server")

BACKGROUND_STOP_TIMEOUT_S = 3.0
POOL_CLOSE_TIMEOUT_S = 3.0
# gRPC core's metadata limit is EMONEY_MAX_METADATA_BYTES plus this: room for HPACK's 32 bytes per header
# over 200 headers (Envoy forwards at most 100) and the pseudo-headers, which the header-size check
# (interceptors/request_headers.py) does not count.
GRPC_CORE_METADATA_HEADROOM_BYTES = 8 << 10

PLATFORM_SERVICE = platform_pb2.DESCRIPTOR.services_by_name["PlatformService"].full_name
AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
ACCOUNTS_SERVICE = accounts_pb2.DESCRIPTOR.services_by_name["AccountsService"].full_name
PAYMENTS_SERVICE = payments_pb2.DESCRIPTOR.services_by_name["PaymentsService"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

# Which dependencies each service needs to be SERVING. PlatformService needs none.
SERVICE_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    PLATFORM_SERVICE: (),
    AUTH_SERVICE: ("postgres", "redis"),
    ADMIN_SERVICE: ("postgres", "redis"),
    ACCOUNTS_SERVICE: ("postgres", "redis"),
    PAYMENTS_SERVICE: ("postgres", "redis"),
}


@dataclass
class Application:
    settings: Settings
    server: grpc.aio.Server
    pool: AsyncConnectionPool
    # Standbys for reads (DATABASE_READ_URL), or None.
    read_pool: AsyncConnectionPool | None
    redis: RedisClient
    objects: ObjectStore
    secrets: SecretsStore
    health_reporter: HealthReporter
    metrics: MetricsRegistry
    sessions: SessionStore
    passwords: PasswordHasher
    key_refresher: KeyRingRefresher
    hold_expirer: HoldExpirer
    request_key_janitor: RequestKeyJanitor
    payment_events: PaymentEventHub
    receipt_writer: ReceiptWriter
    statement_exporter: StatementExportWorker
    bound_port: int = 0
    _background: list[asyncio.Task] = field(default_factory=list)
    _metrics_server: asyncio.Server | None = None

    async def start(self) -> None:
        await self.health_reporter.set_all_not_serving()
        await self.server.start()
        self._run_in_background(self._open_database(), "open-database")
        self._run_in_background(self.health_reporter.run(), "health-probes")
        self._run_in_background(self.key_refresher.run(), "signing-key-refresh")
        if self.settings.metrics_address:
            self._metrics_server = await serve_metrics(self.metrics, self.settings.metrics_address)
        logger.info(
            "server started",
            extra={
                "address": self.settings.grpc_address,
                "database": redact_url(self.settings.database_url),
                "redis": redact_url(self.settings.redis_url),
            },
        )

    def _run_in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._background.append(asyncio.create_task(work, name=name))

    async def _open_database(self) -> None:
        """Open the pool once the application role's password is known, then start the background work
        that needs the database.

        When `DATABASE_URL` carries no password, it is read from the secrets store
        (`secret/emoney/database`, key `password`), retrying while the store is
        unreachable; until then health stays NOT_SERVING. The database's background work starts
        only then: started before, every pass failed on the closed pool (PoolClosed) and the payment
        event listener on the missing password, each logging an alarm at every start.
        """
        if "password" not in self.pool.kwargs and not urlsplit(self.settings.database_url).password:
            delay_s = 0.2
            while True:
                try:
                    secret = await self.secrets.read("database")
                    if secret and secret.get("password"):
                        for pool in self._pools():
                            pool.kwargs["password"] = secret["password"]
                        break
                    logger.warning("secret emoney/database has no password yet")
                except Exception as error:  # the store may be down or sealed: keep trying
                    logger.warning("secrets store not reachable: %s", type(error).__name__)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
        for pool in self._pools():
            await pool.open(wait=False)
        self._run_in_background(self.hold_expirer.run(), "hold-expiry")
        self._run_in_background(self.request_key_janitor.run(), "request-key-retention")
        self._run_in_background(self.payment_events.run(), "payment-events")
        self._run_in_background(self.receipt_writer.run(), "receipt-writer")
        self._run_in_background(self.statement_exporter.run(), "statement-exports")
        await self._copy_suspensions_to_redis()

    def _pools(self) -> list[AsyncConnectionPool]:
        return [self.pool] if self.read_pool is None else [self.pool, self.read_pool]

    async def _copy_suspensions_to_redis(self) -> None:
        """PostgreSQL is the truth about suspended tenants; Redis is where calls check it.
        Copy once at start (repairing a Redis that lost its data), retrying until both answer."""
        units_of_work = UnitOfWorkFactory(self.pool)
        delay_s = 0.2
        while True:
            try:
                async with units_of_work(None) as unit_of_work:
                    suspended = await tenant_repository.suspended_tenant_ids(unit_of_work)
                for tenant_id in suspended:
                    await self.sessions.set_tenant_suspended(tenant_id, True, replicated=False)
                return
            except Exception as error:  # a dependency is still away: try again later
                logger.info("suspensions not copied yet: %s", type(error).__name__)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def stop(self) -> None:
        """Graceful stop: report NOT_SERVING, refuse new calls, let in-flight ones
        finish within the grace period, then close the pools."""
        logger.info("shutting down", extra={"grace_s": self.settings.shutdown_grace_s})
        await self.health_reporter.enter_shutdown()
        # Open WatchPayments streams end now (UNAVAILABLE: watch again elsewhere) instead of using up the grace period.
        await self.payment_events.close()
        await self.server.stop(self.settings.shutdown_grace_s)
        if self._metrics_server is not None:
            self._metrics_server.close()
        # Background work is cancelled, and given a bounded time to unwind: a task caught in a query
        # against a sick database must not keep the process from exiting.
        for task in self._background:
            task.cancel()
        if self._background:
            _, stuck = await asyncio.wait(self._background, timeout=BACKGROUND_STOP_TIMEOUT_S)
            for task in stuck:
                logger.warning("background task did not stop in time", extra={"task": task.get_name()})
        for pool in self._pools():
            if not pool.closed:
                await pool.close(timeout=POOL_CLOSE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.redis.aclose(), timeout=POOL_CLOSE_TIMEOUT_S)
        self.passwords.close()
        logger.info("server stopped")


async def load_signing_keys(store: SigningKeyStore, timeout_s: float) -> KeyRing:
    """The access-token signing keys, created on first start. Without them no token can be issued or
    checked, so start-up waits for the secrets store (up to `timeout_s`) and then fails loudly."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    delay_s = 0.2
    while True:
        try:
            return await store.ensure()
        except Exception as error:  # the store may be starting, sealed or unreachable
            if asyncio.get_running_loop().time() + delay_s > deadline:
                raise RuntimeError(f"signing keys unavailable from the secrets store: {type(error).__name__}") from error
            logger.warning("waiting for the secrets store: %s", type(error).__name__)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)


async def build_application(settings: Settings) -> Application:
    pool = build_pool(settings)
    read_pool = build_pool(settings, settings.database_read_url, "emoney-read") if settings.database_read_url else None
    redis_client = build_redis(settings)
    objects = build_object_store(settings)
    secrets = build_secrets(settings)
    metrics = MetricsRegistry()
    sessions = SessionStore(redis_client)
    passwords = PasswordHasher(workers=settings.password_hash_workers, max_waiting=settings.password_hash_max_waiting)
    key_store = SigningKeyStore(secrets)
    tokens = TokenService(
        await load_signing_keys(key_store, settings.startup_timeout_s),
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        access_ttl_s=settings.access_token_ttl_s,
    )
    key_refresher = KeyRingRefresher(key_store, tokens)
    rate_limit_policy = RateLimitPolicy.default().with_overrides(settings.rate_limits)

    server = grpc.aio.server(
        interceptors=build_interceptors(
            metrics=metrics,
            trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
            sessions=sessions,
            key_refresher=key_refresher,
            rate_limiter=RateLimiter(redis_client),
            rate_limit_policy=rate_limit_policy,
            admission=Admission(settings.max_active_calls),
            max_metadata_bytes=settings.max_metadata_bytes,
        ),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            # gRPC core's own metadata limit, soft = hard so that it never refuses at random (between
            # the two it refuses with a growing probability). It counts 32 bytes more per header
            # (HPACK) and the pseudo-headers, so it sits above the header-size check's limit, which is the one
            # that answers (interceptors/request_headers.py says why core's cannot be the only one).
            ("grpc.max_metadata_size", settings.max_metadata_bytes + GRPC_CORE_METADATA_HEADROOM_BYTES),
            ("grpc.absolute_max_metadata_size", settings.max_metadata_bytes + GRPC_CORE_METADATA_HEADROOM_BYTES),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.http2.max_pings_without_data", 0),
            # No HPACK dynamic table for incoming headers. gRPC core remembers a header value it
            # failed to parse (say a client's `grpc-timeout: abc` or `x-bin: $$$` that Envoy passed
            # on) in that table, and then fails every later call on the connection that reuses the
            # entry (grpc/grpc#34721): one malformed request would break calls of everyone behind
            # the same Envoy connection. Without the table a bad header fails only its own call.
            ("grpc.http2.hpack_table_size.decoder", 0),
        ],
    )
    batching = dict(max_items=settings.group_commit_max_items, concurrent_batches=settings.group_commit_batches,
                    max_wait_s=settings.group_commit_max_wait_ms / 1000)
    group_commits = {"transfers": TransferGroupCommit(pool, **batching), "charges": ChargeGroupCommit(pool, **batching),
                     "codes": CodeGroupCommit(pool, **batching)} if settings.group_commit else {}
    units_of_work = UnitOfWorkFactory(pool, read_pool, group_commit=group_commits.get("transfers"),
                                      charge_group_commit=group_commits.get("charges"),
                                      code_group_commit=group_commits.get("codes"))
    metrics.database_reads = units_of_work.reads
    metrics.group_commits = {of: group.stats for of, group in group_commits.items()}
    # The hub shares the pool's connection settings (the password arrives there from the secrets store).
    payment_events = PaymentEventHub(settings.database_url, pool.kwargs)
    transactions = Transactions(units_of_work)
    identity = IdentityService(transactions, passwords, tokens, sessions, refresh_ttl_s=settings.refresh_token_ttl_s)
    service_names = (PLATFORM_SERVICE, AUTH_SERVICE, ADMIN_SERVICE, ACCOUNTS_SERVICE, PAYMENTS_SERVICE)
    platform_pb2_grpc.add_PlatformServiceServicer_to_server(PlatformServicer(ServerInstance(service_names)), server)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(TenantDirectory(transactions), identity), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(AdministrationService(transactions, passwords, sessions), LimitsService(transactions)), server
    )
    statement_exporter = StatementExportWorker(units_of_work, objects)
    accounts_pb2_grpc.add_AccountsServiceServicer_to_server(
        AccountsServicer(AccountsService(transactions), LimitsService(transactions),
                         StatementsService(transactions, objects, statement_exporter)), server
    )
    payments_pb2_grpc.add_PaymentsServiceServicer_to_server(PaymentsServicer(PaymentsService(transactions, payment_events, objects)), server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    probe_timeout_s = max(0.5, settings.health_probe_interval_s)
    reporter = HealthReporter(
        health_servicer,
        probes={"postgres": postgres_probe(pool, probe_timeout_s), "redis": redis_probe(redis_client, probe_timeout_s)},
        service_dependencies=SERVICE_DEPENDENCIES,
        interval_s=settings.health_probe_interval_s,
        advisory={BACKUPS_SERVICE: backup_probe(pool, probe_timeout_s, metrics)},
    )
    if settings.reflection_enabled:
        enable_documented_reflection((*service_names, HEALTH_SERVICE), server)

    bound_port = server.add_insecure_port(settings.grpc_address)
    if bound_port == 0:
        raise OSError(f"cannot listen on {settings.grpc_address}")
    return Application(
        settings=settings,
        server=server,
        pool=pool,
        read_pool=read_pool,
        redis=redis_client,
        objects=objects,
        secrets=secrets,
        health_reporter=reporter,
        metrics=metrics,
        sessions=sessions,
        passwords=passwords,
        key_refresher=key_refresher,
        hold_expirer=HoldExpirer(units_of_work),
        request_key_janitor=RequestKeyJanitor(units_of_work, timedelta(days=settings.idempotency_retention_days)),
        payment_events=payment_events,
        receipt_writer=ReceiptWriter(pool, objects),
        statement_exporter=statement_exporter,
        bound_port=bound_port,
    )
