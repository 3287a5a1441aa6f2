"""The replication layer's fault seam: a blocklist file partitions real replicas (HACO_FAULT_FILE)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from tests.integration.cluster import Cluster, eventually, http


def _write(path: Path, table: dict[str, list[str]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table))
    os.replace(tmp, path)


def test_blocklist_isolates_the_leader_and_heals(tmp_path: Path) -> None:
    fault_file = tmp_path / "faults.json"
    c = Cluster(tmp_path, 3, extra_env={"HACO_FAULT_FILE": str(fault_file)})
    try:
        c.start_all()
        old = c.leader()
        addr = {i: f"127.0.0.1:{n.raft_port}" for i, n in enumerate(c.nodes)}
        others = [i for i in range(3) if i != old]
        table = {addr[old]: [addr[i] for i in others]} | {addr[i]: [addr[old]] for i in others}
        _write(fault_file, table)

        def new_leader_elsewhere() -> bool:
            infos = [c.info(i) for i in others]
            return any(inf["role"] == "leader" for inf in infos) and c.info(old)["role"] != "leader"
        eventually(new_leader_elsewhere, 15, "a new leader in the majority and the old one stepped down")
        status, body = http("POST", c.nodes[others[0]].url + "/api/jobs",
                            {"type": "noop", "payload": {}, "key": "during-partition"})
        assert status == 201, body
        assert not c.info(old)["has_quorum"]

        _write(fault_file, {})
        c.leader()
        c.converged(timeout_s=20)
        assert "during-partition" in {j["key"] for j in http("GET", c.nodes[old].url + "/api/jobs")[1]["jobs"]}
    finally:
        c.stop()


def test_a_partitioned_leader_never_acknowledges_entries_its_successor_replaced(tmp_path: Path) -> None:
    """Cut the leader off while it takes writes, let the majority elect and compact past it, heal:
    the old leader learns the new log through a streamed snapshot. Its writes of the old term were
    never committed; none may be acknowledged unless the job exists afterwards. pysyncobj let the
    snapshot stream's messages raise the old leader's commit index over those entries, which it
    then applied and acknowledged (haco/replica/raft/PATCHES.md, change 4)."""
    fault_file = tmp_path / "faults.json"
    c = Cluster(tmp_path, 3, extra_env={"HACO_FAULT_FILE": str(fault_file), "HACO_COMPACTION_MIN_ENTRIES": "20",
                                        "HACO_COMPACTION_MIN_TIME_S": "0.3"})
    answers: dict[str, tuple[int, Any]] = {}
    try:
        c.start_all()
        old = c.leader()
        addr = {i: f"127.0.0.1:{n.raft_port}" for i, n in enumerate(c.nodes)}
        others = [i for i in range(3) if i != old]

        def stale_write(key: str) -> None:
            answers[key] = http("POST", c.nodes[old].url + "/api/jobs", {"type": "noop", "payload": {}, "key": key},
                                timeout=15)
        writers = [threading.Thread(target=stale_write, args=(f"stale-{k}",), daemon=True) for k in range(6)]
        _write(fault_file, {addr[old]: [addr[i] for i in others]} | {addr[i]: [addr[old]] for i in others})
        for t in writers:
            t.start()

        def new_leader() -> list[int] | None:  # a list: replica 0 is a leader too
            return next(([i] for i in others if c.info(i)["role"] == "leader"), None)
        leader = eventually(new_leader, 15, "a leader in the majority")[0]
        for n in range(60):  # past the old leader's log, and compacted past it
            status, body = http("POST", c.nodes[leader].url + "/api/jobs", {"type": "noop", "payload": {}, "key": f"new-{n}"})
            assert status == 201, body
        eventually(lambda: c.info(leader)["snapshot_index"] > c.info(old)["applied_index"] + 1, 15,
                   "the new leader compacted past the old one")
        _write(fault_file, {})
        for t in writers:
            t.join(20)
        c.leader()
        c.converged(timeout_s=30)
        jobs = {j["key"]: j["job_id"] for j in http("GET", c.nodes[old].url + "/api/jobs?limit=1000")[1]["jobs"]}
        acked = {key: body["job_id"] for key, (status, body) in answers.items() if status == 201}
        assert len(answers) == len(writers)
        for key, job_id in acked.items():
            assert jobs.get(key) == job_id, f"{key} acknowledged as {job_id} by the cut-off leader, then lost"
    finally:
        c.stop()
