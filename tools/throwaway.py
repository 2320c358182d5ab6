"""The throw-away stack `make bench` and `make soak` run on: free ports in a folder of their own, rate
limits out of the way (they measure the platform and its faults, not the limiter — whose own tests do),
and access tokens that outlive a whole run (seeded once, the longest the server allows)."""

from __future__ import annotations

from pathlib import Path

from localstack.processes import free_ports
from localstack.stack import HA_MIN_SERVER_PROCESSES, HaPorts, LocalStack, StackOptions, StackPorts

# High enough never to refuse a call; every group and scope the tools' calls meet.
UNLIMITED_RATE_LIMITS = ",".join(
    f"{group}.{scope}=100000/s:100000" for group in ("default", "credentials") for scope in ("address", "principal", "tenant")
)


def throwaway_stack(state_dir: Path, server_processes: int, topology: str = "single",
                    server_environment: dict[str, str] | None = None) -> LocalStack:
    """A stack on free ports in state_dir (not started yet); topology "ha" runs at least three servers."""
    if topology == "ha":
        server_processes = max(server_processes, HA_MIN_SERVER_PROCESSES)
    envoy, admin, postgres, redis, openbao, s3, *server_ports = free_ports(6 + server_processes)
    return LocalStack(
        StackOptions(
            state_dir=state_dir,
            topology=topology,
            ha_ports=HaPorts.free() if topology == "ha" else HaPorts(),
            ports=StackPorts(envoy=envoy, envoy_admin=admin, first_grpc=server_ports[0], postgres=postgres,
                             redis=redis, openbao=openbao, s3=s3),
            server_processes=server_processes,
            grpc_ports=server_ports,
            server_environment={"EMONEY_RATE_LIMITS": UNLIMITED_RATE_LIMITS, "EMONEY_ACCESS_TOKEN_TTL_S": "3600",
                                **(server_environment or {})},
        )
    )
