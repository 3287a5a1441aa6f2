"""The leader's scheduler: placement, liveness, timeouts, ticks and pruning, all as commands.

The planners are pure (haco/scheduler/placement.py). `Scheduler.run()` only waits for
leadership, plans, proposes and pushes. Every decision is checked again at apply, so a deposed
leader that still believes it leads can propose nothing harmful (docs/design.md, guarantee 4).
Retention: the leader prunes final jobs `job_retention_s` after they finished and idempotency
keys `key_retention_s` after they were created (keys of live jobs stay), every `prune_interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from raft_state import Accepted, AssignJobs, Assignment, MarkWorkerLost, NewJob, PruneJobs, State, Tick
from raft_state.records import WorkerStatus

from haco.config import SchedulerConfig
from haco.errors import ReplicationError
from haco.scheduler.fire import Firing
from haco.scheduler.placement import overdue, plan, plan_for, plan_new
from haco.scheduler.share import FairShare
from haco.replica.node import Replica

log = logging.getLogger(__name__)


class WorkerHub(Protocol):
    """The scheduler's view of connected workers (implemented by haco.server.hub)."""

    def connected(self) -> set[str]: ...
    def last_seen(self, worker_id: str) -> float | None: ...
    def push_assignments(self, state: State, items: list[Assignment]) -> None: ...
    def push_cancel(self, worker_id: str, job_id: str, attempt: int) -> None: ...
    def notify_drain(self, worker_id: str) -> None: ...
    def notify_undrain(self, worker_id: str) -> None: ...


DELAY_TICK_S = 0.1  #: a Tick this soon when a delayed start or backoff ended (else every tick_interval_s)
PLAN_ON_LOOP_READY_MAX = 64  #: ready jobs up to which plan() runs on the loop (a bounded, short scan)


def now_ms() -> int:
    return int(time.time() * 1000)


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
        self._claimed: dict[str, int] = {}  #: worker id -> slots those proposals take
        self._inflight: dict[str, Assignment] = {}  #: job id -> that proposal's item (its reservation)
        self._tasks: set[asyncio.Task[None]] = set()
        self.assigned = 0
        self.assigned_behind = 0  #: of which were planned behind reports (assign_behind)
        self.assigned_with_submit = 0  #: of which were planned behind their own submit (assign_submitted)
        self.on_assigned: Callable[[State, list[Assignment], int], None] | None = None  #: metrics hook
        self.firing = Firing(replica)  #: schedules' due slots (haco/scheduler/fire.py)
        self.share = FairShare()  #: queues' placements so far; the planners use it under the state lock

    def on_applied(self, _event: object) -> None:
        if self.replica.is_leader():  # a follower's loop has nothing to plan: don't wake it per entry
            self.wake.set()

    def on_role(self, role: str) -> None:
        if role == "leader":
            self.leader_since = time.monotonic()  # every worker gets a full grace period from here
            self._drain_notified.clear()
            # passes of an earlier term are stale: start even, as any new leader. A plan in a thread
            # keeps the object it took under the state lock; the next one takes this.
            self.share = FairShare()
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
        fired, delay_ended = await self.firing.round(now_ms())
        if fired:
            self.wake.set()  # its jobs to place, and maybe the next slot of a catch-up
        if mono - self._last_tick >= (self.cfg.tick_interval_s if not delay_ended else DELAY_TICK_S):
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
        connected = self.hub.connected()
        if not connected:
            return
        skip, claimed, inflight = frozenset(self._proposed), dict(self._claimed), dict(self._inflight)
        items = self._plan_now(connected, skip, claimed, inflight)
        if items is None:
            items = await asyncio.to_thread(self._plan_locked, connected, skip, claimed, inflight)
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
        for item in items:
            self._claimed[item.worker_id] = self._claimed.get(item.worker_id, 0) + 1
            self._inflight[item.job_id] = item
        at_ms = now_ms()
        try:
            _, outcome = await replica.propose(AssignJobs(at_ms, tuple(items)))
        finally:
            self._proposed.difference_update(ids)
            for item in items:
                if self._inflight.get(item.job_id) is item:
                    del self._inflight[item.job_id]
                left = self._claimed[item.worker_id] - 1
                if left:
                    self._claimed[item.worker_id] = left
                else:
                    del self._claimed[item.worker_id]
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
            items = plan_for(self.replica.state, worker_id, slots, self._proposed, self._inflight, self.share)
        finally:
            lock.release()
        if not items:
            return
        self._spawn_behind(items, "reports")

    def assign_submitted(self, jobs: tuple[NewJob, ...]) -> None:
        """A submit route is about to propose `jobs` (call it just before, in the same loop
        iteration): when workers have unclaimed free slots and nothing else waits, plan their first
        attempts now and propose them right behind the submit, so a job is created and assigned in
        one log entry (one commit less between submit and result). Apply checks every item again:
        a refused or deduplicated submit makes its assignment refused, harmlessly."""
        if not self.replica.is_leader():
            return
        connected = self.hub.connected()
        lock = self.replica.state_lock
        if not connected or not lock.acquire(blocking=False):
            return
        try:
            items = plan_new(self.replica.state, connected, jobs, self._claimed, self._inflight, self.share)
        finally:
            lock.release()
        if items:
            self._spawn_behind(items, "submit")

    def _spawn_behind(self, items: list[Assignment], behind: str) -> None:
        for item in items:  # claimed from now: a plan made before the task runs must not count these slots
            self._claimed[item.worker_id] = self._claimed.get(item.worker_id, 0) + 1
            self._inflight[item.job_id] = item
        self._proposed.update(item.job_id for item in items)
        task = asyncio.get_running_loop().create_task(self._behind(items, behind))  # runs after the caller's proposals
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _behind(self, items: list[Assignment], behind: str) -> None:
        for item in items:  # _propose_assignments claims them again for the proposal's lifetime
            left = self._claimed[item.worker_id] - 1
            if left:
                self._claimed[item.worker_id] = left
            else:
                del self._claimed[item.worker_id]
        try:
            accepted = await self._propose_assignments(items)
        except ReplicationError as exc:
            log.debug("assignments behind %s not applied: %s", behind, exc)
            return
        if behind == "reports":
            self.assigned_behind += len(accepted or ())
        else:
            self.assigned_with_submit += len(accepted or ())

    def _plan_now(self, connected: set[str], skip: frozenset[str], claimed: dict[str, int],
                  inflight: dict[str, Assignment]) -> list[Assignment] | None:
        """Plan on the loop when that is cheap and the state lock is free at once (the usual case
        at light load: it saves a thread hop per assignment); None means plan in a thread."""
        lock = self.replica.state_lock
        if len(self.replica.state.ready) > PLAN_ON_LOOP_READY_MAX or not lock.acquire(blocking=False):
            return None
        try:
            return plan(self.replica.state, connected, self.cfg.assign_batch_max, skip, claimed, inflight, self.share)
        finally:
            lock.release()

    def _plan_locked(self, connected: set[str], skip: frozenset[str], claimed: dict[str, int],
                     inflight: dict[str, Assignment]) -> list[Assignment]:
        with self.replica.state_lock:
            return plan(self.replica.state, connected, self.cfg.assign_batch_max, skip, claimed, inflight, self.share)

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
            elif w.status is WorkerStatus.ACTIVE and w.worker_id in self._drain_notified:  # undrained
                self._drain_notified.discard(w.worker_id)
                self.hub.notify_undrain(w.worker_id)
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
