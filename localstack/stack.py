"""The whole local platform, for real: PostgreSQL, Redis, OpenBao, SeaweedFS,
N gRPC server processes and Envoy, all on loopback, data under one folder.

`make run` uses it with fixed default ports and `.local/` as the folder (so a
restart keeps the data); the tests use it with free ports and a temporary
folder. Any backing service can be an external one instead, given by the same
environment variables production uses.
"""

from __future__ import annotations

import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from localstack import provisioning
from localstack.certificates import LocalPki, ensure_local_pki
from localstack.envoy import EnvoyService, start_envoy
from localstack.health import wait_for_envoy_upstreams_healthy, wait_for_serving
from localstack.openbao import OpenBaoService, start_openbao
from localstack.patroni import PatroniCluster, start_patroni
from localstack.postgres import PostgresService, start_postgres
from localstack.processes import MAKE_RUN_HA_PORTS, ManagedProcess, ServiceStartError, free_ports, wait_for_tcp
from localstack.redis_server import RedisClusterService, RedisService, free_cluster_ports, start_redis, start_redis_cluster
from localstack.seaweedfs import SeaweedFSCluster, SeaweedFSService, start_seaweedfs, start_seaweedfs_cluster

if TYPE_CHECKING:
    from localstack.backup import BackupTarget

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR_PATH = ROOT / "generated" / "emoney.binpb"
SERVER_START_TIMEOUT_S = 30.0
# Each local backing service and the variable of StackOptions.external that names an external one
# instead (then the local one is not started).
BACKING_SERVICES = {"postgres": "DATABASE_URL", "redis": "REDIS_URL", "openbao": "VAULT_ADDR", "seaweedfs": "S3_ENDPOINT"}

logger = logging.getLogger("emoney.localstack")


@dataclass
class StackPorts:
    envoy: int = 8080
    envoy_admin: int = 9901
    # The terminals' TLS listener (only with StackOptions.terminal_tls).
    envoy_tls: int = 8443
    first_grpc: int = 50051
    # Server n serves Prometheus metrics on first_metrics + n; None: metrics off (EMONEY_METRICS_ADDRESS unset).
    first_metrics: int | None = None
    postgres: int = 5432
    redis: int = 6379
    openbao: int = 8200
    s3: int = 8333


TOPOLOGIES = ("single", "ha")
# The high-availability topology runs at least this many gRPC servers behind Envoy.
HA_MIN_SERVER_PROCESSES = 3


