"""The README's backup commands against what `make run` runs: `make backup`, `make restore-drill` and
`make restore TO=...` (refused here for an instant in the future), with the stack's own agent running."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta, timezone

from localstack.processes import free_ports
from tests.e2e.test_make_run import ROOT, _start, _stop


def _make(target: str, environment: dict[str, str], *variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", target, *variables], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=600)


def test_make_backup_restore_drill_and_a_refused_restore(tmp_path):
    state_dir = tmp_path / "state"
    envoy, admin, grpc_port, postgres, redis, openbao, s3, tls = free_ports(8)
    environment = {
        **os.environ,
        "EMONEY_STATE_DIR": str(state_dir),
        "EMONEY_ENVOY_PORT": str(envoy), "EMONEY_ENVOY_ADMIN_PORT": str(admin), "EMONEY_GRPC_PORT": str(grpc_port),
        "EMONEY_SERVER_PROCESSES": "1", "EMONEY_POSTGRES_PORT": str(postgres), "EMONEY_REDIS_PORT": str(redis),
        "EMONEY_OPENBAO_PORT": str(openbao), "EMONEY_S3_PORT": str(s3), "EMONEY_ENVOY_TLS_PORT": str(tls),
    }
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
