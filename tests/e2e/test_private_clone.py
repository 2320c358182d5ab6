"""`make run` from a clone in a private folder (mode 0700, like root's home or a `mktemp -d` folder).

As root, PostgreSQL runs as the unprivileged `emoney` account, which cannot enter such a folder: the
stack must give that account alone what it needs (ACL entries), start, and answer health — without
opening the folder to anyone else.

The clone is a real `git clone` of this repository (the committed tree, as CI and a new user have it)
inside a fresh 0700 folder. Its `.venv` is this checkout's, hard-linked into the clone (new folders,
shared files), and the built back office is copied: installing both again would only re-test pip and
npm, while what matters here — the embedded PostgreSQL binaries and the data folder living under the
private folder — is real.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import grpc
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.test_make_run import make_run_environment

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180


def test_a_clone_in_a_private_folder_starts_and_answers_health():
    private = Path(tempfile.mkdtemp(prefix="emoney-private-"))
    try:
        private.chmod(0o700)
        clone = private / "emoney"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
        subprocess.run(["cp", "-al", str(ROOT / ".venv"), str(clone / ".venv")], check=True, timeout=120)
        shutil.copytree(ROOT / "web" / "dist", clone / "web" / "dist")
        modes_before = {path: stat.S_IMODE(path.stat().st_mode) for path in (private, clone)}

        environment = {
            **make_run_environment(None),  # the state in the default place: .local/ inside the private clone
            # Everything from the clone: its modules first, not this checkout's editable install.
            "PYTHONPATH": f"{clone}:{clone / 'generated'}",
        }
        envoy = environment["EMONEY_ENVOY_PORT"]
        log_path = private / "run.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [str(clone / ".venv" / "bin" / "python"), "-m", "localstack"],
                cwd=clone, env=environment, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            _wait_for_banner(process, log_path)
            assert (clone / ".local" / "data").is_dir()  # the state really is inside the private folder
            assert _health(f"127.0.0.1:{envoy}") == health_pb2.HealthCheckResponse.SERVING
            response = requests.get(f"http://127.0.0.1:{envoy}/v1/tenants/demo-city", timeout=10)
            assert response.status_code == 200, response.text
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=90) == 0, log_path.read_text()

        # Nothing was opened to everyone: the folders keep their modes (no o+x), and as root the only
        # new access is an ACL entry naming the service account.
        assert {path: stat.S_IMODE(path.stat().st_mode) & 0o007 for path in modes_before} == {
            path: mode & 0o007 for path, mode in modes_before.items()
        }
        if os.geteuid() == 0:
            acl = subprocess.run(["getfacl", "--omit-header", "--numeric", str(private)],
                                 capture_output=True, text=True, check=True).stdout
            named = [line for line in acl.splitlines() if line.startswith("user:") and line.split(":")[1]]
            assert named == [f"user:{pwd.getpwnam('emoney').pw_uid}:--x"], acl
            assert "other::---" in acl, acl
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _wait_for_banner(process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        output = log_path.read_text()
        if "Press Ctrl-C to stop everything." in output:
            return
        assert process.poll() is None, f"the stack exited early:\n{output}"
        time.sleep(0.5)
    raise AssertionError(f"the stack did not come up in {START_TIMEOUT_S}s:\n{log_path.read_text()}")


def _health(target: str) -> int:
    """The overall health status through Envoy, once it says SERVING (or the last answer after 30 s)."""
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            status = stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status
            if status == health_pb2.HealthCheckResponse.SERVING or time.monotonic() > deadline:
                return status
            time.sleep(0.5)
