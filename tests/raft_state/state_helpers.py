"""Builders shared by the raft_state tests: specs, workers and a few command shorthands."""

from __future__ import annotations

from typing import Any

from raft_state import (AssignJobs, Assignment, CompleteAttempt, FailAttempt, JobSpec, NewJob, Outcome,
                        RegisterWorker, State, SubmitJobs, canonical)

EMPTY_LABELS = canonical({})


def spec(*, type: str = "shell", payload: Any = None, priority: int = 0, timeout_ms: int = 60_000,
         max_retries: int = 0, backoff_ms: int = 1000, required_tags: tuple[str, ...] = (),
         hardware: tuple[str, ...] = (), min_memory_gb: float = 0.0, min_cuda_compute: float = 0.0, cpus: int = 0,
         depends_on: tuple[str, ...] = (), deadline_ms: int | None = None) -> JobSpec:
    return JobSpec(type=type, payload=canonical(payload if payload is not None else {"argv": ["true"]}),
                   priority=priority, timeout_ms=timeout_ms, max_retries=max_retries, backoff_ms=backoff_ms,
                   required_tags=tuple(sorted(required_tags)), hardware=tuple(sorted(hardware)),
                   min_memory_gb=min_memory_gb, min_cuda_compute=min_cuda_compute, cpus=cpus,
                   depends_on=depends_on, deadline_ms=deadline_ms, labels=EMPTY_LABELS)


def register(worker_id: str, *, at_ms: int = 0, capacity: int = 1, tags: tuple[str, ...] = (),
             hardware: tuple[str, ...] = (), memory_gb: float = 16.0, cuda_compute: float = 0.0,
             cpus: int = 8) -> RegisterWorker:
    return RegisterWorker(at_ms=at_ms, worker_id=worker_id, capacity=capacity, tags=tags, hardware=hardware,
                          memory_gb=memory_gb, cuda_compute=cuda_compute, cpus=cpus, info=canonical({}))


def submit(job_id: str, the_spec: JobSpec | None = None, *, key: str | None = None, at_ms: int = 0) -> SubmitJobs:
    return SubmitJobs(at_ms=at_ms, jobs=(NewJob(job_id=job_id, key=key, spec=the_spec or spec()),))


def assign(job_id: str, worker_id: str, attempt: int, *, at_ms: int = 0) -> AssignJobs:
    return AssignJobs(at_ms=at_ms, items=(Assignment(job_id, worker_id, attempt),))


def complete(job_id: str, attempt: int, worker_id: str, *, at_ms: int = 0, result: Any = "ok") -> CompleteAttempt:
    return CompleteAttempt(at_ms=at_ms, job_id=job_id, attempt=attempt, worker_id=worker_id,
                           result=canonical(result), stats=canonical({}))


def fail(job_id: str, attempt: int, worker_id: str, *, at_ms: int = 0, error: str = "boom") -> FailAttempt:
    return FailAttempt(at_ms=at_ms, job_id=job_id, attempt=attempt, worker_id=worker_id, error=error,
                       result=canonical(None), stats=canonical({}))


def assigned_ok(outcome: Outcome) -> bool:
    """True when an AssignJobs outcome accepted its (single) item."""
    return getattr(outcome, "value", None) == [None]


def applied(state: State, *cmds: Any) -> list[Outcome]:
    return [state.apply(cmd) for cmd in cmds]
