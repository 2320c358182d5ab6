"""Faults, one after another, each observed while it lasts and after it heals.

Runs in a thread beside the workload (stopping and starting processes blocks). Each fault:

    kill_server       kill -9 one of the two servers; Envoy must mark it unhealthy and stop sending to it,
                      the other server carries the traffic; start it again on its port, Envoy sends to it again
    restart_postgres  fast shutdown of PostgreSQL, start again with its data on its port
    crash_postgres    kill -9 of every PostgreSQL process (WAL recovery on start)
                      both: every server reports NOT_SERVING, then SERVING again with the same pid
                      (its pools reconnected, no restart)
    stop_redis        the same for Redis (AOF kept)
    stop_openbao      OpenBao stops and starts sealed; it is unsealed again. Not a dependency of a call in
                      flight: servers stay SERVING and payments go on
    stop_s3           SeaweedFS stops; payments go on, receipts wait (the writers' cursors stay) and are all written
                      once it is back

On the high-availability topology (`--topology ha`), PostgreSQL faults are Patroni's business:

    kill_primary      kill -9 of the primary's PostgreSQL (postmaster and backends, not Patroni): Patroni
                      promotes the synchronous standby; the old primary comes back as a standby by itself
    switchover        a planned switchover to the synchronous standby (Patroni's REST API)
    kill_etcd_member  kill -9 of one etcd member of three: the quorum holds, Patroni keeps its leader
                      throughout; the member is started again and rejoins
    kill_redis_master kill -9 of the Redis Cluster master holding the bank's tenant's keys: its replica is
                      promoted; the tenant's calls answer UNAVAILABLE meanwhile; the old master returns as a replica
    kill_volume_server  kill -9 of one SeaweedFS volume server of three: every object keeps a copy on
                      another (replication 001), new volumes go to the two left; payments go on

`FaultRecord.problems` lists every expectation that did not hold; the checks fail on any.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import hvac
import psycopg
from grpc_health.v1 import health_pb2

from localstack.health import envoy_upstreams, health_status
from localstack.processes import ServiceStartError
from localstack.stack import LocalStack

FAULT_KINDS = ("kill_server", "restart_postgres", "stop_redis", "stop_openbao", "stop_s3", "crash_postgres")
HA_FAULT_KINDS = ("kill_primary", "kill_server", "switchover", "kill_redis_master", "kill_etcd_member", "kill_volume_server",
                  "stop_openbao", "stop_s3")
CLUSTER_WHOLE_WITHIN_S = 120.0  # the old primary rewound and streaming again as a standby
NOT_SERVING_WITHIN_S = 15.0  # probes run every second with a one-second timeout
RECOVERY_WITHIN_S = 60.0
# A dependency back, its servers must serve again soon whatever the outage lasted (pools reconnect with a
# bounded backoff, storage/database.py); generous for a loaded machine.
SERVING_AGAIN_WITHIN_S = 15.0
ENVOY_WITHIN_S = 15.0  # health checked every second, unhealthy after two failures
RECEIPTS_WITHIN_S = 90.0  # the receipt writer backs off up to 30 s while S3 is away
POLL_S = 0.2
START_ATTEMPTS = 3
MAX_ROUNDS = 10_000  # far beyond any duration; the clock ends the run
SERVING = "SERVING"


@dataclass
class FaultRecord:
    kind: str
    target: str
    started_s: float
    healed_s: float = 0.0  # when the component was started again
    recovered_s: float = 0.0  # when everything was healthy again
    observations: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class FaultInjector:
    def __init__(self, stack: LocalStack, clock: Callable[[], float], outage_s: float, calm_s: float) -> None:
        self.stack = stack
        self.clock = clock
        self.outage_s = outage_s
        self.calm_s = calm_s
        self.records: list[FaultRecord] = []
        self._kills = 0

    def run(self, kinds: list[str], until_s: float) -> list[FaultRecord]:
        """Each kind once, then round again while the clock is below until_s."""
        for round_number in range(MAX_ROUNDS):
            for kind in kinds:
                if round_number and self.clock() >= until_s:
                    return self.records
                time.sleep(self.calm_s)
                self.records.append(getattr(self, kind)())
            if self.clock() >= until_s:
                break
        return self.records

    # -- the faults -----------------------------------------------------------------------------------

    def kill_server(self) -> FaultRecord:
        index = self._kills % len(self.stack.servers)
        self._kills += 1
        address = self.stack.endpoints.grpc_servers[index]
        record = FaultRecord("kill_server", f"server-{index} ({address})", self.clock())
        before = envoy_hosts(self.stack)
        self.stack.kill_server(index)
        marked = wait_until(lambda: envoy_hosts(self.stack).get(address, {}).get("healthy") is False, ENVOY_WITHIN_S)
        record.observations["envoy_marked_unhealthy_after_s"] = marked
        if marked is None:
            record.problems.append(f"Envoy did not mark {address} unhealthy within {ENVOY_WITHIN_S:.0f}s")
        marked_hosts = envoy_hosts(self.stack)
        self._hold(record.started_s)
        dead_hosts = envoy_hosts(self.stack)
        # Envoy must not route calls to the dead server once it knows (rq_total counts routed requests).
        routed_while_dead = _rq(dead_hosts, address) - _rq(marked_hosts, address)
        record.observations["requests_routed_to_dead_server"] = routed_while_dead
        if marked is not None and routed_while_dead:
            record.problems.append(f"Envoy routed {routed_while_dead} requests to the dead server")
        record.observations["requests_routed_before_kill"] = _rq(before, address)
        self._start_again(record, f"server-{index}", lambda: self.stack.restart_server(index))
        serving = wait_until(lambda: health(address) == SERVING, RECOVERY_WITHIN_S)
        healthy = wait_until(lambda: envoy_hosts(self.stack).get(address, {}).get("healthy") is True, ENVOY_WITHIN_S)
        record.observations["serving_after_restart_s"] = serving
        record.observations["envoy_healthy_again_after_s"] = healthy
        if serving is None or healthy is None:
            record.problems.append(f"{address} did not come back (serving {serving}, Envoy healthy {healthy})")
        back_at = _rq(envoy_hosts(self.stack), address)
        time.sleep(2.0)
        resumed = _rq(envoy_hosts(self.stack), address) - back_at
        record.observations["requests_routed_in_2s_after_return"] = resumed
        if resumed <= 0:
            record.problems.append("Envoy sent nothing to the server after it came back")
        record.recovered_s = self.clock()
        return record

    def kill_primary(self) -> FaultRecord:
        cluster = self._patroni()
        killed = cluster.kill_leader_postgres()
        # From the kill itself (finding the leader first takes a moment, while payments go on).
        record = FaultRecord("kill_primary", f"postgres primary {killed.name}", self.clock())
        self._await_new_leader(record, cluster, not_named=killed.name)
        return record

    def switchover(self) -> FaultRecord:
        cluster = self._patroni()
        record = FaultRecord("switchover", "postgres primary", self.clock())
        try:
            old, new = cluster.switchover()
            record.target = f"postgres {old} -> {new}"
        except Exception as error:  # noqa: BLE001 - Patroni refused: a problem of the run, not a crash of it
            record.problems.append(f"Patroni refused the switchover: {error}")
            old = ""
        self._await_new_leader(record, cluster, not_named=old)
        return record

    def kill_etcd_member(self) -> FaultRecord:
        cluster = self._patroni()
        member = cluster.etcd.members[self._kills % len(cluster.etcd.members)]
        self._kills += 1
        record = FaultRecord("kill_etcd_member", f"etcd {member.name}", self.clock())
        assert member.process is not None
        member.process.kill()
        leaderless = []
        while self.clock() < record.started_s + self.outage_s:
            if cluster.leader() is None:
                leaderless.append(round(self.clock() - record.started_s, 1))
            time.sleep(POLL_S * 2)
        record.observations["moments_without_a_leader_s"] = leaderless
        if leaderless:
            record.problems.append(f"Patroni lost its leader while one etcd member of three was down: {leaderless}")
        self._start_again(record, f"etcd {member.name}", lambda: _restart_etcd_member(cluster, member))
        self._await_recovery(record, self.stack.endpoints.grpc_servers)
        return record

    def kill_redis_master(self) -> FaultRecord:
        from redis.crc import key_slot

        from localstack.redis_server import RedisClusterService

        cluster = self.stack.redis
        if not isinstance(cluster, RedisClusterService):
            raise RuntimeError("this fault needs the high-availability topology (--topology ha)")
        slot = key_slot(f"{{{demo_tenant_id(self.stack)}}}".encode())  # every key of a tenant's calls carries its id as hash tag
        node = cluster.kill_master_of_slot(slot)
        record = FaultRecord("kill_redis_master", f"redis master {node.address} (slot {slot})", self.clock())
        promoted = wait_until(lambda: _promoted(cluster, slot, node.port), RECOVERY_WITHIN_S)
        record.observations["replica_promoted_after_s"] = promoted
        if promoted is None:
            record.problems.append(f"no replica took slot {slot} over within {RECOVERY_WITHIN_S:.0f}s")
        self._hold(record.started_s)
        self._start_again(record, f"redis {node.address}", lambda: cluster.restart_node(node))
        self._await_recovery(record, self.stack.endpoints.grpc_servers)
        return record

    def kill_volume_server(self) -> FaultRecord:
        from localstack.seaweedfs import SeaweedFSCluster

        cluster = self.stack.seaweedfs
        if not isinstance(cluster, SeaweedFSCluster):
            raise RuntimeError("this fault needs the high-availability topology (--topology ha)")
        index = self._kills % len(cluster.volume_servers)
        self._kills += 1
        node = cluster.kill_volume_server(index)
        record = FaultRecord("kill_volume_server", f"seaweedfs {node.name}", self.clock())
        self._hold(record.started_s)
        record.observations["health_while_down"] = {address: health(address) for address in self.stack.endpoints.grpc_servers}
        self._start_again(record, node.name, lambda: cluster.restart_volume_server(index))
        self._await_recovery(record, self.stack.endpoints.grpc_servers)
        return record

    def _patroni(self):
        from localstack.patroni import PatroniCluster

        if not isinstance(self.stack.postgres, PatroniCluster):
            raise RuntimeError("this fault needs the high-availability topology (--topology ha)")
        return self.stack.postgres

    def _await_new_leader(self, record: FaultRecord, cluster, not_named: str) -> None:
        """A leader other than `not_named` takes writes; then the cluster is whole again (three members
        running, a synchronous standby) and every server SERVING."""
        def promoted() -> bool:
            leader = cluster.leader()
            return leader is not None and leader.name != not_named

        took = wait_until(promoted, RECOVERY_WITHIN_S)
        record.observations["new_primary_after_s"] = took
        if took is None:
            record.problems.append(f"no new primary within {RECOVERY_WITHIN_S:.0f}s")
        record.healed_s = self.clock()

        def whole() -> bool:
            try:
                cluster.wait_ready(timeout_s=0.1)
                return True
            except Exception:  # noqa: BLE001 - not yet
                return False

        rejoined = wait_until(whole, CLUSTER_WHOLE_WITHIN_S)
        record.observations["cluster_whole_again_after_s"] = rejoined
        if rejoined is None:
            record.problems.append(f"the cluster was not whole again within {CLUSTER_WHOLE_WITHIN_S:.0f}s: {cluster.members()}")
        self._await_recovery(record, self.stack.endpoints.grpc_servers)

    def restart_postgres(self) -> FaultRecord:
        return self._dependency_outage("restart_postgres", "postgres", crash=False)

    def crash_postgres(self) -> FaultRecord:
        return self._dependency_outage("crash_postgres", "postgres", crash=True)

    def stop_redis(self) -> FaultRecord:
        return self._dependency_outage("stop_redis", "redis", crash=False)

    def _dependency_outage(self, kind: str, service: str, crash: bool) -> FaultRecord:
        """A health dependency goes away: every server turns NOT_SERVING, then SERVING with the same pid."""
        servers = self.stack.endpoints.grpc_servers
        pids = [process.pid for process in self.stack.servers]
        record = FaultRecord(kind, service, self.clock())
        self.stack.stop_service(service, crash=crash)
        for address in servers:
            took = wait_until(lambda: health(address) == "NOT_SERVING", NOT_SERVING_WITHIN_S)
            record.observations[f"not_serving_after_s {address}"] = took
            if took is None:
                record.problems.append(f"{address} did not report NOT_SERVING without {service} (last {health(address)})")
        self._hold(record.started_s)
        self._start_service_again(record, service)
        self._await_recovery(record, servers)
        if [process.pid for process in self.stack.servers] != pids or not all(p.alive() for p in self.stack.servers):
            record.problems.append("a server process was restarted or died: its pools should have reconnected")
        record.observations["server_pids_unchanged"] = [process.pid for process in self.stack.servers] == pids
        return record

    def stop_openbao(self) -> FaultRecord:
        servers = self.stack.endpoints.grpc_servers
        record = FaultRecord("stop_openbao", "openbao", self.clock())
        self.stack.stop_service("openbao")
        self._hold(record.started_s)
        record.observations["health_while_down"] = {address: health(address) for address in servers}
        self._start_service_again(record, "openbao")
        status = hvac.Client(url=self.stack.openbao.address).sys.read_health_status(method="GET")
        record.observations["sealed_after_restart"] = status.get("sealed") if isinstance(status, dict) else None
        if record.observations["sealed_after_restart"] is not False:
            record.problems.append(f"OpenBao is not unsealed after its restart: {status}")
        self._await_recovery(record, servers)
        return record

    def stop_s3(self) -> FaultRecord:
        servers = self.stack.endpoints.grpc_servers
        record = FaultRecord("stop_s3", "seaweedfs", self.clock())
        self.stack.stop_service("seaweedfs")
        self._hold(record.started_s)
        record.observations["health_while_down"] = {address: health(address) for address in servers}
        # Payments go on meanwhile, so receipts are never all written for long: what must drain is the backlog.
        backlog_until = database_time(self.stack)
        record.observations["receipts_pending_at_end_of_outage"] = pending_receipts(self.stack, backlog_until)
        self._start_service_again(record, "seaweedfs")
        caught_up = wait_until(lambda: pending_receipts(self.stack, backlog_until) == 0, RECEIPTS_WITHIN_S)
        record.observations["receipt_backlog_written_after_s"] = caught_up
        if caught_up is None:
            left = pending_receipts(self.stack, backlog_until)
            record.problems.append(f"{left} receipts of the outage still pending {RECEIPTS_WITHIN_S:.0f}s after S3 came back")
        self._await_recovery(record, servers)
        return record

    # -- helpers ----------------------------------------------------------------------------------------

    def _hold(self, started_s: float) -> None:
        time.sleep(max(0.0, started_s + self.outage_s - self.clock()))

    def _start_again(self, record: FaultRecord, what: str, start: Callable[[], object]) -> None:
        """Start `what` again with start(); a start that fails is a problem of the run, retried (up to
        START_ATTEMPTS times) so the stack heals. The record is healed from then on."""
        for attempt in range(START_ATTEMPTS):
            try:
                start()
                break
            except ServiceStartError as error:
                record.problems.append(f"starting {what} again failed (attempt {attempt + 1}): {str(error)[:2000]}")
        record.healed_s = self.clock()

    def _start_service_again(self, record: FaultRecord, service: str) -> None:
        self._start_again(record, service, lambda: self.stack.start_service(service))

    def _await_recovery(self, record: FaultRecord, servers: list[str]) -> None:
        for address in servers:
            took = wait_until(lambda: health(address) == SERVING, RECOVERY_WITHIN_S)
            record.observations[f"serving_again_after_s {address}"] = took
            if took is None or took > SERVING_AGAIN_WITHIN_S:
                record.problems.append(f"{address} took {took}s (limit {SERVING_AGAIN_WITHIN_S:.0f}s) to be SERVING "
                                       f"after {record.target} came back")
        record.recovered_s = self.clock()


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until predicate() held (polled), or None after timeout_s."""
    started = time.monotonic()
    while True:
        if predicate():
            return round(time.monotonic() - started, 2)
        if time.monotonic() - started >= timeout_s:
            return None
        time.sleep(POLL_S)


