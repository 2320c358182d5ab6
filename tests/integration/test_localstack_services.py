"""The local stack's real services: each one starts, works, refuses strangers, keeps its data
across a restart, and leaves no process or port behind when stopped. No mocks."""

from __future__ import annotations

import base64
import io
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hvac.exceptions
import psutil
import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from minio import Minio
from minio.error import S3Error

from localstack.openbao import start_openbao
from localstack.postgres import start_postgres
from localstack.processes import (
    ManagedProcess,
    ServiceStartError,
    free_port,
    port_is_free,
    wait_for_tcp,
)
from localstack.redis_server import start_redis
from localstack.seaweedfs import start_seaweedfs

NO_RETRY = Retry(NoBackoff(), 0)  # a refused login should fail at once, not after backoff
SEAWEEDFS_DEFAULT_PORTS = {
    9333, 19333, 9340, 19340, 8888, 18888, 8333, 18333, 7333, 23646, 33646, 8181, 9101, 6060,
}


def listening_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections("inet") if c.status == psutil.CONN_LISTEN}


def listening_hosts(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections("inet") if c.status == psutil.CONN_LISTEN}


def assert_gone(process: ManagedProcess, ports: set[int]) -> None:
    assert not process.alive()
    assert not psutil.pid_exists(process.pid)
    for port in ports:
        assert port_is_free(port), f"port {port} still in use"


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_managed_process_dies_with_its_parent(tmp_path: Path) -> None:
    """A service child is SIGKILLed by the kernel when the Python process that owns it dies."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from localstack.processes import ManagedProcess
        child = ManagedProcess("sleeper", ["sleep", "300"], Path({str(tmp_path / "sleep.log")!r})).start()
        print(child.pid, flush=True)
        time.sleep(300)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path.cwd())
    assert owner.stdout is not None
    child_pid = int(owner.stdout.readline())
    assert psutil.pid_exists(child_pid)
    owner.kill()
    owner.wait()
    psutil.wait_procs([psutil.Process(child_pid)], timeout=5)
    assert not psutil.pid_exists(child_pid)


def test_managed_process_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    """A child started from a short-lived worker thread keeps running after that thread exits."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        child = pool.submit(ManagedProcess("sleeper", ["sleep", "300"], tmp_path / "sleep.log").start).result()
    time.sleep(0.5)
    try:
        assert child.alive()
    finally:
        child.stop()
    assert not child.alive()


def test_stop_escalates_to_sigkill_and_is_idempotent(tmp_path: Path) -> None:
    """stop() kills a child that ignores SIGTERM after the grace period, and a second stop() is harmless."""
    argv = ["sh", "-c", "trap '' TERM; sleep 300"]
    stubborn = ManagedProcess("stubborn", argv, tmp_path / "stubborn.log").start()
    started_s = time.monotonic()
    stubborn.stop(timeout_s=0.5)
    assert time.monotonic() - started_s < 5
    assert not stubborn.alive()
    stubborn.stop()
    stubborn.kill()


def test_wait_for_tcp_reports_a_dead_process_with_its_log(tmp_path: Path) -> None:
    """Waiting on a process that exits fails fast with the tail of its log, not a timeout."""
    doomed = ManagedProcess("doomed", ["sh", "-c", "echo boom-reason; exit 3"], tmp_path / "doomed.log").start()
    with pytest.raises(ServiceStartError, match="boom-reason"):
        wait_for_tcp("127.0.0.1", free_port(), timeout_s=30, process=doomed)


