"""The replicated coordinator state and its one mutator, `apply`.

Contract: `apply` runs on pysyncobj's tick thread, on every replica, and again on replay. It is
pure and deterministic: the same commands in the same order give the same state and digest. It
never reads a clock or a random source, never iterates a set or dict to choose a winner (order
comes from sequence numbers), and never raises for any input: refusals are `Rejected` values.
Records are replaced, never edited, so readers on other threads see whole records.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from typing import Any

from . import commands as c
from .codec import DecodeError, decode_command, split_entry
from .flows import Flows, state_hash
from . import queues as queues_mod
from .digest import job_hash, key_hash, records_digest, scalars_hash, token_hash, worker_hash
from .outcomes import Outcome, Rejected, RejectCode
from .ready import ReadyQueue
from .records import Attempt, AttemptOutcome, Job, JobStatus, KeyRecord, Worker


class State:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.workers: dict[str, Worker] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.revoked: dict[str, int] = {}  #: token id -> when it would have expired
        #: plugin executor type -> registered workers offering it; derived from `workers` (no digest, no snapshot)
        self.plugin_offers: dict[str, int] = {}
        self.now_ms = 0
        self.paused = False
        self.cluster_version = 1
        self.job_seq = 0
        self.worker_seq = 0
        self.finish_seq = 0
        self.key_seq = 0
        self.counts: dict[JobStatus, int] = {s: 0 for s in JobStatus}
        self.ready = ReadyQueue()
        self._backoff: list[tuple[int, int, str]] = []  # (not_before_ms, seq, job_id), lazy
        self._deadlines: list[tuple[int, int, str]] = []  # (deadline_ms, seq, job_id), lazy
        self._finished: deque[str] = deque()  # job ids in finish order
        self._key_order: deque[str] = deque()  # keys in creation order
        self._dependents: dict[str, list[str]] = {}  # unfinished dependency -> pending jobs waiting on it, by seq
        self._unmet: dict[str, int] = {}  # pending job -> dependencies not completed yet
        self._cascade: deque[tuple[str, str]] = deque()  # (job id, reason): DAG failures still to apply
        # A replaced record's hash is recomputed to XOR it out (~1 us) rather than kept per record:
        # a million-entry hash map cost ~60 MB and as long to rebuild at load as the hashes.
        self._xor = 0
        #: workers are few and re-put on every assignment and release (4 puts a job): their hash is
        #: kept, so a put hashes only the new record (a worker packs ~20 fields and its running ids)
        self._worker_hashes: dict[str, int] = {}
        self._budget = 0
        #: job ids whose attempt ended or that became final, in order; the replica drains it after each
        #: entry (results store, long-polls). Not part of the state: never in the digest or snapshot.
        self.ended: list[str] = []
        self.flows = Flows()  #: groups, schedules, their runs, rerun counts (raft_state/flows.py)
        self.queues: dict[str, queues_mod.QueueRecord] = {}  #: named queues' records (raft_state/queues.py)
        #: (queue, status) -> jobs; derived from `jobs` (no digest of its own, rebuilt at snapshot load)
        self.queue_counts: dict[tuple[str, JobStatus], int] = {}

    # ---- the entry point ------------------------------------------------------------------

    def apply_entry(self, entry: bytes) -> list[Outcome]:
        """Apply every command of one log entry; one outcome each. Never raises."""
        try:
            raws = split_entry(entry)
        except DecodeError as exc:
            return [Rejected(RejectCode.MALFORMED, str(exc))]
        outcomes: list[Outcome] = []
        for raw in raws:
            try:
                cmd = decode_command(raw)
            except DecodeError as exc:
                code = RejectCode.UNKNOWN_COMMAND if exc.unknown_tag else RejectCode.MALFORMED
                outcomes.append(Rejected(code, str(exc)))
                continue
            outcomes.append(self.apply(cmd))
        return outcomes

    def apply(self, cmd: c.Command) -> Outcome:
        """Apply one decoded command."""
        if cmd.SINCE_VERSION > self.cluster_version:
            return Rejected(RejectCode.VERSION_GATED,
                            f"command {type(cmd).__name__} needs cluster version {cmd.SINCE_VERSION}")
        if cmd.MOVES_CLOCK:
            self._advance(cmd.at_ms)
        self._budget = c.TICK_WORK_MAX
        from . import transitions  # late import: transitions is this class's other half
        outcome = transitions.dispatch(self, cmd)
        self.run_cascade()  # a loop, not recursion: a long DAG chain fails within the budget, then on ticks
        return outcome

    def _advance(self, at_ms: int) -> None:
        if self.now_ms == 0:
            self.now_ms = max(0, at_ms)
        elif at_ms > self.now_ms:
            self.now_ms = min(at_ms, self.now_ms + c.MAX_CLOCK_STEP_MS)

    # ---- reads ----------------------------------------------------------------------------

    def digest(self) -> int:
        """The state digest: equal on every replica at the same applied index."""
        return self._xor ^ scalars_hash(self._scalars())

    def _scalars(self) -> list[Any]:
        return [self.now_ms, self.paused, self.cluster_version, self.job_seq, self.worker_seq, self.finish_seq,
                self.key_seq, [list(x) for x in self._cascade]]

    def full_digest(self) -> int:
        """The digest recomputed from every record, for cross-checks."""
        return (records_digest(self.jobs.values(), self.workers.values(), self.keys.values(), self.revoked)
                ^ state_hash(self.flows) ^ queues_mod.records_hash(list(self.queues.values()))
                ^ scalars_hash(self._scalars()))

    def next_attempt(self, job_id: str) -> int:
        job = self.jobs.get(job_id)
        return 0 if job is None else job.attempt + 1

    # ---- record replacement: the only places that touch the digest ------------------------

    def _put_job(self, job: Job) -> None:
        job_id = job.job_id
        counts = self.counts
        by_queue = self.queue_counts
        old = self.jobs.get(job_id)
        if old is not None:
            counts[old.status] -= 1
            by_queue[(old.spec.queue, old.status)] -= 1
            self._xor ^= job_hash(old)
        self._xor ^= job_hash(job)
        self.jobs[job_id] = job
        counts[job.status] += 1
        key = (job.spec.queue, job.status)
        by_queue[key] = by_queue.get(key, 0) + 1

    def _drop_job(self, job_id: str) -> None:
        job = self.jobs.pop(job_id)
        self.counts[job.status] -= 1
        self.queue_counts[(job.spec.queue, job.status)] -= 1
        self._xor ^= job_hash(job)

    def _put_worker(self, worker: Worker) -> None:
        old = self.workers.get(worker.worker_id)
        if old is not None:
            self._xor ^= self._worker_hashes[worker.worker_id]
            if old.plugins is not worker.plugins:  # evolve() keeps the tuple: an assignment skips this
                self._count_plugins(old.plugins, -1)
                self._count_plugins(worker.plugins, 1)
        elif worker.plugins:
            self._count_plugins(worker.plugins, 1)
        h = worker_hash(worker)
        self._xor ^= h
        self._worker_hashes[worker.worker_id] = h
        self.workers[worker.worker_id] = worker

    def _drop_worker(self, worker_id: str) -> None:
        old = self.workers.pop(worker_id)
        self._xor ^= self._worker_hashes.pop(worker_id)
        self._count_plugins(old.plugins, -1)

    def _count_plugins(self, plugins: tuple[str, ...], delta: int) -> None:
        offers = self.plugin_offers
        for name in plugins:
            n = offers.get(name, 0) + delta
            if n > 0:
                offers[name] = n
            else:
                offers.pop(name, None)

    def _put_key(self, rec: KeyRecord) -> None:
        old = self.keys.get(rec.key)
        if old is not None:
            self._xor ^= key_hash(old)
        self._xor ^= key_hash(rec)
        self.keys[rec.key] = rec

    def _drop_key(self, key: str) -> None:
        self._xor ^= key_hash(self.keys.pop(key))

    def _put_token(self, token_id: str, expires_at_ms: int) -> None:
        old = self.revoked.get(token_id)
        if old is not None:
            self._xor ^= token_hash(token_id, old)
        self.revoked[token_id] = expires_at_ms
        self._xor ^= token_hash(token_id, expires_at_ms)

    def _drop_token(self, token_id: str) -> None:
        self._xor ^= token_hash(token_id, self.revoked.pop(token_id))

    # ---- job lifecycle helpers shared by the transitions ---------------------------------

    def _new_job(self, item: c.NewJob, created_at_ms: int, spec_digest: bytes) -> Job:
        self.job_seq += 1
        return Job._make(item.job_id, self.job_seq, item.key, spec_digest, created_at_ms,
                         JobStatus.PENDING, 0, 0, 0, 0, None, None, None, None, (), item.spec)

    def _enqueue(self, job: Job) -> None:
        """Place a pending job where it waits: on dependencies, in backoff, or ready."""
        if self._unmet.get(job.job_id, 0) > 0:
            return
        if job.not_before_ms > self.now_ms:
            heapq.heappush(self._backoff, (job.not_before_ms, job.seq, job.job_id))
            return
        self.ready.add(job.job_id, job.spec.priority, job.seq, job.spec.placement_class())

    def _release_worker_slot(self, worker_id: str | None, job_id: str) -> None:
        worker = self.workers.get(worker_id) if worker_id is not None else None
        if worker is not None and job_id in worker.running:
            held = tuple(h for h in worker.held if h[0] != job_id) if worker.held else worker.held
            self._put_worker(worker.evolve(running=tuple(j for j in worker.running if j != job_id), held=held))

    def _end_attempt(self, job: Job, outcome: AttemptOutcome, **changes: Any) -> tuple[Attempt, ...]:
        self.ended.append(job.job_id)
        last = job.attempts[-1].evolve(ended_at_ms=self.now_ms, outcome=str(outcome), **changes)
        return job.attempts[:-1] + (last,)

    def _finish(self, job: Job, status: JobStatus, error: str | None, attempts: tuple[Attempt, ...] | None = None) -> None:
        """Move a job to a final state, free its worker slot, and settle its dependents."""
        self.ready.discard(job.job_id)
        if self._unmet.pop(job.job_id, None):  # it was waiting (cancelled, expired, or failed by a dependency)
            self._stop_waiting(job)
        if job.status is JobStatus.RUNNING:
            self._release_worker_slot(job.worker_id, job.job_id)
        self.finish_seq += 1
        self._put_job(job.evolve(status=status, error=error, worker_id=None, finished_at_ms=self.now_ms,
                                 finish_seq=self.finish_seq, attempts=job.attempts if attempts is None else attempts))
        self._finished.append(job.job_id)
        self.ended.append(job.job_id)
        dependents = self._dependents.pop(job.job_id, None)
        if not dependents:
            return
        if status is JobStatus.COMPLETED:
            for dep_id in dependents:
                left = self._unmet.get(dep_id)
                if left is None:
                    continue
                if left > 1:
                    self._unmet[dep_id] = left - 1
                    continue
                del self._unmet[dep_id]
                dependent = self.jobs.get(dep_id)
                if dependent is not None and dependent.status is JobStatus.PENDING:
                    self._enqueue(dependent)
        else:
            # waiting lists hold only pending jobs, in submission order, as a snapshot load rebuilds
            # them: the cascade goes in the same order on a replica that loaded one
            reason = f"dependency {job.job_id} {status}"
            jobs = self.jobs
            for dep_id in dependents:
                dependent = jobs.get(dep_id)
                if dependent is not None and dependent.status is JobStatus.PENDING:
                    self._cascade.append((dep_id, reason))

    def _stop_waiting(self, job: Job) -> None:
        """Take a job that will wait no more out of its unfinished dependencies' waiting lists.

        Left there, a retry would list it a second time and one completion would count twice, making
        it ready while another dependency still runs. A list holds pending jobs in seq order."""
        jobs = self.jobs
        for dep_id in job.spec.depends_on:
            waiting = self._dependents.get(dep_id)
            if not waiting:
                continue  # a finished dependency: its list went when it finished
            i = bisect_left(waiting, job.seq, key=lambda j: jobs[j].seq)
            if i < len(waiting) and waiting[i] == job.job_id:
                del waiting[i]
                if not waiting:
                    del self._dependents[dep_id]

    def run_cascade(self) -> None:
        """Fail dependents of failed jobs, within this command's work budget; the rest waits for a Tick."""
        while self._cascade and self._budget > 0:
            job_id, reason = self._cascade.popleft()
            job = self.jobs.get(job_id)
            if job is not None and job.status is JobStatus.PENDING:
                self._budget -= 1  # only real work counts, so a rebuilt queue behaves the same
                self._finish(job, JobStatus.FAILED, reason)

    def _retry_or_fail(self, job: Job, attempts: tuple[Attempt, ...], failures: int, error: str) -> None:
        """After a failed or timed-out attempt: back off and retry, or fail once retries are spent."""
        worker_id = job.worker_id
        if failures > job.spec.max_retries:
            self._finish(job.evolve(failures=failures), JobStatus.FAILED,
                         f"attempt {job.attempt} failed: {error}", attempts)
            return
        self._release_worker_slot(worker_id, job.job_id)
        backoff = min(c.BACKOFF_MAX_MS, job.spec.backoff_ms * (1 << min(failures - 1, 32)))
        job = job.evolve(status=JobStatus.PENDING, worker_id=None, failures=failures, attempts=attempts,
                         not_before_ms=self.now_ms + backoff)
        self._put_job(job)
        self._enqueue(job)

    def _requeue_lost(self, job: Job, why: str) -> None:
        """A running attempt whose worker went away: run again without consuming a retry, up to a cap."""
        attempts = self._end_attempt(job, AttemptOutcome.LOST, error=why)
        lost = job.lost + 1
        if lost > c.LOST_ATTEMPTS_MAX:
            self._finish(job.evolve(lost=lost), JobStatus.FAILED, f"lost its worker {lost} times: {why}", attempts)
            return
        self._release_worker_slot(job.worker_id, job.job_id)
        job = job.evolve(status=JobStatus.PENDING, worker_id=None, lost=lost, attempts=attempts)
        self._put_job(job)
        self._enqueue(job)
