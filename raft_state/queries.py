"""Read-only questions the scheduler and the API ask of a `State`.

Callers on another thread than apply's must hold the replica's state lock, or accept a
view that may move under them (single-record reads are always whole: records are immutable).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from .payloads import offers
from .records import Job, JobSpec, JobStatus, Worker, WorkerStatus, fits, unmet_requirements
from .flows import deadline_binds
from . import queues
from .resources import free_of, shortage
from .state import State
from .validate import DEFAULT_QUEUE

#: not a queue name (no parentheses in one): the implicit queues a bounded listing leaves out, summed
OTHER_QUEUES: Final = "(other)"


def open_workers(state: State) -> list[Worker]:
    """Workers that take new work now, in registration order."""
    return sorted((w for w in state.workers.values() if w.status is WorkerStatus.ACTIVE and w.free_slots > 0),
                  key=lambda w: w.seq)


def workers_for(state: State, spec: JobSpec) -> list[Worker]:
    """Active workers with a free slot that meet every tag and requirement, in registration order."""
    return [w for w in open_workers(state) if fits(spec, w)]


def ready_queues(state: State) -> list[str]:
    """The queues that hold ready jobs, by name."""
    return sorted({klass[-1] for klass in state.ready.classes()})


def runnable(state: State, workers: list[Worker] | None = None) -> Iterator[Job]:
    """Ready jobs, highest priority first and FIFO within a priority, skipping placement classes that
    none of `workers` (default: the open workers) can take, queues that are paused or at their
    `max_running`, and jobs past their deadline (the next Tick expires them). Nothing when the
    cluster is paused."""
    if state.paused:
        return
    pool = open_workers(state) if workers is None else workers
    verdicts: dict[Any, bool] = {}
    closed = {name for name in state.queues if queues.room(state, name) == 0}

    def takeable(klass: Any) -> bool:
        if klass not in verdicts:
            in_queue = klass[-1]
            verdicts[klass] = in_queue not in closed and _takeable(klass, pool)
        return verdicts[klass]

    now_ms = state.now_ms
    for job_id in state.ready.iter_ready(takeable):
        job = state.jobs.get(job_id)
        if job is None:
            continue
        deadline = job.spec.deadline_ms
        if deadline is not None and deadline <= now_ms and deadline_binds(state, job_id, job.attempt):
            continue  # assign would refuse it; the next Tick expires it
        yield job


class Runnable:
    """The ready jobs of one queue, highest priority first and FIFO within a priority, skipping jobs
    past their deadline and the placement classes no worker of `pool` can ever take, where the
    caller drops a placement class for the rest of the walk (`drop`): a planner that found no place
    for a job drops its class, whose other jobs would find none either. Unlike `runnable` it does
    not sort out classes up front: a class is judged by its first job (the verdict goes in
    `verdicts`), and a class it never reaches costs nothing.
    A class skipped for `pool` is never yielded, so it costs a planner none of its scan budget."""

    __slots__ = ("_state", "_walk", "_pool", "_verdicts", "klass")

    def __init__(self, state: State, queue: str, pool: list[Worker],
                 verdicts: dict[Any, bool] | None = None) -> None:
        self._state = state
        self._pool = pool
        self._verdicts: dict[Any, bool] = {} if verdicts is None else verdicts  #: class -> takeable
        self.klass: Any = None  #: the placement class of the job last yielded
        classes = [] if state.paused or queues.room(state, queue) == 0 else [
            k for k in state.ready.classes() if k[-1] == queue]
        self._walk = state.ready.walk(classes)

    def __iter__(self) -> Iterator[Job]:
        state = self._state
        jobs, now_ms, verdicts, pool = state.jobs, state.now_ms, self._verdicts, self._pool
        for entry in self._walk:
            klass = entry[3]
            if klass is not self.klass:  # a class's first job, or the walk moved to another class
                ok = verdicts.get(klass)
                if ok is None:
                    ok = verdicts[klass] = _takeable(klass, pool)
                if not ok:
                    self._walk.drop(klass)
                    continue
            job = jobs.get(entry[2])
            if job is None:
                continue
            deadline = job.spec.deadline_ms
            if deadline is not None and deadline <= now_ms and deadline_binds(state, job.job_id, job.attempt):
                continue  # assign would refuse it; the next Tick expires it
            self.klass = klass
            yield job

    def drop(self, klass: Any) -> None:
        self._walk.drop(klass)


def _takeable(klass: Any, pool: list[Worker]) -> bool:
    """Whether some worker of `pool` can ever take a job of this placement class."""
    tags, hardware, memory, cuda, cpus, reserve_gb, gpus, gpu_gb, gpu_compute, gpu_kind, _ = klass
    return any(
        all(t in w.tags for t in tags) and all(h in w.hardware for h in hardware)
        and memory <= w.memory_gb and cuda <= w.cuda_compute and cpus <= w.cpus and reserve_gb <= w.memory_gb
        and (not gpus or sum(1 for d in w.devices if (not gpu_kind or d.kind == gpu_kind)
                             and d.memory_gb >= gpu_gb and d.compute >= gpu_compute) >= gpus)
        for w in pool)


def why_pending(state: State, job_id: str) -> dict[str, Any] | None:
    """For a pending job: what it waits for. None when the job is unknown or not pending."""
    job = state.jobs.get(job_id)
    if job is None or job.status is not JobStatus.PENDING:
        return None
    reasons: dict[str, Any] = {}
    if state.paused:
        reasons["paused"] = True
    q = state.queues.get(job.spec.queue)
    if q is not None and q.paused:
        reasons["queue_paused"] = q.name
    elif q is not None and q.max_running and queues.running(state, q.name) >= q.max_running:
        reasons["queue_full"] = f"queue {q.name} runs {queues.running(state, q.name)} of max_running {q.max_running}"
    waiting = [d for d in job.spec.depends_on if (dep := state.jobs.get(d)) is not None and not dep.is_final]
    if waiting:
        reasons["waiting_on"] = waiting
    if job.not_before_ms > state.now_ms:
        if job.failures == 0:  # no failure to back off from: a delayed start
            reasons["not_before_ms"] = job.not_before_ms
        else:
            reasons["backoff_until_ms"] = job.not_before_ms
    doomed = [reason for jid, reason in state._cascade if jid == job_id]
    if doomed:
        reasons["failing"] = doomed[0]
    live = sorted((w for w in state.workers.values() if w.status is not WorkerStatus.LOST), key=lambda w: w.seq)
    if not live:
        reasons["workers"] = "no workers registered"
    elif not any(offers(job.spec.type, w.plugins) for w in live):
        reasons["executor"] = f"no live worker offers executor {job.spec.type!r}"
    else:
        unfit = {w.worker_id: why for w in live if (why := _unfit(job.spec, w))}
        if len(unfit) == len(live):
            reasons["no_worker_fits"] = unfit
        elif not any(w.status is WorkerStatus.ACTIVE and w.free_slots > 0 and w.worker_id not in unfit for w in live):
            reasons["workers"] = "every fitting worker is busy or draining"
            if unfit:
                reasons["unfit_workers"] = unfit
        elif job.spec.reserves and state.cluster_version >= 4:
            short = {w.worker_id: why for w in live if w.worker_id not in unfit and w.status is WorkerStatus.ACTIVE
                     and (why := shortage(job.spec, w, free_of(w, state.jobs)))}
            fitting = [w for w in live if w.worker_id not in unfit and w.status is WorkerStatus.ACTIVE]
            if short and len(short) == len(fitting):
                reasons["resources"] = "; ".join(f"{w}: {why}" for w, why in short.items())
                if unfit:
                    reasons["unfit_workers"] = unfit
    if not reasons:
        ahead = sum(1 for _ in _ahead(state, job))
        reasons["queued"] = f"runnable; {ahead} jobs ahead of it"
    return reasons


def _unfit(spec: JobSpec, worker: Worker) -> list[str]:
    why = unmet_requirements(spec, worker)
    return why if offers(spec.type, worker.plugins) else [f"no executor {spec.type!r}", *why]


def _ahead(state: State, job: Job, limit: int = 10_000) -> Iterator[str]:
    for n, job_id in enumerate(state.ready.iter_ready(lambda k: k == job.spec.placement_class())):
        if job_id == job.job_id or n >= limit:
            return
        yield job_id


def counts(state: State) -> dict[str, int]:
    return {str(status): n for status, n in state.counts.items()}


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """A queue's settings and figures."""

    settings: queues.QueueRecord  #: its record, or the implicit settings
    explicit: bool  #: it has a record
    counts: dict[JobStatus, int]  #: jobs by status, every status present
    ready: int  #: pending jobs whose dependencies are met and backoff is over (paused or full or not)


