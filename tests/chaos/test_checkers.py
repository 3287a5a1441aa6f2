"""Each checker on fabricated histories: a clean one passes, each planted violation is flagged."""

from __future__ import annotations

from typing import Any

from chaos.checkers import (bad_input_refused, digests_agree, failover_times, leader_per_term, one_job_per_key, percentile,
                            results_once, run_all, total_queue)


def _op(key: str, outcome: str = "ok", job_id: str | None = None, t: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"kind": "op", "op": "submit", "client": 0, "key": key, "job_id": job_id or f"j-{key}",
            "invoke_mono": t, "complete_mono": t + 0.01, "outcome": outcome, **extra}


def _attempt(n: int, outcome: str | None) -> dict[str, Any]:
    return {"attempt": n, "outcome": outcome}


def _job(key: str, status: str = "completed", attempts: list[dict[str, Any]] | None = None,
         job_id: str | None = None) -> dict[str, Any]:
    attempts = attempts if attempts is not None else [_attempt(1, "completed")]
    return {"kind": "final_job", "job": {"job_id": job_id or f"j-{key}", "key": key, "status": status,
                                         "attempt": len(attempts), "attempts": attempts}}


def _clean() -> list[dict[str, Any]]:
    return [
        _op("a"), _op("a", retry=True), _op("b", t=2.0), _op("c", "unknown", job_id=None, t=3.0),
        _op("d", "fail", t=4.0), _op("bad", "fail", job_id=None, t=4.5, role="invalid"),
        _job("a"), _job("b", attempts=[_attempt(1, "lost"), _attempt(2, "completed")]),
        _job("c", "failed", [_attempt(1, "failed")]),
        {"kind": "fault", "fault": "leader_kill", "mono": 1.5},
        {"kind": "fault", "fault": "worker_pause", "mono": 2.5},
        {"kind": "results", "replica": "r1", "rows": [["j-a", 1, "completed"], ["j-b", 1, "lost"],
                                                       ["j-b", 2, "completed"]]},
        {"kind": "role", "replica": "r1", "role": "leader", "term": 1},
        {"kind": "role", "replica": "r1", "role": "follower", "term": 2},
        {"kind": "role", "replica": "r2", "role": "leader", "term": 2},
        {"kind": "digest", "replica": "r1", "index": 16, "digest": "aa"},
        {"kind": "digest", "replica": "r2", "index": 16, "digest": "aa"},
        {"kind": "final", "stale_refused": 1, "common_index": 16,
         "applied": {"target": 16, "seconds": 0.4, "bound_s": 30.0, "applied": {"r1": 16, "r2": 16}, "behind": []}},
        {"kind": "executions", "rows": [["j-a", 1, 100], ["j-b", 1, 101], ["j-b", 2, 102]]},
        *_schedule_records(),
        *_queue_records(),
    ]


def _queue_records(overlap: bool = False) -> list[dict[str, Any]]:
    """Six jobs of the limited queue (max_running 2), two at a time, one handed over at the same ms
    (an end and the next assignment tie); `overlap` makes a third run beside two."""
    spans = [(0, 100), (0, 100), (100, 200), (150, 250), (200, 300), (250, 350)]
    if overlap:
        spans.append((160, 170))
    return [{"kind": "queue_created", "queue": "chaos-limited", "max_running": 2},
            *(_op(f"q{i}", t=5.0 + i, role="limited") for i in range(len(spans))),
            *({"kind": "final_job", "job": {"job_id": f"j-q{i}", "key": f"q{i}", "status": "completed", "attempt": 1,
                                            "queue": "chaos-limited", "attempts": [
                                                {"attempt": 1, "outcome": "completed", "assigned_at_ms": a,
                                                 "ended_at_ms": e}]}} for i, (a, e) in enumerate(spans))]


