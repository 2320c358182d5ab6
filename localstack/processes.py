"""Child processes for the local stack: start, wait until ready, stop, and never leak.

Every backing service (PostgreSQL, Redis, OpenBao, SeaweedFS) runs as a direct child of the
Python process that started it, in its own process group, and is killed by the kernel if that
Python process dies (PR_SET_PDEATHSIG), so a crashed test run leaves no orphans holding ports.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import pwd
import queue
import random
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# Loaded once in the parent: dlopen in a freshly forked child of a threaded process can deadlock.
_LIBC = ctypes.CDLL(None, use_errno=True)
_POLL_INTERVAL_S = 0.1


class ServiceStartError(RuntimeError):
    """A service did not come up; the message carries the tail of its log."""


def free_port(host: str = LOOPBACK) -> int:
    """An OS-chosen free TCP port (free now; a race with other binders is still possible)."""
    return free_ports(1, host)[0]


# `make run`'s default ports (localstack/__main__.py reads its overrides; the servers count up from
# first_grpc, at most 64 of them, and their Prometheus endpoints from first_metrics). free_ports never hands
# them out: a test run holding 55432 at the moment `make run` starts would make PostgreSQL fail to bind.
MAKE_RUN_DEFAULT_PORTS = {
    "envoy": 8080, "envoy_admin": 9901, "envoy_tls": 8443, "first_grpc": 50051,
    "postgres": 55432, "redis": 56379, "openbao": 58200, "s3": 58333, "first_metrics": 59100,
}
# `EMONEY_TOPOLOGY=ha make run`'s extra ports: PostgreSQL and Patroni's REST API on three nodes, etcd's
# client and peer ports on three members.
MAKE_RUN_HA_PORTS = {
    "postgres": (55432, 55433, 55434),
    "patroni": (58008, 58009, 58010),
    "etcd": ((52379, 52380), (52381, 52382), (52383, 52384)),
    # Redis Cluster: 3 masters + 3 replicas; each node also takes port + 10000 for the cluster bus.
    "redis": (47379, 47380, 47381, 47382, 47383, 47384),
}
MAX_SERVER_PROCESSES = 64
MAKE_RUN_PORTS = frozenset(
    {*MAKE_RUN_DEFAULT_PORTS.values(),
     *range(MAKE_RUN_DEFAULT_PORTS["first_grpc"], MAKE_RUN_DEFAULT_PORTS["first_grpc"] + MAX_SERVER_PROCESSES),
     *MAKE_RUN_HA_PORTS["postgres"], *MAKE_RUN_HA_PORTS["patroni"],
     *(port for pair in MAKE_RUN_HA_PORTS["etcd"] for port in pair),
     *MAKE_RUN_HA_PORTS["redis"], *(port + 10_000 for port in MAKE_RUN_HA_PORTS["redis"]),
     *range(MAKE_RUN_DEFAULT_PORTS["first_metrics"], MAKE_RUN_DEFAULT_PORTS["first_metrics"] + MAX_SERVER_PROCESSES)}
)

# Where chosen ports come from: below the kernel's ephemeral range. A port taken from that range (bind to
# port 0) can be given by the kernel to any outgoing connection — a Redis client, Patroni asking etcd —
# in the seconds before its service binds it: a CI run once lost Envoy's port that way while the HA stack
# was starting. The kernel never picks a connection's local port below the range.
FIRST_CHOSEN_PORT = 12_000
_PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Ports this process has handed out. A port chosen for one service stays free until that service
# binds it, and services start in parallel: without this, another service's free_ports() (SeaweedFS
# takes a dozen) could be handed the same number in between — the second to bind dies.
_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def chosen_port_range() -> range:
    """The ports free_ports draws from: below the ephemeral range (above it when too little is left below)."""
    try:
        low, high = map(int, _PORT_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        low, high = 32_768, 60_999  # Linux's default
    if low - FIRST_CHOSEN_PORT >= 4_096:
        return range(FIRST_CHOSEN_PORT, low)
    if 65_535 - high >= 4_096:
        return range(high + 1, 65_536)
    raise ServiceStartError(f"the kernel's ephemeral port range {low}-{high} leaves no room for services' "
                            f"ports: narrow net.ipv4.ip_local_port_range")


class _PortClaims:
    """Ports claimed by the processes of this account that are still alive, in one small file.

    Two test runs (or a test run and a tool) on one machine draw from the same range; each claims its ports
    here, under an exclusive lock, so they never pick the same one. A claim lapses with its process.
    No library offers a cross-process port registry; this is the smallest one that holds.
    """

    def __init__(self) -> None:
        self.path = Path(tempfile.gettempdir()) / f"emoney-port-claims-{os.getuid()}"

    def claim(self, candidates: Callable[[set[int]], list[int]]) -> list[int]:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            if os.fstat(descriptor).st_uid != os.getuid():
                raise ServiceStartError(f"{self.path} belongs to another account")
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            with os.fdopen(os.dup(descriptor), "r+") as claims:
                entries = [line.split() for line in claims.read().splitlines()]
                live = [entry for entry in entries if len(entry) == 2 and _alive(int(entry[1]))]
                chosen = candidates({int(port) for port, _ in live})
                claims.seek(0)
                claims.truncate()
                claims.write("".join(f"{port} {pid}\n" for port, pid in live))
                claims.write("".join(f"{port} {os.getpid()}\n" for port in chosen))
            return chosen
        finally:
            os.close(descriptor)  # releases the lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_CLAIMS = _PortClaims()


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct ports free on `host`, outside the kernel's ephemeral range, none handed out before by
    this process nor claimed by another live process of this account."""
    ports = chosen_port_range()

    def pick(claimed: set[int]) -> list[int]:
        chosen: list[int] = []
        for _ in range(count * 50 + 1_000):
            if len(chosen) == count:
                return chosen
            port = random.choice(ports)
            if (port in chosen or port in claimed or port in _HANDED_OUT or port in MAKE_RUN_PORTS
                    or not port_is_free(port, host)):
                continue
            chosen.append(port)
        if len(chosen) == count:
            return chosen
        raise ServiceStartError(f"no {count} free ports left in {ports.start}-{ports.stop - 1}")

    with _HANDED_OUT_LOCK:
        chosen = _CLAIMS.claim(pick)
        _HANDED_OUT.update(chosen)
        return chosen


