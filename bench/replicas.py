"""Three replicas on 127.0.0.1 for the bench scripts, started and stopped through haco/cluster/procs.py.

The bench scripts import this as a sibling module (`python bench/<script>.py` puts bench/ first
on sys.path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from haco.cluster.procs import PeerAddr, free_ports, kill_groups, replica_argv, spawn


@dataclass(frozen=True, slots=True)
class Replicas:
    root: Path  #: the throwaway directory: data dirs, logs, the Raft password file
    peers: list[PeerAddr]
    procs: dict[str, subprocess.Popen[bytes]]  #: by peer id; a script adds its other children to be stopped with them
    leader: str  #: the leader's API URL when the cluster came up

    @property
    def urls(self) -> list[str]:
        return [peer.api_url for peer in self.peers]


def wait_leader(urls: list[str], timeout_s: float = 60.0) -> str:
    """The API URL of the first replica that says it leads; SystemExit after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for url in urls:
            try:
                with urllib.request.urlopen(url + "/api/cluster", timeout=3) as resp:
                    info = json.loads(resp.read())
            except OSError:
                continue
            if info.get("role") == "leader":
                return url
        time.sleep(0.2)
    raise SystemExit("no leader")


@contextmanager
def local_replicas(prefix: str, n: int = 3) -> Iterator[Replicas]:
    """Start `n` replicas (open API, log level warning) under a fresh temporary directory named
    `prefix`..., wait for a leader and yield them. On exit, whatever the path, every process in
    `procs` has its group killed and the directory is removed."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        ports = free_ports(2 * n)
        peers = [PeerAddr(f"r{i}", f"127.0.0.1:{ports[2 * i]}", f"http://127.0.0.1:{ports[2 * i + 1]}")
                 for i in range(n)]
        (root / "pw").write_text("bench-" + os.urandom(8).hex())
        for peer in peers:
            argv = replica_argv(peer, peer.api_url.removeprefix("http://"), root / peer.id, peers, root / "pw",
                                log_level="warning")
            procs[peer.id] = spawn(argv, root / f"{peer.id}.log")
        yield Replicas(root, peers, procs, wait_leader([peer.api_url for peer in peers]))
    finally:
        kill_groups(list(procs.values()))
        shutil.rmtree(root, ignore_errors=True)
