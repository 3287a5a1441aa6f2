"""Checkers over a recorded history (see history.py), each a pure function of the records.

They check the guarantees of docs/design.md after the final drain and never touch the cluster, so they run
the same on a live run's history and on fabricated ones (tests/chaos/test_checkers.py). Each
returns a `Check`: pass/fail, figures for the report, and the first problems found.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check", "run_all", "bad_input_refused", "total_queue", "one_job_per_key", "results_once", "leader_per_term",
           "digests_agree", "failover_times", "percentile"]

FINAL = frozenset({"completed", "failed", "cancelled", "expired"})
LEADER_FAULTS = frozenset({"leader_kill", "leader_pause", "partition", "partial_partition", "full_restart",
                           "leader_remove"})
PROBLEMS_MAX = 20  #: problems listed per check; the figures count them all


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "figures": self.figures, "problems": self.problems}


def _of(records: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == kind]


def _final_jobs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["job"] for r in _of(records, "final_job")]


def _submits(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in _of(records, "op") if r.get("op") == "submit"]


def total_queue(records: list[dict[str, Any]]) -> Check:
    """Jepsen's total-queue over submissions: every acknowledged job exists once and is final (not
    lost), no job appears that nobody submitted (unexpected), no key holds two jobs (duplicated);
    submissions with an unknown outcome that did land are `recovered`. Invalid ones are not enqueues."""
    submits = [s for s in _submits(records) if s.get("role") != "invalid"]
    attempted = {s["key"] for s in submits}
    acked = {s["key"] for s in submits if s["outcome"] == "ok"}
    unknown = {s["key"] for s in submits if s["outcome"] == "unknown"} - acked
    jobs_by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in _final_jobs(records):
        if job.get("schedule_id"):  # made by a schedule run, not submitted: schedule_slots accounts for them
            continue
        jobs_by_key[str(job.get("key"))].append(job)
    problems: list[str] = []
    lost = sorted(k for k in acked if not any(j.get("status") in FINAL for j in jobs_by_key.get(k, [])))
    problems += [f"lost: acknowledged key {k} has {_describe(jobs_by_key.get(k))}" for k in lost]
    unexpected = sorted(k for k in jobs_by_key if k not in attempted)
    problems += [f"unexpected: job(s) {[j.get('job_id') for j in jobs_by_key[k]]} with key {k} nobody submitted"
                 for k in unexpected]
    duplicated = sorted(k for k, js in jobs_by_key.items() if len({j.get("job_id") for j in js}) > 1)
    problems += [f"duplicated: key {k} holds jobs {sorted({str(j.get('job_id')) for j in jobs_by_key[k]})}"
                 for k in duplicated]
    recovered = sorted(k for k in unknown if k in jobs_by_key)
    figures = {"attempted": len(attempted), "acknowledged": len(acked), "unknown": len(unknown),
               "failed": len(attempted - acked - unknown), "final_jobs": sum(map(len, jobs_by_key.values())),
               "lost": len(lost), "unexpected": len(unexpected), "duplicated": len(duplicated),
               "recovered": len(recovered), "unknown_not_applied": len(unknown) - len(recovered)}
    return Check("total_queue", not (lost or unexpected or duplicated), figures, problems[:PROBLEMS_MAX])


def _describe(jobs: list[dict[str, Any]] | None) -> str:
    if not jobs:
        return "no job after the drain"
    return ", ".join(f"job {j.get('job_id')} still {j.get('status')}" for j in jobs)


def one_job_per_key(records: list[dict[str, Any]]) -> Check:
    """Every acknowledged submission of one key (first try and retries) got the same job id, the
    one the cluster holds for that key."""
    ids: dict[str, set[str]] = defaultdict(set)
    retries = 0
    for s in _submits(records):
        if s["outcome"] == "ok":
            ids[s["key"]].add(str(s["job_id"]))
            retries += bool(s.get("retry"))
    held: dict[str, set[str]] = defaultdict(set)
    for job in _final_jobs(records):
        held[str(job.get("key"))].add(str(job.get("job_id")))
    problems = []
    for key, got in sorted(ids.items()):
        if len(got) > 1:
            problems.append(f"key {key} was answered with {len(got)} job ids {sorted(got)}")
        elif held.get(key) and held[key] != got:
            problems.append(f"key {key} was answered {sorted(got)} but the cluster holds {sorted(held[key])}")
    figures = {"keys": len(ids), "acknowledged_retries": retries, "violations": len(problems)}
    return Check("one_job_per_key", not problems, figures, problems[:PROBLEMS_MAX])


def results_once(records: list[dict[str, Any]]) -> Check:
    """One recorded result per job and none from a stale attempt, in the replicated state and in
    every replica's results store; refused stale reports counted (> 0 required after a worker pause)."""
    problems: list[str] = []
    outcome_of: dict[tuple[str, int], str | None] = {}
    jobs = _final_jobs(records)
    for job in jobs:
        jid, attempts = str(job.get("job_id")), job.get("attempts") or []
        for a in attempts:
            outcome_of[(jid, int(a["attempt"]))] = a.get("outcome")
        completed = [a for a in attempts if a.get("outcome") == "completed"]
        if len(completed) > 1:
            problems.append(f"job {jid} has {len(completed)} completed attempts")
        if job.get("status") == "completed" and (not completed or completed[-1]["attempt"] != job.get("attempt")):
            problems.append(f"job {jid} completed by attempt {completed[-1]['attempt'] if completed else None} "
                            f"but its current attempt is {job.get('attempt')} (a stale attempt's result)")
        if job.get("status") != "completed" and completed:
            problems.append(f"job {jid} is {job.get('status')} yet attempt {completed[0]['attempt']} completed")
    rows_checked = 0
    for res in _of(records, "results"):
        per_job: dict[str, int] = defaultdict(int)
        for jid, attempt, outcome in res["rows"]:
            rows_checked += 1
            per_job[jid] += outcome == "completed"
            state_outcome = outcome_of.get((jid, int(attempt)), "missing")
            if state_outcome != "missing" and state_outcome != outcome:
                problems.append(f"replica {res['replica']} recorded {outcome} for job {jid} attempt {attempt}, "
                                f"which the state says ended {state_outcome} (a stale attempt's result)")
        problems += [f"replica {res['replica']} recorded {n} completed results for job {jid}"
                     for jid, n in sorted(per_job.items()) if n > 1]
    finals = _of(records, "final")
    stale = sum(int(f.get("stale_refused", 0)) for f in finals)
    pauses = sum(1 for f in _of(records, "fault") if f.get("fault") == "worker_pause")
    if pauses and not stale:
        problems.append(f"{pauses} worker pause(s) ran but no stale report was refused")
    figures = {"jobs": len(jobs), "attempts": len(outcome_of), "result_rows_checked": rows_checked,
               "replicas_checked": len(_of(records, "results")), "stale_reports_refused": stale,
               "worker_pauses": pauses, "violations": len(problems)}
    return Check("results_once", not problems, figures, problems[:PROBLEMS_MAX])


