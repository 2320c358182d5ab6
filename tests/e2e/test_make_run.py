"""What `make run` runs (`python -m localstack`): the whole stack comes up, prints where to connect,
answers on every face, keeps its data across a restart, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from localstack.health import envoy_upstreams
from localstack.processes import consecutive_free_ports, free_ports
from tests.fixtures.tools import grpcurl_binary

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120


def _start(environment: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "localstack"], env=environment, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        output = log_path.read_text()
        if "Press Ctrl-C to stop everything." in output:
            return process, output
        assert process.poll() is None, f"the stack exited early:\n{output}"
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"the stack did not come up in {START_TIMEOUT_S}s:\n{log_path.read_text()}")


def _statement(banner: str) -> list[str]:
    """The demo story's statement lines from the banner."""
    lines = banner.split("Demo story:", 1)[1].splitlines()[1:]
    return [line for line in lines if "balance" in line]


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0


def _processes_using(state_dir: Path) -> list[str]:
    found = []
    for candidate in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(candidate.info["cmdline"] or []) + " ".join((candidate.info["environ"] or {}).values())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(state_dir) in text and candidate.pid != os.getpid():
            found.append(f"{candidate.pid}: {' '.join(candidate.info['cmdline'] or [])[:120]}")
    return found


def make_run_environment(state_dir: Path | None, servers: int = 1) -> dict[str, str]:
    """The environment for `python -m localstack` (what `make run` runs) on ports of its own: every port it
    would take by default chosen free (servers are numbered from a first gRPC and a first metrics port), so
    a test never collides with another run or with a developer's `make run`. state_dir None: the default
    (.local/ of the clone)."""
    envoy, admin, postgres, redis, openbao, s3, tls = free_ports(7)
    environment = {
        **os.environ,
        "EMONEY_ENVOY_PORT": str(envoy),
        "EMONEY_ENVOY_ADMIN_PORT": str(admin),
        "EMONEY_GRPC_PORT": str(consecutive_free_ports(servers)),
        "EMONEY_METRICS_PORT": str(consecutive_free_ports(servers)),
        "EMONEY_SERVER_PROCESSES": str(servers),
        "EMONEY_POSTGRES_PORT": str(postgres),
        "EMONEY_REDIS_PORT": str(redis),
        "EMONEY_OPENBAO_PORT": str(openbao),
        "EMONEY_S3_PORT": str(s3),
        "EMONEY_ENVOY_TLS_PORT": str(tls),
    }
    if state_dir is None:
        environment.pop("EMONEY_STATE_DIR", None)
    else:
        environment["EMONEY_STATE_DIR"] = str(state_dir)
    return environment


def test_run_serves_every_face_survives_restart_and_stops_cleanly(tmp_path):
    """Start, call via grpcurl and curl, Ctrl-C; start again and see the same data; Ctrl-C leaves nothing."""
    state_dir = tmp_path / "state"
    environment = make_run_environment(state_dir)
    envoy_port, admin_port = int(environment["EMONEY_ENVOY_PORT"]), int(environment["EMONEY_ENVOY_ADMIN_PORT"])
    metrics_port = int(environment["EMONEY_METRICS_PORT"])
    process, banner = _start(environment, tmp_path / "first.log")
    try:
        _check_up_when_the_banner_says_so(banner, state_dir, admin_port)
        _check_the_banner_commands_run_as_printed(banner, envoy_port, metrics_port)
        _check_a_developer_may_log_in_again_and_again(envoy_port, banner)
        assert f"http://127.0.0.1:{envoy_port}" in banner
        passwords = re.findall(r"demo-city\.example\s+(\S+)", banner)
        assert len(passwords) == 4
        story = _statement(banner)
        assert [line.split()[2:4] for line in story] == [["top_up", "50.00"], ["payment", "-12.50"], ["refund", "2.50"]]
        listing = subprocess.run(
            [grpcurl_binary(), "-plaintext", f"127.0.0.1:{envoy_port}", "list"], capture_output=True, text=True, timeout=30
        )
        assert "emoney.platform.v1.PlatformService" in listing.stdout
        response = requests.get(f"http://127.0.0.1:{envoy_port}/v1/tenants/demo-city", timeout=10)
        assert response.status_code == 200 and response.json()["tenant"]["slug"] == "demo-city"
    finally:
        _stop(process)
    assert _processes_using(state_dir) == []

    process, banner = _start(environment, tmp_path / "second.log")
    try:
        # Same demo users (not re-created): PostgreSQL data and the local secrets survived the restart.
        assert re.findall(r"demo-city\.example\s+(\S+)", banner) == passwords
        # The demo story replays with the same request ids: the same three entries, nothing paid twice.
        assert _statement(banner) == story
        response = requests.get(f"http://127.0.0.1:{envoy_port}/v1/serverInfo", timeout=10)
        assert response.status_code == 200
    finally:
        _stop(process)
    assert _processes_using(state_dir) == []


def _check_up_when_the_banner_says_so(banner: str, state_dir: Path, admin_port: int) -> None:
    """When the banner is printed, Envoy routes to every server (admin /clusters: healthy, not
    failed_active_hc), and the servers logged no alarm on the way up (no PoolClosed, no listener
    'disconnected', no dependency 'down')."""
    hosts = envoy_upstreams(f"127.0.0.1:{admin_port}")
    assert hosts and all(host["healthy"] for host in hosts.values()), hosts
    logs = sorted((state_dir / "logs").glob("server-*.log"))
    assert logs
    alarms = [line for log in logs for line in log.read_text().splitlines() if '"level": "WARNING"' in line or '"level": "ERROR"' in line]
    assert alarms == [], alarms


def _check_the_banner_commands_run_as_printed(banner: str, envoy_port: int, metrics_port: int) -> None:
    """The banner's grpcurl command runs as printed from the repository (grpcurl is in .venv/bin, which is
    not on PATH), and its Prometheus endpoint serves the calls the demo story made."""
    command = next(line.split("native gRPC", 1)[1].strip() for line in banner.splitlines() if "native gRPC" in line)
    assert command == f".venv/bin/grpcurl -plaintext 127.0.0.1:{envoy_port} list"
    path_without_venv = os.pathsep.join(part for part in os.environ["PATH"].split(os.pathsep) if ".venv" not in part)
    listing = subprocess.run(
        shlex.split(command), cwd=ROOT, env={**os.environ, "PATH": path_without_venv}, capture_output=True, text=True, timeout=30
    )
    assert "emoney.platform.v1.PlatformService" in listing.stdout, listing.stderr
    assert f"http://127.0.0.1:{metrics_port}/metrics" in banner
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    assert 'emoney_grpc_calls_total{method="/emoney.auth.v1.AuthService/Login",code="OK"}' in metrics


def _check_a_developer_may_log_in_again_and_again(envoy_port: int, banner: str) -> None:
    """Every local client shares one client address; after the demo story's logins a developer still
    logs in 20 times in a row without a 429 (production's 10 a minute would refuse the ninth or so)."""
    email, password = re.search(r"demo-city\s+operator\s+(\S+)\s+(\S+)", banner).groups()
    url = f"http://127.0.0.1:{envoy_port}/v1/tenants/demo-city/sessions:login"
    statuses = [requests.post(url, json={"email": email, "password": password}, timeout=10).status_code for _ in range(20)]
    assert statuses == [200] * 20