def consecutive_free_ports(count: int, host: str = LOOPBACK) -> int:
    """The first of `count` consecutive free ports, all claimed (services numbered from a first port: the
    servers' gRPC and metrics ports)."""
    ports = chosen_port_range()
    for _ in range(200):
        first = free_ports(1, host)[0]
        following = range(first + 1, first + count)
        if first + count > ports.stop:
            continue
        if all(port not in MAKE_RUN_PORTS and port_is_free(port, host) for port in following) and all(
            reserve_port(port) for port in following
        ):
            return first
    raise ServiceStartError(f"no {count} consecutive free ports")


def reserve_port(port: int) -> bool:
    """Claim a port chosen by arithmetic (not by free_ports): False when this process handed it out
    already or another live process claimed it, True (and it is claimed) otherwise."""
    with _HANDED_OUT_LOCK:
        if port in _HANDED_OUT or not _CLAIMS.claim(lambda claimed: [] if port in claimed else [port]):
            return False
        _HANDED_OUT.add(port)
        return True


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on host:port (SO_REUSEADDR so TIME_WAIT leftovers don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: ask the kernel to SIGKILL the child when its parent goes away.

    Runs in the forked child after the uid switch (CPython applies `user=` before preexec_fn),
    which matters because a credential change clears PDEATHSIG.
    """

    def preexec() -> None:
        if _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        # The parent may have died between fork and prctl; then nobody would kill us.
        if os.getppid() != parent_pid:
            os._exit(126)

    return preexec


class _Spawner:
    """One daemon thread that forks every child.

    The kernel sends PDEATHSIG when the parent *thread* exits, not the process: a child forked
    from a thread-pool worker would be killed as soon as that pool shut down. A daemon thread
    lives exactly as long as the process (it is never joined, not even at interpreter exit).
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, job: Callable[[], T]) -> T:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="localstack-spawner", daemon=True)
                self._thread.start()
        result: Future = Future()
        self._jobs.put((job, result))
        return result.result()

    def _serve(self) -> None:
        while True:
            job, result = self._jobs.get()
            try:
                result.set_result(job())
            except BaseException as error:  # handed to the caller's thread
                result.set_exception(error)


