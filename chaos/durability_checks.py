"""Checks of the durability faults (issue 18), pure functions of the history like checkers.py.

- `executions_once`: every shell job appends "job attempt pid" when it starts (workload.py); no
  attempt may have run twice. A worker restarted mid-job re-adopts its attempts instead of running
  them again; one kept down past the lost timeout gets its attempts requeued as new attempts.
- `replicas_applying`: the stuck-replica probe after the drain (collect.applied_reached): every
  replica's applied index reached the highest index seen, within the bound.
- `journal_damage`: each damaged tail was cut (one warning) and its replica caught up; each flipped
  bit in the middle stopped its replica with exit 70, and with the journal moved away it rebuilt.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .checkers import PROBLEMS_MAX, Check, _final_jobs, _of

__all__ = ["executions_once", "journal_damage", "replicas_applying"]


def executions_once(records: list[dict[str, Any]]) -> Check:
    rows = [row for r in _of(records, "executions") for row in r.get("rows", [])]
    per_attempt = Counter((str(job), int(attempt)) for job, attempt, _ in rows)
    twice = sorted(k for k, n in per_attempt.items() if n > 1)
    problems = [f"attempt {a} of job {j} ran {per_attempt[(j, a)]} times" for j, a in twice]
    attempts = {str(j["job_id"]): len(j.get("attempts") or ()) for j in _final_jobs(records)}
    problems += [f"job {j} ran attempt {a} but holds {attempts[j]} attempts" for j, a in sorted(per_attempt)
                 if j in attempts and a > attempts[j]]
    per_job = Counter(job for job, _ in per_attempt)
    restarts = [f for f in _of(records, "fault") if f.get("fault") in ("worker_restart", "worker_kill")]
    if restarts and not _of(records, "executions"):
        problems.append("worker restarts happened but no executions were recorded")
    figures = {"executions": len(rows), "attempts": len(per_attempt), "jobs": len(per_job),
               "jobs_run_more_than_once": sum(1 for n in per_job.values() if n > 1),
               "attempts_run_twice": len(twice), "worker_restarts": len(restarts)}
    return Check("executions_once", not problems, figures, problems[:PROBLEMS_MAX])


def replicas_applying(records: list[dict[str, Any]]) -> Check:
    finals = [f for f in _of(records, "final") if "applied" in f]
    probe = finals[-1]["applied"] if finals else None
    if not isinstance(probe, dict):
        return Check("replicas_applying", False, {}, ["no stuck-replica probe after the drain"])
    problems = [] if probe.get("seconds") is not None else [
        f"replicas {probe.get('behind')} did not apply index {probe.get('target')} within {probe.get('bound_s')} s "
        f"(applied: {probe.get('applied')})"]
    figures = {"target_index": probe.get("target"), "seconds": probe.get("seconds"), "bound_s": probe.get("bound_s")}
    return Check("replicas_applying", not problems, figures, problems)


def journal_damage(records: list[dict[str, Any]]) -> Check:
    faults = [f for f in _of(records, "fault") if f.get("fault") in ("journal_tail", "journal_flip")]
    problems: list[str] = []
    done = [f for f in faults if f.get("detail") is not None]
    for f in done:
        what = f"{f['fault']} on {f.get('target')} ({f.get('damage')}: {f.get('detail')})"
        if f["fault"] == "journal_flip" and f.get("exit_code") != 70:
            problems.append(f"{what}: exit code {f.get('exit_code')}, not 70")
        if f["fault"] == "journal_tail" and f.get("cut_logged") != 1:
            problems.append(f"{what}: {f.get('cut_logged')} 'damaged tail cut off' warnings, not one")
        if not f.get("rejoined"):
            problems.append(f"{what}: the replica did not catch up")
    caught = [float(f["caught_up_s"]) for f in done if f.get("caught_up_s") is not None]
    figures = {"tail": sum(f["fault"] == "journal_tail" for f in done),
               "flip": sum(f["fault"] == "journal_flip" for f in done),
               "skipped": len(faults) - len(done), "by_damage": dict(Counter(str(f.get("damage")) for f in done)),
               "caught_up_max_s": max(caught, default=None)}
    return Check("journal_damage", not problems, figures, problems[:PROBLEMS_MAX])
