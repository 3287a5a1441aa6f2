"""Placement: the scheduler's planners. A state (and what is in flight) in, assignments out.

`plan` places ready jobs on connected workers' free slots; `plan_for` fills the slots a worker's
final reports are about to free (the assignment rides in the reports' log entry); `plan_new`
places jobs being submitted (the assignment rides in the submit's entry); `overdue` lists running
attempts past their timeout. Callers hold the replica's state lock. Every result is checked again
at apply (docs/design.md, guarantee 4), so a plan made on a slightly stale view is harmless.
Between named queues the planners follow the leader's `FairShare` (haco/scheduler/share.py), the
one thing they change besides their result: it remembers how many placements each queue had.

Cost at a deep queue: a worker's full ledger (its running jobs' reservations) is built only when
a job might go there, and a placement class that found no place is dropped for the rest of the
call (ledgers only shrink within one), so a call costs about one step per job placed plus one per
class, however many jobs wait (bench/bench_placement.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import Final

from raft_state import Assignment, NewJob, State, TimeoutAttempt
from raft_state import queries, queues
from raft_state.payloads import BUILTIN_EXECUTORS, offers
from raft_state.records import Job, JobSpec, JobStatus, Worker, WorkerStatus, fits
from raft_state.resources import Free, fits_now, free_of

from haco.scheduler.share import FairShare, Turns

Inflight = Mapping[str, Assignment]  #: job id -> an assignment proposed and not yet applied


class Ledger:
    """What each worker of a pool has left: free slots at once, and CPUs, memory and devices (a
    `Free`) the first time a job might go there, less what `inflight` proposals take (an item whose
    job the state already shows running is counted once, by the state). Without `inflight`,
    `claimed` counts the slots proposals take per worker."""

    __slots__ = ("_state", "_workers", "_taken", "_free", "slots")

    def __init__(self, state: State, pool: list[Worker], inflight: Inflight | None,
                 claimed: Mapping[str, int] | None = None) -> None:
        self._state = state
        self._workers = {w.worker_id: w for w in pool}
        self._taken: dict[str, list[tuple[JobSpec, tuple[int, ...]]]] = {}
        self._free: dict[str, Free] = {}
        self.slots = {wid: w.capacity - len(w.running) for wid, w in self._workers.items()}
        if inflight is None:
            for wid, n in (claimed or {}).items():
                if wid in self.slots:
                    self.slots[wid] -= n
            return
        for item in inflight.values():
            job = state.jobs.get(item.job_id)
            if item.worker_id in self.slots and job is not None and job.status is not JobStatus.RUNNING:
                self._taken.setdefault(item.worker_id, []).append((job.spec, item.devices))
                self.slots[item.worker_id] -= 1

    def free(self, worker_id: str) -> Free:
        f = self._free.get(worker_id)
        if f is None:
            f = free_of(self._workers[worker_id], self._state.jobs)
            for spec, devices in self._taken.get(worker_id, ()):
                f.take(spec, devices)
            f.slots = self.slots[worker_id]
            self._free[worker_id] = f
        return f

    def take(self, worker_id: str, spec: JobSpec, devices: tuple[int, ...]) -> None:
        self.free(worker_id).take(spec, devices)
        self.slots[worker_id] -= 1


def ledger(state: State, workers: list[Worker], inflight: Inflight | None) -> dict[str, Free]:
    """Each worker's free slots, CPUs, memory and devices, less what `inflight` proposals take."""
    led = Ledger(state, workers, inflight)
    return {w.worker_id: led.free(w.worker_id) for w in workers}


def _best(spec: JobSpec, pool: list[Worker], led: Ledger) -> tuple[Worker, tuple[int, ...]] | None:
    """The fitting worker with the most free slots (ties: registration order) and the devices it gives."""
    best: tuple[Worker, tuple[int, ...]] | None = None
    best_slots = 0
    slots_of = led.slots
    for w in pool:
        slots = slots_of[w.worker_id]
        if slots <= 0 or (best is not None and slots <= best_slots):
            continue
        if not fits(spec, w) or not offers(spec.type, w.plugins):
            continue
        devices = fits_now(spec, w, led.free(w.worker_id))
        if devices is not None:
            best, best_slots = (w, devices), slots
    return best


def _pool(state: State, connected: set[str], claimed: Mapping[str, int]) -> list[Worker]:
    """Connected active workers with a slot that no proposal claims, in registration order."""
    active, taken = WorkerStatus.ACTIVE, claimed.get
    out = [w for w in state.workers.values() if w.status is active and w.worker_id in connected
           and w.capacity - len(w.running) > taken(w.worker_id, 0)]
    out.sort(key=_SEQ)  # already in order but for re-registrations: a pass over it
    return out


_SEQ: Final = attrgetter("seq")


def _no_place(turns: Turns, job: Job, nowhere: set[tuple[object, str]]) -> None:
    """`job` fits no worker now, nor will the rest of its class in this call: a built-in type's
    class is dropped; a plugin type's (class, type) is remembered (other types of the class may fit)."""
    if job.spec.type in BUILTIN_EXECUTORS:
        turns.drop(job)
    else:
        nowhere.add((turns.klass(job), job.spec.type))
    turns.missed(job)


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
    pool = _pool(state, connected, claimed)
    if not pool:
        return []
    led = Ledger(state, pool, inflight, claimed)
    total_free = sum(n for n in led.slots.values() if n > 0)
    items: list[Assignment] = []
    nowhere: set[tuple[object, str]] = set()
    turns = Turns(state, pool, inflight, share or FairShare(), 5 * batch_max)
    for job in turns:
        if job.job_id in skip or (nowhere and (turns.klass(job), job.spec.type) in nowhere):
            turns.missed(job)
            continue
        best = _best(job.spec, pool, led)
        if best is None:
            _no_place(turns, job, nowhere)
            continue
        worker, devices = best
        items.append(Assignment(job.job_id, worker.worker_id, job.attempt + 1, devices))
        led.take(worker.worker_id, job.spec, devices)
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
    nowhere: set[tuple[object, str]] = set()
    turns = Turns(state, [worker], inflight, share or FairShare(), 5 * slots)
    for job in turns:
        if job.job_id in skip or (nowhere and (turns.klass(job), job.spec.type) in nowhere):
            turns.missed(job)
            continue
        devices = (fits_now(job.spec, worker, free) if fits(job.spec, worker) and offers(job.spec.type, worker.plugins)
                   else None)
        if devices is None:
            _no_place(turns, job, nowhere)
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
    will be created (no known key) and ready at once (no dependencies) and within their queue's
    room (jobs in flight count).
    The caller holds the state lock."""
    if state.paused:
        return []
    pool = [w for w in _pool(state, connected, claimed) if next(queries.runnable(state, [w]), None) is None]
    led = Ledger(state, pool, inflight, claimed)
    items: list[Assignment] = []
    room: dict[str, int | None] = {}
    for new in jobs:
        if new.spec.depends_on or new.job_id in state.jobs or (new.key is not None and new.key in state.keys):
            continue  # a resubmitted key creates no job: apply would refuse its assignment
        name = new.spec.queue
        if name not in room:
            room[name] = _room_now(state, name, inflight)
        left = room[name]
        if left is not None and left <= 0:
            continue
        best = _best(new.spec, pool, led)
        if best is not None:
            worker, devices = best
            items.append(Assignment(new.job_id, worker.worker_id, 1, devices))
            led.take(worker.worker_id, new.spec, devices)
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