_SPAWNER = _Spawner()


class ManagedProcess:
    """A child process we own: own process group, dies with us (prctl PR_SET_PDEATHSIG=SIGKILL in
    preexec, via ctypes), output to a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.user = user
        # PostgreSQL wants SIGINT (fast shutdown); SIGTERM there would wait for every client.
        self.stop_signal = stop_signal
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen.pid

    def start(self) -> ManagedProcess:
        if self._popen is not None:
            raise RuntimeError(f"{self.name} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            log.write(f"\n=== {stamp} starting {self.name}: {Path(self.argv[0]).name} ===\n".encode())
            log.flush()
            self._popen = _SPAWNER.run(
                lambda: subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,  # own group: stop() can signal the whole tree at once
                    preexec_fn=_die_with_parent(os.getpid()),
                    **run_as(self.user),
                )
            )
        return self

    def alive(self) -> bool:
        return self._popen is not None and self._popen.returncode is None and not self._exited()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop, then SIGKILL for the group after timeout_s; idempotent.

        The stop signal goes to the leader only: the service shuts its own children down in the
        right order (a signal to every PostgreSQL backend at once would not be a clean shutdown).
        """
        if self._popen is None or self._popen.returncode is not None:
            return
        if not self._exited():
            os.kill(self._popen.pid, self.stop_signal)
            self._wait_exited(timeout_s)
        self._kill_group_and_reap()  # the leader if it ignored the signal, and any stragglers

    def kill(self) -> None:
        """SIGKILL the whole group now, as a crash would."""
        if self._popen is None or self._popen.returncode is not None:
            return
        self._kill_group_and_reap()

    # The leader is reaped only after its group was killed: until then its zombie keeps the pid,
    # so the group id cannot have been recycled for someone else's processes.

    def _exited(self) -> bool:
        """Whether the leader has exited, without reaping it."""
        assert self._popen is not None
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, self._popen.pid, flags) is not None

    def _wait_exited(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._exited() and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL_S / 2)

    def _kill_group_and_reap(self) -> None:
        assert self._popen is not None
        try:
            os.killpg(self._popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # group already empty
        self._popen.wait()

    def exit_description(self) -> str:
        """How the leader ended, for error messages: ' (exit code N)', ' (killed by SIGSEGV)', or '' while it
        runs (it is not reaped here)."""
        if self._popen is None:
            return ""
        if self._popen.returncode is not None:
            code = self._popen.returncode
        else:
            try:
                info = os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return ""
            if info is None:
                return ""
            code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        return f" (exit code {code})" if code >= 0 else f" (killed by {signal.Signals(-code).name})"

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def run_as(user: str | None) -> dict:
    """subprocess arguments that drop to `user`, including its primary group and no root groups."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start_error(process: ManagedProcess, reason: str) -> ServiceStartError:
    return ServiceStartError(
        f"{process.name}: {reason}{process.exit_description()}\n--- log tail ({process.log_path}) ---\n{process.log_tail()}"
    )


def wait_for(
    probe: Callable[[], T],
    timeout_s: float,
    process: ManagedProcess | None,
    what: str,
) -> T:
    """Call probe until it returns without raising; its result is returned.

    Fails fast with the log tail when the process died, and with the last probe error on timeout.
    """
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        if process is not None and not process.alive():
            raise start_error(process, f"exited while waiting for {what} (last error: {last_error!r})")
        try:
            return probe()
        except Exception as error:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = error
        if time.monotonic() >= deadline:
            reason = f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last_error!r})"
            if process is None:
                raise ServiceStartError(reason)
            raise start_error(process, reason)
        time.sleep(_POLL_INTERVAL_S)


def wait_for_tcp(host: str, port: int, timeout_s: float, process: ManagedProcess | None = None) -> None:
    def connect() -> None:
        with socket.create_connection((host, port), timeout=1.0):
            pass

    wait_for(connect, timeout_s, process, f"TCP {host}:{port}")


def ensure_unprivileged_user(name: str = "emoney") -> str | None:
    """When euid==0, create (useradd --system, idempotent) and return a user PostgreSQL can run as;
    None when not root (then services simply run as ourselves)."""
    if os.geteuid() != 0:
        return None
    if not _user_exists(name):
        result = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        # A parallel run may have created it between our check and useradd: that is success too.
        if not _user_exists(name):
            raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}")
    return name


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def grant_traversal(path: Path, user: str) -> None:
    """Let `user` reach `path`: an ACL entry `user:<user>:--x` (search, not list) on each folder above
    it that the account cannot enter, such as root's 0700 home or a `mktemp -d` folder.

    The entry names that one account, so nothing is opened to anyone else (no o+x). Needs setfacl
    (Debian's `acl`, which `make` installs when run as root) and a file system with POSIX ACLs.
    """
    if user_can(user, "-x", path):
        return
    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid))
    for directory in reversed(Path(path).resolve().parents):
        if not _can_search(directory.stat(), entry.pw_uid, groups):
            set_acl(directory, f"u:{user}:x")


def grant_read(tree: Path, user: str) -> None:
    """Let `user` reach `tree` and read (and run) everything in it, through ACL entries for that
    account alone: search on the folders above it, `r-X` on the tree itself."""
    grant_traversal(tree, user)
    set_acl(tree, f"u:{user}:rX", recursive=True)


def make_runnable_by(user: str, argv: list[str], grants: list[Callable[[], None]]) -> None:
    """Make sure `user` can run `argv` (a probe that exits 0): while it cannot, apply the next of `grants`
    (ACL entries for that account, from the narrowest to the widest) and try again; ServiceStartError with
    the last problem when every grant was applied and it still cannot."""
    problem = run_problem(user, argv)
    for grant in grants:
        if problem is None:
            return
        grant()
        problem = run_problem(user, argv)
    if problem is not None:
        raise ServiceStartError(f"user {user!r} cannot run {argv[0]} even after ACL entries granted it access: {problem}")


def run_problem(user: str, argv: list[str]) -> str | None:
    """Why `user` cannot run `argv` (exit 0 expected), or None when it can."""
    try:
        result = subprocess.run(argv, cwd="/", capture_output=True, text=True, check=False,
                                env={"PATH": "/usr/bin:/bin"}, **run_as(user))
    except OSError as error:  # exec itself refused: a folder on the way is closed to the account
        return str(error)
    return None if result.returncode == 0 else (result.stderr.strip() or f"exit code {result.returncode}")


def user_can(user: str, test_flag: str, path: Path) -> bool:
    """Whether `user` passes `test <flag> <path>` (-x, -r, ...): the kernel's own answer, ACLs included."""
    result = subprocess.run(
        ["test", test_flag, str(path)], cwd="/", capture_output=True, check=False, **run_as(user)
    )
    return result.returncode == 0


def set_acl(path: Path, entry: str, recursive: bool = False) -> None:
    """`setfacl -m <entry> path` (idempotent): add or update one ACL entry."""
    argv = ["setfacl", *(["-R"] if recursive else []), "-m", entry, str(path)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ServiceStartError(
            f"setfacl is needed to give the service account access to {path} without opening it to "
            "everyone: install Debian's `acl` package (make run and make test do it when run as root)"
        ) from None
    if result.returncode != 0:
        raise ServiceStartError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def _can_search(info: os.stat_result, uid: int, groups: set[int]) -> bool:
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        for child in dirs + files:
            os.lchown(os.path.join(root, child), entry.pw_uid, entry.pw_gid)


def private_dir(path: Path) -> Path:
    """Create a missing folder as 0700 (state folders hold secrets); an existing one is left as is."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def read_secret_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def write_secret_json(path: Path, data: dict, replace: bool = False) -> None:
    """Write data as a 0600 JSON file, atomically.

    With replace=False the file is created only if absent (FileExistsError otherwise), so two
    starts racing on a fresh state folder cannot each keep a different secret.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create_secret_json(path: Path, make: Callable[[], dict]) -> dict:
    """The secret stored at path, generated by make() and persisted on first use."""
    existing = read_secret_json(path)
    if existing is not None:
        return existing
    try:
        write_secret_json(path, make())
    except FileExistsError:
        pass  # a concurrent start won; use its secret
    stored = read_secret_json(path)
    assert stored is not None
    return stored
