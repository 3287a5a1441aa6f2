"""An idle worker follows leadership: when its replica is deposed but stays alive (paused past the
election timeout), the hub sends the worker to the new leader, which keeps it registered."""

from __future__ import annotations

import signal
import time
from typing import Any

from .cluster import Cluster, eventually, http


def workers_seen_by(c: Cluster, i: int) -> dict[str, dict[str, Any]]:
    status, body = http("GET", c.nodes[i].url + "/api/workers")
    assert status == 200, body
    return {w["worker_id"]: w for w in body["workers"]}


def _connected_here(c: Cluster, i: int) -> float:
    """The worker websockets open on replica i itself (/metrics), not the leader's view it answers with."""
    status, text = http("GET", c.nodes[i].url + "/metrics")
    assert status == 200, text
    line = next(row for row in str(text).splitlines() if row.startswith("haco_workers_connected"))
    return float(line.split()[-1])


def _other_leader(c: Cluster, old: int) -> int | None:
    """1 + the index of a leader other than `old` (truthy for eventually), or None."""
    return next((i + 1 for i in c.alive() if i != old and c.info(i)["role"] == "leader"), None)


def test_idle_worker_moves_to_the_new_leader_when_its_leader_is_deposed(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory()
    old = c.leader()
    c.start_worker("w1", capacity=1)
    eventually(lambda: workers_seen_by(c, old).get("w1", {}).get("connected"), 20, "w1 connected to the leader")
    c.kill(old, signal.SIGSTOP)  # deposed, not dead: its sockets stay open
    try:
        new = eventually(lambda: _other_leader(c, old), 20, "a new leader") - 1
    finally:
        c.kill(old, signal.SIGCONT)
    eventually(lambda: c.info(old)["role"] != "leader", 20, "the old leader stepped down")
    w = eventually(lambda: (w := workers_seen_by(c, new).get("w1")) and w["connected"] and w, 20,
                   "w1 connected to the new leader")
    assert w["status"] == "active"
    time.sleep(0.5)
    assert workers_seen_by(c, new)["w1"]["status"] == "active"
    assert _connected_here(c, old) == 0  # the deposed replica's own hub let it go
    eventually(lambda: workers_seen_by(c, old)["w1"]["connected"], 10,
               "the deposed replica's worker table showing the leader's view")
