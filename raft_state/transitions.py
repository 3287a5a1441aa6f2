"""One function per command: check everything first, mutate last.

These are `State`'s other half, split out to keep each file readable; they run inside
`State.apply` under its contract (tick thread, deterministic, never raising).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, assert_never

from . import commands as c
from .outcomes import Accepted, Outcome, Rejected, RejectCode
from .records import (Attempt, AttemptOutcome, Job, JobStatus, KeyRecord, Worker, WorkerStatus, fits,
                      unmet_requirements)
from .digest import spec_digest
from .validate import spec_problem, worker_problem
from . import flows, groups, queues, resources, schedules
from .flow_commands import CreateSchedule, DeleteSchedule, FireSchedule, RetryJobs, SetSchedulePaused, SubmitFlow
from .queue_commands import QUEUES_SINCE, CreateQueue, DeleteQueue, SetQueuePaused, UpdateQueue

if TYPE_CHECKING:
    from .state import State


def dispatch(s: State, cmd: c.Command) -> Outcome:
    match cmd:
        case c.SubmitJobs():
            return submit(s, cmd)
        case c.CancelJob():
            return cancel(s, cmd)
        case c.RegisterWorker():
            return register(s, cmd)
        case c.DeregisterWorker():
            return deregister(s, cmd)
        case c.DrainWorker():
            return drain(s, cmd)
        case c.UndrainWorker():
            return undrain(s, cmd)
        case c.MarkWorkerLost():
            return mark_lost(s, cmd)
        case c.AssignJobs():
            return assign(s, cmd)
        case c.StartAttempt():
            return start(s, cmd)
        case c.CompleteAttempt():
            return complete(s, cmd)
        case c.FailAttempt():
            return fail(s, cmd)
        case c.TimeoutAttempt():
            return timeout(s, cmd)
        case c.Tick():
            return tick(s, cmd)
        case c.SetPaused():
            return set_paused(s, cmd)
        case c.PruneJobs():
            return prune(s, cmd)
        case c.SetClusterVersion():
            return set_cluster_version(s, cmd)
        case c.RevokeToken():
            return revoke_token(s, cmd)
        case SubmitFlow():
            return groups.submit_flow(s, cmd)
        case RetryJobs():
            return groups.retry(s, cmd)
        case CreateSchedule():
            return schedules.create(s, cmd)
        case SetSchedulePaused():
            return schedules.set_paused(s, cmd)
        case DeleteSchedule():
            return schedules.delete(s, cmd)
        case FireSchedule():
            return schedules.fire(s, cmd)
        case CreateQueue():
            return queues.create(s, cmd)
        case UpdateQueue():
            return queues.update(s, cmd)
        case SetQueuePaused():
            return queues.set_paused(s, cmd)
        case DeleteQueue():
            return queues.delete(s, cmd)
    assert_never(cmd)


# ---- jobs ---------------------------------------------------------------------------------

def submit(s: State, cmd: c.SubmitJobs) -> Outcome:
    if not 1 <= len(cmd.jobs) <= c.SUBMIT_BATCH_MAX:
        return Rejected(RejectCode.INVALID, f"a batch holds 1 to {c.SUBMIT_BATCH_MAX} jobs")
    # Check every item first: the batch is all or nothing.
    ids: list[str] = []
    new_ids: set[str] = set()
    fresh: list[tuple[c.NewJob, bytes]] = []
    batch_keys: dict[str, tuple[str, bytes]] = {}
    for index, item in enumerate(cmd.jobs):
        problem = spec_problem(item.spec)
        if problem is not None:
            return Rejected(RejectCode.INVALID, f"job {index}: {problem}", {"index": index})
        if s.cluster_version < item.spec.since_version():
            return Rejected(RejectCode.VERSION_GATED, f"job {index}: reservations and queues need cluster version "
                            f"{RESOURCES_SINCE_VERSION}", {"index": index})
        if not item.job_id or len(item.job_id) > 128:
            return Rejected(RejectCode.INVALID, f"job {index}: job_id must be 1 to 128 characters", {"index": index})
        h = _spec_hash(item)
        if item.key is not None:
            known = s.keys.get(item.key)
            earlier = batch_keys.get(item.key)
            if known is not None or earlier is not None:
                job_id, known_hash = (known.job_id, known.spec_hash) if known is not None else earlier  # type: ignore[misc]
                if known_hash != h:
                    return Rejected(RejectCode.KEY_REUSED, f"job {index}: key {item.key!r} was used for another spec",
                                    {"index": index, "job_id": job_id})
                ids.append(job_id)
                continue
        missing = queues.unknown(s, item.spec.queue)
        if missing is not None:
            return Rejected(missing.code, f"job {index}: {missing.message}", {"index": index, **(missing.detail or {})})
        if item.job_id in s.jobs or item.job_id in new_ids:
            return Rejected(RejectCode.DUPLICATE_JOB_ID, f"job {index}: job id {item.job_id} exists", {"index": index})
        for dep in item.spec.depends_on:
            if dep not in s.jobs and dep not in new_ids:
                return Rejected(RejectCode.UNKNOWN_DEPENDENCY, f"job {index}: depends on unknown job {dep}",
                                {"index": index, "dependency": dep})
        new_ids.add(item.job_id)
        if item.key is not None:
            batch_keys[item.key] = (item.job_id, h)
        fresh.append((item, h))
        ids.append(item.job_id)
    for item, h in fresh:
        _create(s, item, h, cmd.at_ms)
    return Accepted(ids, already=not fresh)


#: reservations (cpus, memory, devices) and queues are enforced from this cluster version on; below
#: it `cpus` is only a minimum, as it was, so older log entries replay to the same state
RESOURCES_SINCE_VERSION = 4


def _spec_hash(item: c.NewJob) -> bytes:
    return spec_digest(item.spec)


def _create(s: State, item: c.NewJob, h: bytes, created_at_ms: int) -> None:
    job = s._new_job(item, created_at_ms, h)
    s._put_job(job)
    if item.key is not None:
        s.key_seq += 1
        s._put_key(KeyRecord._make(item.key, job.job_id, h, created_at_ms, s.key_seq))
        s._key_order.append(item.key)
    if job.spec.deadline_ms is not None:
        heapq.heappush(s._deadlines, (job.spec.deadline_ms, job.seq, job.job_id))
    unmet = 0
    for dep_id in job.spec.depends_on:
        dep = s.jobs[dep_id]
        if dep.status is JobStatus.COMPLETED:
            continue
        if dep.is_final:  # doomed: counted as unmet too, so it never becomes ready before the cascade fails it
            s._cascade.append((job.job_id, f"dependency {dep_id} {dep.status}"))
        else:
            s._dependents.setdefault(dep_id, []).append(job.job_id)
        unmet += 1
    if unmet:
        s._unmet[job.job_id] = unmet
    s._enqueue(job)


def cancel(s: State, cmd: c.CancelJob) -> Outcome:
    job = s.jobs.get(cmd.job_id)
    if job is None:
        return Rejected(RejectCode.UNKNOWN_JOB, f"no job {cmd.job_id}")
    if job.status is JobStatus.CANCELLED:
        return Accepted(job.job_id, already=True)
    if job.is_final:
        return Rejected(RejectCode.JOB_FINAL, f"job {job.job_id} is already {job.status}", {"status": str(job.status)})
    reason = cmd.reason or "cancelled"
    attempts = s._end_attempt(job, AttemptOutcome.CANCELLED, error=reason) if job.status is JobStatus.RUNNING else None
    s._finish(job, JobStatus.CANCELLED, reason, attempts)
    return Accepted(job.job_id)


# ---- workers ------------------------------------------------------------------------------

def register(s: State, cmd: c.RegisterWorker) -> Outcome:
    problem = worker_problem(cmd)
    if problem is not None:
        return Rejected(RejectCode.INVALID, problem)
    if cmd.plugins and s.cluster_version < cmd.PLUGINS_SINCE_VERSION:  # older code cannot decode them
        return Rejected(RejectCode.VERSION_GATED,
                        f"worker plugins need cluster version {cmd.PLUGINS_SINCE_VERSION}")
    if cmd.devices and s.cluster_version < cmd.DEVICES_SINCE_VERSION:
        return Rejected(RejectCode.VERSION_GATED,
                        f"worker devices need cluster version {cmd.DEVICES_SINCE_VERSION}")
    fields = dict(capacity=cmd.capacity, tags=tuple(sorted(set(cmd.tags))), hardware=tuple(sorted(set(cmd.hardware))),
                  memory_gb=cmd.memory_gb, cuda_compute=cmd.cuda_compute, cpus=cmd.cpus, info=cmd.info,
                  plugins=tuple(sorted(set(cmd.plugins))),
                  devices=tuple(sorted(cmd.devices, key=lambda d: (d.index, d.kind))))
    old = s.workers.get(cmd.worker_id)
    if old is None:
        s.worker_seq += 1
        s._put_worker(Worker(worker_id=cmd.worker_id, seq=s.worker_seq, status=WorkerStatus.ACTIVE, running=(),
                             registered_at_ms=s.now_ms, **fields))
        return Accepted(cmd.worker_id)
    status = WorkerStatus.ACTIVE if old.status is WorkerStatus.LOST else old.status
    new = old.evolve(status=status, **fields)
    if new == old:
        return Accepted(cmd.worker_id, already=True)
    s._put_worker(new)
    return Accepted(cmd.worker_id)


def _requeue_running(s: State, worker: Worker, why: str) -> None:
    for job_id in worker.running:
        job = s.jobs.get(job_id)
        if job is not None and job.status is JobStatus.RUNNING and job.worker_id == worker.worker_id:
            s._requeue_lost(job, why)


def deregister(s: State, cmd: c.DeregisterWorker) -> Outcome:
    worker = s.workers.get(cmd.worker_id)
    if worker is None:
        return Rejected(RejectCode.UNKNOWN_WORKER, f"no worker {cmd.worker_id}")
    _requeue_running(s, worker, f"worker {worker.worker_id} deregistered")
    s._drop_worker(worker.worker_id)
    return Accepted(cmd.worker_id)


def drain(s: State, cmd: c.DrainWorker) -> Outcome:
    worker = s.workers.get(cmd.worker_id)
    if worker is None:
        return Rejected(RejectCode.UNKNOWN_WORKER, f"no worker {cmd.worker_id}")
    if worker.status is not WorkerStatus.ACTIVE:
        return Accepted(cmd.worker_id, already=True)
    s._put_worker(worker.evolve(status=WorkerStatus.DRAINING))
    return Accepted(cmd.worker_id)


def undrain(s: State, cmd: c.UndrainWorker) -> Outcome:
    worker = s.workers.get(cmd.worker_id)
    if worker is None:
        return Rejected(RejectCode.UNKNOWN_WORKER, f"no worker {cmd.worker_id}")
    if worker.status is WorkerStatus.ACTIVE:
        return Accepted(cmd.worker_id, already=True)
    if worker.status is WorkerStatus.LOST:
        return Rejected(RejectCode.WORKER_UNAVAILABLE,
                        f"worker {cmd.worker_id} is lost; it becomes active when it registers again")
    s._put_worker(worker.evolve(status=WorkerStatus.ACTIVE))
    return Accepted(cmd.worker_id)


def mark_lost(s: State, cmd: c.MarkWorkerLost) -> Outcome:
    worker = s.workers.get(cmd.worker_id)
    if worker is None:
        return Rejected(RejectCode.UNKNOWN_WORKER, f"no worker {cmd.worker_id}")
    if worker.status is WorkerStatus.LOST:
        return Accepted(cmd.worker_id, already=True)
    _requeue_running(s, worker, f"worker {worker.worker_id} lost")
    s._put_worker(s.workers[worker.worker_id].evolve(status=WorkerStatus.LOST, running=(), held=()))
    return Accepted(cmd.worker_id)


# ---- assignments and reports --------------------------------------------------------------

def assign(s: State, cmd: c.AssignJobs) -> Outcome:
    if not 1 <= len(cmd.items) <= c.ASSIGN_BATCH_MAX:
        return Rejected(RejectCode.INVALID, f"an assignment batch holds 1 to {c.ASSIGN_BATCH_MAX} items")
    results: list[str | None] = []
    for item in cmd.items:
        code = _assign_one(s, item)
        results.append(None if code is None else str(code))
    return Accepted(results)


def _assign_one(s: State, item: c.Assignment) -> RejectCode | None:
    job = s.jobs.get(item.job_id)
    if job is None:
        return RejectCode.UNKNOWN_JOB
    if job.status is not JobStatus.PENDING:
        return RejectCode.NOT_PENDING
    if item.attempt != job.attempt + 1:
        return RejectCode.STALE_ATTEMPT
    if s.paused:
        return RejectCode.QUEUE_PAUSED
    if s.cluster_version >= QUEUES_SINCE and job.spec.queue in s.queues:
        if queues.room(s, job.spec.queue) == 0:  # a deposed leader's plan cannot overrun a limit either
            return RejectCode.QUEUE_PAUSED if s.queues[job.spec.queue].paused else RejectCode.QUEUE_FULL
    deadline = job.spec.deadline_ms
    if job.job_id not in s.ready or (deadline is not None and deadline <= s.now_ms
                                     and flows.deadline_binds(s, job.job_id, job.attempt)):
        return RejectCode.NOT_RUNNABLE
    worker = s.workers.get(item.worker_id)
    if worker is None:
        return RejectCode.UNKNOWN_WORKER
    if worker.status is not WorkerStatus.ACTIVE or worker.free_slots <= 0:
        return RejectCode.WORKER_UNAVAILABLE
    if not fits(job.spec, worker):
        return RejectCode.REQUIREMENTS_UNMET
    if s.cluster_version >= RESOURCES_SINCE_VERSION:
        if resources.assign_problem(job.spec, worker, s.jobs, item.devices) is not None:
            return RejectCode.RESOURCES_BUSY  # a stale plan or a deposed leader's: nothing double-booked
    elif item.devices:
        return RejectCode.VERSION_GATED
    s.ready.discard(job.job_id)
    attempt = Attempt(number=item.attempt, worker_id=worker.worker_id, assigned_at_ms=s.now_ms, started_at_ms=None,
                      ended_at_ms=None, outcome=None, error=None, result=None, stats=None)
    s._put_job(job.evolve(status=JobStatus.RUNNING, attempt=item.attempt, worker_id=worker.worker_id,
                          attempts=job.attempts + (attempt,)))
    held = worker.held + ((job.job_id, item.devices),) if item.devices else worker.held
    s._put_worker(worker.evolve(running=worker.running + (job.job_id,), held=held))
    return None


def _report_target(s: State, job_id: str, attempt: int, worker_id: str | None,
                   kind: AttemptOutcome) -> Job | Outcome:
    """The job a report applies to, or the outcome that answers the report without change."""
    job = s.jobs.get(job_id)
    if job is None:
        return Rejected(RejectCode.UNKNOWN_JOB, f"no job {job_id}")
    if not 1 <= attempt <= len(job.attempts):
        return Rejected(RejectCode.STALE_ATTEMPT, f"job {job_id} has no attempt {attempt}", {"attempt": job.attempt})
    record = job.attempts[attempt - 1]
    if record.outcome is not None:
        if record.outcome == kind and (worker_id is None or record.worker_id == worker_id):
            return Accepted(job_id, already=True)  # a resend after an unknown outcome: harmless
        return Rejected(RejectCode.STALE_ATTEMPT, f"attempt {attempt} of job {job_id} already ended {record.outcome}",
                        {"attempt": job.attempt, "status": str(job.status)})
    if job.status is not JobStatus.RUNNING or job.attempt != attempt or (
            worker_id is not None and record.worker_id != worker_id):
        return Rejected(RejectCode.STALE_ATTEMPT, f"attempt {attempt} of job {job_id} is not current",
                        {"attempt": job.attempt, "status": str(job.status)})
    return job


def start(s: State, cmd: c.StartAttempt) -> Outcome:
    job = s.jobs.get(cmd.job_id)
    if job is not None and job.status is JobStatus.RUNNING and job.attempt == cmd.attempt \
            and job.worker_id == cmd.worker_id:
        if job.attempts[-1].started_at_ms is not None:
            return Accepted(job.job_id, already=True)
        attempts = job.attempts[:-1] + (job.attempts[-1].evolve(started_at_ms=s.now_ms),)
        s._put_job(job.evolve(attempts=attempts))
        return Accepted(job.job_id)
    target = _report_target(s, cmd.job_id, cmd.attempt, cmd.worker_id, AttemptOutcome.COMPLETED)
    if isinstance(target, Accepted):  # started, and already ended well: the start is old news
        return Accepted(cmd.job_id, already=True)
    return target if not isinstance(target, Job) else Accepted(cmd.job_id, already=True)


def complete(s: State, cmd: c.CompleteAttempt) -> Outcome:
    target = _report_target(s, cmd.job_id, cmd.attempt, cmd.worker_id, AttemptOutcome.COMPLETED)
    if not isinstance(target, Job):
        return target
    attempts = s._end_attempt(target, AttemptOutcome.COMPLETED, result=cmd.result, stats=cmd.stats)
    s._finish(target, JobStatus.COMPLETED, None, attempts)
    return Accepted(cmd.job_id)


def fail(s: State, cmd: c.FailAttempt) -> Outcome:
    target = _report_target(s, cmd.job_id, cmd.attempt, cmd.worker_id, AttemptOutcome.FAILED)
    if not isinstance(target, Job):
        return target
    attempts = s._end_attempt(target, AttemptOutcome.FAILED, error=cmd.error, result=cmd.result, stats=cmd.stats)
    s._retry_or_fail(target, attempts, target.failures + 1, cmd.error)
    return Accepted(cmd.job_id)


def timeout(s: State, cmd: c.TimeoutAttempt) -> Outcome:
    target = _report_target(s, cmd.job_id, cmd.attempt, None, AttemptOutcome.TIMED_OUT)
    if not isinstance(target, Job):
        return target
    record = target.attempts[-1]
    began = record.started_at_ms if record.started_at_ms is not None else record.assigned_at_ms
    if s.now_ms < began + target.spec.timeout_ms:
        return Rejected(RejectCode.TOO_EARLY, f"attempt {cmd.attempt} of job {cmd.job_id} has time left",
                        {"ends_at_ms": began + target.spec.timeout_ms})
    error = f"timed out after {target.spec.timeout_ms / 1000:g}s"
    attempts = s._end_attempt(target, AttemptOutcome.TIMED_OUT, error=error)
    s._retry_or_fail(target, attempts, target.failures + 1, error)
    return Accepted(cmd.job_id)


# ---- time, queue, housekeeping ------------------------------------------------------------

def tick(s: State, cmd: c.Tick) -> Outcome:
    expired = ended = 0
    while s._deadlines and s._deadlines[0][0] <= s.now_ms and s._budget > 0:
        _, seq, job_id = heapq.heappop(s._deadlines)
        job = s.jobs.get(job_id)
        if job is not None and job.seq == seq and job.status is JobStatus.PENDING \
                and flows.deadline_binds(s, job_id, job.attempt):
            s._budget -= 1
            expired += 1
            s._finish(job, JobStatus.EXPIRED, "not started before its deadline")
    while s._backoff and s._backoff[0][0] <= s.now_ms and s._budget > 0:
        not_before, seq, job_id = heapq.heappop(s._backoff)
        job = s.jobs.get(job_id)
        if job is not None and job.seq == seq and job.status is JobStatus.PENDING and job.not_before_ms == not_before:
            s._budget -= 1
            ended += 1
            s._enqueue(job)
    return Accepted({"expired": expired, "backoffs_ended": ended, "now_ms": s.now_ms})


def set_paused(s: State, cmd: c.SetPaused) -> Outcome:
    if s.paused == cmd.paused:
        return Accepted(cmd.paused, already=True)
    s.paused = cmd.paused
    return Accepted(cmd.paused)


def prune(s: State, cmd: c.PruneJobs) -> Outcome:
    jobs = keys = tokens = 0
    stale = s.flows.stale_finished
    while s._finished and jobs < c.PRUNE_BATCH_MAX:
        job_id = s._finished[0]
        if job_id in stale:  # an earlier finish of a job since retried: not counted, as a snapshot lacks it
            s._finished.popleft()
            if stale[job_id] > 1:
                stale[job_id] -= 1
            else:
                del stale[job_id]
            continue
        job = s.jobs.get(job_id)
        if job is not None and (job.finished_at_ms or 0) >= cmd.finished_before_ms:
            break
        s._finished.popleft()
        if job is not None:
            s._drop_job(job.job_id)
            s._dependents.pop(job.job_id, None)
            flows.on_job_dropped(s, job.job_id)
            jobs += 1
    while s._key_order and keys < c.PRUNE_BATCH_MAX:
        rec = s.keys.get(s._key_order[0])
        if rec is not None and (rec.created_at_ms >= cmd.keys_before_ms or rec.job_id in s.jobs):
            break
        s._key_order.popleft()
        if rec is not None:
            s._drop_key(rec.key)
            keys += 1
    for token_id in sorted(t for t, exp in s.revoked.items() if exp < s.now_ms)[: c.PRUNE_BATCH_MAX]:
        s._drop_token(token_id)
        tokens += 1
    return Accepted({"jobs": jobs, "keys": keys, "tokens": tokens}, already=not (jobs or keys or tokens))


def set_cluster_version(s: State, cmd: c.SetClusterVersion) -> Outcome:
    if cmd.version == s.cluster_version:
        return Accepted(cmd.version, already=True)
    if cmd.version < s.cluster_version:
        return Rejected(RejectCode.INVALID, f"cluster version is {s.cluster_version}; it never goes back")
    s.cluster_version = cmd.version
    return Accepted(cmd.version)


def revoke_token(s: State, cmd: c.RevokeToken) -> Outcome:
    if not cmd.token_id or len(cmd.token_id) > 128:
        return Rejected(RejectCode.INVALID, "token id must be 1 to 128 characters")
    if s.revoked.get(cmd.token_id) == cmd.expires_at_ms:
        return Accepted(cmd.token_id, already=True)
    s._put_token(cmd.token_id, cmd.expires_at_ms)
    return Accepted(cmd.token_id)


__all__ = ["dispatch", "unmet_requirements"]