def leader_per_term(records: list[dict[str, Any]]) -> Check:
    """At most one leader per term, from the replicas' own role-transition logs."""
    leaders: dict[int, set[str]] = defaultdict(set)
    transitions = _of(records, "role")
    for r in transitions:
        if r.get("role") == "leader":
            leaders[int(r["term"])].add(str(r["replica"]))
    problems = [f"term {t} had leaders {sorted(who)}" for t, who in sorted(leaders.items()) if len(who) > 1]
    figures = {"transitions": len(transitions), "terms_with_leader": len(leaders),
               "max_term": max(leaders, default=0), "violations": len(problems)}
    return Check("leader_per_term", not problems and bool(leaders), figures,
                 problems[:PROBLEMS_MAX] or ([] if leaders else ["no leader transition was logged"]))


def digests_agree(records: list[dict[str, Any]]) -> Check:
    """All replicas that reported a digest at one index reported the same one, over the whole run
    (so also after restarts and snapshot installs), and the final reports share an index."""
    at: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in _of(records, "digest"):
        at[int(r["index"])][str(r["digest"])].add(str(r["replica"]))
    problems = [f"index {i} diverged: " + "; ".join(f"{d} on {sorted(rs)}" for d, rs in sorted(by.items()))
                for i, by in sorted(at.items()) if len(by) > 1]
    replicas = {str(r["replica"]) for r in _of(records, "digest")}
    compared = [i for i, by in at.items() if len(set().union(*by.values())) > 1]
    finals = [f for f in _of(records, "final") if "common_index" in f]
    common = finals[-1]["common_index"] if finals else None
    if common is None:
        problems.append("no index at which every replica reported its digest after the drain")
    figures = {"replicas": len(replicas), "indexes_compared": len(compared), "diverged": sum(1 for by in at.values() if len(by) > 1),
               "final_common_index": common}
    return Check("digests_agree", not problems, figures, problems[:PROBLEMS_MAX])


