"""The Raft port against a peer that knows the cluster's secret, or nothing: every frame that fails
a check is refused (counted in /api/cluster and /metrics), the connection closed, the replica up.

One cluster for all the probes, aimed at the replica every other one dials (the lowest address),
so a probe that authenticates stands in for a real peer's incoming connection for a moment."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from haco.replica.raft import wire
from tests.integration.cluster import Cluster, eventually, http

from .stock import previous_release_frame


class Probe:
    """A TCP client on a replica's Raft port, speaking (or abusing) the wire by hand."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sent = b""

    def send(self, data: bytes) -> None:
        self.sent += data
        self.sock.sendall(data)

    def recv_frame(self) -> bytes:
        head = self._recv(len(wire.PREAMBLE) + 4)
        assert head[:8] == wire.PREAMBLE, head
        return self._recv(wire.LENGTH.unpack(head[8:])[0])

    def _recv(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def closed_within(self, seconds: float) -> bool:
        """True once the replica closed the connection (EOF or reset) within `seconds`."""
        self.sock.settimeout(seconds)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return False

    def handshake(self, key: bytes, me: str, target: str) -> wire.Channel:
        nonce_d = os.urandom(16)
        hello = wire.seal_hello(key, me, target, nonce_d)
        self.send(wire.PREAMBLE + wire.LENGTH.pack(len(hello)) + hello)
        _, _, _, nonce_a, echo = wire.open_hello(key, self.recv_frame(), ack=True)
        assert echo == nonce_d
        channel = wire.Channel(key, me, target, nonce_d, nonce_a)
        self.send(channel.seal({"type": "hello_done"}))
        return channel

    def close(self) -> None:
        self.sock.close()


def refused(c: Cluster, i: int) -> dict[str, int]:
    return dict(c.info(i)["raft_wire"]["refused"])


def counted(c: Cluster, i: int, before: dict[str, int], reason: str, n: int = 1) -> dict[str, int]:
    """Wait until replica i counted `n` more refusals for `reason`; the counts then."""
    def check() -> dict[str, int] | None:
        now = refused(c, i)
        return now if now.get(reason, 0) >= before.get(reason, 0) + n else None
    result: dict[str, int] = eventually(check, 5, f"{n} more refusals for {reason} (before {before}, now {refused(c, i)})")
    return result


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    c = Cluster(tmp_path, 3)
    try:
        c.start_all()
        c.leader(30)
        yield c
    finally:
        c.stop()


def test_raft_port_refuses_every_bad_frame_and_stays_in_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    target = min(range(3), key=lambda i: f"127.0.0.1:{c.nodes[i].raft_port}")  # every other replica dials it
    dialer = next(i for i in range(3) if i != target)  # an id the target accepts a hello from
    port, me, them = c.nodes[target].raft_port, c.nodes[dialer].id, c.nodes[target].id
    password = c.password_file.read_text()
    key = wire.cluster_key(password)
    proc = psutil.Process(c.nodes[target].proc.pid)  # type: ignore[union-attr]

    # 1. the previous release's frame (right password) carrying a pickle that would create a file
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> Any:
            return (open, (str(marker), "w"))
    before = refused(c, target)
    p = Probe(port)
    p.send(previous_release_frame(password, Evil()))
    assert p.closed_within(5)
    p.close()
    after = counted(c, target, before, "previous_release")
    assert not marker.exists()

    # 2. a handshake frame with a bad tag
    before = after
    p = Probe(port)
    hello = bytearray(wire.seal_hello(key, me, them, os.urandom(16)))
    hello[-1] ^= 1
    p.send(wire.PREAMBLE + wire.LENGTH.pack(len(hello)) + bytes(hello))
    assert p.closed_within(5)
    p.close()
    after = counted(c, target, before, "tag")

    # 3. a frame claiming another node: the hello as `me`, its confirmation sealed as the third replica
    before = after
    third = next(n.id for i, n in enumerate(c.nodes) if i not in (target, dialer))
    p = Probe(port)
    nonce_d = os.urandom(16)
    hello = wire.seal_hello(key, me, them, nonce_d)
    p.send(wire.PREAMBLE + wire.LENGTH.pack(len(hello)) + hello)
    _, _, _, nonce_a, _ = wire.open_hello(key, p.recv_frame(), ack=True)
    p.send(wire.Channel(key, third, them, nonce_d, nonce_a).seal({"type": "hello_done"}))
    assert p.closed_within(5)
    p.close()
    after = counted(c, target, before, "tag")

    # 4. a replayed session: a valid one's bytes sent again (the hello is answered, the confirmation fails)
    before = after
    p = Probe(port)
    p.handshake(key, me, them)
    session = p.sent
    p.close()
    p = Probe(port)
    p.send(session)
    assert p.closed_within(5)
    p.close()
    after = counted(c, target, before, "tag")

    # 5. a 2 GiB length prefix, then bytes as fast as they go: closed at once, nothing buffered
    before = after
    rss = proc.memory_info().rss
    p = Probe(port)
    started = time.monotonic()
    junk = b"\0" * 2**20
    try:
        p.send(wire.PREAMBLE + wire.LENGTH.pack(2**31))
        for _ in range(256):  # up to 256 MiB, had the replica kept reading
            p.sock.sendall(junk)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    assert p.closed_within(5)
    assert time.monotonic() - started < 10
    p.close()
    after = counted(c, target, before, "length")
    assert proc.memory_info().rss - rss < 8 * 2**20, (rss, proc.memory_info().rss)

    # 6. silent connections, and one that stops inside a handshake frame: closed past the handshake timeout
    before = after
    silent, stuck = Probe(port), Probe(port)
    stuck.send(wire.PREAMBLE + wire.LENGTH.pack(200) + b"x" * 100)
    assert silent.closed_within(10) and stuck.closed_within(10)
    silent.close()
    stuck.close()
    after = counted(c, target, before, "timeout", 2)

    # the replica is up and in the cluster; /metrics shows the counts; one log line for this host
    assert c.nodes[target].proc.poll() is None  # type: ignore[union-attr]
    status, body = http("POST", c.nodes[target].url + "/api/jobs", {"type": "noop", "payload": {}, "key": "after"})
    assert status in (200, 201), body
    c.converged(30)
    status, text = http("GET", c.nodes[target].url + "/metrics")
    assert status == 200
    for reason in ("previous_release", "tag", "length", "timeout"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f'haco_raft_frames_refused_total{{reason="{reason}"'))
        assert float(line.split()[-1]) >= 1, line
    log = c.nodes[target].log_path.read_text()
    assert log.count("raft wire: refused 127.0.0.1") + log.count("raft wire: refused a frame from 127.0.0.1") <= 1
    assert "previous release" in log