def test_postgres_serves_sql_refuses_bad_password_and_keeps_data(tmp_path: Path) -> None:
    """PostgreSQL answers SQL on 127.0.0.1 only, as an unprivileged user, durably, and keeps rows and its password across a restart."""
    data_dir, logs = tmp_path / "state" / "postgres", tmp_path / "logs"
    port = free_port()
    pg = start_postgres(data_dir, port, logs)
    try:
        with psycopg.connect(pg.dsn()) as conn:
            conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO kept VALUES (1, 'survives restarts')")
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('fsync', 'synchronous_commit', 'listen_addresses', 'max_connections')"
            ).fetchall()
        assert dict(rows) == {
            "fsync": "on",
            "synchronous_commit": "on",
            "listen_addresses": "127.0.0.1",
            "max_connections": "200",
        }
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(pg.dsn(password="wrong", user="postgres"), connect_timeout=5)
        assert listening_ports(pg.process.pid) == {port}
        assert listening_hosts(pg.process.pid) == {"127.0.0.1"}
        if os.geteuid() == 0:
            assert psutil.Process(pg.process.pid).username() != "root"
        assert file_mode(data_dir.parent / "postgres-superuser.json") == 0o600
        first_password = pg.superuser_password
    finally:
        pg.stop()
    assert_gone(pg.process, {port})
    assert not pg.socket_dir.exists()

    port = free_port()
    pg = start_postgres(data_dir, port, logs)
    try:
        assert pg.superuser_password == first_password
        with psycopg.connect(pg.dsn()) as conn:
            assert conn.execute("SELECT note FROM kept WHERE id = 1").fetchone() == ("survives restarts",)
    finally:
        pg.stop()
    assert_gone(pg.process, {port})


def test_redis_requires_its_password_and_keeps_data(tmp_path: Path) -> None:
    """Redis serves SET/GET with the generated password, refuses a wrong or missing one, and replays its AOF after a restart."""
    data_dir, logs = tmp_path / "state" / "redis", tmp_path / "logs"
    port = free_port()
    server = start_redis(data_dir, port, logs)
    try:
        client = redis.Redis.from_url(server.url())
        client.set("greeting", "ola")
        assert client.get("greeting") == b"ola"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, password="wrong", retry=NO_RETRY).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, retry=NO_RETRY).ping()
        assert listening_ports(server.process.pid) == {port}
        assert listening_hosts(server.process.pid) == {"127.0.0.1"}
        assert file_mode(data_dir.parent / "redis-password.json") == 0o600
        assert file_mode(data_dir.parent / "redis.conf") == 0o600
        assert server.password not in " ".join(psutil.Process(server.process.pid).cmdline())
        first_password = server.password
    finally:
        server.stop()
    assert_gone(server.process, {port})

    port = free_port()
    server = start_redis(data_dir, port, logs)
    try:
        assert server.password == first_password
        assert redis.Redis.from_url(server.url()).get("greeting") == b"ola"
    finally:
        server.stop()
    assert_gone(server.process, {port})


def test_openbao_keeps_secrets_across_restart_and_scopes_the_app_token(tmp_path: Path) -> None:
    """OpenBao initializes and unseals itself, the app token reads/writes only emoney secrets and transit keys, and a KV secret survives a restart."""
    data_dir, logs = tmp_path / "state" / "openbao", tmp_path / "logs"
    port = free_port()
    bao = start_openbao(data_dir, port, logs)
    try:
        app = bao.client()
        app.secrets.kv.v2.create_or_update_secret(path="emoney/jwt", secret={"key": "s3cr3t"}, mount_point="secret")
        with pytest.raises(hvac.exceptions.Forbidden):
            app.secrets.kv.v2.create_or_update_secret(path="other/x", secret={"k": "v"}, mount_point="secret")
        app.write("transit/keys/emoney-receipts")
        plaintext = base64.b64encode(b"card data").decode()
        ciphertext = app.secrets.transit.encrypt_data(name="emoney-receipts", plaintext=plaintext)["data"]["ciphertext"]
        decrypted = app.secrets.transit.decrypt_data(name="emoney-receipts", ciphertext=ciphertext)["data"]["plaintext"]
        assert decrypted == plaintext
        assert listening_ports(bao.process.pid) == {port, bao.cluster_port}
        assert listening_hosts(bao.process.pid) == {"127.0.0.1"}
        assert file_mode(data_dir.parent / "openbao-init.json") == 0o600
        assert file_mode(data_dir.parent / "openbao-app-token.json") == 0o600
        first_tokens = (bao.root_token, bao.app_token)
    finally:
        bao.stop()
    assert_gone(bao.process, {port, bao.cluster_port})

    port = free_port()
    bao = start_openbao(data_dir, port, logs)
    try:
        assert (bao.root_token, bao.app_token) == first_tokens
        secret = bao.client().secrets.kv.v2.read_secret_version(
            path="emoney/jwt", mount_point="secret", raise_on_deleted_version=True
        )
        assert secret["data"]["data"] == {"key": "s3cr3t"}
    finally:
        bao.stop()
    assert_gone(bao.process, {port, bao.cluster_port})


