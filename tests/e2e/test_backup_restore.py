"""Backups and point-in-time restore (localstack/backup.py) on a real stack: pg_basebackup full and
incremental into the object store, WAL archived through the spool, pg_combinebackup, recovery to an
instant into a new folder — and the refusals that leave everything untouched."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import psycopg
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emoney.payments.v1 import payments_pb2
from localstack.backup import (
    BackupAgent, BackupError, Schedule, check_restored, drill, restore, restore_secrets, ship_segment, ship_wal,
    _last_segment, missing_segments, one_backup_at_a_time, segment_number, take_backup,
)
from localstack.processes import consecutive_free_ports
from localstack.provisioning import DATABASE_NAME
from localstack.stack import LocalStack, StackOptions
from tests.conftest import free_stack_ports, running_stack
from tests.fixtures.identity import bearer
from tests.fixtures.ledger import Holder, balance, new_customer, payments_stub


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    ports, servers = free_stack_ports()
    ports = dataclasses.replace(ports, first_metrics=consecutive_free_ports(len(servers)))
    options = StackOptions(
        state_dir=tmp_path_factory.mktemp("backup-stack"), ports=ports, grpc_ports=servers,
        server_environment={"EMONEY_RATE_LIMITS": "credentials.address=100/s:1000"},
    )
    with running_stack(options, "backup-stack-logs") as stack:
        yield stack


def _transfers(channel, source: Holder, target: Holder, count: int) -> None:
    for _ in range(count):
        payments_stub(channel).CreateTransfer(
            payments_pb2.CreateTransferRequest(request_id=str(uuid.uuid4()), from_account=source.account,
                                               to_account=target.account, amount_minor=1, currency="EUR"),
            metadata=bearer(source.token), timeout=10)


def _archive_now(stack: LocalStack) -> None:
    """Close the current WAL segment and wait until PostgreSQL has archived it into the spool, then ship."""
    target = stack.backup_target()
    with psycopg.connect(target.primary_dsn(), autocommit=True) as connection:  # fresh statistics each time
        segment = connection.execute("select pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + 60
        while (connection.execute("select last_archived_wal from pg_stat_archiver").fetchone()[0] or "") < segment:
            assert time.monotonic() < deadline, f"{segment} was not archived"
            time.sleep(0.1)
    ship_wal(Path(target.spool_dir), target.repository())


def _balance_in(dsn: str, account: str) -> int:
    account_id = account.removeprefix("accounts/")
    with psycopg.connect(dsn) as connection:
        return connection.execute(
            "select coalesce(sum(amount_minor), 0)::bigint from ledger_entries where account_id = %s", (account_id,)
        ).fetchone()[0]


def test_restore_to_an_instant_brings_back_exactly_what_had_committed(backed_up, tmp_path):
    target = backed_up.backup_target()
    with grpc.insecure_channel(backed_up.endpoints.envoy) as channel:
        source, receiver = new_customer(backed_up, channel, funded_minor=10_000), new_customer(backed_up, channel)
        assert take_backup(target).kind == "full"
        _transfers(channel, source, receiver, 7)
        incremental = take_backup(target, incremental=True)
        assert incremental.kind == "incremental"
        _transfers(channel, source, receiver, 5)
        time.sleep(1.0)
        instant = datetime.now(timezone.utc)
        time.sleep(1.0)
        _transfers(channel, source, receiver, 9)  # after the instant: must not come back
        assert balance(channel, receiver.token, receiver.account).balance_minor == 21
    _archive_now(backed_up)

    restored = restore(target, instant, tmp_path / "restored", backed_up.log_dir)
    try:
        assert [meta.kind for meta in restored.chain] == ["full", "incremental"]
        assert _balance_in(restored.service.dsn(DATABASE_NAME), receiver.account) == 12
        assert _balance_in(restored.service.dsn(DATABASE_NAME), source.account) == 10_000 - 12
        report = check_restored(target, restored)
        assert report.ok, report.problems
        assert report.tenants >= 2 and report.accounts_compared >= 2
        print(f"\nrestore of {len(restored.chain)} backups to an instant: {restored.duration_s:.1f}s")
    finally:
        restored.stop()
    # The live stack is untouched and goes on.
    with grpc.insecure_channel(backed_up.endpoints.envoy) as channel:
        assert balance(channel, receiver.token, receiver.account).balance_minor == 21


def test_the_drill_restores_the_latest_backup_and_finds_it_whole(backed_up):
    target = backed_up.backup_target()
    with grpc.insecure_channel(backed_up.endpoints.envoy) as channel:
        source, receiver = new_customer(backed_up, channel, funded_minor=500), new_customer(backed_up, channel)
        _transfers(channel, source, receiver, 3)
    _archive_now(backed_up)
    report = drill(target, backed_up.log_dir)
    assert report.ok, report.problems
    assert report.restored_to is not None


def test_a_backup_is_reported_taken_only_once_the_wal_it_ends_in_is_archived(backed_up, tmp_path):
    """pg_basebackup -X fetch does not wait for the archiver: a drill straight after `make backup` once
    found the archive ending before the backup did. take_backup now returns only when it does not."""
    target = backed_up.backup_target()
    repository = target.repository()
    meta = take_backup(target)
    manifest = tmp_path / "backup_manifest"
    repository.get(f"base/{meta.label}/backup_manifest", manifest)
    last = segment_number(_last_segment(manifest))
    assert last >= segment_number(meta.start_wal)
    assert any(segment_number(name) >= last for name in repository.segments() if len(name) == 24)
    assert not missing_segments(repository.segments(), meta.start_wal)
    report = drill(target, backed_up.log_dir)  # straight away, nothing shipped in between
    assert report.ok, report.problems


def test_backups_take_turns_so_a_pruning_never_misses_one_being_taken(backed_up):
    """`make backup` and the stack's agent are two processes; an agent that pruned while `make backup`'s
    backup was still being taken deleted the WAL that backup needed (the HA CI run's drill refused it)."""
    target = backed_up.backup_target()
    holding, release, taken = threading.Event(), threading.Event(), []

    def hold_the_lock() -> None:
        with one_backup_at_a_time(target):
            holding.set()
            release.wait(60)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(10)
    taker = threading.Thread(target=lambda: taken.append(take_backup(target)))
    taker.start()
    time.sleep(1.5)
    assert not taken  # waits its turn
    release.set()
    taker.join(120)
    holder.join(10)
    assert taken and not missing_segments(target.repository().segments(), taken[0].start_wal)


@pytest.mark.parametrize("when, reason", [
    (lambda: datetime.now(timezone.utc) + timedelta(hours=1), "in the future"),
    (lambda: datetime(2000, 1, 1, tzinfo=timezone.utc), "before the end of the first backup"),
])
def test_a_restore_to_an_impossible_instant_is_refused_and_touches_nothing(backed_up, tmp_path, when, reason):
    into = tmp_path / "never"
    with pytest.raises(BackupError, match=reason):
        restore(backed_up.backup_target(), when(), into, backed_up.log_dir)
    assert not into.exists()


def test_a_restore_over_an_existing_folder_is_refused(backed_up, tmp_path):
    existing = tmp_path / "live"
    existing.mkdir()
    (existing / "keep").write_text("mine")
    with pytest.raises(BackupError, match="new folder"):
        restore(backed_up.backup_target(), None, existing, backed_up.log_dir)
    assert (existing / "keep").read_text() == "mine"


def _backup_health(stack: LocalStack) -> tuple[list[dict[str, int]], list[dict[str, float]]]:
    """Each server's health for the whole server ("") and for `emoney.backups`, and its emoney_backup_* metrics."""
    statuses = []
    for address in stack.endpoints.grpc_servers:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            statuses.append({service: stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
                             for service in ("", "emoney.backups")})
    figures = []
    for address in stack.endpoints.metrics:
        text = requests.get(f"http://{address}/metrics", timeout=10).text
        figures.append({line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                        if line.startswith("emoney_backup_")})
    assert len(figures) == len(statuses) >= 2
    return statuses, figures


def _readme_backups_health(stack: LocalStack) -> str:
    """The README's one-line health check of `emoney.backups`, run as written against the first server."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = re.search(r"`(\.venv/bin/grpcurl [^`]*emoney\.backups[^`]*)`", readme)
    assert line, "the README lost its emoney.backups health line"
    command = line.group(1).replace("127.0.0.1:50051", stack.endpoints.grpc_servers[0])
    completed = subprocess.run(["bash", "-c", command], cwd=Path(__file__).resolve().parents[2],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)["status"]


def _until_backups_are(stack: LocalStack, status: int) -> tuple[list[dict[str, int]], list[dict[str, float]]]:
    """Every server's `emoney.backups` at `status` (their probes run every second); health and metrics then."""
    deadline = time.monotonic() + 30
    while True:
        statuses, figures = _backup_health(stack)
        if all(server["emoney.backups"] == status for server in statuses):
            return statuses, figures
        assert time.monotonic() < deadline, f"emoney.backups never became {status}: {statuses} {figures}"
        time.sleep(0.2)


def test_a_backup_pass_while_the_object_store_is_down_is_retried_shows_in_health_and_never_blocks_a_payment(backed_up):
    """The failing pass is retried, every server reports `emoney.backups` NOT_SERVING and the
    emoney_backup_* metrics say why — while the servers stay SERVING and payments go on."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    target = backed_up.backup_target()
    agent = BackupAgent(target, Schedule())
    agent.run_once(datetime.now(timezone.utc))
    assert agent.status["last_error"] is None, agent.status
    statuses, figures = _until_backups_are(backed_up, serving)
    assert all(server[""] == serving for server in statuses)
    assert _readme_backups_health(backed_up) == "SERVING"
    for server in figures:
        assert server["emoney_backup_agent_seen"] == 1 and server["emoney_backup_failing"] == 0, server
        assert server["emoney_backup_wal_backlog_segments"] == agent.status["spool_backlog"], server
        assert server["emoney_backup_status_age_seconds"] < 60
    with grpc.insecure_channel(backed_up.endpoints.envoy) as channel:
        source, receiver = new_customer(backed_up, channel, funded_minor=100), new_customer(backed_up, channel)
        backed_up.stop_service("seaweedfs")
        try:
            _transfers(channel, source, receiver, 2)  # payments go on
            with psycopg.connect(target.primary_dsn()) as connection:
                connection.execute("select pg_switch_wal()")
            deadline = time.monotonic() + 30
            while not any(path.name[:1] == "0" for path in Path(target.spool_dir).iterdir()):
                assert time.monotonic() < deadline, "nothing was archived into the spool"
                time.sleep(0.1)
            agent.run_once(datetime.now(timezone.utc))
            assert agent.status["last_error"] is not None
            assert agent.status["spool_backlog"] >= 1
            statuses, figures = _until_backups_are(backed_up, not_serving)
            assert all(server[""] == serving for server in statuses), "a failing backup must not take a server out of Envoy's rotation"
            for server in figures:
                assert server["emoney_backup_failing"] == 1, server
                assert server["emoney_backup_wal_backlog_segments"] == agent.status["spool_backlog"] >= 1, server
            assert _readme_backups_health(backed_up) == "NOT_SERVING"
            _transfers(channel, source, receiver, 1)  # still
        finally:
            backed_up.start_service("seaweedfs")
        agent.run_once(datetime.now(timezone.utc))
        assert agent.status["last_error"] is None, agent.status
        assert agent.status["spool_backlog"] == 0
        assert balance(channel, receiver.token, receiver.account).balance_minor == 3
    statuses, figures = _until_backups_are(backed_up, serving)
    for server in figures:
        assert server["emoney_backup_failing"] == 0 and server["emoney_backup_wal_backlog_segments"] == 0, server
        assert server["emoney_backup_last_success_age_seconds"] < 60


def test_the_secrets_store_is_backed_up_with_each_base_backup_and_can_be_put_back(backed_up):
    import hvac

    from storage.secrets import KV_MOUNT

    target = backed_up.backup_target()
    label = take_backup(target).label
    vault = target.vault()
    vault.secrets.kv.v2.create_or_update_secret(path="drill-marker", secret={"v": "after"}, mount_point=KV_MOUNT)
    restore_secrets(target, label)
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.secrets.kv.v2.read_secret_version(path="drill-marker", mount_point=KV_MOUNT, raise_on_deleted_version=True)
    with grpc.insecure_channel(backed_up.endpoints.envoy) as channel:  # the platform still works on it
        new_customer(backed_up, channel, funded_minor=1)
    with pytest.raises(BackupError, match="no secrets-store snapshot"):
        restore_secrets(target, "19990101T000000000000Z")


def test_a_missing_wal_segment_is_refused_before_anything_is_written(backed_up, tmp_path):
    """After every test that restores: it deletes a segment from the archive."""
    target = backed_up.backup_target()
    with grpc.insecure_channel(backed_up.endpoints.envoy) as channel:
        source, receiver = new_customer(backed_up, channel, funded_minor=100), new_customer(backed_up, channel)
        take_backup(target)
        _transfers(channel, source, receiver, 2)
        _archive_now(backed_up)
        _transfers(channel, source, receiver, 2)
        _archive_now(backed_up)
    repository = target.repository()
    latest = repository.backups()[-1]
    after = [name for name in repository.segments() if len(name) == 24 and name[8:] > latest.start_wal[8:]]
    assert len(after) >= 2
    repository.delete(f"wal/{after[0]}")
    into = tmp_path / "never"
    with pytest.raises(BackupError, match=f"WAL segment {after[0]} is missing"):
        restore(target, None, into, backed_up.log_dir)
    assert not into.exists()


def test_two_shippers_on_one_spool_never_fail_on_a_segment_the_other_took(backed_up, tmp_path):
    """`make run`'s agent and `make backup` both ship the spool: the second to reach a segment finds it
    gone and goes on (a clean run once failed `make backup` with FileNotFoundError)."""
    repository = backed_up.backup_target().repository()
    segment = tmp_path / "0000000100000000000000FF"
    segment.write_bytes(b"w" * 1024)
    assert ship_segment(segment, repository) is True
    assert not segment.exists()
    assert ship_segment(segment, repository) is False  # the other shipper's turn: nothing left, no error
    assert repository.get_bytes("wal/0000000100000000000000FF") == b"w" * 1024
    repository.delete("wal/0000000100000000000000FF")
