"""Rules of workflows, reruns, delayed jobs and schedules, one behaviour per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from raft_state import (Accepted, CancelJob, Rejected, RejectCode, SetClusterVersion, State, Tick, queries,
                        snapshot)
from raft_state.flow_commands import DeleteSchedule, FireSchedule, RetryJobs, SetSchedulePaused
from raft_state.records import JobStatus
from raft_state.schedules import group_id_of, next_fire
from tests.raft_state.flow_helpers import create_schedule, diamond, flow, flow_job
from tests.raft_state.state_helpers import assign, complete, fail, register, spec

T0 = 1_800_000_000_000


def fresh(workers: int = 1, capacity: int = 4) -> State:
    s = State()
    assert s.apply(SetClusterVersion(T0, 3)) == Accepted(3)
    s.apply(Tick(T0))
    for i in range(workers):
        assert isinstance(s.apply(register(f"w{i}", at_ms=T0, capacity=capacity)), Accepted)
    return s


def run(s: State, job_id: str, *, ok: bool = True, worker: str = "w0") -> None:
    attempt = s.next_attempt(job_id)
    assert s.apply(assign(job_id, worker, attempt, at_ms=s.now_ms)) == Accepted([None])
    report = complete if ok else fail
    assert s.apply(report(job_id, attempt, worker, at_ms=s.now_ms)) == Accepted(job_id)


def test_flow_commands_are_gated_on_cluster_version_3() -> None:
    s = State()
    out = s.apply(flow("g", *diamond()))
    assert isinstance(out, Rejected) and out.code is RejectCode.VERSION_GATED and not s.jobs


def test_a_dag_by_name_is_created_dependencies_first_and_answered_by_name() -> None:
    s = fresh()
    out = s.apply(flow("g1", *diamond(), at_ms=T0))
    assert isinstance(out, Accepted) and not out.already
    assert out.value["names"] == {"a": "ja", "b": "jb", "c": "jc", "d": "jd"}
    assert s.jobs["jd"].spec.depends_on == ("jb", "jc")
    assert [j.job_id for j in sorted(s.jobs.values(), key=lambda j: j.seq)] == ["ja", "jb", "jc", "jd"]
    assert list(s.ready.iter_ready()) == ["ja"]
    for job_id in ("ja", "jb", "jc"):
        run(s, job_id)
    assert list(s.ready.iter_ready()) == ["jd"]


@pytest.mark.parametrize("jobs, code, words", [
    ((flow_job("x", "a", ("b",)), flow_job("y", "b", ("c",)), flow_job("z", "c", ("a",))),
     RejectCode.DEPENDENCY_CYCLE, "a -> b -> c -> a"),
    ((flow_job("x", "a", ("a",)),), RejectCode.DEPENDENCY_CYCLE, "a -> a"),
    ((flow_job("x", "a", ("nobody",)),), RejectCode.UNKNOWN_DEPENDENCY, "nobody"),
    ((flow_job("x", "a"), flow_job("y", "a")), RejectCode.INVALID, "duplicate name 'a'"),
])
def test_bad_workflows_are_refused_and_change_nothing(jobs: tuple, code: RejectCode, words: str) -> None:
    s = fresh()
    before = s.digest()
    out = s.apply(flow("g1", *jobs))
    assert isinstance(out, Rejected) and out.code is code and words in out.message, out
    assert s.digest() == before and not s.jobs and not s.flows.groups


def test_a_repeated_group_submit_gets_the_first_ids_and_another_batch_is_refused() -> None:
    s = fresh()
    first = s.apply(flow("g1", *diamond("a")))
    again = s.apply(flow("g1", *diamond("b")))  # a retried request: fresh ids minted, same batch
    assert isinstance(again, Accepted) and again.already and again.value == first.value  # type: ignore[union-attr]
    other = s.apply(flow("g1", flow_job("zz", "a")))
    assert isinstance(other, Rejected) and other.code is RejectCode.GROUP_EXISTS
    assert len(s.jobs) == 4


def test_a_failing_middle_node_fails_its_descendants_and_a_group_retry_completes_it() -> None:
    s = fresh()
    s.apply(flow("g1", *diamond(), *(flow_job(f"f{i}", f"fan{i}", ("d",)) for i in range(3))))
    run(s, "ja")
    run(s, "jb", ok=False)
    run(s, "jc")
    summary = queries_group(s, "g1")
    assert summary["state"] == "failed" and summary["counts"]["failed"] == 5 and summary["counts"]["completed"] == 2
    assert {f["job_id"] for f in summary["failed"]} == {"jb", "jd", "f0", "f1", "f2"}
    out = s.apply(RetryJobs(s.now_ms, ("jb",)))
    assert isinstance(out, Accepted) and out.value["retried"] == ["jb"]
    assert out.value["dependents"] == ["jd", "f0", "f1", "f2"]
    assert s.jobs["jb"].status is JobStatus.PENDING and s.jobs["jd"].status is JobStatus.PENDING
    assert s.next_attempt("jb") == 2  # attempt numbers go on: a late report of attempt 1 stays stale
    assert queries.why_pending(s, "jd")["waiting_on"] == ["jb"]  # type: ignore[index]
    assert s.apply(RetryJobs(s.now_ms, ("jb",))).already  # type: ignore[union-attr]
    for job_id in ("jb", "jd", "f0", "f1", "f2"):
        run(s, job_id)
    assert queries_group(s, "g1")["state"] == "completed"
    assert [a.number for a in s.jobs["jb"].attempts] == [1, 2]


def test_retry_refuses_unknown_jobs_and_leaves_completed_ones() -> None:
    s = fresh()
    s.apply(flow("g1", flow_job("a", "a")))
    run(s, "a")
    assert s.apply(RetryJobs(s.now_ms, ("nope",))).code is RejectCode.UNKNOWN_JOB  # type: ignore[union-attr]
    out = s.apply(RetryJobs(s.now_ms, ("a",)))
    assert isinstance(out, Accepted) and out.already and out.value["unchanged"] == {"a": "completed"}


def test_a_retried_expired_job_runs_although_its_deadline_passed() -> None:
    s = fresh()
    s.apply(flow("g1", flow_job("a", "a", deadline_ms=T0 + 1000)))
    s.apply(CancelJob(T0, "a", "x"))
    s.apply(Tick(T0 + 5000))
    assert s.apply(RetryJobs(s.now_ms, ("a",))).value["retried"] == ["a"]  # type: ignore[union-attr]
    s.apply(Tick(T0 + 6000))
    assert s.jobs["a"].status is JobStatus.PENDING
    run(s, "a")
    assert s.jobs["a"].status is JobStatus.COMPLETED


def test_a_delayed_job_waits_for_leader_time() -> None:
    s = fresh()
    s.apply(flow("", flow_job("a", not_before_ms=T0 + 10_000)))
    assert "a" not in s.ready
    assert queries.why_pending(s, "a")["not_before_ms"] == T0 + 10_000  # type: ignore[index]
    assert s.apply(assign("a", "w0", 1, at_ms=T0 + 9_999)) == Accepted(["NOT_RUNNABLE"])
    s.apply(Tick(T0 + 10_000))
    assert "a" in s.ready
    run(s, "a")


def test_schedule_fires_each_slot_once_and_refuses_the_rest() -> None:
    s = fresh()
    assert s.apply(create_schedule(at_ms=T0)) == Accepted("s1")
    sc = s.flows.schedules["s1"]
    slot = next_fire(sc, T0 + 2000)
    assert slot == T0 + 2000
    early = s.apply(FireSchedule(T0 + 1000, "s1", slot, ("r1",)))
    assert isinstance(early, Rejected) and early.code is RejectCode.TOO_EARLY
    assert s.apply(FireSchedule(T0 + 2000, "s1", slot + 1, ("r1",))).code is RejectCode.INVALID  # type: ignore[union-attr]
    ok = s.apply(FireSchedule(T0 + 2000, "s1", slot, ("r1",)))
    assert isinstance(ok, Accepted) and ok.value["group_id"] == group_id_of("s1", slot)
    again = s.apply(FireSchedule(T0 + 2000, "s1", slot, ("r2",)))
    assert isinstance(again, Accepted) and again.already and "r2" not in s.jobs
    s.apply(Tick(T0 + 50_000))
    late = s.apply(FireSchedule(T0 + 70_000, "s1", T0 + 4000, ("r3",)))
    assert isinstance(late, Rejected) and late.code is RejectCode.TOO_LATE
    assert next_fire(s.flows.schedules["s1"], s.now_ms) == s.now_ms - 60_000  # oldest inside the window


def test_overlap_skip_records_a_skipped_slot_while_the_last_run_is_not_final() -> None:
    s = fresh()
    s.apply(create_schedule(overlap="skip", at_ms=T0))
    s.apply(FireSchedule(T0 + 2000, "s1", T0 + 2000, ("r1",)))
    out = s.apply(FireSchedule(T0 + 4000, "s1", T0 + 4000, ("r2",)))
    assert isinstance(out, Accepted) and out.value["outcome"] == "skipped" and "r2" not in s.jobs
    run(s, "r1")
    out = s.apply(FireSchedule(T0 + 6000, "s1", T0 + 6000, ("r3",)))
    assert out.value["outcome"] == "fired" and "r3" in s.jobs  # type: ignore[union-attr]
    assert [r.outcome for r in s.flows.runs["s1"]] == ["fired", "skipped", "fired"]


def test_overlap_cancel_previous_cancels_the_last_run() -> None:
    s = fresh()
    s.apply(create_schedule(overlap="cancel_previous", at_ms=T0))
    s.apply(FireSchedule(T0 + 2000, "s1", T0 + 2000, ("r1",)))
    s.apply(assign("r1", "w0", 1, at_ms=T0 + 2000))
    s.apply(FireSchedule(T0 + 4000, "s1", T0 + 4000, ("r2",)))
    assert s.jobs["r1"].status is JobStatus.CANCELLED and s.jobs["r2"].status is JobStatus.PENDING


def test_pause_resume_and_delete() -> None:
    s = fresh()
    s.apply(create_schedule(at_ms=T0))
    s.apply(SetSchedulePaused(T0, "s1", True))
    assert s.apply(FireSchedule(T0 + 2000, "s1", T0 + 2000, ("r1",))).code is RejectCode.SCHEDULE_PAUSED  # type: ignore[union-attr]
    s.apply(Tick(T0 + 9000))
    s.apply(SetSchedulePaused(T0, "s1", False))  # slots missed while paused are not caught up
    assert next_fire(s.flows.schedules["s1"], T0 + 9000) is None
    assert s.apply(FireSchedule(T0 + 10_000, "s1", T0 + 10_000, ("r1",))).value["outcome"] == "fired"  # type: ignore[union-attr]
    before_delete = s.digest()
    assert s.apply(DeleteSchedule(T0, "s1")) == Accepted("s1")
    assert "s1" not in s.flows.schedules and s.digest() != before_delete
    assert s.apply(FireSchedule(T0 + 12_000, "s1", T0 + 12_000, ("r2",))).code is RejectCode.UNKNOWN_SCHEDULE  # type: ignore[union-attr]


@pytest.mark.parametrize("fields, words", [
    ({"every_ms": 0, "cron": "61 * * * *", "tz": "UTC"}, "bad cron"),
    ({"every_ms": 0, "cron": "0 2 * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
    ({"every_ms": 500}, "every must be"),
    ({"overlap": "sometimes"}, "overlap must be"),
    ({"template": [("a", spec(depends_on=("b",)))]}, "not a name in the template"),
])
def test_bad_schedules_are_refused(fields: dict, words: str) -> None:
    s = fresh()
    out = s.apply(create_schedule(**fields))
    assert isinstance(out, Rejected) and words in out.message and not s.flows.schedules


def test_cron_schedule_in_a_time_zone() -> None:
    s = fresh()
    assert isinstance(s.apply(create_schedule(every_ms=0, cron="30 2 * * *", tz="Europe/Berlin", at_ms=T0)),
                      Accepted)
    sc = s.flows.schedules["s1"]
    from raft_state import cron
    slot = cron.next_slot(sc.cron, sc.tz, 0, T0)
    assert slot is not None and cron.is_slot(sc.cron, sc.tz, 0, slot) and not cron.is_slot(sc.cron, sc.tz, 0, slot + 60_000)


def test_snapshot_round_trip_keeps_groups_schedules_and_reruns(tmp_path: Path) -> None:
    s = fresh()
    s.apply(flow("g1", *diamond()))
    run(s, "ja", ok=False)
    s.apply(RetryJobs(s.now_ms, ("ja",)))
    s.apply(create_schedule(at_ms=T0))
    s.apply(FireSchedule(T0 + 2000, "s1", T0 + 2000, ("r1",)))
    snapshot.dump(snapshot.capture(s), tmp_path / "s.duckdb", raft_index=9, raft_term=1, raft_data=b"")
    loaded = snapshot.load(tmp_path / "s.duckdb").state
    assert loaded.digest() == s.digest() == loaded.full_digest()
    assert loaded.flows.groups == s.flows.groups and loaded.flows.schedules == s.flows.schedules
    assert loaded.flows.runs == s.flows.runs and loaded.flows.reruns == s.flows.reruns
    assert loaded.flows.group_of == s.flows.group_of and loaded.flows.live == s.flows.live


def test_a_schema_3_snapshot_loads_with_its_digest(tmp_path: Path) -> None:
    import duckdb
    s = fresh()
    s.apply(flow("", flow_job("a")))
    s.flows.groups.clear()
    path = tmp_path / "s.duckdb"
    snapshot.dump(snapshot.capture(s), path, raft_index=3, raft_term=1, raft_data=b"")
    con = duckdb.connect(str(path))
    for table in ("groups", "schedules", "schedule_runs", "reruns"):
        con.execute(f"DROP TABLE {table}")
    import msgpack
    con.execute("UPDATE meta SET v = ? WHERE k = 'schema_version'", [msgpack.packb(3)])
    con.close()
    loaded = snapshot.load(path)
    assert loaded.digest == s.digest() and loaded.state.jobs == s.jobs and not loaded.state.flows.groups


def test_pruning_drops_a_group_with_its_last_job_and_skips_stale_finish_entries() -> None:
    s = fresh()
    s.apply(flow("g1", flow_job("a", "a"), flow_job("b", "b")))
    run(s, "a", ok=False)
    s.apply(RetryJobs(s.now_ms, ("a",)))
    run(s, "b")
    from raft_state import PruneJobs
    s.apply(PruneJobs(s.now_ms, s.now_ms + 1, 0))
    assert "a" in s.jobs and "b" not in s.jobs and "g1" in s.flows.groups  # a is pending: never pruned
    run(s, "a")
    s.apply(Tick(s.now_ms + 10))
    s.apply(PruneJobs(s.now_ms, s.now_ms + 1, 0))
    assert not s.jobs and not s.flows.groups and s.digest() == s.full_digest()


def queries_group(s: State, group_id: str) -> dict:
    from raft_state.groups import summary
    return summary(s, s.flows.groups[group_id])


def test_jitter_delays_each_slot_by_a_fixed_amount_within_its_bound() -> None:
    from raft_state import cron
    s = fresh()
    s.apply(create_schedule(every_ms=10_000, jitter_ms=5_000, at_ms=T0))
    slot = T0 + 10_000
    delay = cron.jitter_of("s1", slot, 5_000)
    assert 0 <= delay <= 5_000 and delay == cron.jitter_of("s1", slot, 5_000)
    assert len({cron.jitter_of("s1", T0 + k * 10_000, 5_000) for k in range(1, 20)}) > 1  # spread over slots
    if delay:
        early = s.apply(FireSchedule(slot + delay - 1, "s1", slot, ("r1",)))
        assert isinstance(early, Rejected) and early.code is RejectCode.TOO_EARLY
    assert next_fire(s.flows.schedules["s1"], slot + delay) == slot
    assert s.apply(FireSchedule(slot + delay, "s1", slot, ("r1",))).value["outcome"] == "fired"  # type: ignore[union-attr]


@pytest.mark.parametrize("catch_up, after_outage", [("all", T0 + 2000), ("latest", T0 + 20_000), ("none", T0 + 20_000)])
def test_catch_up_after_an_outage_fires_all_the_latest_or_none(catch_up: str, after_outage: int) -> None:
    s = fresh()
    s.apply(create_schedule(catch_up=catch_up, at_ms=T0))
    sc = s.flows.schedules["s1"]
    assert next_fire(sc, T0 + 21_000) == after_outage  # a leader back after 21 s: slots 2 s .. 20 s are due
    slow = fresh()
    slow.apply(create_schedule(every_ms=30_000, catch_up=catch_up, at_ms=T0))
    late = next_fire(slow.flows.schedules["s1"], T0 + 45_000)  # its one slot, 15 s late
    assert late == (None if catch_up == "none" else T0 + 30_000)


def test_cron_follows_daylight_saving_in_its_time_zone() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo
    from raft_state import cron
    berlin = ZoneInfo("Europe/Berlin")
    before = int(datetime(2027, 3, 27, 12, 0, tzinfo=berlin).timestamp() * 1000)  # the day before the jump
    first = cron.next_slot("30 2 * * *", "Europe/Berlin", 0, before)
    second = cron.next_slot("30 2 * * *", "Europe/Berlin", 0, first)  # type: ignore[arg-type]
    assert datetime.fromtimestamp(first / 1000, berlin).hour == 3  # type: ignore[operator]  # 02:30 does not exist
    assert datetime.fromtimestamp(second / 1000, berlin).strftime("%d %H:%M") == "29 02:30"  # type: ignore[operator]