def _schedule_records(slots: tuple[int, ...] = (2000, 4000, 6000, 8000), skipped: tuple[int, ...] = (6000,),
                      overlap_at: int | None = None, extra_job_for: int | None = None) -> list[dict[str, Any]]:
    """A schedule every 2 s whose runs take 1.5 s (the slot after a slow one is skipped), as collected."""
    runs, groups, jobs = [], [], []
    for slot in slots:
        if slot in skipped:
            runs.append({"slot_ms": slot, "group_id": None, "outcome": "skipped", "at_ms": slot + 10})
            continue
        gid = f"tick@{slot}"
        at = overlap_at if overlap_at == slot + 5 else slot + 10
        runs.append({"slot_ms": slot, "group_id": gid, "outcome": "fired", "at_ms": at})
        groups.append({"group_id": gid, "slot_ms": slot})
        for n in range(1 + (extra_job_for == slot)):
            jobs.append({"kind": "final_job", "job": {
                "job_id": f"s{slot}-{n}", "key": None, "status": "completed", "attempt": 1, "group_id": gid,
                "schedule_id": "tick", "finished_at_ms": slot + 1500,
                "attempts": [{"attempt": 1, "outcome": "completed", "assigned_at_ms": at + 1}]}})
    return [{"kind": "schedule_created", "wall": 1.0}, {"kind": "schedule_paused", "wall": (slots[-1] + 500) / 1000},
            *jobs, {"kind": "schedule", "every_ms": 2000, "window_ms": 60_000, "groups": groups,
                    "schedule": {"schedule_id": "tick", "overlap": "skip", "jobs": ["job"], "runs": runs}}]


def _schedule_check(records: list[dict[str, Any]]) -> Any:
    from chaos.schedule_checks import schedule_slots
    return schedule_slots(records)


def test_schedule_slots_passes_a_clean_schedule_and_counts_skips() -> None:
    check = _schedule_check(_schedule_records())
    assert check.ok, check.problems
    assert (check.figures["fired"], check.figures["skipped"], check.figures["gaps"]) == (3, 1, 0)


def test_schedule_slots_flags_a_slot_that_fired_twice() -> None:
    check = _schedule_check(_schedule_records(extra_job_for=4000))
    assert not check.ok and "slot 4000 has 2 jobs" in check.problems[0]


def test_schedule_slots_flags_a_missed_slot() -> None:
    check = _schedule_check(_schedule_records(slots=(2000, 4000, 8000), skipped=()))
    assert not check.ok and check.figures["gaps"] == 1 and "slot 6000 was never decided" in check.problems[0]


def test_schedule_slots_flags_two_runs_at_once_under_skip() -> None:
    check = _schedule_check(_schedule_records(slots=(2000, 4000, 6000), skipped=(), overlap_at=2005))
    assert check.ok  # runs end 1.5 s after their slot: none overlaps
    records = _schedule_records(slots=(2000, 4000, 6000), skipped=())
    for r in records:
        if r.get("kind") == "final_job" and r["job"]["job_id"] == "s2000-0":
            r["job"]["finished_at_ms"] = 4500  # ran past the next slot, which fired anyway
    check = _schedule_check(records)
    assert not check.ok and check.figures["overlaps"] == 1


def test_schedule_slots_judges_a_long_run_from_the_runs_the_cluster_keeps() -> None:
    """Past RUNS_KEPT runs the cluster drops the oldest: the first kept slot is long after creation,
    which is no missed slot. A gap among the kept ones still is."""
    from chaos.schedule_checks import RUNS_KEPT
    from raft_state.flows import RUNS_KEPT as kept_by_the_cluster
    assert RUNS_KEPT == kept_by_the_cluster
    late = tuple(range(500_000, 500_000 + 2000 * RUNS_KEPT, 2000))
    check = _schedule_check(_schedule_records(slots=late, skipped=()))
    assert check.ok, check.problems
    assert check.figures["older_runs_dropped"] and check.figures["decided"] == RUNS_KEPT
    assert not _schedule_check(_schedule_records(slots=late[:-2], skipped=())).ok  # not trimmed: a late start fails
    gap = late[:100] + late[101:] + (late[-1] + 2000,)
    check = _schedule_check(_schedule_records(slots=gap, skipped=()))
    assert not check.ok and check.figures["gaps"] == 1


def test_schedule_slots_fails_without_a_schedule_record() -> None:
    assert not _schedule_check([]).ok


def test_a_clean_history_passes_every_check() -> None:
    checks = run_all(_clean())
    assert [c.name for c in checks if not c.ok] == [], [c.problems for c in checks]
    tq = checks[0].figures
    assert (tq["acknowledged"], tq["unknown"], tq["failed"], tq["recovered"]) == (8, 1, 1, 1)  # a, b and six of the limited queue


