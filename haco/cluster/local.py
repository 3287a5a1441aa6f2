"""A local cluster of child processes: the launcher behind `haco up`, `haco demo`, `haco bench`, chaos and tests.

`ClusterSpec` says where replicas and workers listen and keep data; `LocalCluster` starts them
as `sys.executable -m haco coordinator|worker ...` children (each its own session, output in
`<data_dir>/logs/*.log`), finds the leader and stops exactly the PIDs it started: SIGTERM,
a deadline, then SIGKILL. Blocking process waits run in threads when called from the loop.

For `haco up` it also holds the data dir (`lock()`: an flock on `<data_dir>/haco-up.lock`, so a
second `haco up` on it refuses before touching anything), records the PIDs of what runs in
`<data_dir>/haco-up.json`, and `supervise()` restarts a child that exited, with backoff.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from haco.client import HacoClient
from haco.cluster.procs import (HOST, PeerAddr, kill_attempt_runners, replica_argv, signal_group, spawn, stop_process, stop_processes,
                                worker_argv)
from haco.errors import HacoError

RAFT_PORT_OFFSET = 100  #: replica i's Raft port is its HTTP port + 100
RESTART_BACKOFF_S = (1.0, 30.0)  #: first delay before restarting an exited child, doubling up to the second
RESTART_STABLE_S = 60.0  #: a child that ran this long before exiting starts again from the first delay


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    data_dir: Path = Path("haco-data")
    replicas: int = 3
    workers: int = 2
    base_port: int = 7001  #: replica i (1-based) serves HTTP on base_port + i - 1
    worker_capacity: int = 4
    log_level: str = "info"

    def http_port(self, i: int) -> int:
        return self.base_port + i - 1

    def raft_addr(self, i: int) -> str:
        return f"{HOST}:{self.http_port(i) + RAFT_PORT_OFFSET}"

    def api_url(self, i: int) -> str:
        return f"http://{HOST}:{self.http_port(i)}"

    @property
    def urls(self) -> list[str]:
        return [self.api_url(i) for i in range(1, self.replicas + 1)]

    @property
    def ports(self) -> list[int]:
        return [p for i in range(1, self.replicas + 1) for p in (self.http_port(i), self.http_port(i) + RAFT_PORT_OFFSET)]

    @property
    def password_file(self) -> Path:
        return self.data_dir / "raft-password"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def peer(self, i: int) -> PeerAddr:
        return PeerAddr(f"r{i}", self.raft_addr(i), self.api_url(i))

    def replica_argv(self, i: int) -> list[str]:
        peers = [self.peer(j) for j in range(1, self.replicas + 1)]
        return replica_argv(self.peer(i), f"{HOST}:{self.http_port(i)}", self.data_dir / f"r{i}", peers,
                            self.password_file, log_level=self.log_level)

    def worker_argv(self, k: int) -> list[str]:
        """Worker k's scratch dirs and output files live under <data_dir>/w<k>, like a replica's data."""
        return worker_argv(f"w{k}", self.urls, capacity=self.worker_capacity, log_level=self.log_level,
                           workdir=self.data_dir / f"w{k}")

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "haco-up.lock"

    @property
    def pids_file(self) -> Path:
        return self.data_dir / "haco-up.json"


def ensure_password(path: Path) -> None:
    """Create the Raft password file (mode 0600) once; later runs keep it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")


def busy_ports(ports: Iterable[int]) -> list[int]:
    """The ports among `ports` that something on 127.0.0.1 already holds."""
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no obstacle
            try:
                s.bind((HOST, port))
            except OSError:
                busy.append(port)
    return busy


def free_base_port(first: int, *, replicas: int = 3, tries: int = 50) -> int:
    """The first base port from `first` (in steps of 10) whose HTTP and Raft ports are all free."""
    for n in range(tries):
        base = first + 10 * n
        if not busy_ports(ClusterSpec(base_port=base, replicas=replicas).ports):
            return base
    raise HacoError(f"no free ports for a local cluster from {first} on")


async def wait_for_leader(urls: list[str], timeout_s: float, *, exclude: Iterable[str] = ()
                          ) -> tuple[str, str]:
    """Poll GET /api/cluster on every URL until one replica (not named in `exclude`) says it
    leads; returns (leader id, its API URL). Raises TimeoutError after `timeout_s`."""
    skip = set(exclude)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    async with HacoClient(urls) as client:
        while loop.time() < end:
            for r in await client.status(timeout_s=1.0):
                if r.info and r.info.get("role") == "leader" and r.info.get("id") not in skip:
                    return str(r.info["id"]), str(r.info.get("api_url") or r.url)
            await asyncio.sleep(0.2)
    raise TimeoutError(f"no leader elected within {timeout_s:g}s")


@dataclass(slots=True)
class _Restart:
    """One child's restart bookkeeping (supervise)."""
    started_at: float  #: monotonic time of its latest start
    restarts: int = 0  #: restarts since it last ran RESTART_STABLE_S
    due_at: float | None = None  #: when it starts again; None while it runs
    code: int | None = None  #: how it exited, once it did


