"""Server configuration, read only from environment variables.

Every setting has a documented default (see the README's configuration table,
which lists exactly these variables). Values are validated here, at start-up,
so a typo fails fast with a clear message instead of misbehaving later.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

from domain.ledger_rules import MAX_BATCH_ITEMS


def parse_trusted_proxies(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`127.0.0.2,10.0.0.0/8` → networks; raises ValueError naming the bad entry."""
    networks = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return networks


# Largest set of request headers (names + values, pseudo-headers included) a client may send. Envoy
# refuses more from HTTP clients (envoy/http_guard.lua, given this value by envoy_config/http_filters.py: 431 /
# RESOURCE_EXHAUSTED); native gRPC calls meet the servers' limit, `max_metadata_bytes` below.
MAX_REQUEST_HEADER_BYTES = 16 << 10
# What Envoy adds to a request on its way to a server (x-request-id, x-forwarded-for,
# x-envoy-original-path, ...: about 300 bytes): the servers' default limit is this much above
# MAX_REQUEST_HEADER_BYTES, so a request Envoy let through is never refused for its headers.
PROXY_HEADER_BYTES = 1 << 10


class ConfigurationError(ValueError):
    """An environment variable holds a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    # Where the gRPC server listens (host:port). Several processes may share a
    # port: SO_REUSEPORT is on, so the kernel spreads connections.
    grpc_address: str = "127.0.0.1:50051"
    # Application role's connection string (never the owner's).
    database_url: str = "postgresql://emoney_app@127.0.0.1:5432/emoney"
    # Standbys for reads that may go to a replica (storage/unit_of_work.py reader()), as the same role;
    # empty: every read on DATABASE_URL. E.g. a libpq multi-host URL with target_session_attrs=prefer-standby.
    database_read_url: str = ""
    database_pool_min_size: int = 1
    database_pool_max_size: int = 8
    database_connect_timeout_s: float = 5.0
    database_statement_timeout_ms: int = 5_000
    database_acquire_timeout_s: float = 3.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    vault_address: str = "http://127.0.0.1:8200"
    vault_token: str = field(default="", repr=False)
    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = field(default="", repr=False)
    s3_secret_key: str = field(default="", repr=False)
    s3_bucket: str = "emoney"
    s3_secure: bool = False
    # Where apps reach the object store (`https://files.example.com`), when that is not S3_ENDPOINT:
    # pre-signed links (receipts) are signed for this address. Empty: the S3_ENDPOINT address.
    s3_public_url: str = ""
    # The region pre-signed links for s3_public_url are signed for (no request asks the store for it).
    s3_region: str = "us-east-1"
    log_level: str = "INFO"
    # How long in-flight calls may finish after SIGTERM/SIGINT before they are cancelled.
    shutdown_grace_s: float = 10.0
    # How often dependencies (PostgreSQL, Redis) are probed for the health service.
    health_probe_interval_s: float = 1.0
    # Server reflection lets grpcurl discover the API. Off unless enabled (the local stack enables it):
    # production need not advertise its whole surface.
    reflection_enabled: bool = False
    max_message_bytes: int = 1 << 20
    max_concurrent_rpcs: int = 1_000
    # Unary calls doing their work at once in one process; the rest wait, first come first served
    # (interceptors/admission.py). Streams and health checks are not counted.
    max_active_calls: int = 32
    # Metadata of one call (names + values, as it reaches the server) above this size is refused:
    # RESOURCE_EXHAUSTED (interceptors/request_headers.py). What a client may send, plus what Envoy adds.
    max_metadata_bytes: int = MAX_REQUEST_HEADER_BYTES + PROXY_HEADER_BYTES
    # host:port for a Prometheus `/metrics` endpoint; empty = off.
    metrics_address: str = ""
    # Proxies whose x-forwarded-for is believed (comma-separated IPs or CIDRs). Envoy
    # connects from 127.0.0.2 in the local stack; nobody else may claim an address.
    trusted_proxies: str = "127.0.0.2"
    # JWT `iss` and `aud` (both required and checked on every call).
    token_issuer: str = "emoney"
    token_audience: str = "emoney-api"
    access_token_ttl_s: int = 600
    refresh_token_ttl_s: int = 14 * 24 * 3600
    # Overrides of the rate-limit policy, e.g. `credentials.address=10/60s:10` (see README).
    rate_limits: str = ""
    # Argon2id runs in this many threads; this many more calls may wait before RESOURCE_EXHAUSTED.
    password_hash_workers: int = 2
    password_hash_max_waiting: int = 64
    # Idempotency keys older than this are forgotten (migrations/0013); a later retry is a new request.
    idempotency_retention_days: int = 30
    # How long start-up waits for the secrets store (signing keys) before giving up.
    startup_timeout_s: float = 60.0
    # Group commit of CreateTransfer, ChargePaymentCode and CreatePaymentCode (storage/group_commit.py, one
    # queue each): concurrent calls of a process share one transaction. At most this many items a batch,
    # this many batches of a tenant in flight per process, and no call queued longer than the wait before
    # one more batch goes out. One batch in flight: the calls that come meanwhile form larger batches (make
    # bench, 2026-12-06: 0.32-0.33 WAL fsyncs and 1.06-1.14 ms of PostgreSQL CPU per transfer, against 0.41
    # and 1.16 ms with two; the rate within run-to-run noise).
    group_commit: bool = True
    group_commit_max_items: int = 32
    group_commit_batches: int = 1
    group_commit_max_wait_ms: float = 5.0


_ENVIRONMENT_NAMES: dict[str, str] = {
    "grpc_address": "EMONEY_GRPC_ADDRESS",
    "database_url": "DATABASE_URL",
    "database_read_url": "DATABASE_READ_URL",
    "database_pool_min_size": "EMONEY_DB_POOL_MIN_SIZE",
    "database_pool_max_size": "EMONEY_DB_POOL_MAX_SIZE",
    "database_connect_timeout_s": "EMONEY_DB_CONNECT_TIMEOUT_S",
    "database_statement_timeout_ms": "EMONEY_DB_STATEMENT_TIMEOUT_MS",
    "database_acquire_timeout_s": "EMONEY_DB_ACQUIRE_TIMEOUT_S",
    "redis_url": "REDIS_URL",
    "vault_address": "VAULT_ADDR",
    "vault_token": "VAULT_TOKEN",
    "s3_endpoint": "S3_ENDPOINT",
    "s3_access_key": "S3_ACCESS_KEY",
    "s3_secret_key": "S3_SECRET_KEY",
    "s3_bucket": "S3_BUCKET",
    "s3_secure": "S3_SECURE",
    "s3_public_url": "EMONEY_S3_PUBLIC_URL",
    "s3_region": "EMONEY_S3_REGION",
    "log_level": "EMONEY_LOG_LEVEL",
    "shutdown_grace_s": "EMONEY_SHUTDOWN_GRACE_S",
    "health_probe_interval_s": "EMONEY_HEALTH_PROBE_INTERVAL_S",
    "reflection_enabled": "EMONEY_REFLECTION",
    "max_message_bytes": "EMONEY_MAX_MESSAGE_BYTES",
    "max_concurrent_rpcs": "EMONEY_MAX_CONCURRENT_RPCS",
    "max_active_calls": "EMONEY_MAX_ACTIVE_CALLS",
    "max_metadata_bytes": "EMONEY_MAX_METADATA_BYTES",
    "metrics_address": "EMONEY_METRICS_ADDRESS",
    "trusted_proxies": "EMONEY_TRUSTED_PROXIES",
    "token_issuer": "EMONEY_TOKEN_ISSUER",
    "token_audience": "EMONEY_TOKEN_AUDIENCE",
    "access_token_ttl_s": "EMONEY_ACCESS_TOKEN_TTL_S",
    "refresh_token_ttl_s": "EMONEY_REFRESH_TOKEN_TTL_S",
    "rate_limits": "EMONEY_RATE_LIMITS",
    "password_hash_workers": "EMONEY_PASSWORD_HASH_WORKERS",
    "password_hash_max_waiting": "EMONEY_PASSWORD_HASH_MAX_WAITING",
    "startup_timeout_s": "EMONEY_STARTUP_TIMEOUT_S",
    "idempotency_retention_days": "EMONEY_IDEMPOTENCY_RETENTION_DAYS",
    "group_commit": "EMONEY_GROUP_COMMIT",
    "group_commit_max_items": "EMONEY_GROUP_COMMIT_MAX_ITEMS",
    "group_commit_batches": "EMONEY_GROUP_COMMIT_BATCHES",
    "group_commit_max_wait_ms": "EMONEY_GROUP_COMMIT_MAX_WAIT_MS",
}


def environment_names() -> dict[str, str]:
    """Setting name → environment variable, for documentation and tests."""
    return dict(_ENVIRONMENT_NAMES)


def _convert(name: str, raw: str, default: object) -> object:
    variable = _ENVIRONMENT_NAMES[name]
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigurationError(f"{variable} must be true or false, got {raw!r}")
    if isinstance(default, (int, float)):
        try:
            value = type(default)(raw)
        except ValueError:
            raise ConfigurationError(f"{variable} must be a number, got {raw!r}") from None
        if value <= 0:
            raise ConfigurationError(f"{variable} must be positive, got {raw!r}")
        return value
    return raw


def load_settings(environment: Mapping[str, str] | None = None) -> Settings:
    source = os.environ if environment is None else environment
    defaults = Settings()
    values = {}
    for name, variable in _ENVIRONMENT_NAMES.items():
        if variable in source and source[variable] != "":
            values[name] = _convert(name, source[variable], getattr(defaults, name))
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    host, separator, port = settings.grpc_address.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"EMONEY_GRPC_ADDRESS must be host:port, got {settings.grpc_address!r}")
    if settings.group_commit_max_items > MAX_BATCH_ITEMS:
        raise ConfigurationError(f"EMONEY_GROUP_COMMIT_MAX_ITEMS must be at most {MAX_BATCH_ITEMS}")
    if settings.database_pool_min_size > settings.database_pool_max_size:
        raise ConfigurationError("EMONEY_DB_POOL_MIN_SIZE must not exceed EMONEY_DB_POOL_MAX_SIZE")
    try:
        parse_trusted_proxies(settings.trusted_proxies)
    except ValueError as error:
        raise ConfigurationError(f"EMONEY_TRUSTED_PROXIES: {error}") from None
    if settings.access_token_ttl_s > 3600:
        raise ConfigurationError("EMONEY_ACCESS_TOKEN_TTL_S must be at most 3600: access tokens are short-lived")
    if settings.s3_public_url:
        _validate_public_url(settings.s3_public_url)
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigurationError(f"EMONEY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {settings.log_level!r}")


def _validate_public_url(url: str) -> None:
    """`http(s)://host[:port]`: the public base of pre-signed links; the bucket and key follow it."""
    problem = f"EMONEY_S3_PUBLIC_URL must be http(s)://host[:port] with nothing after it, got {url!r}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise ConfigurationError(problem) from None
    extras = parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username or parts.password
    if parts.scheme not in {"http", "https"} or not parts.hostname or extras:
        raise ConfigurationError(problem)
