"""Child processes of a local cluster: the one place that builds replica and worker command lines,
starts them, signals them and stops them. `LocalCluster` (haco up, demo, bench), the chaos harness
and the integration tests all start their replicas and workers through these functions.

Every child runs in its own session (so a terminal's Ctrl+C reaches only the launcher, and a
signal to the group reaches everything the child forked), with stdin closed and its output
appended to one log file. Processes are stopped by the Popen objects that started them, never by
name: other clusters with the same command lines may run on the same machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class PeerAddr:
    """One replica as its peers name it: `--peer id=raft_addr=api_url`."""
    id: str
    raft_addr: str
    api_url: str


def replica_argv(me: PeerAddr, http_addr: str, data_dir: Path, peers: Iterable[PeerAddr], password_file: Path, *,
                 log_level: str = "info", extra: Sequence[str] = ("--insecure-open-api",)) -> list[str]:
    """`haco coordinator` for one replica. The default `extra` serves the open API, which the
    coordinator accepts only on loopback addresses (docs/security.md)."""
    argv = [sys.executable, "-m", "haco", "coordinator", "--id", me.id, "--raft", me.raft_addr, "--http", http_addr]
    for p in peers:
        if p.id != me.id:
            argv += ["--peer", f"{p.id}={p.raft_addr}={p.api_url}"]
    return argv + ["--data-dir", str(data_dir), "--raft-password-file", str(password_file), "--log-level", log_level,
                   *extra]


def worker_argv(worker_id: str, urls: Iterable[str], *, capacity: int, log_level: str = "info",
                workdir: Path | None = None, extra: Sequence[str] = ()) -> list[str]:
    """`haco worker` connecting to `urls`."""
    argv = [sys.executable, "-m", "haco", "worker", "--coordinators", ",".join(urls), "--id", worker_id,
            "--capacity", str(capacity), "--log-level", log_level]
    if workdir is not None:
        argv += ["--workdir", str(workdir)]
    return argv + list(extra)


def spawn(argv: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own session, output appended to log_path (the child keeps its own descriptor)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def signal_group(p: subprocess.Popen[bytes], sig: int, *, group: bool = True) -> bool:
    """Send `sig` to the child's process group (or, with group=False, to the child alone).
    False when it had already exited."""
    if p.poll() is not None:
        return False
    try:
        (os.killpg if group else os.kill)(p.pid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_groups(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float = 10.0) -> None:
    """SIGCONT then SIGKILL every still-running child's group (a stopped group wakes to die), then
    wait for each. Idempotent; for teardown on every path, including failures."""
    procs = list(procs)
    for p in procs:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            signal_group(p, sig)
    for p in procs:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass


def kill_attempt_runners(workdir: Path) -> int:
    """SIGKILL the attempt runners and job sessions a worker with `workdir` left behind; returns how
    many groups were signalled. A worker's durable attempts run detached (haco/worker/runner.py), so
    killing its group leaves them running; teardown of a whole local cluster calls this after.

    Reads the record files haco/worker/attempts.py writes (`.attempts/*/runner.json`, `job.json`);
    a group is signalled only while a process of that pid still has the recorded start time.
    """
    import json

    import psutil

    signalled = 0
    for path in sorted(workdir.glob(".attempts/*/*.json")):
        if path.name not in ("runner.json", "job.json"):
            continue
        try:
            doc = json.loads(path.read_text())
            pid = int(doc["pid"])
            if abs(psutil.Process(pid).create_time() - float(doc["create_time"])) >= 0.01:
                continue
            os.killpg(pid, signal.SIGKILL)
            signalled += 1
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            continue
    return signalled


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float = 10.0) -> None:
    """SIGTERM each still-running child (a replica hands leadership over, a worker drains), wait until
    `timeout_s` for all, then SIGKILL the groups of the rest. Blocking: from a loop, use asyncio.to_thread."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        signal_group(p, signal.SIGTERM, group=False)
    end = time.monotonic() + timeout_s
    for p in alive:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill_groups([p], 5.0)


def stop_process(p: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    stop_processes([p], timeout_s)


def free_ports(n: int) -> list[int]:
    """`n` distinct ports that were free on HOST a moment ago (all bound at once, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


__all__ = ["HOST", "PeerAddr", "free_ports", "kill_attempt_runners", "kill_groups", "replica_argv", "signal_group", "spawn", "stop_process",
           "stop_processes", "worker_argv"]
