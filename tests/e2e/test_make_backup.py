"""The README's backup commands against what `make run` runs: `make backup`, `make restore-drill` and
`make restore TO=...` (refused here for an instant in the future), with the stack's own agent running."""

from __future__ import annotations

import subprocess
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
    finally:
        _stop(process)
