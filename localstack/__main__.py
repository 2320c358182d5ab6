"""`make run` / `emoney-stack`: start the whole platform locally and keep it up until Ctrl-C.

Data lives under `EMONEY_STATE_DIR` (default `.local/`, git-ignored), so a
restart keeps accounts, secrets and objects. Every address can be moved with an
environment variable, and any backing service can be an external one (see the
README's configuration table).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import grpc

from localstack.backup import BackupAgent, Schedule
from localstack.demo import play_demo_story
from localstack.processes import MAKE_RUN_DEFAULT_PORTS, MAX_SERVER_PROCESSES, ServiceStartError
from localstack.stack import ROOT, TOPOLOGIES, HaPorts, LocalStack, StackOptions, StackPorts, default_server_processes

# How long the started servers may take to be SERVING and found healthy by Envoy.
SERVING_TIMEOUT_S = 60.0
# The servers' production limit on password and token calls is 10 a minute per client address, and
# every local client (curl, grpcurl, the back office, the demo story) shares one address here: a first
# walk through the README would hit 429s. `make run` allows a developer's pace instead (a burst of 60,
# then one a second); EMONEY_RATE_LIMITS, when set, wins. Production keeps the strict defaults.
DEVELOPER_RATE_LIMITS = "credentials.address=60/m:60,credentials.principal=60/m:60"
EXTERNAL_VARIABLES = (
    "DATABASE_URL",
    "MIGRATION_DATABASE_URL",
    "REDIS_URL",
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "S3_ENDPOINT",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "S3_BUCKET",
)


def _port(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "")
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"{variable} must be a TCP port, got {raw!r}")
    return int(raw)


def _ports(variable: str, default: list[int]) -> list[int]:
    """A comma-separated list of as many TCP ports as the default has (etcd: client,peer pairs in a row)."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return list(default)
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != len(default) or not all(part.isdigit() and 0 < int(part) < 65536 for part in parts):
        raise SystemExit(f"{variable} must be {len(default)} comma-separated TCP ports, got {raw!r}")
    return [int(part) for part in parts]


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _flag(variable: str, default: bool) -> bool:
    raw = os.environ.get(variable, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE + _FALSE:
        raise SystemExit(f"{variable} must be true or false, got {raw!r}")
    return raw in _TRUE


def options_from_environment() -> StackOptions:
    ports = StackPorts(
        envoy=_port("EMONEY_ENVOY_PORT", MAKE_RUN_DEFAULT_PORTS["envoy"]),
        envoy_admin=_port("EMONEY_ENVOY_ADMIN_PORT", MAKE_RUN_DEFAULT_PORTS["envoy_admin"]),
        envoy_tls=_port("EMONEY_ENVOY_TLS_PORT", MAKE_RUN_DEFAULT_PORTS["envoy_tls"]),
        first_grpc=_port("EMONEY_GRPC_PORT", MAKE_RUN_DEFAULT_PORTS["first_grpc"]),
        postgres=_port("EMONEY_POSTGRES_PORT", MAKE_RUN_DEFAULT_PORTS["postgres"]),
        redis=_port("EMONEY_REDIS_PORT", MAKE_RUN_DEFAULT_PORTS["redis"]),
        openbao=_port("EMONEY_OPENBAO_PORT", MAKE_RUN_DEFAULT_PORTS["openbao"]),
        s3=_port("EMONEY_S3_PORT", MAKE_RUN_DEFAULT_PORTS["s3"]),
        first_metrics=_port("EMONEY_METRICS_PORT", MAKE_RUN_DEFAULT_PORTS["first_metrics"]),
    )
    processes = os.environ.get("EMONEY_SERVER_PROCESSES", "") or str(default_server_processes())
    if not processes.isdigit() or not 1 <= int(processes) <= MAX_SERVER_PROCESSES:
        raise SystemExit(f"EMONEY_SERVER_PROCESSES must be 1..{MAX_SERVER_PROCESSES}, got {processes!r}")
    topology = os.environ.get("EMONEY_TOPOLOGY", "").strip().lower() or "single"
    defaults = HaPorts()
    ha_ports = HaPorts(
        postgres=_ports("EMONEY_HA_POSTGRES_PORTS", defaults.postgres),
        patroni=_ports("EMONEY_HA_PATRONI_PORTS", defaults.patroni),
        etcd=list(zip(*[iter(_ports("EMONEY_HA_ETCD_PORTS", [p for pair in defaults.etcd for p in pair]))] * 2)),
        redis=_ports("EMONEY_HA_REDIS_PORTS", defaults.redis),
    )
    if topology not in TOPOLOGIES:
        raise SystemExit(f"EMONEY_TOPOLOGY must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
    return StackOptions(
        state_dir=Path(os.environ.get("EMONEY_STATE_DIR", "") or ROOT / ".local").resolve(),
        topology=topology,
        ha_ports=ha_ports,
        ports=ports,
        server_processes=int(processes),
        external={name: os.environ[name] for name in EXTERNAL_VARIABLES if os.environ.get(name)},
        # The terminals' TLS listener is always on here; client certificates are optional unless
        # EMONEY_TERMINAL_MTLS=true.
        terminal_tls=True,
        terminal_mtls=_flag("EMONEY_TERMINAL_MTLS", False),
        server_environment={"EMONEY_RATE_LIMITS": os.environ.get("EMONEY_RATE_LIMITS") or DEVELOPER_RATE_LIMITS},
    )


def _banner(stack: LocalStack) -> str:
    endpoints = stack.endpoints
    assert endpoints is not None
    lines = [
        "",
        "e-Money platform is up.",
        "",
        f"  Back office (browser)     http://{endpoints.envoy}/  (sign in as the demo-city tenant_admin or operator below)",
        f"  Envoy (all three faces)   http://{endpoints.envoy}",
        f"    native gRPC             {_tool('grpcurl')} -plaintext {endpoints.envoy} list",
        f"    JSON over HTTP          curl http://{endpoints.envoy}/v1/serverInfo",
        f"                            curl http://{endpoints.envoy}/v1/tenants/demo-city",
        f"    grpc-web                POST http://{endpoints.envoy}/<package.Service>/<Method>, content-type application/grpc-web+proto",
        f"    API document            http://{endpoints.envoy}/openapi.json  (browse it: http://{endpoints.envoy}/docs)",
        *_tls_lines(stack),
        f"  Envoy admin               http://{endpoints.envoy_admin}",
        *stack.topology_lines(),
        *([f"  Backups                   s3 bucket {stack.seaweedfs.backup_bucket} (its own credentials): make backup,"
           " make restore [TO=...], make restore-drill"] if stack.backup_target() is not None else []),
        f"  gRPC servers              {', '.join(endpoints.grpc_servers)}",
        *_metrics_lines(endpoints.metrics),
        f"  PostgreSQL (owner)        {_redacted(endpoints.owner_database_url)}",
        f"  Redis                     {_redacted(endpoints.redis_url)}",
        f"  OpenBao                   {endpoints.vault_address}",
        f"  S3 (SeaweedFS)            http://{endpoints.s3_endpoint}  bucket {endpoints.s3_bucket}",
        f"  Logs                      {stack.log_dir}",
        f"  Local-only secrets        {stack.state_dir}/*.json, {stack.state_dir}/data/*.json (mode 0600, git-ignored)",
        "",
        "Demo logins (tenant, role, e-mail, password):",
    ]
    demo = stack.demo
    if demo is not None:
        lines += [f"  {user.tenant:<10} {user.role:<15} {user.email:<34} {user.password}" for user in demo.users]
        lines += [
            f"  demo-city  terminal        client id {demo.terminal.client_id}  secret {demo.terminal.client_secret}",
            "",
            "Log in (JSON):",
            f"  curl -s http://{endpoints.envoy}/v1/tenants/demo-city/sessions:login -H 'content-type: application/json' \\",
            f"       -d '{{\"email\": \"{demo.users[1].email}\", \"password\": \"{demo.users[1].password}\"}}'",
        ]
        if endpoints.envoy_tls is not None and stack.pki is not None:
            pki = stack.pki
            lines += [
                "",
                "The demo terminal over TLS (its secret in $EMONEY_TERMINAL_SECRET):",
                f"  {_tool('emoney-terminal')} --target {endpoints.envoy_tls} --ca {pki.ca_cert_path} \\",
                f"       --client-cert {pki.client_cert_path} --client-key {pki.client_key_path} \\",
                f"       --client-id {demo.terminal.client_id} list --limit 3",
            ]
    lines += ["", *stack.demo_story, "", "Press Ctrl-C to stop everything.", ""]
    return "\n".join(lines)


def _start_backup_agent(stack: LocalStack) -> BackupAgent | None:
    """WAL shipping and scheduled base backups of the local database (not of external ones)."""
    target = stack.backup_target()
    return None if target is None else BackupAgent(target, Schedule.from_environment()).start()


def _tls_lines(stack: LocalStack) -> list[str]:
    """Where terminals connect over TLS, and the files they need."""
    endpoints, pki = stack.endpoints, stack.pki
    if endpoints is None or endpoints.envoy_tls is None or pki is None:
        return []
    required = stack.options.terminal_mtls
    client_certificate = f"-cert {pki.client_cert_path} -key {pki.client_key_path} "
    return [
        f"  Terminals over TLS        {endpoints.envoy_tls}  (HTTP/2; client certificate "
        + ("REQUIRED: mutual TLS)" if required else "optional: EMONEY_TERMINAL_MTLS=true requires it)"),
        f"    CA certificate          {pki.ca_cert_path}",
        f"    demo terminal cert/key  {pki.client_cert_path}",
        f"                            {pki.client_key_path}",
        f"    native gRPC             {_tool('grpcurl')} -cacert {pki.ca_cert_path} {client_certificate if required else ''}{endpoints.envoy_tls} list",
    ]


def _metrics_lines(addresses: list[str]) -> list[str]:
    """Each server's Prometheus endpoint, one line each."""
    return [
        f"  {'Prometheus metrics' if index == 0 else '':<26}http://{address}/metrics  (server-{index})"
        for index, address in enumerate(addresses)
    ]


def _tool(name: str) -> str:
    """How to run a command of the virtual environment from where the stack was started (for example
    `.venv/bin/grpcurl`): its bin folder is not on PATH, so a bare `grpcurl` would not be found."""
    path = Path(sys.prefix) / "bin" / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _redacted(url: str) -> str:
    from server.logs import redact_url

    return redact_url(url) if url else "(external)"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = options_from_environment()
    stop_requested = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop_requested.set())
    stack = LocalStack(options)
    print(f"Starting the local stack in {options.state_dir} ...", flush=True)
    try:
        stack.start()
        # The banner says the platform is up: only once Envoy routes to every server.
        stack.wait_until_serving(SERVING_TIMEOUT_S)
    except (ServiceStartError, TimeoutError) as error:
        stack.stop()
        print(f"emoney-stack: could not start: {error}", file=sys.stderr)
        return 1
    try:
        stack.demo_story = play_demo_story(stack.endpoints.envoy, stack.demo)
    except grpc.RpcError as error:
        stack.demo_story = [f"Demo story could not run: {error.code().name} {error.details()}"]
    agent = _start_backup_agent(stack)
    print(_banner(stack), flush=True)
    try:
        while not stop_requested.wait(timeout=1.0):
            dead = [process.name for process in stack.servers if not process.alive()]
            if dead:
                print(f"emoney-stack: {', '.join(dead)} exited; see {stack.log_dir}", file=sys.stderr)
                break
    finally:
        print("Stopping ...", flush=True)
        if agent is not None:
            agent.stop()
        stack.stop()
        print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