def bad_input_refused(records: list[dict[str, Any]]) -> Check:
    """Guarantee 6 under faults: every invalid submission was refused (4xx) and created no job."""
    invalid = [s for s in _submits(records) if s.get("role") == "invalid"]
    keys = {s["key"] for s in invalid}
    problems = [f"invalid submission {s['key']} was acknowledged as job {s.get('job_id')}"
                for s in invalid if s["outcome"] == "ok"]
    problems += [f"invalid submission {j.get('key')} created job {j.get('job_id')}"
                 for j in _final_jobs(records) if j.get("key") in keys]
    figures = {"invalid": len(invalid), "refused": sum(s["outcome"] == "fail" for s in invalid),
               "unknown": sum(s["outcome"] == "unknown" for s in invalid), "violations": len(problems)}
    return Check("bad_input_refused", not problems, figures, problems[:PROBLEMS_MAX])


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def failover_times(records: list[dict[str, Any]]) -> Check:
    """Per fault, seconds from the fault to the first acknowledged write invoked after it;
    p50/p99/max over the leader faults and per kind. Informational: it passes unless a leader
    fault was never followed by an acknowledged write."""
    writes = sorted((r["invoke_mono"], r["complete_mono"]) for r in _of(records, "op") if r["outcome"] == "ok")
    by_kind: dict[str, list[float]] = defaultdict(list)
    never: list[str] = []
    for f in _of(records, "fault"):
        after = [done for invoked, done in writes if invoked >= f["mono"]]
        if after:
            by_kind[f["fault"]].append(min(after) - f["mono"])
        elif f["fault"] in LEADER_FAULTS:
            never.append(f"{f['fault']} at {f['mono']:.1f} was never followed by an acknowledged write")
    leader = [v for k, vs in by_kind.items() if k in LEADER_FAULTS for v in vs]
    def dist(vs: list[float]) -> dict[str, Any]:
        return {"n": len(vs), "p50_s": _round(percentile(vs, 50)), "p99_s": _round(percentile(vs, 99)),
                "max_s": _round(max(vs, default=None))}
    figures = {"leader_faults": dist(leader), "by_kind": {k: dist(vs) for k, vs in sorted(by_kind.items())}}
    return Check("failover_times", not never, figures, never[:PROBLEMS_MAX])


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def run_all(records: list[dict[str, Any]]) -> list[Check]:
    from .durability_checks import executions_once, journal_damage, replicas_applying
    from .queue_limit import queue_limit
    from .schedule_checks import schedule_slots
    return [total_queue(records), one_job_per_key(records), results_once(records), leader_per_term(records),
            digests_agree(records), bad_input_refused(records), failover_times(records), schedule_slots(records),
            executions_once(records), replicas_applying(records), journal_damage(records), queue_limit(records)]
