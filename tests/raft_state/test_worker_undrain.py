"""UndrainWorker (tag 17, cluster version 4): the way back from a drain, accepted and refused."""

from __future__ import annotations

from pathlib import Path

from raft_state import (Accepted, DrainWorker, MarkWorkerLost, Rejected, RejectCode, SetClusterVersion, State,
                        WorkerStatus, decode, encode, snapshot)
from raft_state.commands import CODE_VERSION, TYPE_BY_TAG, UndrainWorker
from tests.raft_state.state_helpers import assign, assigned_ok, register, submit

T0 = 1_000_000


def cluster(version: int = 4) -> State:
    s = State()
    s.apply(SetClusterVersion(T0, version))
    s.apply(register("w1", at_ms=T0, capacity=2))
    return s


def test_undrain_makes_a_draining_worker_take_work_again() -> None:
    s = cluster()
    s.apply(submit("a"))
    assert s.apply(DrainWorker(T0, "w1")) == Accepted("w1")
    assert not assigned_ok(s.apply(assign("a", "w1", 1, at_ms=T0)))
    drained = s.digest()
    assert s.apply(UndrainWorker(T0, "w1")) == Accepted("w1")
    assert s.workers["w1"].status is WorkerStatus.ACTIVE and s.digest() != drained
    assert assigned_ok(s.apply(assign("a", "w1", 1, at_ms=T0)))


def test_undrain_of_an_active_worker_is_already_done_and_changes_nothing() -> None:
    s = cluster()
    before = s.digest()
    assert s.apply(UndrainWorker(T0, "w1")) == Accepted("w1", already=True)
    assert s.digest() == before


def test_undrain_refuses_unknown_and_lost_workers() -> None:
    s = cluster()
    assert isinstance(s.apply(UndrainWorker(T0, "nobody")), Rejected)
    s.apply(MarkWorkerLost(T0, "w1"))
    before = s.digest()
    outcome = s.apply(UndrainWorker(T0, "w1"))
    assert isinstance(outcome, Rejected) and outcome.code is RejectCode.WORKER_UNAVAILABLE
    assert s.digest() == before and s.workers["w1"].status is WorkerStatus.LOST


def test_undrain_is_gated_on_cluster_version_4() -> None:
    s = cluster(version=3)
    s.apply(DrainWorker(T0, "w1"))
    before = s.digest()
    outcome = s.apply(UndrainWorker(T0, "w1"))
    assert isinstance(outcome, Rejected) and outcome.code is RejectCode.VERSION_GATED
    assert s.digest() == before and s.workers["w1"].status is WorkerStatus.DRAINING
    assert CODE_VERSION >= UndrainWorker.SINCE_VERSION == 4


def test_tag_17_round_trips_and_replays_to_the_same_digest() -> None:
    assert TYPE_BY_TAG[17] is UndrainWorker
    cmd = UndrainWorker(T0, "w1")
    assert decode(encode(cmd)) == [cmd]
    s = cluster()
    log = [encode(DrainWorker(T0, "w1")), encode(cmd)]
    for entry in log:
        s.apply_entry(entry)
    again = cluster()
    for entry in log:
        again.apply_entry(entry)
    assert again.digest() == s.digest()


def test_an_undrained_worker_survives_a_snapshot(tmp_path: Path) -> None:
    s = cluster()
    s.apply(register("w2", at_ms=T0))
    s.apply(DrainWorker(T0, "w1"))
    s.apply(DrainWorker(T0, "w2"))
    s.apply(UndrainWorker(T0, "w1"))
    path = tmp_path / "s.duckdb"
    snapshot.dump(snapshot.capture(s), path, raft_index=5, raft_term=1, raft_data=b"r")
    loaded = snapshot.load(path).state
    assert loaded.digest() == s.digest() == loaded.full_digest()
    assert [loaded.workers[w].status for w in ("w1", "w2")] == [WorkerStatus.ACTIVE, WorkerStatus.DRAINING]
