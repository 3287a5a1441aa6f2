"""A job waiting on dependencies: its counts and waiting lists through finishes, retries and snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from raft_state import CancelJob, State, Tick, commands, queries, snapshot
from raft_state.flow_commands import RetryJobs
from raft_state.records import JobStatus
from tests.raft_state.flow_helpers import flow, flow_job
from tests.raft_state.test_flow_rules import T0, fresh, run


def _round_trip(s: State, path: Path) -> State:
    """The state loaded from its snapshot, after checking it keeps the DAG indexes apply keeps."""
    snapshot.dump(snapshot.capture(s), path, raft_index=1, raft_term=1, raft_data=b"")
    loaded = snapshot.load(path).state
    assert loaded.digest() == s.digest()
    assert loaded._unmet == s._unmet and loaded._dependents == s._dependents
    assert list(loaded._cascade) == list(s._cascade)
    return loaded


def _runnable(s: State) -> list[str]:
    return [job.job_id for job in queries.runnable(s)]


@pytest.mark.parametrize("ends", ["failed by a dependency", "cancelled", "expired"])
def test_a_revived_job_waits_for_every_dependency(ends: str, tmp_path: Path) -> None:
    """jd waits on jx and jy; it ends while both are unfinished, is revived, then jx completes:
    jd still waits for jy, on the live state and on one loaded from a snapshot alike."""
    s = fresh()
    deadline = {"deadline_ms": T0 + 1000} if ends == "expired" else {}
    s.apply(flow("g1", flow_job("jx", "x"), flow_job("jy", "y"), flow_job("jd", "d", ("x", "y"), **deadline)))
    if ends == "failed by a dependency":
        run(s, "jy", ok=False)
        revive = "jy"  # and jd with it
    elif ends == "cancelled":
        s.apply(CancelJob(at_ms=s.now_ms, job_id="jd", reason="user"))
        revive = "jd"
    else:
        s.apply(Tick(T0 + 2000))
        revive = "jd"
    assert s.jobs["jd"].is_final and "jd" not in s._unmet
    assert all("jd" not in waiting for waiting in s._dependents.values())
    assert not s.apply(RetryJobs(s.now_ms, (revive,))).already  # type: ignore[union-attr]
    assert s.jobs["jd"].status is JobStatus.PENDING and s._unmet["jd"] == 2
    loaded = _round_trip(s, tmp_path / "a.duckdb")
    for state in (s, loaded):
        run(state, "jx")
        assert state._unmet == {"jd": 1} and "jd" not in _runnable(state)
        assert queries.why_pending(state, "jd")["waiting_on"] == ["jy"]  # type: ignore[index]
    _round_trip(s, tmp_path / "b.duckdb")
    for state in (s, loaded):
        run(state, "jy")
        assert "jd" in _runnable(state) and not state._unmet
    assert loaded.digest() == s.digest()


def test_a_cascade_cut_by_the_work_budget_loads_with_the_same_counts(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Doomed jobs still queued in the cascade: one count per failed dependency, as apply keeps it."""
    s = fresh()
    s.apply(flow("g1", flow_job("ja", "a"), flow_job("jb", "b")))
    run(s, "ja", ok=False)
    monkeypatch.setattr(commands, "TICK_WORK_MAX", 1)
    s.apply(flow("g2", flow_job("jc", "c", ("ja",)), flow_job("jd", "d", ("ja",)), flow_job("je", "e", ("ja", "jb"))))
    assert [job_id for job_id, _ in s._cascade] == ["jd", "je"]
    assert s._unmet == {"jd": 1, "je": 2} and s._dependents == {"jb": ["je"]}
    loaded = _round_trip(s, tmp_path / "s.duckdb")
    for state in (s, loaded):
        state.apply(Tick(state.now_ms))
        state.apply(Tick(state.now_ms))
        assert not state._cascade and not state._unmet and not state._dependents
        assert all(state.jobs[j].status is JobStatus.FAILED for j in ("jc", "jd", "je"))
    assert loaded.digest() == s.digest()
