"""Cluster control for chaos runs: real replica and worker processes on 127.0.0.1.

Processes start, get signalled and stop through haco.cluster.procs (the launcher haco up and the
tests use: one process group per process, logs in files); this module adds what faults need:
SIGSTOP/SIGCONT bookkeeping, wiping a data dir, and the blocklist file the replicas' fault
transport reads (`HACO_FAULT_FILE`, see haco/replica/plumbing.py `FaultTransport`).

Nothing is left behind: every process started here is tracked; `stop_all()` (called from the
runner's `finally`, an atexit hook and the SIGTERM/SIGINT/SIGHUP handlers) SIGCONTs and SIGKILLs
each group, and `kill_descendants()` ends what escaped its group (jobs run in their own session,
so a killed worker's jobs would outlive it): the runner is a child subreaper, so orphans become
its children and are found through /proc.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from haco.cluster.procs import PeerAddr, free_ports, kill_attempt_runners, kill_groups, replica_argv, signal_group, spawn, worker_argv

__all__ = ["ChaosCluster", "ReplicaProc", "become_subreaper", "kill_descendants"]

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _descendants() -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children[ppid].append(int(name))
    out, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_descendants() -> int:
    """SIGKILL every process below this one (by PID) and reap them; returns how many there were."""
    pids = _descendants()
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    for _ in range(len(pids) * 2 + 1):
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    return len(pids)


@dataclass
class ReplicaProc:
    id: str
    raft_port: int
    http_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def raft_addr(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ChaosCluster:
    """Replicas r1..rN and workers w1..wM under `root`; every method is quick and blocking."""

    def __init__(self, root: Path, replicas: int, workers: int, env: dict[str, str]) -> None:
        self.root = root
        self.fault_file = root / "faults.json"
        self.runs_file = root / "runs.log"  #: shell jobs append one line per execution (chaos/workload.py)
        self.password_file = root / "raft-password"
        self.password_file.write_text("chaos-" + os.urandom(8).hex())
        self.env = {**env, "HACO_FAULT_FILE": str(self.fault_file)}
        ports = free_ports(2 * replicas)
        self.replicas = [ReplicaProc(f"r{i + 1}", ports[2 * i], ports[2 * i + 1], root / f"r{i + 1}",
                                     root / f"r{i + 1}.log") for i in range(replicas)]
        self.worker_ids = [f"w{i + 1}" for i in range(workers)]
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[int] = set()  #: pids stopped with SIGSTOP, resumed by stop_all at the latest
        self.set_blocks([])

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def start_replica(self, i: int, *, join: bool = False) -> None:
        """Start replica i with every replica as its static peers, or (join) with none and `--join`
        through the others: a replica that was removed from the configuration comes back that way."""
        r = self.replicas[i]
        if r.alive():
            return
        peers = [PeerAddr(m.id, m.raft_addr, m.url) for m in self.replicas]
        extra: list[str] = ["--insecure-open-api"]
        if join:
            extra += ["--join", ",".join(m.url for m in self.replicas if m.id != r.id)]
            peers = [peers[i]]
        r.proc = spawn(replica_argv(PeerAddr(r.id, r.raft_addr, r.url), f"127.0.0.1:{r.http_port}", r.data_dir, peers,
                                    self.password_file, extra=extra), r.log_path, self.env)

    def signal_replica(self, i: int, sig: int) -> None:
        r = self.replicas[i]
        if r.proc is None or r.proc.poll() is not None:
            return
        self._signal(r.proc, sig, group=True)
        if sig == signal.SIGKILL:
            r.proc.wait(timeout=15)

    def kill_replicas(self, order: list[int]) -> None:
        """SIGKILL these replicas back to back (all signals first), then wait for each."""
        procs = [self.replicas[i].proc for i in order if self.replicas[i].alive()]
        for p in procs:
            if p is not None:
                self._signal(p, signal.SIGKILL, group=True)
        for p in procs:
            if p is not None:
                p.wait(timeout=15)

    def wipe(self, i: int) -> None:
        """Remove a stopped replica's data dir (journal, snapshot, results): it rejoins empty."""
        r = self.replicas[i]
        assert not r.alive(), "wipe a stopped replica only"
        shutil.rmtree(r.data_dir, ignore_errors=True)

    def start_worker(self, wid: str, capacity: int = 4) -> None:
        p = self.workers.get(wid)
        if p is not None and p.poll() is None:
            return
        argv = worker_argv(wid, self.urls, capacity=capacity, workdir=self.root / f"work-{wid}")
        self.workers[wid] = spawn(argv, self.root / f"worker-{wid}.log", self.env)

    def signal_worker(self, wid: str, sig: int, *, group: bool = True) -> None:
        """Signal a worker's process group, or with group=False the agent alone (its jobs run on)."""
        p = self.workers.get(wid)
        if p is None or p.poll() is not None:
            return
        self._signal(p, sig, group=group)
        if sig == signal.SIGKILL:
            p.wait(timeout=15)

    def _signal(self, p: subprocess.Popen[bytes], sig: int, *, group: bool) -> None:
        if not signal_group(p, sig, group=group):
            return
        if sig == signal.SIGSTOP:
            self.paused.add(p.pid)
        elif sig in (signal.SIGCONT, signal.SIGKILL):
            self.paused.discard(p.pid)

    def set_blocks(self, cuts: list[tuple[int, int]]) -> None:
        """Cut each (a, b) pair of replicas both ways; [] heals. Atomic rewrite of the fault file."""
        table: dict[str, list[str]] = defaultdict(list)
        for a, b in cuts:
            table[self.replicas[a].raft_addr].append(self.replicas[b].raft_addr)
            table[self.replicas[b].raft_addr].append(self.replicas[a].raft_addr)
        tmp = self.fault_file.with_name(self.fault_file.name + ".tmp")
        tmp.write_text(json.dumps(table))
        os.replace(tmp, self.fault_file)

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [r.proc for r in self.replicas if r.proc is not None] + list(self.workers.values())

    def stop_all(self) -> None:
        """SIGCONT then SIGKILL every group started here, and wait for each (idempotent)."""
        kill_groups(self.processes())
        for wid in self.workers:
            kill_attempt_runners(self.root / f"work-{wid}")  # durable attempts outlive their worker
        self.paused.clear()
