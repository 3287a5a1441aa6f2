"""GET/POST /api/snapshot over the real app, and a saved file through inspect and restore.

The cluster path (save under load, a restored cluster in a fresh directory, tokens) is
tests/integration/test_snapshots.py; here the file side, without processes."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from aiohttp.test_utils import TestClient

from haco.replica.journal import RaftJournal
from haco.server.snapshot_file import SnapshotRefused, inspect, restore
from tests.server.fake_replica import FakeReplica

JOB = {"type": "noop", "payload": {}}


async def _saved(client: TestClient, tmp_path: Path, n_jobs: int = 5) -> Path:
    for i in range(n_jobs):
        r = await client.post("/api/jobs", json={**JOB, "key": f"k{i}"})
        assert r.status == 201, await r.text()
    r = await client.post("/api/snapshot")
    assert r.status == 200, await r.text()
    r = await client.get("/api/snapshot")
    assert r.status == 200 and r.headers["X-Haco-Snapshot-Index"] == str(n_jobs)
    path = tmp_path / "saved.duckdb"
    path.write_bytes(await r.read())
    return path


async def test_a_saved_snapshot_verifies_with_its_counts(client: TestClient, replica: FakeReplica,
                                                         tmp_path: Path) -> None:
    path = await _saved(client, tmp_path)
    found = inspect(path)
    assert found.verified, found.problem
    assert (found.raft_index, found.raft_term) == (5, 1)
    assert found.digest == found.rebuilt_digest == f"{replica.state.digest():016x}"
    assert found.counts["jobs"] == 5 and found.counts["keys"] == 5 and found.jobs_by_status == {"pending": 5}


async def test_get_takes_a_snapshot_when_there_is_none(client: TestClient, replica: FakeReplica) -> None:
    assert not replica.dump_path.exists()
    r = await client.get("/api/snapshot")
    assert r.status == 200 and replica.dump_path.exists()
    assert await r.read() == replica.dump_path.read_bytes()


def _tamper(path: Path, sql: str) -> None:
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.execute("CHECKPOINT")
    con.close()


@pytest.mark.parametrize("sql", ["UPDATE jobs SET priority = priority + 1 WHERE seq = 1",
                                 "DELETE FROM keys WHERE seq = 2",
                                 "UPDATE meta SET v = '\\xCD\\x03\\xE7'::BLOB WHERE k = 'raft_index'"])  # index 999)
async def test_a_tampered_file_is_refused_by_inspect_and_restore(client: TestClient, tmp_path: Path,
                                                                 sql: str) -> None:
    path = await _saved(client, tmp_path)
    _tamper(path, sql)
    found = inspect(path)
    assert not found.verified and found.problem
    with pytest.raises(SnapshotRefused, match="does not verify"):
        restore(path, tmp_path / "r1")
    assert not (tmp_path / "r1").exists()


def test_garbage_is_not_a_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "x.duckdb"
    path.write_bytes(b"not a snapshot" * 100)
    assert "not a readable snapshot" in str(inspect(path).problem)


async def test_restore_writes_the_dump_and_a_journal_at_its_index_and_term(client: TestClient,
                                                                           tmp_path: Path) -> None:
    path = await _saved(client, tmp_path)
    done = restore(path, tmp_path / "r1")
    assert (done.raft_index, done.raft_term, done.jobs) == (5, 1, 5)
    assert (tmp_path / "r1" / "snapshot.duckdb").read_bytes() == path.read_bytes()
    journal = RaftJournal(tmp_path / "r1" / "raft.journal")
    assert [(i, t) for _, i, t in journal] == [(4, 1), (5, 1)]
    assert journal.getRaftCommitIndex() == 5 and journal.getCurrentTerm() == 1
    journal._destroy()


async def test_restore_into_a_used_data_dir_needs_force_and_keeps_the_old_files(client: TestClient,
                                                                                tmp_path: Path) -> None:
    path = await _saved(client, tmp_path)
    d = tmp_path / "r1"
    d.mkdir()
    (d / "raft.journal").write_bytes(b"old journal")
    with pytest.raises(SnapshotRefused, match="--force"):
        restore(path, d)
    done = restore(path, d, force=True)
    assert done.moved_aside is not None and (Path(done.moved_aside) / "raft.journal").read_bytes() == b"old journal"
    assert inspect(d / "snapshot.duckdb").verified
