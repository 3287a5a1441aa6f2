"""Records held by the replicated state: jobs, attempts, workers, idempotency keys.

Records are immutable tuples read by field name: apply replaces a record instead of editing it, so a reader on
another thread (the event loop, the snapshot writer) never sees half of a change.
`evolve()` is the one way to derive a changed copy.
"""

from __future__ import annotations

from enum import StrEnum
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, NewType, Self, TypeVar

JobId = NewType("JobId", str)
WorkerId = NewType("WorkerId", str)


class JobStatus(StrEnum):
    PENDING = "pending"  #: waiting for dependencies, backoff or a worker
    RUNNING = "running"  #: assigned to a worker for its current attempt
    COMPLETED = "completed"  #: final: a result was recorded
    FAILED = "failed"  #: final: retries or lost attempts exhausted, or a dependency failed
    CANCELLED = "cancelled"  #: final: cancelled by a user
    EXPIRED = "expired"  #: final: not started before its deadline


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})


class WorkerStatus(StrEnum):
    ACTIVE = "active"  #: takes new assignments
    DRAINING = "draining"  #: finishes what it runs, takes nothing new
    LOST = "lost"  #: declared lost by the leader; its running attempts were requeued


class AttemptOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    LOST = "lost"  #: its worker was lost or deregistered; does not consume a retry
    CANCELLED = "cancelled"


def _field_getter(index: int, doc: str) -> Any:
    """A C-level read-only accessor for one tuple position: namedtuple's own, when this Python has it."""
    try:
        from collections import _tuplegetter  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - every CPython since 3.8 has it
        return property(itemgetter(index), doc=doc)
    return _tuplegetter(index, doc)


def _rebuild(cls: type[_R], values: tuple[Any, ...]) -> _R:
    return _tuple_new(cls, values)


_tuple_new = tuple.__new__
_R = TypeVar("_R", bound="_Record")


class _Record(tuple):  # type: ignore[type-arg]
    """Base for immutable records: a tuple of the fields named in `FIELDS`, read by name.

    Each subclass gets generated `__new__` (keyword-only), `_make` (positional, in field order) and
    `evolve`, plus one C-level accessor per field. A tuple, not a slotted object: a million records
    are rebuilt at snapshot load, and `tuple.__new__` over zipped columns builds one in ~0.3 us where
    setting slots one descriptor call at a time took ~1.4 us. Equality is by type and fields; a record
    never equals a plain tuple, and records are not hashable (they hold no identity).
    """

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = cls.FIELDS
        for i, name in enumerate(names):
            setattr(cls, name, _field_getter(i, f"{cls.__name__}.{name}"))
        env: dict[str, Any] = {"_new": _tuple_new, "_cls": cls, "_names": frozenset(names)}
        params = ", ".join(names)
        gets = ", ".join(f"g({n!r}, self[{i}])" for i, n in enumerate(names))
        src = (f"def __new__(cls, *, {params}):\n    return _new(cls, ({params},))\n"
               f"def _make(cls, {params}):\n    return _new(cls, ({params},))\n"
               f"def evolve(self, **changes):\n"
               f"    if not changes.keys() <= _names:\n"
               f"        raise TypeError(f'unknown fields {{sorted(changes.keys() - _names)}}')\n"
               f"    g = changes.get\n"
               f"    return _new(_cls, ({gets},))\n")
        exec(src, env)  # noqa: S102  (generated from the class's own field names)
        setattr(cls, "__new__", env["__new__"])
        setattr(cls, "_make", classmethod(env["_make"]))
        setattr(cls, "evolve", env["evolve"])

    if TYPE_CHECKING:
        def __init__(self, **fields: Any) -> None: ...

        @classmethod
        def _make(cls, *values: Any) -> Self:
            """A record from its field values in field order; no checks."""

        def evolve(self, **changes: Any) -> Self:
            """A copy with `changes` applied; TypeError on an unknown field."""

    def __eq__(self, other: object) -> bool:
        # False, not NotImplemented: Python would then ask the plain tuple, which says True
        return type(other) is type(self) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), tuple(self))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(self.FIELDS, self))
        return f"{type(self).__name__}({inner})"


class JobSpec(_Record):
    """A validated job specification; the part of a job that its submitter chose."""

    __slots__ = ()
    FIELDS = (
        "type", "payload", "priority", "timeout_ms", "max_retries", "backoff_ms", "required_tags",
        "hardware", "min_memory_gb", "min_cuda_compute", "cpus", "depends_on", "deadline_ms", "labels",
    )
    type: str
    payload: bytes  #: canonical msgpack
    priority: int
    timeout_ms: int
    max_retries: int
    backoff_ms: int
    required_tags: tuple[str, ...]  #: sorted, unique
    hardware: tuple[str, ...]  #: sorted, unique
    min_memory_gb: float
    min_cuda_compute: float
    cpus: int
    depends_on: tuple[str, ...]  #: in submission order, unique
    deadline_ms: int | None
    labels: bytes  #: canonical msgpack of a str -> str map

    def placement_class(self) -> tuple[Any, ...]:
        """Jobs with equal placement classes fit exactly the same workers."""
        return (self.required_tags, self.hardware, self.min_memory_gb, self.min_cuda_compute, self.cpus)


