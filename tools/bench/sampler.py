"""Where the CPU goes and how much memory the servers hold, sampled with psutil while the bench runs.

A background thread samples every `interval_s`: the cumulative CPU time (user + system) of each
group of processes (k6, Envoy, the Python servers, PostgreSQL, Redis, the other services), counting
each process's children, and the resident memory (RSS) of every server process. Afterwards
`cpu_between(start, end)` says how many cores each group used in a time window (a scenario's measured
phase), and `rss_between` the servers' largest RSS in it.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil

MACHINE = "machine"


@dataclass
class _Sample:
    at: float
    cpu_s: dict[str, float]
    rss_bytes: dict[str, int]
    counters: dict[str, float] = field(default_factory=dict)


@dataclass
class Sampler:
    # group name -> function returning the group's root pids now (a group's roots may change: k6)
    groups: dict[str, Callable[[], list[int]]]
    # server name -> pid, for RSS
    servers: dict[str, int]
    # groups counted without their children (the bench runner itself, whose children are the rest)
    flat_groups: frozenset[str] = frozenset()
    interval_s: float = 0.5
    # Cumulative counters read at each sample (the database's WAL bytes and fsyncs), for counters_between.
    counters: Callable[[], dict[str, float]] | None = None
    samples: list[_Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._processes: dict[int, psutil.Process] = {}
        # CPU seconds last seen per (pid, create_time): a process that exits keeps what it used.
        self._last_cpu: dict[str, dict[tuple[int, float], float]] = {name: {} for name in self.groups}
        self._lock = threading.Lock()

    def start(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def _process(self, pid: int) -> psutil.Process | None:
        process = self._processes.get(pid)
        try:
            if process is None or not process.is_running():
                process = psutil.Process(pid)
                self._processes[pid] = process
            return process
        except psutil.Error:
            self._processes.pop(pid, None)
            return None

    def _tree(self, pids: list[int], flat: bool = False) -> list[psutil.Process]:
        tree: list[psutil.Process] = []
        for pid in pids:
            root = self._process(pid)
            if root is None:
                continue
            tree.append(root)
            if flat:
                continue
            try:
                tree.extend(root.children(recursive=True))
            except psutil.Error:
                pass
        return tree

    def sample(self) -> None:
        now = time.time()
        with self._lock:
            cpu: dict[str, float] = {}
            for name, roots in self.groups.items():
                seen = self._last_cpu[name]
                for process in self._tree(roots(), flat=name in self.flat_groups):
                    try:
                        with process.oneshot():
                            times = process.cpu_times()
                            seen[(process.pid, process.create_time())] = times.user + times.system
                    except psutil.Error:
                        continue
                cpu[name] = sum(seen.values())
            # The whole machine's busy CPU seconds: what is left after our groups is someone else's load.
            # (guest time is already counted in user time; iowait is idle waiting on disk.)
            machine = psutil.cpu_times()._asdict()
            cpu[MACHINE] = sum(machine.values()) - sum(machine.get(k, 0.0) for k in ("idle", "iowait", "guest", "guest_nice"))
            rss: dict[str, int] = {}
            for name, pid in self.servers.items():
                process = self._process(pid)
                try:
                    rss[name] = process.memory_info().rss if process is not None else 0
                except psutil.Error:
                    rss[name] = 0
            self.samples.append(_Sample(now, cpu, rss, self.counters() if self.counters else {}))

    def _at(self, at: float, values: Callable[[_Sample], dict[str, float]]) -> dict[str, float]:
        """Cumulative values (CPU seconds per group, or counters) at time `at`, interpolated between samples."""
        times = [sample.at for sample in self.samples]
        index = bisect.bisect_left(times, at)
        if index <= 0:
            return dict(values(self.samples[0]))
        if index >= len(self.samples):
            return dict(values(self.samples[-1]))
        before, after = values(self.samples[index - 1]), values(self.samples[index])
        weight = (at - self.samples[index - 1].at) / max(self.samples[index].at - self.samples[index - 1].at, 1e-9)
        return {name: before.get(name, 0.0) + weight * (after.get(name, 0.0) - before.get(name, 0.0)) for name in after}

    def counters_between(self, start: float, end: float) -> dict[str, float]:
        """How much each counter grew between start and end."""
        with self._lock:
            if not self.samples or end <= start:
                return {}
            first, last = self._at(start, lambda s: s.counters), self._at(end, lambda s: s.counters)
        return {name: max(0.0, last[name] - first.get(name, 0.0)) for name in last}

    def cpu_between(self, start: float, end: float) -> dict[str, float]:
        """Cores used per group between start and end (1.0 = one core busy all the time)."""
        with self._lock:
            if not self.samples or end <= start:
                return {}
            first, last = self._at(start, lambda s: s.cpu_s), self._at(end, lambda s: s.cpu_s)
        return {name: round(max(0.0, last[name] - first.get(name, 0.0)) / (end - start), 3) for name in last}

    def rss_between(self, start: float, end: float) -> dict[str, int]:
        """Largest RSS (bytes) per server among the samples taken between start and end."""
        with self._lock:
            window = [sample for sample in self.samples if start <= sample.at <= end] or self.samples[-1:]
        peak: dict[str, int] = {}
        for sample in window:
            for name, value in sample.rss_bytes.items():
                peak[name] = max(peak.get(name, 0), value)
        return peak

    def rss_overall(self) -> dict[str, dict[str, int]]:
        """Per server: its largest and its last RSS over the whole run."""
        with self._lock:
            samples = list(self.samples)
        result: dict[str, dict[str, int]] = {}
        for name in self.servers:
            values = [sample.rss_bytes.get(name, 0) for sample in samples]
            result[name] = {"max_bytes": max(values, default=0), "last_bytes": values[-1] if values else 0}
        return result
