"""Records held by the replicated state: jobs, attempts, workers, idempotency keys.

Records are immutable tuples read by field name: apply replaces a record instead of editing it, so a reader on
another thread (the event loop, the snapshot writer) never sees half of a change.
`evolve()` is the one way to derive a changed copy.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    #: defaults of trailing fields added later: older code, snapshots and log entries lack them
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = cls.FIELDS
        tail = names[len(names) - len(cls.DEFAULTS):]
        assert set(tail) == set(cls.DEFAULTS), f"{cls.__name__}: DEFAULTS must name the trailing fields"
        for i, name in enumerate(names):
            setattr(cls, name, _field_getter(i, f"{cls.__name__}.{name}"))
        env: dict[str, Any] = {"_new": _tuple_new, "_cls": cls, "_names": frozenset(names)}
        env.update({f"_d_{n}": v for n, v in cls.DEFAULTS.items()})
        params = ", ".join(f"{n}=_d_{n}" if n in cls.DEFAULTS else n for n in names)
        values = ", ".join(names)
        gets = ", ".join(f"g({n!r}, self[{i}])" for i, n in enumerate(names))
        src = (f"def __new__(cls, *, {params}):\n    return _new(cls, ({values},))\n"
               f"def _make(cls, {params}):\n    return _new(cls, ({values},))\n"
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
        "memory_gb", "gpus", "gpu_memory_gb", "gpu_compute", "gpu_kind", "pin_cpus", "queue",
    )
    #: since cluster version 4: reserved memory and GPUs, CPU pinning, the queue (docs/resources.md)
    DEFAULTS = {"memory_gb": 0.0, "gpus": 0, "gpu_memory_gb": 0.0, "gpu_compute": 0.0, "gpu_kind": "",
                "pin_cpus": False, "queue": "default"}
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
    memory_gb: float  #: reserved on the worker while the attempt runs (0: none)
    gpus: int  #: devices reserved, each meeting gpu_memory_gb, gpu_compute and gpu_kind
    gpu_memory_gb: float
    gpu_compute: float
    gpu_kind: str  #: "" for any kind, else cuda | rocm | mps | ...
    pin_cpus: bool  #: the worker pins the attempt to `cpus` cores of its own
    queue: str  #: the named queue it waits in

    def placement_class(self) -> tuple[Any, ...]:
        """Jobs with equal placement classes fit exactly the same workers and wait in the same queue
        (the queue comes last: the scheduler groups classes by it)."""
        return (self.required_tags, self.hardware, self.min_memory_gb, self.min_cuda_compute, self.cpus,
                self.memory_gb, self.gpus, self.gpu_memory_gb, self.gpu_compute, self.gpu_kind, self.queue)

    def since_version(self) -> int:
        """The cluster version that can carry this spec: 4 once a field added in 4 is set, else 1."""
        return 4 if self[_SPEC_BASE:] != _SPEC_TAIL_DEFAULTS else 1

    @property
    def reserves(self) -> bool:
        """Whether the job reserves anything beyond a slot."""
        return self.cpus > 0 or self.memory_gb > 0 or self.gpus > 0


_SPEC_BASE = len(JobSpec.FIELDS) - len(JobSpec.DEFAULTS)
_SPEC_TAIL_DEFAULTS = tuple(JobSpec.DEFAULTS[n] for n in JobSpec.FIELDS[_SPEC_BASE:])


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One accelerator of a worker, as its detection (or its flags) reported it."""

    kind: str  #: cuda | rocm | mps | ...
    index: int  #: the index the driver uses (CUDA_VISIBLE_DEVICES and friends take it)
    model: str
    memory_gb: float
    compute: float  #: CUDA compute capability, a ROCm gfx arch number, 0.0 when unknown


class Worker(_Record):
    """A worker agent as the replicated state knows it."""

    __slots__ = ()
    FIELDS = ("worker_id", "seq", "capacity", "tags", "hardware", "memory_gb", "cuda_compute", "cpus",
                 "status", "running", "registered_at_ms", "info", "plugins", "devices", "held")
    DEFAULTS = {"devices": (), "held": ()}
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
    devices: tuple[Device, ...]  #: accelerators, by index
    held: tuple[tuple[str, tuple[int, ...]], ...]  #: (job id, device indices) of running jobs holding devices

    @property
    def free_slots(self) -> int:
        return self.capacity - len(self.running)

    def busy_devices(self) -> set[int]:
        return {i for _, held in self.held for i in held}

    def devices_of(self, job_id: str) -> tuple[int, ...]:
        for holder, held in self.held:
            if holder == job_id:
                return held
        return ()


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
    if spec.memory_gb > worker.memory_gb:
        why.append(f"memory {worker.memory_gb:g} GB < {spec.memory_gb:g} GB to reserve")
    if spec.gpus:
        usable = sum(1 for d in worker.devices if device_fits(spec, d))
        if usable < spec.gpus:
            why.append(f"{gpu_ask(spec)}: has {usable}" if worker.devices else f"{gpu_ask(spec)}: has no GPUs")
    return why


def device_fits(spec: JobSpec, d: Device) -> bool:
    return ((not spec.gpu_kind or d.kind == spec.gpu_kind) and d.memory_gb >= spec.gpu_memory_gb
            and d.compute >= spec.gpu_compute)


def gpu_ask(spec: JobSpec) -> str:
    """The GPU part of a job's ask in words: "needs 2 GPUs with 40 GB"."""
    parts = [f"{spec.gpu_kind} " if spec.gpu_kind else "", f"GPU{'s' if spec.gpus != 1 else ''}"]
    details = [f"{spec.gpu_memory_gb:g} GB" for _ in (0,) if spec.gpu_memory_gb]
    details += [f"compute {spec.gpu_compute:g}" for _ in (0,) if spec.gpu_compute]
    return f"needs {spec.gpus} {''.join(parts)}" + (f" with {', '.join(details)}" if details else "")


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
        and (spec.memory_gb <= worker.memory_gb)
        and (not spec.gpus or sum(1 for d in worker.devices if device_fits(spec, d)) >= spec.gpus)
    )
