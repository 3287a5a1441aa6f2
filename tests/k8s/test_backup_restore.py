"""The README's backup procedure: copy one replica's `snapshot.duckdb` (written once, renamed into place,
never modified), and restore a whole cluster from it by seeding every replica's empty data dir."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from raft_state import snapshot

from tests.integration.cluster import Cluster, eventually, http

FAST_COMPACTION = {"HACO_COMPACTION_MIN_ENTRIES": "20", "HACO_COMPACTION_MIN_TIME_S": "1"}


def test_a_copied_snapshot_restores_a_whole_cluster(cluster_factory: Callable[..., Cluster],
                                                    tmp_path: Path) -> None:
    c = cluster_factory(3, start=False)
    c.extra_env.update(FAST_COMPACTION)
    c.start_all()
    leader = c.leader()
    for k in range(60):
        status, body = http("POST", c.nodes[leader].url + "/api/jobs", {"type": "noop", "payload": {}, "key": f"b{k}"})
        assert status == 201, body
    source = (leader + 1) % 3
    eventually(lambda: c.info(source)["snapshot_index"] > 0, 60, "a follower wrote a snapshot")
    backup = tmp_path / "backup.duckdb"
    shutil.copyfile(c.nodes[source].data_dir / "snapshot.duckdb", backup)
    saved = snapshot.load(backup)
    saved_pending = saved.state.counts[next(s for s in saved.state.counts if str(s) == "pending")]
    assert saved_pending > 0

    c.stop()
    for n in c.nodes:
        shutil.rmtree(n.data_dir)
        n.data_dir.mkdir()
        shutil.copyfile(backup, n.data_dir / "snapshot.duckdb")
    c.start_all()
    leader = c.leader(timeout_s=30)
    status, stats = http("GET", c.nodes[leader].url + "/api/queue/stats?consistency=leader")
    assert status == 200 and stats["counts"]["pending"] == saved_pending
    some_job = next(iter(saved.state.jobs))
    assert http("GET", f"{c.nodes[(leader + 2) % 3].url}/api/jobs/{some_job}")[0] == 200
    status, body = http("POST", c.nodes[leader].url + "/api/jobs", {"type": "noop", "payload": {}, "key": "after"})
    assert status == 201 and body["index"] > saved.raft_index
    assert c.converged()["applied_index"] >= body["index"]