def health(address: str, timeout_s: float = 1.0) -> str:
    """The server's overall grpc.health.v1 status name, or UNREACHABLE."""
    status = health_status(address, timeout_s=timeout_s)
    return "UNREACHABLE" if status is None else health_pb2.HealthCheckResponse.ServingStatus.Name(status)


def envoy_hosts(stack: LocalStack) -> dict[str, dict]:
    """Envoy admin /clusters for the servers' cluster: host -> {healthy, flags, rq_total}."""
    return envoy_upstreams(stack.endpoints.envoy_admin)


def _rq(hosts: dict[str, dict], address: str) -> int:
    return int(hosts.get(address, {}).get("rq_total", 0))


def pending_receipts(stack: LocalStack, created_until: datetime | None = None) -> int | None:
    """Receipts not yet written to object storage (of payments made until `created_until`, if given);
    read as the superuser: every tenant. None when the database does not answer."""
    try:
        with psycopg.connect(superuser_dsn(stack), connect_timeout=3) as connection:
            return connection.execute(
                "select count(*) from receipts_pending(%s)", (created_until,),
            ).fetchone()[0]
    except psycopg.Error:
        return None


def database_time(stack: LocalStack) -> datetime:
    with psycopg.connect(superuser_dsn(stack), connect_timeout=3) as connection:
        return connection.execute("select clock_timestamp()").fetchone()[0]


def demo_tenant_id(stack: LocalStack) -> uuid.UUID:
    """The bank's tenant (the demo tenant), read as the superuser."""
    from localstack.provisioning import DEMO_TENANT_SLUG

    with psycopg.connect(superuser_dsn(stack), connect_timeout=5) as connection:
        return connection.execute("select tenant_id from tenants where slug = %s", (DEMO_TENANT_SLUG,)).fetchone()[0]


def superuser_dsn(stack: LocalStack) -> str:
    from localstack.provisioning import DATABASE_NAME

    assert stack.postgres is not None
    return stack.postgres.dsn(DATABASE_NAME)


def _restart_etcd_member(cluster, member) -> None:
    member.process.stop(timeout_s=5.0)
    cluster.etcd.start_member(member)
    wait_until(lambda: _member_healthy(member.client_url), 30.0)


def _member_healthy(url: str) -> bool:
    from localstack.patroni import _etcd_health

    try:
        _etcd_health(url)
        return True
    except Exception:  # noqa: BLE001 - not yet
        return False


def _promoted(cluster, slot: int, old_port: int) -> bool:
    try:
        return cluster.master_of_slot(slot).port != old_port
    except Exception:  # noqa: BLE001 - the cluster is electing
        return False
