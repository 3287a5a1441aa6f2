"""Issue 22, snapshots: `haco snapshot save` during a submit load, `inspect` verifies the file, a
tampered copy is refused by inspect and restore, and a new cluster restored from it in a fresh
directory (other ports, other token secret) serves every job the file holds, each replica at the
file's index with its digest. Saving needs an admin token (401 without one, 403 for a reader).
`haco operator compact` has every replica write a snapshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest

from .cluster import Cluster, eventually, http

ROOT = Path(__file__).resolve().parents[2]


def haco(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "haco", *args], capture_output=True, text=True, env=env,
                          timeout=timeout_s, cwd=ROOT)


class Load(threading.Thread):
    """Keyed submits one after another (a submitter token) until stopped; records acknowledged ids."""

    def __init__(self, c: Cluster) -> None:
        super().__init__(daemon=True)
        self.c, self.token, self.acked, self.stop_flag = c, c.token("submitter"), list[str](), threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop_flag.is_set():
            status, body = http("POST", self.c.nodes[n % 3].url + "/api/jobs",
                                {"type": "noop", "payload": {"n": n}, "key": f"load-{n}"}, token=self.token)
            if status == 201:
                self.acked.append(body["job_id"])
                n += 1


@pytest.fixture
def clusters(tmp_path: Path) -> Any:
    made: list[Cluster] = []

    def make(name: str) -> Cluster:
        (tmp_path / name).mkdir()
        made.append(Cluster(tmp_path / name, auth=True))
        return made[-1]
    yield make
    for c in made:
        c.stop()


@pytest.mark.timeout(240)
def test_save_under_load_verifies_and_restores_into_a_fresh_cluster(clusters: Any, tmp_path: Path) -> None:
    a: Cluster = clusters("a")
    a.start_all()
    a.leader()
    load = Load(a)
    load.start()
    eventually(lambda: len(load.acked) >= 50, 30, "50 acknowledged submits")
    url = a.nodes[1].url + "/api/snapshot"
    assert http("GET", url)[0] == 401
    assert http("GET", url, token=a.token("reader"))[0] == 403
    coordinators = ["--coordinators", ",".join(a.urls), "--token", a.admin or ""]
    compact = haco("operator", "compact", *coordinators, "--json")
    assert compact.returncode == 0, compact.stderr
    answers = json.loads(compact.stdout)
    assert sorted(r["id"] for r in answers) == ["r1", "r2", "r3"], answers
    assert all(r["snapshot_index"] >= r["applied_index"] > 0 for r in answers), answers
    eventually(lambda: len(load.acked) >= 100, 30, "100 acknowledged submits")
    saved = tmp_path / "backup.duckdb"
    out = haco("snapshot", "save", str(saved), *coordinators, "--json")
    assert out.returncode == 0, out.stderr
    acked_before_save = len(load.acked)
    eventually(lambda: len(load.acked) >= acked_before_save + 20, 30, "the load going on after the save")
    load.stop_flag.set()
    load.join(30)

    seen = haco("snapshot", "inspect", str(saved), "--json")
    assert seen.returncode == 0, seen.stdout + seen.stderr
    report = json.loads(seen.stdout)
    assert report["verified"] and report["digest"] == report["rebuilt_digest"], report
    con = duckdb.connect(str(saved), read_only=True)
    job_ids = [j for (j,) in con.execute("SELECT job_id FROM jobs").fetchall()]
    con.close()
    assert len(job_ids) == report["counts"]["jobs"] >= 50

    tampered = tmp_path / "tampered.duckdb"
    shutil.copyfile(saved, tampered)
    con = duckdb.connect(str(tampered))
    con.execute("UPDATE jobs SET status = 'completed' WHERE job_id = ?", [job_ids[0]])
    con.close()
    assert haco("snapshot", "inspect", str(tampered)).returncode == 1
    refused = haco("snapshot", "restore", str(tampered), "--data-dir", str(tmp_path / "nowhere"))
    assert refused.returncode == 1 and "does not verify" in refused.stderr, refused.stderr
    assert not (tmp_path / "nowhere").exists()
    a.stop()

    b: Cluster = clusters("b")
    for n in b.nodes:
        done = haco("snapshot", "restore", str(saved), "--data-dir", str(n.data_dir))
        assert done.returncode == 0, done.stderr
    b.start_all()
    b.leader(timeout_s=30)
    line = f"loaded snapshot index={report['raft_index']} term={report['raft_term']} digest={report['digest']}"
    for n in b.nodes:
        assert line in n.log_path.read_text(), (n.id, line)
    for i, job_id in enumerate(job_ids):
        status, body = b.api(i % 3, "GET", f"/api/jobs/{job_id}")
        assert status == 200, body
    info = b.converged(timeout_s=30)
    assert info["applied_index"] > report["raft_index"] and info["term"] > report["raft_term"]
    status, body = b.api(0, "POST", "/api/jobs", {"type": "noop", "payload": {}, "key": "after-restore"})
    assert status == 201, body
