"""The scheduler's pure planners, on a real State: `plan` skips jobs already proposed, and
`plan_for` fills the slots that a worker's final reports free, so the assignment can ride in
the reports' log entry (Scheduler.assign_behind)."""

from __future__ import annotations

from raft_state import AssignJobs, State, encode
from raft_state.records import JobStatus

from haco.scheduler import plan, plan_for
from tests.state.state_helpers import applied, assign, complete, register, spec, submit


def _state(jobs: int, capacity: int = 2) -> State:
    s = State()
    applied(s, register("w1", capacity=capacity), *(submit(f"j{i}", spec(type="noop")) for i in range(jobs)))
    return s


def test_plan_leaves_proposed_jobs_alone() -> None:
    s = _state(4)
    assert [a.job_id for a in plan(s, {"w1"}, 10)] == ["j0", "j1"]
    assert [a.job_id for a in plan(s, {"w1"}, 10, frozenset({"j0"}))] == ["j1", "j2"]


def test_plan_for_a_full_worker_rides_behind_its_reports_in_one_entry() -> None:
    s = _state(5)
    applied(s, assign("j0", "w1", 1), assign("j1", "w1", 1))
    assert s.workers["w1"].free_slots == 0 and plan(s, {"w1"}, 10) == []
    items = plan_for(s, "w1", 2, {"j2"})  # j2: proposed elsewhere, not yet applied
    assert [(a.job_id, a.attempt) for a in items] == [("j3", 1), ("j4", 1)]
    outcomes = s.apply_entry(encode(complete("j0", 1, "w1"), complete("j1", 1, "w1"), AssignJobs(0, tuple(items))))
    assert outcomes[2].value == [None, None]  # the reports freed the slots first
    assert s.jobs["j0"].status is JobStatus.COMPLETED and s.jobs["j3"].status is JobStatus.RUNNING
    assert s.jobs["j4"].status is JobStatus.RUNNING and s.workers["w1"].free_slots == 0


def test_plan_for_when_a_report_is_refused_the_extra_assignment_is_refused_at_apply() -> None:
    s = _state(3, capacity=1)
    applied(s, assign("j0", "w1", 1))
    items = plan_for(s, "w1", 1, set())
    outcomes = s.apply_entry(encode(complete("j0", 2, "w1"), AssignJobs(0, tuple(items))))  # stale attempt
    assert outcomes[1].value == ["WORKER_UNAVAILABLE"]
    assert s.jobs[items[0].job_id].status is JobStatus.PENDING and s.workers["w1"].running == ("j0",)


def test_plan_for_nothing_for_unknown_draining_or_zero() -> None:
    s = _state(2)
    assert plan_for(s, "nope", 2, set()) == [] and plan_for(s, "w1", 0, set()) == []