def queue_summaries(state: State, implicit_max: int = queues.QUEUES_MAX
                    ) -> tuple[list[QueueSummary], QueueSummary | None]:
    """Every queue with a record, `default`, and the `implicit_max` other names jobs carry that hold
    the most jobs, by name; then the rest of those names summed as OTHER_QUEUES, or None.

    Reads the (queue, status) counts and the ready queue's classes, never the jobs, so it is cheap
    at a million jobs. Off the loop, hold the state lock (a class may empty while it is read).
    """
    by_queue: dict[str, Counter[JobStatus]] = {}
    for (name, status), n in list(state.queue_counts.items()):
        if n:
            by_queue.setdefault(name, Counter())[status] += n
    ready: Counter[str] = Counter()
    for klass in state.ready.classes():
        ready[klass[-1]] += state.ready.class_size(klass)
    explicit = set(state.queues) | {DEFAULT_QUEUE}
    implicit = sorted((by_queue.keys() | ready.keys()) - explicit,
                      key=lambda name: (-sum(by_queue.get(name, Counter()).values()), name))
    listed, rest = implicit[:implicit_max], implicit[implicit_max:]

    def summary(rec: queues.QueueRecord, names: list[str]) -> QueueSummary:
        counts = {status: sum(by_queue.get(n, Counter())[status] for n in names) for status in JobStatus}
        return QueueSummary(rec, rec.name in state.queues, counts, sum(ready[n] for n in names))

    rows = [summary(queues.settings(state, name), [name]) for name in sorted(explicit.union(listed))]
    other = summary(queues.IMPLICIT.evolve(name=OTHER_QUEUES), rest) if rest else None
    return rows, other
