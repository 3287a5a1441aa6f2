"""Named queues in placement (docs/resources.md): weighted fair share between queues, no queue
past its `max_running` (counting assignments in flight), paused queues left alone, priority and
FIFO within a queue, and the same order as before for a cluster with one queue."""

from __future__ import annotations

from collections import Counter

from raft_state import Assignment, NewJob, SetClusterVersion, State
from raft_state.queue_commands import CreateQueue, SetQueuePaused, UpdateQueue
from raft_state.records import JobStatus

from haco.scheduler.placement import plan, plan_for, plan_new
from haco.scheduler.share import FairShare
from tests.raft_state.state_helpers import applied, assign, complete, register, spec, submit


def _queued(job_id: str, queue: str, priority: int = 0) -> object:
    return submit(job_id, spec(type="noop", priority=priority).evolve(queue=queue))


def _cluster(capacity: int, *queues: tuple[str, int, int]) -> State:
    s = State()
    applied(s, SetClusterVersion(0, 5), register("w1", capacity=capacity))
    for name, weight, max_running in queues:
        assert applied(s, CreateQueue(at_ms=0, name=name, max_running=max_running, weight=weight, priority=0))
    return s


def _run(s: State, share: FairShare, rounds: int) -> Counter[str]:
    """Fill w1, then complete its oldest job and refill, `rounds` times; placements per queue."""
    placed: Counter[str] = Counter()
    for _ in range(rounds):
        free = s.workers["w1"].free_slots
        for item in plan_for(s, "w1", free, set(), None, share) if free else []:
            assert applied(s, assign(item.job_id, "w1", item.attempt))[0].value == [None]
            placed[s.jobs[item.job_id].spec.queue] += 1
        oldest = s.workers["w1"].running[0]
        applied(s, complete(oldest, s.jobs[oldest].attempt, "w1"))
    return placed


def test_two_flooded_queues_share_placements_by_weight() -> None:
    s = _cluster(2, ("a", 3, 0), ("b", 1, 0))
    applied(s, *(_queued(f"a{i}", "a") for i in range(600)), *(_queued(f"b{i}", "b") for i in range(600)))
    placed = _run(s, FairShare(), 400)
    assert abs(placed["a"] / placed["b"] - 3.0) < 0.1, placed


def test_a_high_priority_flood_in_one_queue_starves_no_other() -> None:
    s = _cluster(1, ("urgent", 1, 0), ("batch", 1, 0))
    applied(s, *(_queued(f"u{i}", "urgent", priority=100) for i in range(300)),
            *(_queued(f"b{i}", "batch", priority=-5) for i in range(300)))
    placed = _run(s, FairShare(), 200)
    assert placed["batch"] >= 90 and placed["urgent"] >= 90, placed


def test_within_a_queue_priority_then_fifo() -> None:
    s = _cluster(3, ("a", 1, 0))
    applied(s, _queued("low", "a", 0), _queued("high", "a", 9), _queued("low2", "a", 0))
    assert [i.job_id for i in plan(s, {"w1"}, 10, share=FairShare())] == ["high", "low", "low2"]


def test_one_queue_keeps_the_order_of_before() -> None:
    s = State()
    applied(s, register("w1", capacity=4), *(submit(f"j{i}", spec(type="noop", priority=i % 3)) for i in range(6)))
    assert [i.job_id for i in plan(s, {"w1"}, 10)] == ["j2", "j5", "j1", "j4"]


def test_max_running_counts_running_and_in_flight_jobs() -> None:
    s = _cluster(10, ("a", 1, 2))
    applied(s, *(_queued(f"a{i}", "a") for i in range(6)), submit("d0", spec(type="noop")))
    first = plan(s, {"w1"}, 10, share=FairShare())
    assert sorted(i.job_id for i in first) == ["a0", "a1", "d0"]  # the default queue has no limit
    inflight = {i.job_id: i for i in first}
    assert plan(s, {"w1"}, 10, frozenset(inflight), inflight=inflight, share=FairShare()) == []
    applied(s, assign("a0", "w1", 1))
    del inflight["a0"]
    assert plan(s, {"w1"}, 10, frozenset(inflight), inflight=inflight, share=FairShare()) == []
    applied(s, complete("a0", 1, "w1"))
    assert [i.job_id for i in plan(s, {"w1"}, 10, frozenset(inflight), inflight=inflight)] == ["a2"]
    new = (NewJob("n1", None, spec(type="noop").evolve(queue="a")),)
    assert plan_new(s, {"w1"}, new, {}, inflight) == []  # a1 in flight takes the room a0 left


