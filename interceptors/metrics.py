"""Metrics: call counts and latency per method and status code (recorded by interceptors/pipeline.py).

Kept in process (no dependency); `server.metrics_endpoint` serves them in the
Prometheus text format when `EMONEY_METRICS_ADDRESS` is set.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc


if TYPE_CHECKING:
    from storage.backup_status import BackupStatus
    from storage.group_commit import GroupCommitStats

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000)


@dataclass
class LatencyHistogram:
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    total_ms: float = 0.0
    count: int = 0

    def observe(self, value_ms: float) -> None:
        self.bucket_counts[bisect.bisect_left(LATENCY_BUCKETS_MS, value_ms)] += 1
        self.total_ms += value_ms
        self.count += 1


class MetricsRegistry:
    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.latency: dict[str, LatencyHistogram] = defaultdict(LatencyHistogram)
        # Reads by where they ran ("replica", "primary"): storage.unit_of_work.UnitOfWorkFactory.reads.
        self.database_reads: dict[str, int] = {}
        # The backup agent's last pass as the health probe last read it (server/health.py backup_probe);
        # None: no agent heard from.
        self.backup: BackupStatus | None = None
        # Group commit's figures (storage/group_commit.py) by what it batches ("transfers", "charges",
        # "codes"); empty when it is off.
        self.group_commits: dict[str, GroupCommitStats] = {}

    def record(self, method: str, code: grpc.StatusCode, elapsed_ms: float) -> None:
        self.calls[(method, code.name)] += 1
        self.latency[method].observe(elapsed_ms)

    def render_prometheus(self) -> str:
        lines = ["# TYPE emoney_grpc_calls_total counter"]
        for (method, code), count in sorted(self.calls.items()):
            lines.append(f'emoney_grpc_calls_total{{method="{method}",code="{code}"}} {count}')
        lines.append("# TYPE emoney_grpc_latency_ms histogram")
        for method, histogram in sorted(self.latency.items()):
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS_MS, "+Inf"), histogram.bucket_counts):
                cumulative += count
                lines.append(f'emoney_grpc_latency_ms_bucket{{method="{method}",le="{bound}"}} {cumulative}')
            lines.append(f'emoney_grpc_latency_ms_sum{{method="{method}"}} {histogram.total_ms:.3f}')
            lines.append(f'emoney_grpc_latency_ms_count{{method="{method}"}} {histogram.count}')
        if self.database_reads:
            lines.append("# TYPE emoney_database_reads_total counter")
            for served_by, count in sorted(self.database_reads.items()):
                lines.append(f'emoney_database_reads_total{{served_by="{served_by}"}} {count}')
        lines.extend(self._group_commit_lines())
        lines.extend(self._backup_lines())
        return "\n".join(lines) + "\n"

    def _group_commit_lines(self) -> list[str]:
        if not self.group_commits:
            return []
        figures = (
            ("emoney_group_commit_batches_total", "counter", lambda stats: str(stats.batches)),
            ("emoney_group_commit_items_total", "counter", lambda stats: str(stats.items)),
            ("emoney_group_commit_largest_batch", "gauge", lambda stats: str(stats.largest_batch)),
            ("emoney_group_commit_wait_seconds_total", "counter", lambda stats: f"{stats.wait_seconds_total:.6f}"),
            ("emoney_group_commit_longest_wait_seconds", "gauge", lambda stats: f"{stats.longest_wait_s:.6f}"),
        )
        lines = []
        for name, kind, value in figures:
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f'{name}{{of="{of}"}} {value(stats)}' for of, stats in sorted(self.group_commits.items()))
        return lines

    def _backup_lines(self) -> list[str]:
        status = self.backup
        lines = ["# TYPE emoney_backup_agent_seen gauge", f"emoney_backup_agent_seen {int(status is not None)}"]
        if status is None:
            return lines
        figures = {
            "emoney_backup_status_age_seconds": status.age_s(status.checked_at),
            "emoney_backup_failing": int(status.last_error is not None),
            "emoney_backup_last_success_age_seconds": status.age_s(status.last_success_at),
            "emoney_backup_last_base_backup_age_seconds": status.age_s(status.last_base_backup_at),
            "emoney_backup_wal_backlog_segments": status.wal_backlog,
        }
        for name, value in figures.items():
            if value is not None:
                lines.extend((f"# TYPE {name} gauge", f"{name} {value:g}"))
        return lines
