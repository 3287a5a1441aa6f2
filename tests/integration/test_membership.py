"""Live membership: grow 3 -> 5 and shrink back to 3 (removing the leader) under a submit load, on
real processes; a replica with another Raft password and an unreachable one are refused unharmed."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import time
from typing import Any

from haco.cli import main as cli_main
from haco.cluster.procs import free_ports

from .cluster import Cluster, eventually, http
from .test_replication import Writer, jobs_on_all


def _members(c: Cluster, i: int) -> dict[str, Any]:
    status, body = http("GET", c.nodes[i].url + "/api/members", timeout=3)
    assert status == 200, body
    return body


def _config(c: Cluster, i: int) -> list[tuple[str, str, bool]]:
    return [(m["id"], m["raft_addr"], m["voter"]) for m in _members(c, i)["members"]]


def _voters(c: Cluster, i: int) -> list[str]:
    return sorted(m["id"] for m in _members(c, i)["members"] if m["voter"])


def _haco(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The `haco` CLI, run in this process (a new interpreter per step costs seconds on a busy machine)."""
    urls = ",".join(c.nodes[i].url for i in c.alive())
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main([*args, "--coordinators", urls])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _status(c: Cluster) -> dict[str, Any]:
    """`haco status --json`, as an operator runs it after each step."""
    out = _haco(c, "status", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def _status_ids(c: Cluster, want: list[str]) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        report = _status(c)
        ids = sorted(r["id"] for r in report["replicas"] if r.get("id"))
        return report if ids == sorted(want) and report["healthy"] and report["size"] == len(want) else None
    return eventually(check, 20, f"haco status showing {want}", interval_s=0.5)


def test_grow_to_five_and_shrink_to_three_removing_the_leader(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    c.leader()
    writer = Writer(c)
    writer.start()
    timings: dict[str, float] = {}
    try:
        eventually(lambda: len(writer.writes) > 20, 20, "writes flowing")
        first = c.nodes[0].url

        # refused without harm: an address nothing listens on (refused before anything is written) ...
        raft_port, http_port = free_ports(2)
        before = _config(c, 0)
        out = _haco(c, "operator", "add-replica", "r9", "--raft", f"127.0.0.1:{raft_port}", "--http",
                    f"http://127.0.0.1:{http_port}")
        assert out.returncode != 0 and "refused before any change" in out.stderr, out.stdout + out.stderr
        assert _config(c, 0) == before

        # ... and a replica with another Raft password: its handshakes fail, it never catches up as a
        # learner and is removed again; the voters never changed
        bad = c.add_node("r8")
        wrong = c.root / "wrong-password"
        wrong.write_text("another-secret")
        started = time.monotonic()
        c.start_joining(bad, [first], password_file=wrong, env={"HACO_JOIN_CATCH_UP_S": "2"})
        eventually(lambda: "join: refused" in c.nodes[bad].log_path.read_text(), 40, "the wrong password refused")
        timings["wrong password refused"] = time.monotonic() - started
        assert "did not catch up" in c.nodes[bad].log_path.read_text()
        c.kill(bad)
        assert _voters(c, 0) == ["r1", "r2", "r3"]
        assert _config(c, 0) == before
        _status_ids(c, ["r1", "r2", "r3"])

        # grow: r4, then r5, each started with --join; the leader adds it as a learner, then a voter
        for nid, voters in (("r4", 4), ("r5", 5)):
            i = c.add_node(nid)
            started = time.monotonic()
            c.start_joining(i, [first])
            eventually(lambda: len(_voters(c, 0)) == voters, 40, f"{nid} a voter")
            timings[f"join {nid}"] = time.monotonic() - started
            report = _status_ids(c, ["r1", "r2", "r3", "r4", "r5"][:voters])
            assert report["leader"] is not None
        c.converged(30)

        # a restart keeps the configuration it learned (its journal), whatever its static peers say
        leader = c.leader()
        follower = next(i for i in (0, 1, 2) if i != leader)
        c.kill(follower, signal.SIGTERM)
        c.start(follower)  # --peer lists r1..r3 only
        eventually(lambda: len(_voters(c, follower)) == 5, 30, "the restarted replica knows all five voters")
        c.converged(30)

        # shrink: remove the leader first (it hands over, its successor removes it), then a follower
        for _ in range(2):
            leader = c.leader()
            lid = c.nodes[leader].id
            started = time.monotonic()
            out = _haco(c, "operator", "remove-replica", lid)
            assert out.returncode == 0, out.stdout + out.stderr
            timings[f"remove {lid}"] = time.monotonic() - started
            # a replica that stays: the removed one may never apply its own removal
            other = next(i for i in c.alive() if i != leader)
            eventually(lambda: lid not in _voters(c, other), 10, f"{lid} out of {c.nodes[other].id}'s voters")
            c.kill(leader)  # a removed replica is stopped (Kubernetes: its preStop)
            remaining = [c.nodes[i].id for i in c.alive() if c.nodes[i].id not in ("r8",)]
            _status_ids(c, remaining)
        members = _members(c, c.alive()[0])
        assert len(members["members"]) == 3 and all(m["voter"] for m in members["members"])
        out = _haco(c, "operator", "members")
        assert out.returncode == 0 and "voter" in out.stdout, out.stdout + out.stderr
        before = len(writer.writes)
        eventually(lambda: len(writer.writes) > before + 10, 20, "writes flowing on the three that remain")
    finally:
        writer.stop_flag.set()
        writer.join(40)
    print(f"\nmembership steps (s): {json.dumps({k: round(v, 2) for k, v in timings.items()})}, "
          f"{len(writer.acked)} writes acknowledged")
    c.converged(30)
    acked = set(writer.acked.values())
    for i in c.alive():
        assert acked <= jobs_on_all(c, i)
