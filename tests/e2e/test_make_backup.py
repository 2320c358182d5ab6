"""The README's backup commands against what `make run` runs: `make backup`, `make restore-drill`,
`make restore` (to the latest, kept running until Ctrl-C) and `make restore TO=...` (refused here for an
instant in the future), `python -m localstack.backup status` and `restore-secrets` without `--yes`, with
the stack's own agent running; and `python -m tools.backup_figures` on a small database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from tests.e2e.test_make_run import ROOT, _start, _stop, make_run_environment


def _make(target: str, environment: dict[str, str], *variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", target, *variables], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=600)


def test_make_backup_restore_drill_and_a_refused_restore(tmp_path):
    state_dir = tmp_path / "state"
    environment = make_run_environment(state_dir)
    process, banner = _start(environment, tmp_path / "run.log")
    try:
        assert "emoney-backups" in banner
        taken = _make("backup", environment)
        assert taken.returncode == 0, taken.stderr
        assert "full" in taken.stdout or "incremental" in taken.stdout, taken.stdout
        drilled = _make("restore-drill", environment)
        assert drilled.returncode == 0, drilled.stdout + drilled.stderr
        assert '"ok": true' in drilled.stdout
        future = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S+00")
        refused = _make("restore", environment, f"TO={future}")
        assert refused.returncode != 0 and "in the future" in refused.stderr, refused.stderr
        assert not (state_dir / "restores").exists() or not any((state_dir / "restores").iterdir())
        _check_make_restore_runs_the_copy_until_ctrl_c(environment, tmp_path / "restore.log")
        assert len(list((state_dir / "restores").iterdir())) == 1  # the folder stays, as the README says
        copy = next((state_dir / "restores").iterdir())
        assert (copy / "postgres-superuser.json").stat().st_mode & 0o777 == 0o600  # the copy's secret stays private
        status = _backup_cli(environment, "status")
        assert status.returncode == 0 and '"kind": "full"' in status.stdout, status.stdout + status.stderr
        unconfirmed = _backup_cli(environment, "restore-secrets", "19990101T000000000000Z")
        assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr, unconfirmed.stderr
    finally:
        _stop(process)


def _backup_cli(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localstack.backup", *arguments], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)


def _check_make_restore_runs_the_copy_until_ctrl_c(environment: dict[str, str], log_path) -> None:
    with log_path.open("w") as log:
        # Started with SIGINT ignored, as a shell starts a background job (a CI runner may): Ctrl-C still stops it.
        restoring = subprocess.Popen(["make", "-s", "restore"], cwd=ROOT, env=environment, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 300
        while "running at postgresql://" not in log_path.read_text():
            assert restoring.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        assert "restored " in log_path.read_text()
        assert "postgres:***@" in log_path.read_text()  # the superuser's password is not printed
    finally:
        os.killpg(restoring.pid, signal.SIGINT)  # Ctrl-C in the terminal: make and the module
        assert restoring.wait(timeout=60) in (0, 2, 130, -signal.SIGINT), log_path.read_text()


def test_backup_figures_measure_a_backup_and_a_restore():
    completed = subprocess.run([sys.executable, "-m", "tools.backup_figures", "--transfers", "200"], cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    rows = json.loads(completed.stdout.strip().splitlines()[-1])
    # 200 transfers, and the four accounts' top-ups that funded them.
    assert rows[1]["transfers"] - rows[0]["transfers"] == 200 + 4
    assert all(row["backup_s"] > 0 and row["restore_s"] > 0 and row["backup_mib"] > 0 for row in rows)
