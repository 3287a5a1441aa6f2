"""The replication layer's fault seam: a blocklist file partitions real replicas (HACO_FAULT_FILE)."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
