"""Placement: the scheduler's pure planners. A state (and what is in flight) in, assignments out.

`plan` places ready jobs on connected workers' free slots; `plan_for` fills the slots a worker's
final reports are about to free (the assignment rides in the reports' log entry); `plan_new`
places jobs being submitted (the assignment rides in the submit's entry); `overdue` lists running
attempts past their timeout. Callers hold the replica's state lock. Every result is checked again
at apply (docs/design.md, guarantee 4), so a plan made on a slightly stale view is harmless.
"""

from __future__ import annotations

from raft_state import Assignment, NewJob, State, TimeoutAttempt
from raft_state import queries
from raft_state.payloads import offers
from raft_state.records import JobStatus, Worker, WorkerStatus, fits


def plan(state: State, connected: set[str], batch_max: int, skip: frozenset[str] = frozenset(),
         claimed: dict[str, int] | None = None) -> list[Assignment]:
    """Assignments for ready jobs, by priority then FIFO, onto connected workers with free slots.

    Pure; the caller holds the state lock. Picks the fitting worker with the most free slots
    (ties: registration order). Scans at most a few batches' worth of jobs per call. Jobs in
    `skip` and the slots in `claimed` (assignments proposed and not yet applied) are left alone.
    """
    claimed = claimed or {}
    pool = [w for w in queries.open_workers(state) if w.worker_id in connected
            and w.free_slots > claimed.get(w.worker_id, 0)]
    if not pool:
        return []
    free = {w.worker_id: w.free_slots - claimed.get(w.worker_id, 0) for w in pool}
    total_free = sum(free.values())
    items: list[Assignment] = []
    scanned = 0
    for job in queries.runnable(state, pool):
        scanned += 1
        if scanned > 5 * batch_max:
            break
        if job.job_id in skip:
            continue
        best: Worker | None = None
        for w in pool:
            if free[w.worker_id] > 0 and fits(job.spec, w) and offers(job.spec.type, w.plugins) and (
                    best is None or free[w.worker_id] > free[best.worker_id]):
                best = w
        if best is None:
            continue
        items.append(Assignment(job.job_id, best.worker_id, job.attempt + 1))
        free[best.worker_id] -= 1
        total_free -= 1
        if len(items) >= batch_max or total_free == 0:
            break
    return items


def plan_for(state: State, worker_id: str, slots: int, skip: frozenset[str] | set[str]) -> list[Assignment]:
    """Up to `slots` ready jobs for one worker, by priority then FIFO, counting only the slots given
    (not the worker's current free ones, which an assignment still in flight may hold). Pure; the
    caller holds the state lock."""
    worker = state.workers.get(worker_id)
    if worker is None or worker.status is not WorkerStatus.ACTIVE or slots <= 0:
        return []
    items: list[Assignment] = []
    for scanned, job in enumerate(queries.runnable(state, [worker])):
        if scanned >= 5 * slots or len(items) >= slots:
            break
        if job.job_id not in skip and fits(job.spec, worker) and offers(job.spec.type, worker.plugins):
            items.append(Assignment(job.job_id, worker_id, job.attempt + 1))
    return items


def plan_new(state: State, connected: set[str], jobs: tuple[NewJob, ...], claimed: dict[str, int]) -> list[Assignment]:
    """First attempts for jobs being submitted, onto connected workers' unclaimed free slots, in
    submission order; only onto workers for which no ready job waits (nobody is overtaken; jobs
    that no worker can take, like a GPU job without a GPU worker, do not count) and for jobs that
    will be ready at once (no dependencies). Pure; the caller holds the state lock."""
    if state.paused:
        return []
    pool = [w for w in queries.open_workers(state) if w.worker_id in connected
            and w.free_slots > claimed.get(w.worker_id, 0) and next(queries.runnable(state, [w]), None) is None]
    free = {w.worker_id: w.free_slots - claimed.get(w.worker_id, 0) for w in pool}
    items: list[Assignment] = []
    for new in jobs:
        if new.spec.depends_on or new.job_id in state.jobs:
            continue
        best: Worker | None = None
        for w in pool:
            if free[w.worker_id] > 0 and fits(new.spec, w) and offers(new.spec.type, w.plugins) and (
                    best is None or free[w.worker_id] > free[best.worker_id]):
                best = w
        if best is not None:
            items.append(Assignment(new.job_id, best.worker_id, 1))
            free[best.worker_id] -= 1
    return items


def overdue(state: State, now: int) -> list[TimeoutAttempt]:
    """Running attempts past their timeout by the leader's clock."""
    out = []
    for w in list(state.workers.values()):  # a copy: the tick thread may add workers meanwhile
        for job_id in w.running:
            job = state.jobs.get(job_id)
            if job is None or job.status is not JobStatus.RUNNING or not job.attempts:
                continue
            a = job.attempts[-1]
            began = a.started_at_ms if a.started_at_ms is not None else a.assigned_at_ms
            if now >= began + job.spec.timeout_ms:
                out.append(TimeoutAttempt(now, job_id, job.attempt))
    return out
