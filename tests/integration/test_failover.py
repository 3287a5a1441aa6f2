"""Graceful failover: SIGTERM on the leader hands leadership over before the process exits."""

from __future__ import annotations

import signal
import time
from typing import Any

from .cluster import Cluster, eventually
from .test_replication import Writer, jobs_on_all


def test_sigterm_on_leader_transfers_leadership_before_exit(cluster_factory: Any) -> None:
    """Under a write load, SIGTERM the leader three times: each time the old leader sees its
    successor win (one term later) before it stops Raft, the survivors agree on that successor
    at term + 1 exactly when the old process has exited, and no acknowledged write is lost. Without
    the transfer (or with a single TimeoutNow attempt, which pysyncobj denies while the target
    lags by one entry) the old leader stops first and the survivors elect after a timeout,
    sometimes with split votes (term + 2)."""
    c: Cluster = cluster_factory(3)
    c.leader()
    writer = Writer(c)
    writer.start()
    try:
        for _ in range(3):
            before = len(writer.writes)
            eventually(lambda: len(writer.writes) > before + 20, 20, "writes flowing")
            leader = c.leader()
            old = c.info(leader)
            proc = c.nodes[leader].proc
            assert proc is not None
            survivors = [i for i in range(3) if i != leader]
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            exited = time.monotonic()
            # the old leader may exit between granting the handover and the successor's win
            # (it stops once it sees the higher term); the survivors settle at term + 1, no later

            def agreed() -> list[dict[str, Any]] | None:
                seen = [c.info(i) for i in survivors]
                leaders = {s["leader"] for s in seen}
                return seen if len(leaders) == 1 and None not in leaders and old["id"] not in leaders else None
            seen = eventually(agreed, 10, f"an agreed new leader ({exited - sent:.2f}s after SIGTERM to exit)")
            # exactly term + 1: a second election (the old leader's log grew after its TimeoutNow, so
            # the target lacked an entry the third replica had and was refused its vote) shows here
            assert len({s["term"] for s in seen}) == 1 and seen[0]["term"] == old["term"] + 1, (old["term"], seen)
            tail = c.nodes[leader].log_path.read_text().rsplit("stopping replica=", 1)[1]
            # the old leader saw its successor's higher term before it stopped Raft: without the
            # transfer it stops first and the survivors elect after their timeout, unseen by it
            assert f"role=follower term={old['term'] + 1}" in tail.split("leadership transfer")[0], tail[-3000:]
            assert "leadership transfer done" in tail
            assert f"leader now {seen[0]['leader']})" in tail, "the old leader stopped before its successor won"
            first = eventually(lambda: writer.first_ack_issued_after(sent), 20, "a write issued after SIGTERM")
            print(f"\nSIGTERM->exit {exited - sent:.2f}s, SIGTERM->first new ack {first - sent:.2f}s, "
                  f"term {old['term']}->{seen[0]['term']}")
            c.start(leader)
            c.converged(30)
    finally:
        writer.stop_flag.set()
        writer.join(40)
    # the last acknowledgement is committed on the leader; a follower applies it on the next
    # heartbeat, so compare once all three applied the same index
    c.converged(30)
    acked = set(writer.acked.values())
    for i in range(3):
        assert acked <= jobs_on_all(c, i)
