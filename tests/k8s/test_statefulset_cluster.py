"""Three replicas configured only by StatefulSet-like environments form one cluster.

Each replica runs in its own mount namespace (`unshare --mount`) where /etc/hosts is bind-mounted
with the three pods' DNS names pointing at 127.0.0.1-3, so the names go through the system
resolver exactly as pysyncobj resolves them in a cluster, and the real /etc/hosts is never edited.
Every pod uses the same ports, as in Kubernetes; the pods differ by loopback address.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, Node, eventually, free_ports, http

NS, SERVICE = "jobs", "haco-peers"


def fqdn(i: int) -> str:
    return f"haco-{i}.{SERVICE}.{NS}.svc.cluster.local"


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount --bind /etc/hosts /etc/hosts"], capture_output=True, timeout=10)
    return probe.returncode == 0


def _ports_free_on_every_address(size: int) -> tuple[int, int]:
    for _ in range(20):
        raft, http_port = free_ports(2)
        try:
            for i in range(size):
                for port in (raft, http_port):
                    with socket.socket() as s:
                        s.bind((f"127.0.0.{i + 1}", port))
            return raft, http_port
        except OSError:
            continue
    raise AssertionError("no port pair free on every loopback address")


@dataclass
class PodNode(Node):
    address: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.http_port}"


class StatefulSetCluster(Cluster):
    """The integration harness, with `start` launching each replica as a StatefulSet pod would be."""

    def __post_init__(self) -> None:
        self.password_file = self.root / "raft-password"
        self.password_file.write_text("k8s-test-secret")
        raft, http_port = _ports_free_on_every_address(self.size + 1)  # +1: a rescheduled pod's new address
        hosts = Path("/etc/hosts").read_text()
        hosts += "".join(f"\n127.0.0.{i + 1} {fqdn(i)}" for i in range(self.size)) + "\n"
        self.hosts_file = self.root / "hosts"
        self.hosts_file.write_text(hosts)
        for i in range(self.size):
            pod = f"haco-{i}"
            self.nodes.append(PodNode(pod, raft, http_port, self.root / pod, self.root / f"{pod}.log",
                                      address=f"127.0.0.{i + 1}"))

    def start(self, i: int) -> None:
        n = self.nodes[i]
        env = {"HOSTNAME": n.id, "HACO_K8S_SERVICE": SERVICE, "POD_NAMESPACE": NS, "HACO_REPLICAS": str(self.size),
               "HACO_RAFT_PORT": str(n.raft_port), "HACO_HTTP_PORT": str(n.http_port),
               "HACO_DATA_DIR": str(n.data_dir), "HACO_RAFT_PASSWORD_FILE": str(self.password_file),
               # three pods share one network namespace here, so each listens on its own name, not 0.0.0.0
               "HACO_RAFT_BIND": f"{fqdn(i)}:{n.raft_port}", "HACO_HTTP_ADDR": f"{fqdn(i)}:{n.http_port}",
               "HACO_INSECURE_OPEN_API": "1"}  # the names resolve to 127.0.0.x here: an open API is allowed
        args = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"', str(self.hosts_file),
                sys.executable, "-m", "haco.server.main", "--log-level", "info"]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("HACO_")}
        with open(n.log_path, "ab") as log:
            n.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                      env={**clean, **env})


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[StatefulSetCluster]:
    if not _can_unshare():
        pytest.skip("needs `unshare --mount` (root or user namespaces) to give each pod its own /etc/hosts")
    c = StatefulSetCluster(tmp_path)
    try:
        yield c
    except BaseException:
        print(c.dump_logs())
        raise
    finally:
        c.stop()


def test_three_pods_from_statefulset_environments_form_a_cluster(pods: StatefulSetCluster) -> None:
    pods.start_all()
    leader = pods.leader(timeout_s=30)
    info = pods.info(leader)
    assert info["id"] == f"haco-{leader}" and info["raft_addr"] == f"{fqdn(leader)}:{pods.nodes[0].raft_port}"
    assert info["api_url"] == f"http://{fqdn(leader)}:{pods.nodes[0].http_port}"
    eventually(lambda: all(p["reachable"] for i in range(3) for p in pods.info(i)["peers"]), 20,
               "every pod reaches both peers by DNS name")
    assert sorted(p["id"] for p in pods.info(leader)["peers"]) == sorted(f"haco-{i}" for i in range(3) if i != leader)
    follower = (leader + 1) % 3
    status, body = http("POST", pods.nodes[follower].url + "/api/jobs", {"type": "noop", "payload": {}})
    assert status == 201, body  # a follower forwards to the leader over Raft
    converged = pods.converged()
    for i in range(3):
        status, job = http("GET", f"{pods.nodes[i].url}/api/jobs/{body['job_id']}?min_index={body['index']}")
        assert status == 200, job
        assert job["job"]["job_id"] == body["job_id"]
    assert converged["applied_index"] >= body["index"]
    assert pods.info(follower)["leader_url"] == f"http://{fqdn(leader)}:{pods.nodes[0].http_port}"


def test_a_rescheduled_pod_with_a_new_address_rejoins_within_seconds(pods: StatefulSetCluster) -> None:
    """Kill haco-0, give its name a new address (as a reschedule onto another node does), restart it with its
    volume. pysyncobj connects from the greater address to the smaller, so haco-1 and haco-2 dial haco-0:
    they can reach it only by re-resolving its name (HACO_DNS_CACHE_S, 2 s)."""
    pods.start_all()
    pods.leader(timeout_s=30)
    victim = 0
    pods.kill(victim, signal.SIGKILL)
    moved = f"127.0.0.{pods.size + 1}"
    text = pods.hosts_file.read_text().replace(f"{pods.nodes[victim].address} {fqdn(victim)}", f"{moved} {fqdn(victim)}")
    pods.hosts_file.write_text(text)  # same inode: every pod's bind-mounted /etc/hosts sees it
    pods.nodes[victim].address = moved
    leader = pods.leader(timeout_s=30)  # haco-0 may have led: the other two elect one
    status, body = http("POST", pods.nodes[leader].url + "/api/jobs", {"type": "noop", "payload": {}})
    assert status == 201, body  # the two others still form a quorum
    started = time.monotonic()
    pods.start(victim)

    def rejoined() -> bool:
        dialers_reach = all(p["reachable"] for i in (1, 2) for p in pods.info(i)["peers"] if p["id"] == "haco-0")
        return dialers_reach and pods.info(victim)["applied_index"] >= body["index"]
    eventually(rejoined, 20, "haco-1 and haco-2 reach haco-0 at its new address and it caught up")
    took = time.monotonic() - started
    print(f"moved pod rejoined and caught up in {took:.1f} s (process start included)")
    assert took < 15
    status, again = http("POST", pods.nodes[victim].url + "/api/jobs", {"type": "noop", "payload": {}})
    assert status == 201, again  # and it forwards to the leader from its new address
