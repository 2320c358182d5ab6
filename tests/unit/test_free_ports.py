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
