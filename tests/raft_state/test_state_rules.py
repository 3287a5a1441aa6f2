"""Example tests of the rules: order, DAG, backoff, keys, reports, lost attempts, time, version gate."""

from __future__ import annotations

from raft_state import (Accepted, CancelJob, JobStatus, MarkWorkerLost, NewJob, PruneJobs, Rejected, RejectCode,
                        RevokeToken, SetClusterVersion, SetPaused, StartAttempt, State, SubmitJobs, Tick,
                        TimeoutAttempt, queries)
from raft_state.commands import LOST_ATTEMPTS_MAX, MAX_CLOCK_STEP_MS, TICK_WORK_MAX
from tests.raft_state.state_helpers import assign, assigned_ok, complete, fail, register, spec, submit

T0 = 1_000_000


def started(*cmds: object) -> State:
    s = State()
    s.apply(Tick(T0))
    for cmd in cmds:
        s.apply(cmd)  # type: ignore[arg-type]
    return s


def order(s: State) -> list[str]:
    return [j.job_id for j in queries.runnable(s)]


def test_runnable_is_priority_then_fifo() -> None:
    s = started(register("w", at_ms=T0, capacity=4))
    for job_id, prio in (("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -3), ("f", 10)):
        s.apply(submit(job_id, spec(priority=prio)))
    assert order(s) == ["f", "b", "d", "a", "c", "e"]
    assert assigned_ok(s.apply(assign("f", "w", 1, at_ms=T0)))
    assert order(s) == ["b", "d", "a", "c", "e"]


def test_an_assignment_to_a_worker_that_is_not_registered_is_refused_and_changes_nothing() -> None:
    s = started(register("w", at_ms=T0), submit("a"))
    before = s.digest()
    assert s.apply(assign("a", "nobody", 1, at_ms=T0)) == Accepted(["UNKNOWN_WORKER"])
    assert s.digest() == before and s.jobs["a"].status is JobStatus.PENDING and order(s) == ["a"]


def test_reports_about_a_job_that_does_not_exist_are_refused_and_change_nothing() -> None:
    s = started(register("w", at_ms=T0), submit("a"))
    before = s.digest()
    for report in (StartAttempt(T0, "ghost", 1, "w"), complete("ghost", 1, "w", at_ms=T0),
                   fail("ghost", 1, "w", at_ms=T0), TimeoutAttempt(T0, "ghost", 1)):
        outcome = s.apply(report)
        assert isinstance(outcome, Rejected) and outcome.code is RejectCode.UNKNOWN_JOB, (report, outcome)
    assert s.digest() == before


def test_runnable_skips_jobs_no_worker_can_take() -> None:
    s = started(register("w", at_ms=T0, capacity=4, tags=("cpu",)))
    s.apply(submit("gpu-job", spec(priority=100, required_tags=("gpu",))))
    s.apply(submit("plain", spec()))
    assert order(s) == ["plain"]
    s.apply(register("g", at_ms=T0, tags=("gpu",)))
    assert order(s) == ["gpu-job", "plain"]


def test_completion_releases_dependents() -> None:
    s = started(register("w", at_ms=T0, capacity=4))
    s.apply(SubmitJobs(T0, (NewJob("a", None, spec()), NewJob("b", None, spec(depends_on=("a",))))))
    assert order(s) == ["a"]
    assert queries.why_pending(s, "b") == {"waiting_on": ["a"]}
    s.apply(assign("a", "w", 1, at_ms=T0))
    s.apply(complete("a", 1, "w", at_ms=T0 + 10))
    assert order(s) == ["b"]


def test_failure_cascades_through_the_dag() -> None:
    s = started(register("w", at_ms=T0))
    s.apply(submit("a"))
    s.apply(submit("b", spec(depends_on=("a",))))
    s.apply(submit("c", spec(depends_on=("b",))))
    s.apply(assign("a", "w", 1, at_ms=T0))
    s.apply(fail("a", 1, "w", at_ms=T0 + 1))
    assert s.jobs["a"].status is JobStatus.FAILED
    assert s.jobs["b"].status is JobStatus.FAILED and s.jobs["b"].error == "dependency a failed"
    assert s.jobs["c"].status is JobStatus.FAILED and s.jobs["c"].error == "dependency b failed"
    s.apply(submit("late", spec(depends_on=("a",))))  # depends on a job that already failed: doomed at once
    assert s.jobs["late"].status is JobStatus.FAILED


def test_cascade_is_bounded_per_command_and_continues_on_ticks() -> None:
    s = started(register("w", at_ms=T0))
    s.apply(submit("root"))
    n = TICK_WORK_MAX + 500
    for start in range(0, n, 1000):
        s.apply(SubmitJobs(T0, tuple(NewJob(f"d{i}", None, spec(depends_on=("root",)))
                                     for i in range(start, min(n, start + 1000)))))
    s.apply(CancelJob(T0, "root", "no"))
    assert s.counts[JobStatus.FAILED] == TICK_WORK_MAX and s.counts[JobStatus.PENDING] == 500
    assert queries.why_pending(s, f"d{n - 1}")["failing"] == "dependency root cancelled"  # type: ignore[index]
    s.apply(Tick(T0 + 1))
    assert s.counts[JobStatus.FAILED] == n and s.counts[JobStatus.PENDING] == 0
    assert s.digest() == s.full_digest()


def test_backoff_is_exponential() -> None:
    s = started(register("w", at_ms=T0))
    s.apply(submit("j", spec(max_retries=3, backoff_ms=1000)))
    now, waits = T0, []
    for attempt in (1, 2, 3):
        assert assigned_ok(s.apply(assign("j", "w", attempt, at_ms=now)))
        s.apply(fail("j", attempt, "w", at_ms=now))
        waits.append(s.jobs["j"].not_before_ms - now)
        assert queries.why_pending(s, "j") == {"backoff_until_ms": now + waits[-1]}
        assert s.apply(assign("j", "w", attempt + 1, at_ms=now)) == Accepted(["NOT_RUNNABLE"])
        s.apply(Tick(now + waits[-1] - 1))
        assert "j" not in s.ready
        now += waits[-1]
        s.apply(Tick(now))
        assert "j" in s.ready
    assert waits == [1000, 2000, 4000]
    s.apply(assign("j", "w", 4, at_ms=now))
    s.apply(fail("j", 4, "w", at_ms=now))
    assert s.jobs["j"].status is JobStatus.FAILED and s.jobs["j"].failures == 4


def test_same_key_returns_the_same_job_even_after_a_prune() -> None:
    s = started(register("w", at_ms=T0))
    assert s.apply(submit("j1", key="k")) == Accepted(["j1"])
    assert s.apply(submit("j2", key="k")) == Accepted(["j1"], already=True)
    s.apply(assign("j1", "w", 1, at_ms=T0))
    s.apply(complete("j1", 1, "w", at_ms=T0 + 5))
    out = s.apply(PruneJobs(T0, finished_before_ms=T0 + 6, keys_before_ms=0))
    assert out == Accepted({"jobs": 1, "keys": 0, "tokens": 0}) and "j1" not in s.jobs
    assert s.apply(submit("j3", key="k")) == Accepted(["j1"], already=True)  # the tombstone answers
    assert "j3" not in s.jobs
    s.apply(PruneJobs(T0, finished_before_ms=0, keys_before_ms=T0 + 1))
    assert s.apply(submit("j4", key="k")) == Accepted(["j4"])  # the key's own retention ended


def test_same_key_with_another_spec_is_key_reused() -> None:
    s = started()
    s.apply(submit("j1", spec(priority=1), key="k"))
    out = s.apply(submit("j2", spec(priority=2), key="k"))
    assert isinstance(out, Rejected) and out.code is RejectCode.KEY_REUSED and out.detail["job_id"] == "j1"
    batch = SubmitJobs(T0, (NewJob("x", "k2", spec()), NewJob("y", "k2", spec(priority=9))))
    assert isinstance(s.apply(batch), Rejected) and "x" not in s.jobs  # all or nothing


def test_stale_and_repeated_reports() -> None:
    s = started(register("w", at_ms=T0, capacity=2), register("v", at_ms=T0))
    s.apply(submit("j", spec(max_retries=1, backoff_ms=0)))
    s.apply(assign("j", "w", 1, at_ms=T0))
    assert s.apply(StartAttempt(T0, "j", 1, "w")) == Accepted("j")
    assert s.apply(StartAttempt(T0, "j", 1, "w")) == Accepted("j", already=True)
    s.apply(fail("j", 1, "w", at_ms=T0 + 1))
    assert s.apply(fail("j", 1, "w", at_ms=T0 + 2)) == Accepted("j", already=True)
    s.apply(Tick(T0 + 2))
    assert assigned_ok(s.apply(assign("j", "v", 2, at_ms=T0 + 2)))
    stale = s.apply(complete("j", 1, "w", at_ms=T0 + 3))
    assert isinstance(stale, Rejected) and stale.code is RejectCode.STALE_ATTEMPT
    wrong_worker = s.apply(complete("j", 2, "w", at_ms=T0 + 3))
    assert isinstance(wrong_worker, Rejected) and wrong_worker.code is RejectCode.STALE_ATTEMPT
    assert s.apply(complete("j", 2, "v", at_ms=T0 + 4, result="first")) == Accepted("j")
    assert s.apply(complete("j", 2, "v", at_ms=T0 + 5, result="second")) == Accepted("j", already=True)
    assert s.jobs["j"].result == b"\xa5first"  # the recorded result never changes
    late_fail = s.apply(fail("j", 2, "v", at_ms=T0 + 6))
    assert isinstance(late_fail, Rejected) and late_fail.code is RejectCode.STALE_ATTEMPT
    assert s.apply(assign("j", "w", 2, at_ms=T0)) == Accepted(["NOT_PENDING"])


def test_timeout_only_after_the_attempt_ran_out() -> None:
    s = started(register("w", at_ms=T0))
    s.apply(submit("j", spec(timeout_ms=5000)))
    s.apply(assign("j", "w", 1, at_ms=T0))
    early = s.apply(TimeoutAttempt(T0 + 4999, "j", 1))
    assert isinstance(early, Rejected) and early.code is RejectCode.TOO_EARLY
    assert s.apply(TimeoutAttempt(T0 + 5000, "j", 1)) == Accepted("j")
    assert s.jobs["j"].status is JobStatus.FAILED and s.jobs["j"].attempts[-1].outcome == "timed_out"


def test_lost_attempts_do_not_consume_retries_but_are_capped() -> None:
    s = started(register("w", at_ms=T0))
    s.apply(submit("j", spec(max_retries=0)))
    for attempt in range(1, LOST_ATTEMPTS_MAX + 2):
        s.apply(register("w", at_ms=T0))  # the worker comes back
        assert assigned_ok(s.apply(assign("j", "w", attempt, at_ms=T0)))
        s.apply(MarkWorkerLost(T0, "w"))
        job = s.jobs["j"]
        assert job.failures == 0 and job.lost == attempt
        if attempt <= LOST_ATTEMPTS_MAX:
            assert job.status is JobStatus.PENDING and job.attempts[-1].outcome == "lost"
    assert s.jobs["j"].status is JobStatus.FAILED and "lost its worker" in (s.jobs["j"].error or "")
    assert s.workers["w"].running == ()


def test_clock_is_bounded_monotonic_and_moved_only_by_the_leader() -> None:
    s = State()
    s.apply(Tick(T0))
    assert s.now_ms == T0
    s.apply(Tick(T0 + 10 * MAX_CLOCK_STEP_MS))
    assert s.now_ms == T0 + MAX_CLOCK_STEP_MS
    s.apply(Tick(T0))
    assert s.now_ms == T0 + MAX_CLOCK_STEP_MS  # never backwards
    now = s.now_ms
    s.apply(submit("j", at_ms=now + 999_999))  # a follower's stamp: recorded, does not move time
    s.apply(SetPaused(now + 5, True))
    s.apply(CancelJob(now + 5, "j", "x"))
    assert s.now_ms == now and s.jobs["j"].created_at_ms == now + 999_999


def test_deadline_expires_unstarted_jobs_on_tick() -> None:
    s = started()
    s.apply(submit("j", spec(deadline_ms=T0 + 1000)))
    s.apply(register("w", at_ms=T0 + 1000))
    assert list(queries.runnable(s)) == []
    assert s.apply(assign("j", "w", 1, at_ms=T0 + 1000)) == Accepted(["NOT_RUNNABLE"])
    s.apply(Tick(T0 + 1000))
    assert s.jobs["j"].status is JobStatus.EXPIRED


def test_version_gate() -> None:
    s = started()
    gated = s.apply(RevokeToken(T0, "tok", T0 + 10))
    assert isinstance(gated, Rejected) and gated.code is RejectCode.VERSION_GATED and "tok" not in s.revoked
    assert s.apply(SetClusterVersion(T0, 2)) == Accepted(2)
    assert s.apply(RevokeToken(T0, "tok", T0 + 10)) == Accepted("tok")
    back = s.apply(SetClusterVersion(T0, 1))
    assert isinstance(back, Rejected) and s.cluster_version == 2
    s.apply(Tick(T0 + 11))
    assert s.apply(PruneJobs(T0, 0, 0)).value["tokens"] == 1 and not s.revoked  # type: ignore[union-attr]


def test_why_pending_reasons() -> None:
    s = started(register("small", at_ms=T0, memory_gb=4, tags=("cpu",)), register("big", at_ms=T0, memory_gb=8))
    s.apply(submit("tagged", spec(required_tags=("gpu",))))
    why = queries.why_pending(s, "tagged")
    assert why is not None and set(why["no_worker_fits"]) == {"small", "big"}
    assert "missing tags ['gpu']" in why["no_worker_fits"]["small"]
    s.apply(submit("hungry", spec(min_memory_gb=64)))
    why = queries.why_pending(s, "hungry")
    assert why is not None and all("memory" in r[0] for r in why["no_worker_fits"].values())
    s.apply(submit("first", spec(timeout_ms=1000)))
    s.apply(submit("second", spec(depends_on=("first",))))
    assert queries.why_pending(s, "second") == {"waiting_on": ["first"]}
    s.apply(SetPaused(T0, True))
    assert queries.why_pending(s, "first") == {"paused": True}
    s.apply(SetPaused(T0, False))
    assert queries.why_pending(s, "first") == {"queued": "runnable; 0 jobs ahead of it"}
    assert queries.why_pending(State(), "nope") is None