class LocalCluster:
    """The replicas and workers of one ClusterSpec, as child processes of this one."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.replicas: dict[int, subprocess.Popen[bytes]] = {}
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self._restart: dict[str, _Restart] = {}
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Hold the data dir for this process (flock on haco-up.lock, released when it exits).
        Raises HacoError naming the holder's PID when another `haco up` has it; creates nothing
        but the data dir and the lock file."""
        self.spec.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.spec.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise HacoError(f"{self.spec.data_dir} is in use by another haco up (pid {holder}); "
                            "stop that one first, or give another --data-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def prepare(self) -> None:
        """Create the data and log dirs and the password file; raise HacoError if a port is taken."""
        self.spec.log_dir.mkdir(parents=True, exist_ok=True)
        ensure_password(self.spec.password_file)
        taken = busy_ports(self.spec.ports)
        if taken:
            raise HacoError(f"ports in use on {HOST}: {', '.join(map(str, taken))} (another haco up running?)")

    def start_replica(self, i: int) -> subprocess.Popen[bytes]:
        self.replicas[i] = spawn(self.spec.replica_argv(i), self.spec.log_dir / f"r{i}.log")
        self._started(f"r{i}")
        return self.replicas[i]

    def start_worker(self, k: int) -> subprocess.Popen[bytes]:
        self.workers[k] = spawn(self.spec.worker_argv(k), self.spec.log_dir / f"w{k}.log")
        self._started(f"w{k}")
        return self.workers[k]

    def _started(self, name: str) -> None:
        r = self._restart.setdefault(name, _Restart(time.monotonic()))
        r.started_at, r.due_at, r.code = time.monotonic(), None, None
        if self._lock_fd is not None:  # haco up: tell the world which PID is which
            self.write_pids()

    def write_pids(self) -> None:
        """<data_dir>/haco-up.json: {"pid": this process, "replicas": {"r1": pid}, "workers": {"w1": pid}}."""
        body = {"pid": os.getpid(), "replicas": {f"r{i}": p.pid for i, p in self.replicas.items()},
                "workers": {f"w{k}": p.pid for k, p in self.workers.items()}}
        tmp = self.spec.pids_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.spec.pids_file)

    def supervise(self, now: float | None = None) -> list[str]:
        """Restart children that exited (each on its own data dir, the same command line), after
        RESTART_BACKOFF_S doubling per restart; call about once a second. Returns what happened,
        one line each, for the banner's log."""
        now = time.monotonic() if now is None else now
        said: list[str] = []
        named = [(f"r{i}", p, i) for i, p in self.replicas.items()] + [(f"w{k}", p, k) for k, p in self.workers.items()]
        for name, p, n in named:
            r = self._restart[name]
            if r.due_at is None and (code := p.poll()) is not None:
                if now - r.started_at >= RESTART_STABLE_S:
                    r.restarts = 0
                delay = min(RESTART_BACKOFF_S[1], RESTART_BACKOFF_S[0] * 2 ** r.restarts)
                r.due_at, r.code, r.restarts = now + delay, code, r.restarts + 1
                said.append(f"{name} exited with code {code}; restarting it in {delay:g}s (restart {r.restarts}); "
                            f"see {self.spec.log_dir / name}.log")
            elif r.due_at is not None and now >= r.due_at:
                started = self.start_replica(n) if name.startswith("r") else self.start_worker(n)
                said.append(f"{name} restarted (pid {started.pid})")
        return said

    def start_replicas(self) -> None:
        for i in range(1, self.spec.replicas + 1):
            self.start_replica(i)

    def start_workers(self) -> None:
        for k in range(1, self.spec.workers + 1):
            self.start_worker(k)

    def exited(self) -> list[tuple[str, int]]:
        """(name, exit code) of every child that has exited."""
        named = [(f"r{i}", p) for i, p in self.replicas.items()] + [(f"w{k}", p) for k, p in self.workers.items()]
        return [(name, code) for name, p in named if (code := p.poll()) is not None]

    def kill_replica(self, replica_id: str, sig: int = signal.SIGKILL) -> None:
        signal_group(self.replicas[int(replica_id.lstrip("r"))], sig, group=False)

    async def wait_for_leader(self, timeout_s: float = 30.0, *, exclude: Iterable[str] = ()) -> tuple[str, str]:
        """Like wait_for_leader, but fails fast (HacoError naming the log) if a replica exits."""
        task = asyncio.ensure_future(wait_for_leader(self.spec.urls, timeout_s, exclude=exclude))
        try:
            while not task.done():
                dead = [(n, c) for n, c in self.exited() if n.startswith("r") and n not in set(exclude)]
                if dead:
                    name, code = dead[0]
                    raise HacoError(f"replica {name} exited with code {code}; see {self.spec.log_dir / name}.log:\n"
                                    + tail(self.spec.log_dir / f"{name}.log"))
                await asyncio.wait({task}, timeout=0.2)
            return task.result()
        finally:
            task.cancel()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop workers first (they drain), then replicas, then release the data dir; blocking.
        Stops the children running now, restarted ones included."""
        stop_processes(list(self.workers.values()), timeout_s)
        for k in self.workers:  # a worker SIGKILLed past the timeout leaves its attempt runners
            kill_attempt_runners(self.spec.data_dir / f"w{k}")
        stop_processes(list(self.replicas.values()), timeout_s)
        if self._lock_fd is not None:
            self.spec.pids_file.unlink(missing_ok=True)
        self.unlock()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


__all__ = ["ClusterSpec", "LocalCluster", "busy_ports", "ensure_password", "free_base_port", "spawn", "stop_process",
           "stop_processes", "wait_for_leader"]