def test_seaweedfs_s3_authenticates_uses_only_chosen_ports_and_keeps_objects(tmp_path: Path) -> None:
    """SeaweedFS S3 round-trips an object with its keys, refuses wrong or missing keys, listens only on ports we chose, and keeps objects across a restart."""
    data_dir, logs = tmp_path / "state" / "seaweedfs", tmp_path / "logs"
    s3_port = free_port()
    weed = start_seaweedfs(data_dir, s3_port, logs)
    try:
        client = weed.client()
        client.put_object(weed.bucket, "tenant-1/receipt.txt", io.BytesIO(b"paid 100"), 8)
        assert client.get_object(weed.bucket, "tenant-1/receipt.txt").read() == b"paid 100"
        with pytest.raises(S3Error, match="SignatureDoesNotMatch"):
            wrong_secret = Minio(weed.endpoint, weed.access_key, "wrong-secret", secure=False)
            wrong_secret.get_object(weed.bucket, "tenant-1/receipt.txt")
        with pytest.raises(S3Error, match="AccessDenied"):
            Minio(weed.endpoint, secure=False).get_object(weed.bucket, "tenant-1/receipt.txt")
        ports = listening_ports(weed.process.pid)
        assert ports <= set(weed.ports.values())
        assert not ports & SEAWEEDFS_DEFAULT_PORTS
        assert listening_hosts(weed.process.pid) == {"127.0.0.1"}
        assert file_mode(data_dir.parent / "seaweedfs-s3.json") == 0o600
        first_keys = (weed.access_key, weed.secret_key)
    finally:
        weed.stop()
    assert_gone(weed.process, set(weed.ports.values()))

    s3_port = free_port()
    weed = start_seaweedfs(data_dir, s3_port, logs)
    try:
        assert (weed.access_key, weed.secret_key) == first_keys
        assert weed.client().get_object(weed.bucket, "tenant-1/receipt.txt").read() == b"paid 100"
    finally:
        weed.stop()
    assert_gone(weed.process, set(weed.ports.values()))


def test_killed_postgres_recovers_on_next_start(tmp_path: Path) -> None:
    """After a SIGKILL of the whole PostgreSQL process group, the next start recovers committed rows."""
    data_dir, logs = tmp_path / "state" / "postgres", tmp_path / "logs"
    pg = start_postgres(data_dir, free_port(), logs)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE committed (id int)")
        conn.execute("INSERT INTO committed VALUES (42)")
    pg.process.kill()
    assert not pg.process.alive()
    pg.stop()  # after kill(): only cleans the socket folder

    pg = start_postgres(data_dir, free_port(), logs)
    try:
        with psycopg.connect(pg.dsn()) as conn:
            assert conn.execute("SELECT id FROM committed").fetchone() == (42,)
    finally:
        pg.stop()


@pytest.fixture(autouse=True)
def _no_orphans_left():
    """Every test must end with no new child process of ours still running (session services are not ours)."""
    before = {process.pid for process in psutil.Process().children(recursive=True)}
    yield
    leftovers = [
        process
        for process in psutil.Process().children(recursive=True)
        if process.pid not in before and process.status() != psutil.STATUS_ZOMBIE
    ]
    for process in leftovers:
        process.send_signal(signal.SIGKILL)
    assert not leftovers, f"orphans: {[process.cmdline() for process in leftovers]}"