class Attempt(_Record):
    """One placement of a job on a worker."""

    __slots__ = ()
    FIELDS = ("number", "worker_id", "assigned_at_ms", "started_at_ms", "ended_at_ms", "outcome", "error",
                 "result", "stats")
    number: int
    worker_id: str
    assigned_at_ms: int
    started_at_ms: int | None
    ended_at_ms: int | None
    outcome: str | None  #: an AttemptOutcome once ended
    error: str | None
    result: bytes | None  #: canonical msgpack
    stats: bytes | None  #: msgpack map: wall_ms, cpu_ms, peak_rss_bytes, ...


class Job(_Record):
    """A submitted job and everything that happened to it."""

    __slots__ = ()
    #: `spec` last: the fields before it are exactly what the digest hashes (see digest.job_hash)
    FIELDS = ("job_id", "seq", "key", "spec_hash", "created_at_ms", "status", "attempt", "failures",
              "lost", "not_before_ms", "worker_id", "error", "finished_at_ms", "finish_seq", "attempts", "spec")
    job_id: str
    seq: int  #: submission sequence: FIFO order within a priority
    key: str | None
    spec_hash: bytes
    created_at_ms: int  #: stamped by whichever replica took the submission; recorded, never moves the clock
    status: JobStatus
    attempt: int  #: number of the latest attempt; 0 before the first assignment
    failures: int  #: failed or timed-out attempts (consume retries)
    lost: int  #: attempts lost with their worker (capped separately)
    not_before_ms: int  #: backoff: not runnable before this replicated time
    worker_id: str | None  #: while running
    error: str | None  #: why a final job failed, was cancelled or expired
    finished_at_ms: int | None
    finish_seq: int | None  #: order of reaching a final state: pruning order
    attempts: tuple[Attempt, ...]
    spec: JobSpec

    @property
    def result(self) -> bytes | None:
        if self.status is JobStatus.COMPLETED and self.attempts:
            return self.attempts[-1].result
        return None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class Worker(_Record):
    """A worker agent as the replicated state knows it."""

    __slots__ = ()
    FIELDS = ("worker_id", "seq", "capacity", "tags", "hardware", "memory_gb", "cuda_compute", "cpus",
                 "status", "running", "registered_at_ms", "info", "plugins")
    worker_id: str
    seq: int  #: registration order: deterministic tie-breaks
    capacity: int  #: concurrent attempts
    tags: tuple[str, ...]
    hardware: tuple[str, ...]
    memory_gb: float
    cuda_compute: float
    cpus: int
    status: WorkerStatus
    running: tuple[str, ...]  #: job ids, in assignment order
    registered_at_ms: int
    info: bytes  #: canonical msgpack: hostname, version, free-form capabilities
    plugins: tuple[str, ...]  #: executor types it offers beyond the built-ins, sorted, unique

    @property
    def free_slots(self) -> int:
        return self.capacity - len(self.running)


class KeyRecord(_Record):
    """An idempotency key; outlives its job as a tombstone until its own retention ends."""

    __slots__ = ()
    FIELDS = ("key", "job_id", "spec_hash", "created_at_ms", "seq")
    key: str
    job_id: str
    spec_hash: bytes
    created_at_ms: int
    seq: int


def unmet_requirements(spec: JobSpec, worker: Worker) -> list[str]:
    """Why `worker` cannot run a job of `spec`, one phrase per failed requirement; empty if it can."""
    why: list[str] = []
    missing = [t for t in spec.required_tags if t not in worker.tags]
    if missing:
        why.append(f"missing tags {missing}")
    missing_hw = [h for h in spec.hardware if h not in worker.hardware]
    if missing_hw:
        why.append(f"missing hardware {missing_hw}")
    if spec.min_memory_gb > worker.memory_gb:
        why.append(f"memory {worker.memory_gb:g} GB < {spec.min_memory_gb:g} GB")
    if spec.min_cuda_compute > worker.cuda_compute:
        why.append(f"cuda compute {worker.cuda_compute:g} < {spec.min_cuda_compute:g}")
    if spec.cpus > worker.cpus:
        why.append(f"cpus {worker.cpus} < {spec.cpus}")
    return why


def fits(spec: JobSpec, worker: Worker) -> bool:
    """True when `worker` meets every tag and requirement of `spec` (capacity aside)."""
    tags = worker.tags
    hardware = worker.hardware
    return (
        all(t in tags for t in spec.required_tags)
        and all(h in hardware for h in spec.hardware)
        and spec.min_memory_gb <= worker.memory_gb
        and spec.min_cuda_compute <= worker.cuda_compute
        and spec.cpus <= worker.cpus
    )