def test_total_queue_flags_a_lost_job() -> None:
    records = [r for r in _clean() if r.get("job", {}).get("key") != "b"]
    check = total_queue(records)
    assert not check.ok and check.figures["lost"] == 1 and "key b" in check.problems[0]


def test_total_queue_flags_a_job_left_pending_as_lost() -> None:
    records = [_op("x"), _job("x", "pending", [])]
    assert total_queue(records).figures["lost"] == 1


def test_total_queue_flags_unexpected_and_duplicated_jobs() -> None:
    check = total_queue(_clean() + [_job("zzz"), _job("a", job_id="j-a-second")])
    assert not check.ok
    assert (check.figures["unexpected"], check.figures["duplicated"]) == (1, 1)


def test_one_job_per_key_flags_a_retry_answered_with_another_job() -> None:
    check = one_job_per_key(_clean() + [_op("a", job_id="j-other", retry=True)])
    assert not check.ok and "key a" in check.problems[0]


def test_results_once_flags_a_result_from_a_stale_attempt() -> None:
    records = _clean() + [{"kind": "results", "replica": "r2", "rows": [["j-b", 1, "completed"]]}]
    check = results_once(records)
    assert not check.ok and "stale" in check.problems[0]


def test_results_once_flags_a_state_completed_by_an_old_attempt() -> None:
    records = [_op("s"), _job("s", attempts=[_attempt(1, "completed"), _attempt(2, "lost")])]
    check = results_once(records)
    assert not check.ok and "stale attempt" in check.problems[0]


def test_results_once_flags_two_results_for_one_job() -> None:
    records = _clean() + [{"kind": "results", "replica": "r3", "rows": [["j-a", 1, "completed"],
                                                                         ["j-a", 2, "completed"]]}]
    assert not results_once(records).ok


def test_results_once_needs_a_refused_stale_report_after_a_worker_pause() -> None:
    records = [r for r in _clean() if r["kind"] != "final"]
    check = results_once(records)
    assert not check.ok and "no stale report" in check.problems[0]


def test_leader_per_term_flags_two_leaders_in_one_term() -> None:
    check = leader_per_term(_clean() + [{"kind": "role", "replica": "r3", "role": "leader", "term": 2}])
    assert not check.ok and check.problems == ["term 2 had leaders ['r2', 'r3']"]


def test_digests_agree_flags_diverged_digests() -> None:
    check = digests_agree(_clean() + [{"kind": "digest", "replica": "r3", "index": 16, "digest": "bb"}])
    assert not check.ok and "index 16 diverged" in check.problems[0]


def test_digests_agree_needs_a_common_final_index() -> None:
    records = [r for r in _clean() if r["kind"] != "final"]
    assert not digests_agree(records).ok


def test_failover_times_measure_fault_to_next_acknowledged_write() -> None:
    records = [{"kind": "fault", "fault": "leader_kill", "mono": 10.0}, _op("late", t=11.0), _op("early", t=9.0)]
    check = failover_times(records)
    assert check.ok and check.figures["leader_faults"]["max_s"] == 1.01
    lonely = failover_times([{"kind": "fault", "fault": "leader_kill", "mono": 10.0}, _op("e", t=9.0)])
    assert not lonely.ok


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.0


def test_bad_input_refused_flags_an_invalid_submission_that_created_a_job() -> None:
    assert bad_input_refused(_clean()).figures["refused"] == 1
    records = _clean() + [_op("bad2", role="invalid"), _job("bad2")]
    check = bad_input_refused(records)
    assert not check.ok and check.figures["violations"] == 2
    assert not total_queue(records).ok  # and nobody enqueued it: unexpected


def test_queue_limit_passes_two_at_a_time_and_flags_a_third() -> None:
    from chaos.queue_limit import queue_limit
    clean = queue_limit(_queue_records())
    assert clean.ok and clean.figures["peak_running"] == 2, clean
    over = queue_limit(_queue_records(overlap=True))
    assert not over.ok and "3 jobs of chaos-limited running at 160" in over.problems[0], over
    assert not queue_limit([]).ok