def default_server_processes(cores: int | None = None) -> int:
    """How many gRPC server processes the local stack starts when nobody says: half the machine's cores,
    at least one (`EMONEY_SERVER_PROCESSES` and `make bench --server-processes` override it).

    Why not one per core: here every server shares the machine with PostgreSQL, Envoy, Redis, the
    object store and the load (a person's clicks or the bench's k6), and group commit forms a batch per
    process. Measured with `make bench` on the 2-core machine (2026-12-06, the same code, back to back):
    one server process did more than two in every scenario — P2P 1,298 against 970 transfers/s, the no-op
    3,106 against 2,781 calls/s, statement reads 822 against 715/s, charges 529 against 535 (the same) —
    with half the WAL fsyncs and less CPU per transfer in both the servers and PostgreSQL (README,
    Performance). A deployment whose servers have machines of their own sets EMONEY_SERVER_PROCESSES to
    their cores."""
    cores = os.cpu_count() if cores is None else cores
    return max(1, (cores or 1) // 2)


@dataclass
class HaPorts:
    """The high-availability topology's extra ports: a PostgreSQL port and a Patroni REST port per node,
    and a (client, peer) pair per etcd member."""

    postgres: list[int] = field(default_factory=lambda: list(MAKE_RUN_HA_PORTS["postgres"]))
    patroni: list[int] = field(default_factory=lambda: list(MAKE_RUN_HA_PORTS["patroni"]))
    etcd: list[tuple[int, int]] = field(default_factory=lambda: list(MAKE_RUN_HA_PORTS["etcd"]))
    redis: list[int] = field(default_factory=lambda: list(MAKE_RUN_HA_PORTS["redis"]))

    @classmethod
    def free(cls) -> "HaPorts":
        """Free ports for all of it (tests, bench, soak)."""
        ports = free_ports(12)
        return cls(ports[0:3], ports[3:6], list(zip(ports[6:9], ports[9:12])), free_cluster_ports())


@dataclass
class StackOptions:
    state_dir: Path
    ports: StackPorts = field(default_factory=StackPorts)
    # "single": one PostgreSQL, as fast to start as possible; "ha": PostgreSQL on three nodes managed by
    # Patroni with etcd, synchronous replication (localstack/patroni.py), and at least three servers.
    topology: str = "single"
    ha_ports: HaPorts = field(default_factory=HaPorts)
    server_processes: int = 2
    host: str = "127.0.0.1"
    # Explicit server ports (tests use free ones); default: first_grpc, first_grpc + 1, ...
    grpc_ports: list[int] | None = None
    log_level: str = "INFO"
    # Extra environment for every server process (tests loosen rate limits with EMONEY_RATE_LIMITS).
    server_environment: dict[str, str] = field(default_factory=dict)
    # External services (production-style); when set, the local one is not started.
    external: dict[str, str] = field(default_factory=dict)
    # Envoy's second listener for terminals over TLS, on ports.envoy_tls, with certificates from
    # state_dir/pki (localstack/certificates.py). Off unless asked for (`make run` asks), so that
    # stacks that do not need it never bind the fixed port.
    terminal_tls: bool = False
    # Mutual TLS on that listener: a terminal without a certificate from the local CA is refused.
    # Off: certificates are asked for and checked when presented, but not required.
    terminal_mtls: bool = False


@dataclass
class Endpoints:
    envoy: str
    envoy_admin: str
    grpc_servers: list[str]
    database_url: str
    owner_database_url: str
    redis_url: str
    vault_address: str
    vault_token: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str
    # The terminals' TLS listener ("127.0.0.1:8443"), None when it is off.
    envoy_tls: str | None = None
    # Each server's Prometheus endpoint (host:port, GET /metrics), in server order; empty when off.
    metrics: list[str] = field(default_factory=list)
    # Standbys for reads (ha topology), "" otherwise.
    database_read_url: str = ""


class LocalStack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.state_dir = options.state_dir
        self.log_dir = options.state_dir / "logs"
        if options.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {options.topology!r}")
        self.postgres: PostgresService | PatroniCluster | None = None
        self.redis: RedisService | RedisClusterService | None = None
        self.openbao: OpenBaoService | None = None
        self.seaweedfs: SeaweedFSService | SeaweedFSCluster | None = None
        self.servers: list[ManagedProcess] = []
        self.envoy: EnvoyService | None = None
        # The local CA, Envoy's server certificate and the demo terminal's client certificate
        # (only with options.terminal_tls).
        self.pki: LocalPki | None = None
        self.endpoints: Endpoints | None = None
        self.demo: provisioning.DemoSeed | None = None
        self.demo_story: list[str] = []

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> Endpoints:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_backing_services()
            self._prepare_database()
            self._start_servers()
            self._start_envoy()
        except BaseException:
            self.stop()
            raise
        assert self.endpoints is not None
        return self.endpoints

    def _start_backing_services(self) -> None:
        """The four backing services start in parallel: they do not depend on each other."""
        external = self.options.external
        jobs = {name: start for name, start in self._starters().items() if BACKING_SERVICES[name] not in external}
        (self.state_dir / "data").mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as executor:
            futures = {name: executor.submit(job) for name, job in jobs.items()}
            errors = []
            for name, future in futures.items():
                try:
                    setattr(self, name, future.result())
                except Exception as error:  # collect all, so every started one is stopped
                    errors.append(f"{name}: {error}")
        if errors:
            raise ServiceStartError("; ".join(errors))

    def _starters(self) -> dict[str, Callable[[], Any]]:
        """How to start each local backing service on its port with its data. Started before, a service
        comes back on the listeners it chose then (OpenBao's cluster port, SeaweedFS's inner ports)."""
        data, ports, log_dir = self.state_dir / "data", self.options.ports, self.log_dir
        openbao, seaweedfs = self.openbao, self.seaweedfs
        ha = self.options.ha_ports
        return {
            "postgres": (
                (lambda: start_postgres(data / "postgres", ports.postgres, log_dir))
                if self.options.topology == "single"
                else (lambda: start_patroni(data / "patroni", ha.postgres, ha.patroni, ha.etcd, log_dir))
            ),
            "redis": (
                (lambda: start_redis(data / "redis", ports.redis, log_dir))
                if self.options.topology == "single"
                else (lambda: start_redis_cluster(data / "redis-cluster", ha.redis, log_dir))
            ),
            "openbao": lambda: start_openbao(
                data / "openbao", ports.openbao, log_dir, cluster_port=openbao.cluster_port if openbao else None
            ),
            "seaweedfs": (
                (lambda: start_seaweedfs(data / "seaweedfs", ports.s3, log_dir, ports=seaweedfs.ports if seaweedfs else None))
                if self.options.topology == "single"
                # A folder of its own: objects do not move between topologies (the keys do: same identity file).
                else (lambda: start_seaweedfs_cluster(
                    data / "seaweedfs-cluster", ports.s3, log_dir,
                    ports=seaweedfs.ports if isinstance(seaweedfs, SeaweedFSCluster) else None))
            ),
        }

    def _prepare_database(self) -> None:
        external = self.options.external
        read_url = ""
        credentials = provisioning.load_or_create_credentials(self.state_dir / "database-credentials.json")
        if self.postgres is not None:
            provisioning.provision_database(self.postgres.dsn(), credentials)
            owner_url = self.postgres.dsn(provisioning.DATABASE_NAME, provisioning.OWNER_ROLE, credentials.owner_password)
            app_url = self.postgres.dsn(provisioning.DATABASE_NAME, provisioning.APP_ROLE)
            if isinstance(self.postgres, PatroniCluster):
                # Reads that may go to a replica: any standby (random), the primary when none is up.
                read_url = self.postgres.dsn(provisioning.DATABASE_NAME, provisioning.APP_ROLE,
                                             target="prefer-standby") + "&load_balance_hosts=random"
        else:
            app_url = external["DATABASE_URL"]
            owner_url = external.get("MIGRATION_DATABASE_URL", "")
        if owner_url:
            provisioning.migrate(owner_url)
            if self.postgres is not None:
                provisioning.enable_app_login(owner_url, credentials)
            self.demo = provisioning.seed_demo(owner_url, self.state_dir / "demo-credentials.json")
        vault_address, vault_token = self._vault()
        if self.postgres is not None:
            # The application's database password lives in the secrets store; the server reads it there.
            from storage.secrets import SECRET_PREFIX, KV_MOUNT
            import hvac

            client = hvac.Client(url=vault_address, token=self.openbao.root_token if self.openbao else vault_token)
            client.secrets.kv.v2.create_or_update_secret(
                path=SECRET_PREFIX + "database", secret={"password": credentials.app_password}, mount_point=KV_MOUNT
            )
        self.endpoints = Endpoints(
            envoy=f"{self.options.host}:{self.options.ports.envoy}",
            envoy_admin=f"{self.options.host}:{self.options.ports.envoy_admin}",
            grpc_servers=[f"{self.options.host}:{port}" for port in self._grpc_ports()],
            database_url=app_url,
            database_read_url=read_url,
            owner_database_url=owner_url,
            redis_url=self.redis.url() if self.redis else external["REDIS_URL"],
            vault_address=vault_address,
            vault_token=vault_token,
            s3_endpoint=self.seaweedfs.endpoint if self.seaweedfs else external["S3_ENDPOINT"],
            s3_access_key=self.seaweedfs.access_key if self.seaweedfs else external.get("S3_ACCESS_KEY", ""),
            s3_secret_key=self.seaweedfs.secret_key if self.seaweedfs else external.get("S3_SECRET_KEY", ""),
            s3_bucket=self.seaweedfs.bucket if self.seaweedfs else external.get("S3_BUCKET", "emoney"),
            envoy_tls=f"{self.options.host}:{self.options.ports.envoy_tls}" if self.options.terminal_tls else None,
            metrics=[f"{self.options.host}:{port}" for port in self._metrics_ports()],
        )
        target = self.backup_target()
        if target is not None:
            target.save()

    def backup_target(self) -> "BackupTarget | None":
        """What `python -m localstack.backup` needs to back this stack up; None with an external database or
        object store (back those up with their own tools)."""
        from localstack.backup import BackupTarget

        if self.postgres is None or self.seaweedfs is None or self.endpoints is None:
            return None
        return BackupTarget(
            state_dir=str(self.state_dir),
            nodes=self.postgres.addresses,
            superuser_file=str(self.postgres.superuser_file),
            owner_dsn=self.endpoints.owner_database_url,
            spool_dir=str(self.postgres.spool_dir),
            s3_endpoint=self.seaweedfs.endpoint,
            s3_access_key=self.seaweedfs.backup_access_key,
            s3_secret_key=self.seaweedfs.backup_secret_key,
            bucket=self.seaweedfs.backup_bucket,
            vault_address=self.openbao.address if self.openbao else "",
            vault_init_file=str(self.openbao.init_file) if self.openbao else "",
        )

    def _grpc_ports(self) -> list[int]:
        if self.options.grpc_ports is not None:
            return list(self.options.grpc_ports)
        return [self.options.ports.first_grpc + index for index in range(self.server_count)]

    @property
    def server_count(self) -> int:
        if self.options.grpc_ports is not None:
            return len(self.options.grpc_ports)
        if self.options.topology == "ha":
            return max(HA_MIN_SERVER_PROCESSES, self.options.server_processes)
        return self.options.server_processes

    def topology_lines(self) -> list[str]:
        """Where each node is and who is primary, for the banner."""
        lines = [f"  Topology                  {self.options.topology}"]
        if isinstance(self.postgres, PatroniCluster):
            roles = {member["name"]: member.get("role", "?") for member in self.postgres.members()}
            for node, address in zip(self.postgres.nodes, self.postgres.addresses):
                lines.append(f"    PostgreSQL {node.name:<14} {address}  {roles.get(node.name, 'down'):<13}"
                             f" (Patroni {node.rest_url})")
            lines.append(f"    etcd                    {self.postgres.etcd.hosts}")
        if isinstance(self.redis, RedisClusterService):
            lines.append(f"    Redis Cluster           {self.redis.cluster_nodes()}")
        if isinstance(self.seaweedfs, SeaweedFSCluster):
            lines += self.seaweedfs.topology_lines()
        return lines

    def _metrics_ports(self) -> list[int]:
        first = self.options.ports.first_metrics
        return [] if first is None else [first + index for index in range(len(self._grpc_ports()))]

    def _vault(self) -> tuple[str, str]:
        if self.openbao is not None:
            return self.openbao.address, self.openbao.app_token
        return self.options.external["VAULT_ADDR"], self.options.external.get("VAULT_TOKEN", "")

    def server_environment(self, grpc_address: str) -> dict[str, str]:
        endpoints = self.endpoints
        assert endpoints is not None
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith(("EMONEY_", "DATABASE_", "S3_"))
        }
        environment.update(
            {
                "EMONEY_GRPC_ADDRESS": grpc_address,
                "DATABASE_URL": endpoints.database_url,
                "DATABASE_READ_URL": endpoints.database_read_url,
                "REDIS_URL": endpoints.redis_url,
                "VAULT_ADDR": endpoints.vault_address,
                "VAULT_TOKEN": endpoints.vault_token,
                "S3_ENDPOINT": endpoints.s3_endpoint,
                "S3_ACCESS_KEY": endpoints.s3_access_key,
                "S3_SECRET_KEY": endpoints.s3_secret_key,
                "S3_BUCKET": endpoints.s3_bucket,
                "EMONEY_LOG_LEVEL": self.options.log_level,
                "EMONEY_REFLECTION": "true",
                "EMONEY_DB_POOL_MAX_SIZE": os.environ.get("EMONEY_DB_POOL_MAX_SIZE", "8"),
            }
        )
        environment.update(self.options.server_environment)
        return environment

    def start_server(self, index: int) -> ManagedProcess:
        assert self.endpoints is not None
        address = self.endpoints.grpc_servers[index]
        environment = self.server_environment(address)
        if self.endpoints.metrics:
            environment["EMONEY_METRICS_ADDRESS"] = self.endpoints.metrics[index]
        process = ManagedProcess(
            f"server-{index}",
            [sys.executable, "-m", "server"],
            self.log_dir / f"server-{index}.log",
            env=environment,
            cwd=ROOT,
        ).start()
        host, port = address.rsplit(":", 1)
        wait_for_tcp(host, int(port), SERVER_START_TIMEOUT_S, process)
        return process

    def wait_until_serving(self, timeout_s: float) -> None:
        """Envoy and every server report SERVING (grpc.health.v1) and Envoy's own health checks have
        found every server healthy (admin /clusters); TimeoutError when that takes longer than
        timeout_s. start() returns once the servers listen: they may still be connecting to their
        dependencies, and Envoy may not have seen them healthy yet (it would then spread calls over
        all of them in panic mode, and /clusters would show them failed_active_hc)."""
        assert self.endpoints is not None
        for address in [self.endpoints.envoy, *self.endpoints.grpc_servers]:
            wait_for_serving(address, timeout_s)
        wait_for_envoy_upstreams_healthy(self.endpoints.envoy_admin, self.endpoints.grpc_servers, timeout_s)

    def _start_servers(self) -> None:
        self.servers = [self.start_server(index) for index in range(self.server_count)]

    def _start_envoy(self) -> None:
        assert self.endpoints is not None
        upstreams = [(address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1])) for address in self.endpoints.grpc_servers]
        origin_hosts = {self.options.host, "localhost"}
        tls: dict[str, Any] = {}
        if self.options.terminal_tls:
            self.pki = ensure_local_pki(self.state_dir / "pki", server_names=sorted({self.options.host, "127.0.0.1", "localhost"}))
            tls = {
                "tls_port": self.options.ports.envoy_tls,
                "tls_cert_path": self.pki.server_cert_path,
                "tls_key_path": self.pki.server_key_path,
                "tls_ca_path": self.pki.ca_cert_path,
                "require_client_certificate": self.options.terminal_mtls,
            }
        self.envoy = start_envoy(
            config_dir=self.state_dir / "envoy",
            log_dir=self.log_dir,
            listen_port=self.options.ports.envoy,
            admin_port=self.options.ports.envoy_admin,
            upstreams=upstreams,
            descriptor_path=DESCRIPTOR_PATH,
            allowed_origins=sorted(f"http://{host}:{self.options.ports.envoy}" for host in origin_hosts),
            **tls,
        )

    # -- faults: parts of a running stack go away and come back (tools/faults) -------------------
    # Every restart keeps the data folder and the ports, so clients, Envoy and the servers find the
    # service again where it was.

    def kill_server(self, index: int) -> None:
        """SIGKILL server `index` and its process group now, as a crash would."""
        self.servers[index].kill()

    def restart_server(self, index: int) -> ManagedProcess:
        """Start server `index` again on its port (after kill_server, or to replace a running one)."""
        self.servers[index].stop(timeout_s=15.0)
        self.servers[index] = self.start_server(index)
        return self.servers[index]

    def stop_service(self, name: str, crash: bool = False) -> None:
        """Stop a local backing service (`postgres`, `redis`, `openbao`, `seaweedfs`): gracefully, or with
        crash=True by SIGKILL to its whole process group (PostgreSQL then recovers from its WAL)."""
        service = self._backing_service(name)
        if crash:
            service.kill() if hasattr(service, "kill") else service.process.kill()
        service.stop()  # after a kill: only the clean-up (sockets, stale files)

    def start_service(self, name: str) -> None:
        """Start a stopped backing service again on its port with its data; OpenBao is unsealed again."""
        service = self._backing_service(name)
        if _alive(service):
            raise RuntimeError(f"{name} is still running")
        setattr(self, name, self._starters()[name]())

    def _backing_service(self, name: str) -> Any:
        if name not in BACKING_SERVICES:
            raise ValueError(f"no backing service {name!r}")
        service = getattr(self, name)
        if service is None:
            raise RuntimeError(f"{name} is external or not started: it cannot be stopped from here")
        return service

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything in reverse order; safe to call twice or after a failed start."""
        if self.envoy is not None:
            self.envoy.stop()
        for process in self.servers:
            process.stop(timeout_s=15.0)
        for service in (self.seaweedfs, self.openbao, self.redis, self.postgres):
            if service is not None:
                service.stop()


def _alive(service: Any) -> bool:
    """Whether a backing service (one process, or a cluster of nodes) still runs."""
    if hasattr(service, "process"):
        return service.process.alive()
    return any(node.alive() for node in getattr(service, "nodes", []))
