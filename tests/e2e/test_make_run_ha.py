"""`EMONEY_TOPOLOGY=ha make run` (what it runs: `python -m localstack`): the banner names the topology,
every node and who is primary; the demo story plays; `make backup` and `make restore-drill` work on it
(the backups come from whichever node is primary); Ctrl-C stops it all."""

from __future__ import annotations

import re

from localstack.processes import free_ports
from localstack.redis_server import free_cluster_ports
from tests.e2e.test_make_backup import _make
from tests.e2e.test_make_run import _processes_using, _start, _stop, make_run_environment


def test_ha_make_run_prints_the_topology_plays_the_story_and_backs_up(tmp_path):
    state_dir = tmp_path / "state"
    ha = free_ports(12)
    environment = {
        **make_run_environment(state_dir, servers=3),
        "EMONEY_TOPOLOGY": "ha",
        "EMONEY_HA_POSTGRES_PORTS": ",".join(map(str, ha[0:3])),
        "EMONEY_HA_PATRONI_PORTS": ",".join(map(str, ha[3:6])),
        "EMONEY_HA_ETCD_PORTS": ",".join(map(str, ha[6:12])),
        "EMONEY_HA_REDIS_PORTS": ",".join(map(str, free_cluster_ports())),
    }
    process, banner = _start(environment, tmp_path / "run.log")
    try:
        assert "Topology                  ha" in banner
        roles = re.findall(r"PostgreSQL pg\d\s+127\.0\.0\.1:(\d+)\s+(\w+)", banner)
        assert sorted(role for _, role in roles) == ["leader", "replica", "sync_standby"], banner
        assert {int(port) for port, _ in roles} == set(ha[0:3])
        assert "Redis Cluster" in banner and "SeaweedFS volume-" in banner, banner
        assert len(re.search(r"gRPC servers\s+(.*)", banner).group(1).split(",")) >= 3
        assert "available now: 40.00 EUR" in banner  # the demo story played on the HA stack
        taken = _make("backup", environment)
        assert taken.returncode == 0, taken.stdout + taken.stderr
        drilled = _make("restore-drill", environment)
        assert drilled.returncode == 0 and '"ok": true' in drilled.stdout, drilled.stdout + drilled.stderr
    finally:
        _stop(process)
    assert _processes_using(state_dir) == []
