"""The scheduler's pure planners, on a real State: `plan` skips jobs and slots already proposed,
`plan_for` fills the slots that a worker's final reports free, so the assignment can ride in
the reports' log entry (Scheduler.assign_behind), and `plan_new` assigns jobs being submitted
in their own submit's entry (Scheduler.assign_submitted)."""

from __future__ import annotations

from raft_state import AssignJobs, Assignment, NewJob, State, SubmitJobs, encode
from raft_state.records import JobStatus

from haco.scheduler.placement import plan, plan_for, plan_new
from tests.raft_state.state_helpers import applied, assign, complete, register, spec, submit


def _state(jobs: int, capacity: int = 2) -> State:
    s = State()
    applied(s, register("w1", capacity=capacity), *(submit(f"j{i}", spec(type="noop")) for i in range(jobs)))
    return s


def test_plan_leaves_proposed_jobs_alone() -> None:
    s = _state(4)
    assert [a.job_id for a in plan(s, {"w1"}, 10)] == ["j0", "j1"]
    assert [a.job_id for a in plan(s, {"w1"}, 10, frozenset({"j0"}))] == ["j1", "j2"]
    assert [a.job_id for a in plan(s, {"w1"}, 10, frozenset({"j0"}), {"w1": 1})] == ["j1"]


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


def _new(job_id: str, **kw: object) -> NewJob:
    return NewJob(job_id, None, spec(type="noop", **kw))  # type: ignore[arg-type]


def test_plan_new_assigns_jobs_being_submitted_in_the_same_entry() -> None:
    s = _state(0, capacity=2)
    jobs = (_new("n1"), _new("n2"), _new("n3"), _new("gpu", required_tags=("gpu",)), _new("dep", depends_on=("n1",)))
    items = plan_new(s, {"w1"}, jobs, {})
    assert [(a.job_id, a.worker_id, a.attempt) for a in items] == [("n1", "w1", 1), ("n2", "w1", 1)]
    assert plan_new(s, {"w1"}, jobs, {"w1": 1}) == [Assignment("n1", "w1", 1)]  # one slot claimed in flight
    assert plan_new(s, set(), jobs, {}) == []  # not connected
    outcomes = s.apply_entry(encode(SubmitJobs(0, jobs), AssignJobs(0, tuple(items))))
    assert outcomes[1].value == [None, None]
    assert s.jobs["n1"].status is JobStatus.RUNNING and s.jobs["n3"].status is JobStatus.PENDING


def test_plan_new_never_overtakes_waiting_jobs_and_a_refused_submit_refuses_its_assignment() -> None:
    s = _state(1)  # j0 waits in the ready queue
    assert plan_new(s, {"w1"}, (_new("n1"),), {}) == []
    parked = State()  # a job no worker can take waits too: it is overtaken by nobody
    applied(parked, register("w1", capacity=1), submit("gpu", spec(type="noop", required_tags=("gpu",))))
    assert plan_new(parked, {"w1"}, (_new("n1"),), {}) == [Assignment("n1", "w1", 1)]
    s2 = _state(0)
    items = plan_new(s2, {"w1"}, (_new("n1"),), {})
    bad = SubmitJobs(0, (NewJob("n1", None, spec(type="noop", depends_on=("missing",))),))  # refused at apply
    outcomes = s2.apply_entry(encode(bad, AssignJobs(0, tuple(items))))
    assert outcomes[1].value == ["UNKNOWN_JOB"] and "n1" not in s2.jobs and s2.workers["w1"].running == ()
