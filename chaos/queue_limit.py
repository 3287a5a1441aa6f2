"""The limited queue in every chaos run: `chaos-limited` with `max_running` 2 and weight 1, fed
short shell jobs by the workload (role `limited`), so leader kills and partitions hit a queue at
its limit. A deposed leader's or a stale plan's assignment past the limit must be refused at apply.

`start` creates it before the faults begin; `queue_limit` judges the final jobs: sweeping their
attempts' assigned and ended times (replicated time, one clock for the whole log), at no moment
did the queue run more than its limit.
"""

from __future__ import annotations

import random
from typing import Any

from haco.client import HacoClient

from .checkers import PROBLEMS_MAX, Check, _final_jobs, _of
from .history import HistoryWriter, now

QUEUE = "chaos-limited"
MAX_RUNNING = 2
#: the fewest of its jobs a run must complete for the check to mean anything
COMPLETED_MIN = 5


async def start(client: HacoClient, history: HistoryWriter) -> None:
    mono, wall = now()
    answer = await client.create_queue(QUEUE, max_running=MAX_RUNNING)
    history.write("queue_created", queue=QUEUE, max_running=MAX_RUNNING, mono=mono, wall=wall, answer=answer)


def spec(argv: list[str]) -> dict[str, Any]:
    """A job of the limited queue; `argv` records its execution (workload.recorded)."""
    return {"type": "shell", "payload": {"argv": argv}, "queue": QUEUE, "timeout_s": 60, "max_retries": 2,
            "backoff_s": 0.2}


def sleep_for(rng: random.Random) -> str:
    return f"exec sleep {rng.uniform(0.2, 0.8):.2f}"


def queue_limit(records: list[dict[str, Any]]) -> Check:
    created = _of(records, "queue_created")
    if not created:
        return Check("queue_limit", False, {}, ["no queue_created record: the run did not create its queue"])
    limit = int(created[-1]["max_running"])
    jobs = [j for j in _final_jobs(records) if j.get("queue") == QUEUE]
    events: list[tuple[int, int, str]] = []  # (ms, +1 assigned / -1 ended, job); ends sort first at a tie
    problems: list[str] = []
    for job in jobs:
        for a in job.get("attempts") or []:
            start_ms, end_ms = a.get("assigned_at_ms"), a.get("ended_at_ms")
            if start_ms is None or end_ms is None:
                problems.append(f"job {job.get('job_id')} attempt {a.get('attempt')} never ended")
                continue
            events += [(int(start_ms), 1, str(job["job_id"])), (int(end_ms), -1, str(job["job_id"]))]
    running = peak = 0
    for at_ms, delta, job_id in sorted(events):
        running += delta
        if running > limit and len(problems) < PROBLEMS_MAX:
            problems.append(f"{running} jobs of {QUEUE} running at {at_ms} (max_running {limit}), with {job_id}")
        peak = max(peak, running)
    completed = sum(1 for j in jobs if j.get("status") == "completed")
    if completed < COMPLETED_MIN:
        problems.append(f"only {completed} jobs of {QUEUE} completed; the limit was hardly exercised")
    return Check("queue_limit", not problems, {"jobs": len(jobs), "completed": completed, "peak_running": peak,
                                               "max_running": limit}, problems[:PROBLEMS_MAX])
