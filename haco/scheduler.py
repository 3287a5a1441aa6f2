"""The leader's scheduler: placement, liveness, timeouts, ticks and pruning, all as commands.

`plan()` is pure: a state and a time in, assignments out. `Scheduler.run()` only waits for
leadership, plans, proposes and pushes. Every decision is checked again at apply, so a deposed
leader that still believes it leads can propose nothing harmful (DESIGN.md, guarantee 4).
Retention: the leader prunes final jobs `job_retention_s` after they finished and idempotency
keys `key_retention_s` after they were created (keys of live jobs stay), every `prune_interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from raft_state import Accepted, AssignJobs, Assignment, MarkWorkerLost, PruneJobs, State, Tick, TimeoutAttempt
from raft_state import queries
from raft_state.records import JobStatus, Worker, WorkerStatus, fits

from .config import SchedulerConfig
from .errors import ReplicationError
from .replication import Replica

log = logging.getLogger(__name__)


class WorkerHub(Protocol):
    """The scheduler's view of connected workers (implemented by haco.server.hub)."""

    def connected(self) -> set[str]: ...
    def last_seen(self, worker_id: str) -> float | None: ...
    def push_assignments(self, state: State, items: list[Assignment]) -> None: ...
    def push_cancel(self, worker_id: str, job_id: str, attempt: int) -> None: ...
    def notify_drain(self, worker_id: str) -> None: ...


PLAN_ON_LOOP_READY_MAX = 64  #: ready jobs up to which plan() runs on the loop (a bounded, short scan)


def now_ms() -> int:
    return int(time.time() * 1000)


def plan(state: State, connected: set[str], batch_max: int, skip: frozenset[str] = frozenset()) -> list[Assignment]:
    """Assignments for ready jobs, by priority then FIFO, onto connected workers with free slots.

    Pure; the caller holds the state lock. Picks the fitting worker with the most free slots
    (ties: registration order). Scans at most a few batches' worth of jobs per call. Jobs in
    `skip` (assignments proposed and not yet applied) are left alone.
    """
    pool = [w for w in queries.open_workers(state) if w.worker_id in connected]
    if not pool:
        return []
    free = {w.worker_id: w.free_slots for w in pool}
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
            if free[w.worker_id] > 0 and fits(job.spec, w) and (best is None or free[w.worker_id] > free[best.worker_id]):
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
        if job.job_id not in skip and fits(job.spec, worker):
            items.append(Assignment(job.job_id, worker_id, job.attempt + 1))
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


