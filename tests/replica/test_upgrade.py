"""Upgrade: data dirs written by the previous release load under this code with the same state.

The fixture (`fixtures/release2-cluster.tar.gz`, made by `fixtures/make_upgrade_fixture.py` with
the release's own code) holds three replicas' journals (pickled pysyncobj commands) and schema-3
DuckDB snapshots with pickled Raft data; r2 and r3 have journal entries after their snapshots.
`release2-cluster.json` says what the release itself replays them to: a replica started alone
applies its journal up to its persisted commit index (no leader, so nothing new is appended)."""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path
from typing import Any

from tests.integration.cluster import Cluster, eventually

FIXTURES = Path(__file__).parent / "fixtures"


def test_release2_data_dirs_start_with_the_same_digest(tmp_path: Path) -> None:
    expected = json.loads((FIXTURES / "release2-cluster.json").read_text())
    (tmp_path / "c").mkdir()
    c = Cluster(tmp_path / "c")
    with tarfile.open(FIXTURES / "release2-cluster.tar.gz") as tar:
        tar.extractall(c.root, filter="data")
    try:
        # alone (its snapshot is older than its journal end): it replays snapshot and journal, nothing more
        c.start(1)

        def replayed() -> dict[str, Any] | None:
            inf = c.info(1)
            return inf if inf["applied_index"] >= expected["replayed_index"] else None
        eventually(replayed, 60, "r2 replayed its journal")
        time.sleep(1.0)  # nothing more may come: no leader
        inf = c.info(1)
        assert (inf["applied_index"], inf["digest"]) == (expected["replayed_index"], expected["replayed_digest"]), inf
        assert inf["snapshot_index"] == expected["snapshot_index"][1], inf
        status, body = c.api(1, "GET", "/api/queue/stats")
        assert status == 200 and sum(body["counts"].values()) == expected["jobs"], body
        c.start(0)
        c.start(2)
        c.leader(30)
        status, body = c.api(2, "POST", "/api/jobs", {"type": "noop", "payload": {}, "key": "after-upgrade"})
        assert status == 201, body
        info = c.converged(30)
        assert info["applied_index"] > expected["replayed_index"]
        for i in range(3):
            status, body = c.api(i, "GET", "/api/queue/stats")
            assert status == 200 and sum(body["counts"].values()) == expected["jobs"] + 1, body
    finally:
        c.stop()
