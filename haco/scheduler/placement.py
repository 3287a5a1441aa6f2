"""Placement: the scheduler's planners. A state (and what is in flight) in, assignments out.

`plan` places ready jobs on connected workers' free slots; `plan_for` fills the slots a worker's
final reports are about to free (the assignment rides in the reports' log entry); `plan_new`
places jobs being submitted (the assignment rides in the submit's entry); `overdue` lists running
attempts past their timeout. Callers hold the replica's state lock. Every result is checked again
at apply (docs/design.md, guarantee 4), so a plan made on a slightly stale view is harmless.
Between named queues the planners follow the leader's `FairShare` (haco/scheduler/share.py), the
one thing they change besides their result: it remembers how many placements each queue had.
"""

from __future__ import annotations

from collections.abc import Mapping

from raft_state import Assignment, NewJob, State, TimeoutAttempt
from raft_state import queries, queues
from raft_state.payloads import offers
from raft_state.records import JobSpec, JobStatus, Worker, WorkerStatus, fits
from raft_state.resources import Free, fits_now, free_of

from haco.scheduler.share import FairShare, Turns

Inflight = Mapping[str, Assignment]  #: job id -> an assignment proposed and not yet applied


def ledger(state: State, workers: list[Worker], inflight: Inflight | None) -> dict[str, Free]:
    """Each worker's free slots, CPUs, memory and devices, less what `inflight` proposals take
    (an item whose job the state already shows running is counted once, by the state)."""
    free = {w.worker_id: free_of(w, state.jobs) for w in workers}
    for item in (inflight or {}).values():
        ledger_of = free.get(item.worker_id)
        job = state.jobs.get(item.job_id)
        if ledger_of is None or job is None or job.status is JobStatus.RUNNING:
            continue
        ledger_of.take(job.spec, item.devices)
    return free


def _best(spec: JobSpec, pool: list[Worker], free: dict[str, Free]) -> tuple[Worker, tuple[int, ...]] | None:
    """The fitting worker with the most free slots (ties: registration order) and the devices it gives."""
    best: tuple[Worker, tuple[int, ...]] | None = None
    for w in pool:
        f = free[w.worker_id]
        if f.slots <= 0 or (best is not None and f.slots <= free[best[0].worker_id].slots):
            continue
        if not fits(spec, w) or not offers(spec.type, w.plugins):
            continue
        devices = fits_now(spec, w, f)
        if devices is not None:
            best = (w, devices)
    return best


def plan(state: State, connected: set[str], batch_max: int, skip: frozenset[str] = frozenset(),
         claimed: dict[str, int] | None = None, inflight: Inflight | None = None,
         share: FairShare | None = None) -> list[Assignment]:
    """Assignments for ready jobs onto connected workers with free slots and free CPUs, memory and
    devices for each job's reservation: queue by queue as `share` says, by priority then FIFO
    within a queue, no queue past its `max_running`.

    The caller holds the state lock. Picks the fitting worker with the most free slots (ties:
    registration order) and its lowest free fitting devices. Scans at most a few batches' worth
    of jobs per queue and call. Jobs in `skip` and the slots and reservations of `inflight`
    (assignments proposed and not yet applied; `claimed` counts their slots per worker when
    `inflight` is not given) are left alone.
    """
    claimed = claimed or {}
    pool = [w for w in queries.open_workers(state) if w.worker_id in connected
            and w.free_slots > claimed.get(w.worker_id, 0)]
    if not pool:
        return []
    free = ledger(state, pool, inflight)
    if inflight is None:
        for w in pool:
            free[w.worker_id].slots -= claimed.get(w.worker_id, 0)
    total_free = sum(max(f.slots, 0) for f in free.values())
    items: list[Assignment] = []
    turns = Turns(state, pool, inflight, share or FairShare(), 5 * batch_max)
    for job in turns:
        if job.job_id in skip:
            turns.missed(job)
            continue
        best = _best(job.spec, pool, free)
        if best is None:
            turns.missed(job)
            continue
        worker, devices = best
        items.append(Assignment(job.job_id, worker.worker_id, job.attempt + 1, devices))
        free[worker.worker_id].take(job.spec, devices)
        turns.placed(job)
        total_free -= 1
        if len(items) >= batch_max or total_free <= 0:
            break
    return items


def plan_for(state: State, worker_id: str, slots: int, skip: frozenset[str] | set[str],
             inflight: Inflight | None = None, share: FairShare | None = None) -> list[Assignment]:
    """Up to `slots` ready jobs for one worker, in `plan`'s order, counting only the slots given
    (not the worker's current free ones, which an assignment still in flight may hold). A job that
    reserves CPUs, memory or devices goes only where they are free now, before the reports free
    theirs (the next round places the rest). The caller holds the state lock."""
    worker = state.workers.get(worker_id)
    if worker is None or worker.status is not WorkerStatus.ACTIVE or slots <= 0:
        return []
    free = ledger(state, [worker], inflight)[worker_id]
    free.slots = slots
    items: list[Assignment] = []
    turns = Turns(state, [worker], inflight, share or FairShare(), 5 * slots)
    for job in turns:
        if job.job_id in skip or not fits(job.spec, worker) or not offers(job.spec.type, worker.plugins):
            turns.missed(job)
            continue
        devices = fits_now(job.spec, worker, free)
        if devices is None:
            turns.missed(job)
            continue
        items.append(Assignment(job.job_id, worker_id, job.attempt + 1, devices))
        free.take(job.spec, devices)
        turns.placed(job)
        if len(items) >= slots:
            break
    return items


def plan_new(state: State, connected: set[str], jobs: tuple[NewJob, ...], claimed: dict[str, int],
             inflight: Inflight | None = None, share: FairShare | None = None) -> list[Assignment]:
    """First attempts for jobs being submitted, onto connected workers' unclaimed free slots, in
    submission order; only onto workers for which no ready job waits (nobody is overtaken; jobs
    that no worker can take, like a GPU job without a GPU worker, do not count), for jobs that
    will be ready at once (no dependencies) and within their queue's room (jobs in flight count).
    The caller holds the state lock."""
    if state.paused:
        return []
    pool = [w for w in queries.open_workers(state) if w.worker_id in connected
            and w.free_slots > claimed.get(w.worker_id, 0) and next(queries.runnable(state, [w]), None) is None]
    free = ledger(state, pool, inflight)
    if inflight is None:
        for w in pool:
            free[w.worker_id].slots -= claimed.get(w.worker_id, 0)
    items: list[Assignment] = []
    room: dict[str, int | None] = {}
    for new in jobs:
        if new.spec.depends_on or new.job_id in state.jobs:
            continue
        name = new.spec.queue
        if name not in room:
            room[name] = _room_now(state, name, inflight)
        left = room[name]
        if left is not None and left <= 0:
            continue
        best = _best(new.spec, pool, free)
        if best is not None:
            worker, devices = best
            items.append(Assignment(new.job_id, worker.worker_id, 1, devices))
            free[worker.worker_id].take(new.spec, devices)
            if left is not None:
                room[name] = left - 1
            if share is not None:
                share.charge(name, queues.settings(state, name).weight)
    return items


def _room_now(state: State, name: str, inflight: Inflight | None) -> int | None:
    """What `queues.room` says, less the queue's assignments in flight."""
    room = queues.room(state, name)
    if room is None or not inflight:
        return room
    for item in inflight.values():
        job = state.jobs.get(item.job_id)
        if job is not None and job.status is JobStatus.PENDING and job.spec.queue == name:
            room -= 1
    return room



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