class Scheduler:
    def __init__(self, replica: Replica, hub: WorkerHub, cfg: SchedulerConfig) -> None:
        self.replica = replica
        self.hub = hub
        self.cfg = cfg
        self.wake = asyncio.Event()
        self.leader_since = 0.0
        self._last_tick = 0.0
        self._last_prune = 0.0
        self._drain_notified: set[str] = set()
        self._proposed: set[str] = set()  #: job ids in AssignJobs proposed and not yet settled
        self._tasks: set[asyncio.Task[None]] = set()
        self.assigned = 0
        self.assigned_behind = 0  #: of which were planned behind reports (assign_behind)
        self.on_assigned: Callable[[State, list[Assignment], int], None] | None = None  #: metrics hook

    def on_applied(self, _event: object) -> None:
        if self.replica.is_leader():  # a follower's loop has nothing to plan: don't wake it per entry
            self.wake.set()

    def on_role(self, role: str) -> None:
        if role == "leader":
            self.leader_since = time.monotonic()  # every worker gets a full grace period from here
            self._drain_notified.clear()
        self.wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), self.cfg.interval_s)
            except TimeoutError:
                pass
            self.wake.clear()
            if not self.replica.is_leader():
                continue
            if self.leader_since == 0.0:
                self.leader_since = time.monotonic()
            try:
                await self._round()
            except ReplicationError as exc:
                log.debug("scheduler round not applied: %s", exc)
                await asyncio.sleep(self.cfg.interval_s)
            except Exception:
                log.exception("scheduler round failed")
                await asyncio.sleep(self.cfg.interval_s)

    async def _round(self) -> None:
        mono = time.monotonic()
        await self._assign()  # first: a job that just became ready should not wait behind a Tick's commit
        if mono - self._last_tick >= self.cfg.tick_interval_s:
            self._last_tick = mono
            await self.replica.propose(Tick(now_ms()))
        await self._liveness(mono)
        await self._timeouts()
        if mono - self._last_prune >= self.cfg.prune_interval_s:
            self._last_prune = mono
            now = now_ms()
            await self.replica.propose(PruneJobs(now, now - int(self.cfg.job_retention_s * 1000),
                                                 now - int(self.cfg.key_retention_s * 1000)))

    async def _assign(self) -> None:
        replica = self.replica
        connected = self.hub.connected()
        if not connected:
            return
        skip = frozenset(self._proposed)
        items = self._plan_now(connected, skip)
        if items is None:
            items = await asyncio.to_thread(self._plan_locked, connected, skip)
        if not items:
            return
        accepted = await self._propose_assignments(items)
        if accepted is not None and len(accepted) == len(items):
            self.wake.set()  # maybe more to place

    async def _propose_assignments(self, items: list[Assignment]) -> list[Assignment] | None:
        """Propose, then push what was accepted; None when the outcome is not known (the jobs
        are planned again once the state shows them)."""
        replica = self.replica
        ids = [item.job_id for item in items]
        self._proposed.update(ids)
        at_ms = now_ms()
        try:
            _, outcome = await replica.propose(AssignJobs(at_ms, tuple(items)))
        finally:
            self._proposed.difference_update(ids)
        if not isinstance(outcome, Accepted):
            return None
        accepted = [item for item, code in zip(items, outcome.value) if code is None]
        self.assigned += len(accepted)
        if self.on_assigned is not None:
            self.on_assigned(replica.state, accepted, at_ms)
        self.hub.push_assignments(replica.state, accepted)
        return accepted

    def assign_behind(self, worker_id: str, slots: int) -> None:
        """The hub is proposing `slots` final reports of `worker_id` in this loop iteration: plan
        as many jobs for it now and propose them right behind the reports, so reports and the next
        assignments share one log entry (apply frees the slots first; where a report is refused,
        its slot stays taken and that assignment is refused at apply, harmlessly). Halves the log
        entries per job under load. Skipped when the state lock is busy: the normal round follows."""
        if slots <= 0 or not self.replica.is_leader() or self.replica.state.paused:
            return
        lock = self.replica.state_lock
        if not lock.acquire(blocking=False):
            return
        try:
            items = plan_for(self.replica.state, worker_id, slots, self._proposed)
        finally:
            lock.release()
        if not items:
            return
        task = asyncio.get_running_loop().create_task(self._behind(items))  # runs after the reports' proposals
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _behind(self, items: list[Assignment]) -> None:
        try:
            accepted = await self._propose_assignments(items)
            self.assigned_behind += len(accepted or ())
        except ReplicationError as exc:
            log.debug("assignments behind reports not applied: %s", exc)

    def _plan_now(self, connected: set[str], skip: frozenset[str]) -> list[Assignment] | None:
        """Plan on the loop when that is cheap and the state lock is free at once (the usual case
        at light load: it saves a thread hop per assignment); None means plan in a thread."""
        lock = self.replica.state_lock
        if len(self.replica.state.ready) > PLAN_ON_LOOP_READY_MAX or not lock.acquire(blocking=False):
            return None
        try:
            return plan(self.replica.state, connected, self.cfg.assign_batch_max, skip)
        finally:
            lock.release()

    def _plan_locked(self, connected: set[str], skip: frozenset[str]) -> list[Assignment]:
        with self.replica.state_lock:
            return plan(self.replica.state, connected, self.cfg.assign_batch_max, skip)

    async def _liveness(self, mono: float) -> None:
        state = self.replica.state
        connected = self.hub.connected()
        in_grace = mono - self.leader_since < self.cfg.grace_s
        for w in list(state.workers.values()):
            if w.status is WorkerStatus.LOST:
                continue
            if w.status is WorkerStatus.DRAINING and w.worker_id in connected and w.worker_id not in self._drain_notified:
                self._drain_notified.add(w.worker_id)
                self.hub.notify_drain(w.worker_id)
            if w.worker_id in connected or in_grace:
                continue
            seen = self.hub.last_seen(w.worker_id)
            since = max(seen or 0.0, self.leader_since)
            if mono - since >= self.cfg.worker_lost_s:
                log.info("worker lost worker=%s silent_s=%.1f", w.worker_id, mono - since)
                await self.replica.propose(MarkWorkerLost(now_ms(), w.worker_id))

    async def _timeouts(self) -> None:
        state = self.replica.state
        for cmd in overdue(state, now_ms()):
            job = state.jobs.get(cmd.job_id)
            worker_id = job.worker_id if job is not None else None
            _, outcome = await self.replica.propose(cmd)
            if isinstance(outcome, Accepted) and not outcome.already and worker_id is not None:
                log.info("attempt timed out job=%s attempt=%d", cmd.job_id, cmd.attempt)
                self.hub.push_cancel(worker_id, cmd.job_id, cmd.attempt)
