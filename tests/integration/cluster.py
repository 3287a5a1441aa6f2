"""Real replica and worker processes on 127.0.0.1 for integration tests.

Processes start and stop through haco.cluster.procs, the launcher haco up, chaos and bench use:
every one is tracked and stopped by its process group on teardown, also on failure. Logs go to
files under the cluster's directory and are printed when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from haco.cluster.procs import PeerAddr, free_ports, kill_attempt_runners, kill_groups, replica_argv, signal_group, spawn, worker_argv


def eventually(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll `check` until it returns a truthy value; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the condition may fail while the cluster settles
            last_exc = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last_exc!r})")


def http(method: str, url: str, body: Any = None, timeout: float = 5.0, *, token: str | None = None,
         ctx: ssl.SSLContext | None = None) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            raw = resp.read()
            if resp.headers.get_content_type() != "application/json":
                return resp.status, raw.decode(errors="replace")
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


@dataclass
class Node:
    id: str
    raft_port: int
    http_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"


@dataclass
class Cluster:
    root: Path
    size: int = 3
    nodes: list[Node] = field(default_factory=list)
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    auth: bool = False  #: False: the open API (--insecure-open-api); True: tokens signed with a fresh secret
    tls_dir: Path | None = None  #: `haco certs init` output: serve HTTPS with server.crt/key, trust ca.crt
    mtls: str = "none"  #: with tls_dir: none | workers | all (--require-client-cert)
    ctx: ssl.SSLContext | None = field(default=None, init=False)  #: how tests reach the API (TLS)
    admin: str | None = field(default=None, init=False)  #: the admin token tests send (auth)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.size)
        self.password_file = self.root / "raft-password"
        self.password_file.write_text("test-secret-" + os.urandom(8).hex())
        self.secret_file = self.root / "token-secret"
        self.secret_file.write_text("token-secret-" + os.urandom(16).hex())
        scheme = "https" if self.tls_dir is not None else "http"
        for i in range(self.size):
            nid = f"r{i + 1}"
            self.nodes.append(Node(nid, ports[2 * i], ports[2 * i + 1], self.root / nid, self.root / f"{nid}.log",
                                   scheme=scheme))
        self.ctx = None if self.tls_dir is None else self.client_ctx(client_cert=True)
        self.admin = self.token("admin") if self.auth else None

    def token(self, role: str, worker_id: str | None = None, ttl_s: int = 3600) -> str:
        """A token signed with this cluster's secret (meaningful when auth=True)."""
        from haco.security.tokens import issue
        return issue(self.secret_file.read_text().encode(), role, ttl_s, worker_id=worker_id, now_s=time.time())[0]

    def client_ctx(self, *, client_cert: bool) -> ssl.SSLContext:
        assert self.tls_dir is not None
        ctx = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
        if client_cert:
            ctx.load_cert_chain(str(self.tls_dir / "client.crt"), str(self.tls_dir / "client.key"))
        return ctx

    def api(self, i: int, method: str, path: str, body: Any = None, *, token: str | None = "admin",
            timeout: float = 5.0) -> tuple[int, Any]:
        """One request to replica i; token "admin" means this cluster's admin token (if auth)."""
        tok = self.admin if token == "admin" else token
        return http(method, self.nodes[i].url + path, body, timeout, token=tok, ctx=self.ctx)

    def _security_args(self) -> list[str]:
        args = ["--token-secret-file", str(self.secret_file)] if self.auth else ["--insecure-open-api"]
        if self.tls_dir is not None:
            d = self.tls_dir
            args += ["--tls-cert", str(d / "server.crt"), "--tls-key", str(d / "server.key"),
                     "--ca-file", str(d / "ca.crt")]
            if self.mtls != "none":
                args += ["--tls-client-ca", str(d / "ca.crt"), "--require-client-cert", self.mtls]
        return args

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self, i: int) -> None:
        n = self.nodes[i]
        peers = [PeerAddr(m.id, f"127.0.0.1:{m.raft_port}", m.url) for m in self.nodes]
        argv = replica_argv(peers[i], f"127.0.0.1:{n.http_port}", n.data_dir, peers, self.password_file,
                            extra=self._security_args())
        n.proc = spawn(argv, n.log_path, self.extra_env)

    def add_node(self, nid: str) -> int:
        """A new replica slot (free ports, its own data dir), not started; returns its index."""
        raft_port, http_port = free_ports(2)
        scheme = "https" if self.tls_dir is not None else "http"
        self.nodes.append(Node(nid, raft_port, http_port, self.root / nid, self.root / f"{nid}.log", scheme=scheme))
        return len(self.nodes) - 1

    def start_joining(self, i: int, join: list[str], *, password_file: Path | None = None,
                      env: dict[str, str] | None = None) -> None:
        """Start replica i with no peers and `--join` (live membership): it asks the cluster to add it."""
        n = self.nodes[i]
        me = PeerAddr(n.id, f"127.0.0.1:{n.raft_port}", n.url)
        argv = replica_argv(me, f"127.0.0.1:{n.http_port}", n.data_dir, [me], password_file or self.password_file,
                            extra=[*self._security_args(), "--join", ",".join(join)])
        n.proc = spawn(argv, n.log_path, {**self.extra_env, **(env or {})})

    def start_all(self) -> None:
        for i in range(self.size):
            self.start(i)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        n = self.nodes[i]
        if n.proc is not None and signal_group(n.proc, sig) and sig in (signal.SIGKILL, signal.SIGTERM):
            n.proc.wait(timeout=15)

    def start_worker(self, wid: str, capacity: int = 2, tags: str = "", urls: list[str] | None = None, *,
                     token: str | None = "own", client_cert: bool = True, extra: list[str] | None = None) -> None:
        """token "own": a worker token for `wid` when auth is on; client_cert: present client.crt (TLS);
        `extra`: more `haco worker` flags."""
        args: list[str] = []
        if tags:
            args += ["--tags", tags]
        args += extra or []
        if token == "own":
            token = self.token("worker", wid) if self.auth else None
        if token:
            args += ["--token", token]
        if self.tls_dir is not None:
            args += ["--ca-file", str(self.tls_dir / "ca.crt")]
            if client_cert:
                args += ["--client-cert", str(self.tls_dir / "client.crt"), "--client-key",
                         str(self.tls_dir / "client.key")]
        argv = worker_argv(wid, urls or self.urls, capacity=capacity, workdir=self.root / f"work-{wid}", extra=args)
        self.workers[wid] = spawn(argv, self.root / f"worker-{wid}.log", self.extra_env)

    def kill_worker(self, wid: str, sig: int = signal.SIGKILL, *, group: bool = True) -> None:
        """Signal a worker's process group, or with group=False the agent alone (its jobs run on)."""
        signal_group(self.workers[wid], sig, group=group)

    def stop(self) -> None:
        kill_groups([n.proc for n in self.nodes if n.proc is not None] + list(self.workers.values()))
        for wid in self.workers:
            kill_attempt_runners(self.root / f"work-{wid}")  # durable attempts outlive their worker

    def info(self, i: int) -> dict[str, Any]:
        status, body = self.api(i, "GET", "/api/cluster", timeout=2)
        assert status == 200, body
        return body

    def alive(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.proc is not None and n.proc.poll() is None]

    def leader(self, timeout_s: float = 20.0) -> int:
        """Index of the replica every live replica agrees leads."""
        def check() -> int | None:
            infos = {i: self.info(i) for i in self.alive()}
            leaders = {inf["leader"] for inf in infos.values()}
            if len(leaders) != 1 or None in leaders:
                return None
            lid = leaders.pop()
            idx = next((i for i, n in enumerate(self.nodes) if n.id == lid), None)
            if idx is None or idx not in infos or infos[idx]["role"] != "leader":
                return None
            return idx + 1  # truthy
        return eventually(check, timeout_s, "one agreed leader") - 1

    def converged(self, timeout_s: float = 20.0) -> dict[str, Any]:
        """Wait until every live replica applied the same index with the same digest."""
        def check() -> dict[str, Any] | None:
            infos = [self.info(i) for i in self.alive()]
            idx = {inf["applied_index"] for inf in infos}
            digests = {inf["digest"] for inf in infos}
            if len(idx) == 1 and len(digests) == 1:
                return infos[0]
            return None
        return eventually(check, timeout_s, "replicas converged on one applied index and digest")

    def dump_logs(self) -> str:
        out = []
        for path in sorted(self.root.glob("*.log")):
            text = path.read_text(errors="replace")
            out.append(f"==== {path.name} ====\n{text[-6000:]}")
        return "\n".join(out)
