"""Named queues at apply (raft_state/queues.py): across random command sequences, snapshot round
trips and assignments proposed on stale views (a deposed leader's), no queue runs more jobs than
its `max_running` once the limit is set, a paused queue starts nothing, the per-queue counts match
the jobs, and a state loaded from its snapshot or replayed from its log is the same state."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raft_state import (Accepted, AssignJobs, Assignment, MarkWorkerLost, Rejected, SetClusterVersion, State,
                        encode, snapshot)
from raft_state.queue_commands import CreateQueue, DeleteQueue, SetQueuePaused, UpdateQueue
from raft_state.records import JobStatus
from tests.raft_state.state_helpers import complete, fail, register, spec, submit

QUEUES = ("default", "a", "b")

step = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(QUEUES), st.integers(0, 3), st.integers(1, 4)),
    st.tuples(st.just("create"), st.sampled_from(QUEUES[1:]), st.integers(1, 2), st.integers(1, 4)),
    st.tuples(st.just("update"), st.sampled_from(QUEUES), st.one_of(st.none(), st.integers(0, 3)),
              st.one_of(st.none(), st.integers(0, 2))),
    st.tuples(st.just("pause"), st.sampled_from(QUEUES), st.booleans()),
    st.tuples(st.just("pause"), st.sampled_from(QUEUES), st.just(True)),
    st.tuples(st.just("delete"), st.sampled_from(QUEUES)),
    st.tuples(st.just("delete"), st.sampled_from(QUEUES[1:])),
    st.tuples(st.just("submit"), st.sampled_from(QUEUES), st.integers(1, 3)),
    st.tuples(st.just("submit"), st.sampled_from(QUEUES[1:]), st.integers(1, 3)),
    st.tuples(st.just("submit"), st.sampled_from(QUEUES), st.integers(1, 3)),
    st.tuples(st.just("submit"), st.sampled_from(QUEUES), st.integers(1, 3)),
    st.tuples(st.just("assign"), st.integers(0, 30), st.sampled_from(("w1", "w2")), st.integers(1, 3)),
    st.tuples(st.just("assign"), st.integers(0, 5), st.sampled_from(("w1", "w2")), st.integers(1, 4)),
    st.tuples(st.just("end"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("lose"), st.sampled_from(("w1", "w2"))),
    st.tuples(st.just("snapshot")),
)


def _fresh() -> tuple[State, list[bytes]]:
    s, log = State(), []
    for cmd in (SetClusterVersion(0, 5), register("w1", capacity=6), register("w2", capacity=6)):
        log.append(encode(cmd))
        s.apply(cmd)
    return s, log


def _running(s: State, queue: str) -> int:
    return sum(1 for j in s.jobs.values() if j.status is JobStatus.RUNNING and j.spec.queue == queue)


def _play(steps: list[tuple[object, ...]], seen: Counter[str]) -> None:
    s, log = _fresh()
    n = 0

    def run(cmd: object) -> object:
        log.append(encode(cmd))  # type: ignore[arg-type]
        return s.apply(cmd)  # type: ignore[arg-type]

    for item in steps:
        kind = item[0]
        if kind == "create":
            _, name, limit, weight = item
            out = run(CreateQueue(at_ms=0, name=str(name), max_running=int(limit), weight=int(weight), priority=0))
            seen[f"create {'accepted' if isinstance(out, Accepted) and not out.already else 'other'}"] += 1
        elif kind == "update":
            _, name, limit, prio = item
            run(UpdateQueue(at_ms=0, name=str(name), max_running=limit, priority=prio))  # type: ignore[arg-type]
        elif kind == "pause":
            run(SetQueuePaused(0, str(item[1]), bool(item[2])))
        elif kind == "delete":
            out = run(DeleteQueue(0, str(item[1])))
            seen[f"delete {out.code if isinstance(out, Rejected) else 'accepted'}"] += 1
        elif kind == "submit":
            _, name, count = item
            for _ in range(int(count)):  # type: ignore[call-overload]
                run(submit(f"j{n}", spec(type="noop").evolve(queue=str(name))))
                n += 1
        elif kind == "assign":  # any job, any worker: what a stale plan or a deposed leader proposes
            _, j, wid, count = item
            items = []
            for k in range(int(count)):  # type: ignore[call-overload]
                job_id = f"j{(n - 1 - int(j) - k) % max(n, 1)}"  # recent jobs: likely still pending  # type: ignore[call-overload]
                job = s.jobs.get(job_id)
                items.append(Assignment(job_id, str(wid), job.attempt + 1 if job else 1))
            before = {q: _running(s, q) for q in QUEUES}
            out = run(AssignJobs(0, tuple(items)))
            assert isinstance(out, Accepted)
            for it, code in zip(items, out.value):
                seen[f"assign {code or 'accepted'}"] += 1
                if code is None:
                    q = s.jobs[it.job_id].spec.queue
                    rec = s.queues.get(q)
                    assert rec is None or not rec.paused, "a paused queue started a job"
                    assert rec is None or not rec.max_running or _running(s, q) <= rec.max_running, \
                        f"queue {q} over max_running {rec.max_running}"
                    if rec is not None and rec.max_running:
                        seen["accepted into a limited queue"] += 1
            assert all(_running(s, q) >= before[q] for q in QUEUES)
        elif kind == "end":
            job = s.jobs.get(f"j{int(item[1]) % max(n, 1)}")  # type: ignore[call-overload]
            if job is not None and job.status is JobStatus.RUNNING:
                wid = job.worker_id or ""
                run(complete(job.job_id, job.attempt, wid) if item[2] else fail(job.job_id, job.attempt, wid))
        elif kind == "lose":
            run(MarkWorkerLost(0, str(item[1])))
            run(register(str(item[1]), capacity=6))
        else:
            with tempfile.TemporaryDirectory() as d:
                snapshot.dump(snapshot.capture(s), Path(d) / "s.duckdb", raft_index=1, raft_term=1, raft_data=b"")
                loaded = snapshot.load(Path(d) / "s.duckdb").state
            assert loaded.queues == s.queues and loaded.queue_counts == {k: v for k, v in s.queue_counts.items() if v}
            assert loaded.digest() == s.digest() == loaded.full_digest()
            s = loaded
            seen["snapshot"] += 1
        tally = Counter((j.spec.queue, j.status) for j in s.jobs.values())
        assert {k: v for k, v in s.queue_counts.items() if v} == dict(tally)
        assert s.digest() == s.full_digest()
    replayed = State()
    for entry in log:
        replayed.apply_entry(entry)
    assert replayed.digest() == s.digest() and replayed.queues == s.queues


def test_no_queue_over_its_limit_across_random_sequences_snapshots_and_stale_plans() -> None:
    seen: Counter[str] = Counter()
    check = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))(
        given(st.lists(step, min_size=5, max_size=50))(lambda steps: _play(steps, seen)))
    check()
    # accepted, not only refused: the runs reached every branch that matters
    for what in ("create accepted", "assign accepted", "accepted into a limited queue", "assign QUEUE_FULL",
                 "assign QUEUE_PAUSED", "delete accepted", "delete QUEUE_NOT_EMPTY", "snapshot"):
        assert seen[what] > 0, (what, seen)


def test_queue_commands_are_gated_on_cluster_version_5() -> None:
    s = State()
    s.apply(SetClusterVersion(0, 4))
    out = s.apply(CreateQueue(at_ms=0, name="a", max_running=1, weight=1, priority=0))
    assert isinstance(out, Rejected) and out.code == "VERSION_GATED" and s.queues == {}


def test_create_update_pause_delete() -> None:
    s, _ = _fresh()
    assert s.apply(CreateQueue(at_ms=5, name="gpu", max_running=2, weight=3, priority=7)) == Accepted("gpu")
    assert s.apply(CreateQueue(at_ms=6, name="gpu", max_running=2, weight=3, priority=7)).already  # type: ignore[union-attr]
    other = s.apply(CreateQueue(at_ms=6, name="gpu", max_running=9, weight=3, priority=7))
    assert isinstance(other, Rejected) and other.code == "QUEUE_EXISTS"
    assert s.apply(UpdateQueue(at_ms=7, name="gpu", weight=5)) == Accepted("gpu")
    assert (s.queues["gpu"].weight, s.queues["gpu"].max_running, s.queues["gpu"].priority) == (5, 2, 7)
    missing = s.apply(UpdateQueue(at_ms=7, name="nope", weight=5))
    assert isinstance(missing, Rejected) and missing.code == "UNKNOWN_QUEUE"
    bad = s.apply(CreateQueue(at_ms=0, name="x", max_running=-1, weight=0, priority=0))
    assert isinstance(bad, Rejected) and bad.code == "INVALID"
    assert s.apply(SetQueuePaused(8, "default", True)) == Accepted("default") and s.queues["default"].paused
    s.apply(submit("j1", spec(type="noop").evolve(queue="gpu")))
    busy = s.apply(DeleteQueue(9, "gpu"))
    assert isinstance(busy, Rejected) and busy.code == "QUEUE_NOT_EMPTY"
    assert isinstance(s.apply(DeleteQueue(9, "default")), Rejected)
    assert s.digest() == s.full_digest()


def test_a_queue_a_schedule_submits_to_cannot_be_deleted() -> None:
    """Otherwise the schedule's runs land in a queue without a record: no limit, no pause, and a
    name no submit may give (UNKNOWN_QUEUE) until it is created again."""
    from raft_state.flow_commands import DeleteSchedule
    from tests.raft_state.flow_helpers import create_schedule

    s, _ = _fresh()
    s.apply(SetClusterVersion(0, 5))
    assert s.apply(CreateQueue(at_ms=1, name="nightly", max_running=1, weight=1, priority=0)) == Accepted("nightly")
    assert isinstance(s.apply(create_schedule("s1", template=[("run", spec().evolve(queue="nightly"))])), Accepted)
    busy = s.apply(DeleteQueue(2, "nightly"))
    assert isinstance(busy, Rejected) and busy.code == "QUEUE_NOT_EMPTY", busy
    assert busy.detail == {"queue": "nightly", "jobs": 0, "schedules": ["s1"]} and "s1" in busy.message
    assert "nightly" in s.queues
    assert s.apply(DeleteSchedule(3, "s1")) == Accepted("s1")
    assert s.apply(DeleteQueue(4, "nightly")) == Accepted("nightly")
    assert s.digest() == s.full_digest()


def test_a_submit_into_a_queue_deleted_after_the_api_checked_it_is_refused_at_apply() -> None:
    """The API checks the queue a job names on its replica's view; a DeleteQueue applied first (or a
    lagging view) must not leave jobs, a group's or a schedule's, in a queue without a record."""
    from raft_state.flow_commands import SubmitFlow
    from tests.raft_state.flow_helpers import create_schedule, flow_job

    s, _ = _fresh()
    assert s.apply(CreateQueue(at_ms=1, name="nightly", max_running=1, weight=1, priority=0)) == Accepted("nightly")
    assert s.apply(DeleteQueue(2, "nightly")) == Accepted("nightly")
    before = s.digest()
    nightly = spec().evolve(queue="nightly")
    for cmd in (submit("j1", nightly), SubmitFlow(at_ms=3, group_id="g", jobs=(flow_job("f1", the_spec=nightly),)),
                create_schedule("s1", template=[("run", nightly)])):
        out = s.apply(cmd)
        assert isinstance(out, Rejected) and out.code == "UNKNOWN_QUEUE" and out.detail["queue"] == "nightly", out
    assert s.digest() == before and s.queue_counts.get(("nightly", JobStatus.PENDING), 0) == 0
    assert isinstance(s.apply(submit("j2", spec())), Accepted)  # default needs no record
    old = State()  # below version 5 a queue name needs no record: logs written then replay as they did
    old.apply(SetClusterVersion(0, 4))
    assert isinstance(old.apply(submit("j1", nightly)), Accepted)
