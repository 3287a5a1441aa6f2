"""The schedule checker: from the replicated history of the run's schedule (chaos/schedule.py),
no slot fired twice, every slot from the first run to the pause was decided (inside the catch-up
window nothing is missed), and overlap `skip` never had two runs going at once.

Pure, like checkers.py: it reads the `schedule_created`, `schedule_paused`, `schedule` and
`final_job` records only.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .checkers import PROBLEMS_MAX, Check, _final_jobs, _of

#: how far the first and last decided slots may sit from creation and pause (a commit or two,
#: plus the leader's planning period, on a loaded machine)
EDGE_SLACK_MS = 5_000
#: the cluster keeps a schedule's newest runs only (raft_state.flows.RUNS_KEPT; a test keeps the two
#: equal): once a run holds that many, its first kept slot is not the schedule's first
RUNS_KEPT = 200


def schedule_slots(records: list[dict[str, Any]]) -> Check:
    recs = _of(records, "schedule")
    if not recs:
        return Check("schedule_slots", False, {}, ["no schedule record: the run did not collect its schedule"])
    rec = recs[-1]
    sc, every = rec["schedule"], int(rec["every_ms"])
    runs = sorted(sc.get("runs") or [], key=lambda r: r["slot_ms"])
    slots = [int(r["slot_ms"]) for r in runs]
    problems: list[str] = []
    twice = sorted({s for s in slots if slots.count(s) > 1})
    problems += [f"slot {s} was decided twice" for s in twice]

    # the jobs the cluster holds for each run's group: one template job per slot, never more
    group_slot = {g["group_id"]: int(g["slot_ms"]) for g in rec.get("groups") or []}
    jobs = [j for j in _final_jobs(records) if j.get("schedule_id") == sc["schedule_id"]]
    per_slot: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        slot = group_slot.get(str(job.get("group_id")))
        if slot is None:
            problems.append(f"job {job.get('job_id')} names group {job.get('group_id')}, which no run made")
            continue
        per_slot[slot].append(job)
    size = len(sc.get("jobs") or [None])
    problems += [f"slot {s} has {len(js)} jobs, its template {size}: fired twice" for s, js in sorted(per_slot.items())
                 if len(js) != size]
    fired = [r for r in runs if r.get("group_id")]
    problems += [f"run of slot {r['slot_ms']} made group {r['group_id']}, which holds no jobs"
                 for r in fired if int(r["slot_ms"]) not in per_slot]

    # every slot from the first to the last decided: nothing inside the catch-up window was missed
    gaps = [s for s in range(slots[0], slots[-1] + 1, every) if s not in set(slots)] if slots else []
    problems += [f"slot {s} was never decided (between {slots[0]} and {slots[-1]})" for s in gaps]
    created = _of(records, "schedule_created")
    paused = _of(records, "schedule_paused")
    if not slots:
        problems.append("the schedule never fired")
    else:
        trimmed = len(runs) >= RUNS_KEPT
        if created and not trimmed and slots[0] > created[-1]["wall"] * 1000 + every + EDGE_SLACK_MS:
            problems.append(f"first slot {slots[0]} long after the schedule was created")
        if paused and slots[-1] < paused[-1]["wall"] * 1000 - every - EDGE_SLACK_MS:
            problems.append(f"last slot {slots[-1]} long before the pause: slots were missed at the end")

    # overlap skip: a run fires only once the previous run's jobs are all final
    overlaps = 0
    if sc.get("overlap") == "skip":
        for prev, cur in zip(fired, fired[1:]):
            ended = [j.get("finished_at_ms") for j in per_slot.get(int(prev["slot_ms"]), [])]
            if any(e is None for e in ended):
                continue  # a run still open at the pause: no later run exists to overlap it
            last_end = max(ended, default=0)
            starts = [a.get("assigned_at_ms") for j in per_slot.get(int(cur["slot_ms"]), [])
                      for a in j.get("attempts") or []]
            if int(cur["at_ms"]) < last_end or any(s is not None and s < last_end for s in starts):
                overlaps += 1
                problems.append(f"slot {cur['slot_ms']} fired at {cur['at_ms']} while slot {prev['slot_ms']}'s run "
                                f"went on until {last_end}")
    figures = {"decided": len(slots), "fired": len(fired), "skipped": sum(r.get("outcome") == "skipped" for r in runs),
               "jobs": len(jobs), "decided_twice": len(twice), "gaps": len(gaps), "overlaps": overlaps,
               "first_slot_ms": slots[0] if slots else None, "older_runs_dropped": len(runs) >= RUNS_KEPT, "last_slot_ms": slots[-1] if slots else None}
    return Check("schedule_slots", not problems, figures, problems[:PROBLEMS_MAX])
