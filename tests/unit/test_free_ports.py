"""Ports for services started in parallel: a port handed out once is never handed out again by the
same process (the stack's PostgreSQL port was once given to SeaweedFS before PostgreSQL had bound it)."""

from __future__ import annotations

from localstack.processes import free_ports, reserve_port


def test_ports_handed_out_are_never_handed_out_again():
    first = free_ports(8)
    later = [port for _ in range(20) for port in free_ports(5)]
    assert len(set(first)) == 8 and len(set(later)) == 100
    assert not set(first) & set(later)


def test_a_port_chosen_by_arithmetic_is_refused_once_handed_out():
    [port] = free_ports(1)
    assert reserve_port(port) is False
    candidate = port + 1 if port < 65_535 else port - 1
    if reserve_port(candidate):  # free for this process: claimed now, so a second claim fails
        assert reserve_port(candidate) is False
    assert candidate not in free_ports(50)


def test_make_runs_default_ports_are_never_handed_out(monkeypatch):
    """free_ports never hands out `make run`'s default ports (a test holding one would stop `make run`
    from binding it): the defaults and MAKE_RUN_PORTS must not drift apart."""
    from localstack.__main__ import options_from_environment
    from localstack.processes import MAKE_RUN_PORTS

    for variable in ("EMONEY_ENVOY_PORT", "EMONEY_ENVOY_ADMIN_PORT", "EMONEY_ENVOY_TLS_PORT", "EMONEY_GRPC_PORT",
                     "EMONEY_POSTGRES_PORT", "EMONEY_REDIS_PORT", "EMONEY_OPENBAO_PORT", "EMONEY_S3_PORT",
                     "EMONEY_METRICS_PORT", "EMONEY_SERVER_PROCESSES"):
        monkeypatch.delenv(variable, raising=False)
    options = options_from_environment()
    ports = options.ports
    defaults = {ports.envoy, ports.envoy_admin, ports.envoy_tls, ports.postgres, ports.redis, ports.openbao, ports.s3}
    defaults |= set(range(ports.first_grpc, ports.first_grpc + options.server_processes))
    defaults |= set(range(ports.first_metrics, ports.first_metrics + options.server_processes))
    assert defaults <= MAKE_RUN_PORTS
    assert not MAKE_RUN_PORTS & set(free_ports(200))


def test_ports_come_from_below_the_kernels_ephemeral_range():
    """An outgoing connection's local port comes from the ephemeral range: a service's port chosen there
    could be taken by one before the service binds it (a CI run lost Envoy's port so)."""
    from pathlib import Path

    from localstack.processes import chosen_port_range

    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    chosen = free_ports(200)
    assert all(port in chosen_port_range() for port in chosen)
    assert not [port for port in chosen if low <= port <= high]


def test_another_live_process_never_gets_the_same_ports_and_its_claims_lapse_when_it_ends():
    import json
    import subprocess
    import sys

    script = ("import json, sys; from localstack.processes import free_ports; "
              "print(json.dumps(free_ports(200)), flush=True); sys.stdin.read()")
    other = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        theirs = set(json.loads(other.stdout.readline()))
        ours = set(free_ports(200))
        assert len(theirs) == 200 and len(ours) == 200
        assert not theirs & ours
        assert not any(reserve_port(port) for port in theirs)  # claimed by a live process
    finally:
        other.stdin.close()
        other.wait(timeout=30)
    assert all(reserve_port(port) for port in theirs)  # its claims lapsed with it


def test_the_local_stack_starts_half_the_cores_in_servers_unless_told(monkeypatch):
    """`make run` and `make bench` start half the machine's cores in server processes (at least one): the
    servers share the machine with PostgreSQL, Envoy and the load (localstack/stack.py says what was
    measured). EMONEY_SERVER_PROCESSES still decides when set."""
    from localstack.__main__ import options_from_environment
    from localstack.stack import default_server_processes

    assert [default_server_processes(cores) for cores in (0, 1, 2, 3, 4, 16)] == [1, 1, 1, 1, 2, 8]
    monkeypatch.delenv("EMONEY_SERVER_PROCESSES", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert default_server_processes() == 4
    assert options_from_environment().server_processes == 4
    monkeypatch.setenv("EMONEY_SERVER_PROCESSES", "3")
    assert options_from_environment().server_processes == 3