def test_a_paused_queue_is_left_alone_and_resumes() -> None:
    s = _cluster(4, ("a", 1, 0))
    applied(s, _queued("a0", "a"), submit("d0", spec(type="noop")), SetQueuePaused(0, "a", True))
    assert [i.job_id for i in plan(s, {"w1"}, 10)] == ["d0"]
    applied(s, SetQueuePaused(0, "a", False))
    assert sorted(i.job_id for i in plan(s, {"w1"}, 10)) == ["a0", "d0"]


def test_apply_refuses_an_assignment_past_the_limit_a_deposed_leader_proposes() -> None:
    s = _cluster(10, ("a", 1, 1))
    applied(s, _queued("a0", "a"), _queued("a1", "a"))
    stale = [Assignment("a0", "w1", 1), Assignment("a1", "w1", 1)]  # planned without the limit
    from raft_state import AssignJobs
    assert applied(s, AssignJobs(0, tuple(stale)))[0].value == [None, "QUEUE_FULL"]
    applied(s, UpdateQueue(at_ms=0, name="a", max_running=2))
    assert applied(s, assign("a1", "w1", 1))[0].value == [None]
    assert s.queue_counts[("a", JobStatus.RUNNING)] == 2


def test_an_idle_queue_that_returns_gets_its_share_not_a_burst() -> None:
    s = _cluster(1, ("a", 1, 0), ("b", 1, 0))
    share = FairShare()
    applied(s, *(_queued(f"a{i}", "a") for i in range(300)))
    _run(s, share, 100)  # only a has work: its pass runs ahead
    applied(s, *(_queued(f"b{i}", "b") for i in range(300)))
    placed = _run(s, share, 40)
    assert 15 <= placed["b"] <= 25, placed


def test_classes_no_worker_can_take_cost_no_scan_budget() -> None:
    """Jobs that wait for workers that are not there (a tag no connected worker has) are skipped by
    class without counting against a queue's scan budget, so a job that fits behind any number of
    them is placed, in a plan of one job as in a plan behind one worker's report."""
    s = _cluster(4)
    applied(s, *(submit(f"away{i}", spec(type="noop", priority=5, required_tags=(f"host{i}",))) for i in range(12)))
    applied(s, *(submit(f"gpu{i}", spec(type="noop", priority=5).evolve(gpus=1 + i)) for i in range(3)))
    applied(s, submit("cpu", spec(type="noop")))
    assert [i.job_id for i in plan(s, {"w1"}, 1, share=FairShare())] == ["cpu"]
    assert [i.job_id for i in plan_for(s, "w1", 1, set(), None, FairShare())] == ["cpu"]


def test_a_replica_that_leads_again_starts_the_shares_even() -> None:
    """The passes are the leader's memory of its own term: one that was leader before, lost it and
    leads again starts even, as any new leader does, not from what it placed terms ago."""
    from haco.config import SchedulerConfig
    from haco.scheduler.core import Scheduler

    sched = Scheduler(None, None, SchedulerConfig())  # type: ignore[arg-type]
    for _ in range(50):
        sched.share.charge("a", 1)
    sched.on_role("follower")
    sched.on_role("leader")
    assert sched.share.passes == {} and sched.share.floor == 0.0


def test_a_resubmitted_key_is_not_planned_nor_charged_to_its_queue() -> None:
    """A submit whose key exists creates no job (apply answers with the existing one): planning its
    fresh id would claim a slot for an assignment apply refuses, and charge its queue's share."""
    s = _cluster(2, ("a", 1, 0))
    applied(s, submit("first", spec(type="noop").evolve(queue="a"), key="k"))
    applied(s, assign("first", "w1", 1))
    share = FairShare()
    again = NewJob("again", "k", spec(type="noop").evolve(queue="a"))
    fresh = NewJob("fresh", "k2", spec(type="noop").evolve(queue="a"))
    assert [i.job_id for i in plan_new(s, {"w1"}, (again, fresh), {}, None, share)] == ["fresh"]
    assert share.passes == {"a": 1.0}
