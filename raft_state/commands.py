"""Commands: the only inputs of the state machine.

Every command carries `at_ms` and every id it needs; ids, attempts and times are chosen by the
proposer, never inside apply. `MOVES_CLOCK` marks the commands the leader stamps (worker reports,
which arrive at the leader, and the scheduler's decisions): only they move replicated time.
Tags are append-only: a tag is never reused, and `SINCE_VERSION` gates new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from .flow_commands import (CreateSchedule, DeleteSchedule, FireSchedule, RetryJobs, SetSchedulePaused,
                            SubmitFlow)
from .queue_commands import CreateQueue, DeleteQueue, SetQueuePaused, UpdateQueue
from .records import Device, JobSpec

#: highest cluster version this code understands
CODE_VERSION: Final = 5
#: bounds that keep one log entry from stalling the Raft thread; proposers split above them
SUBMIT_BATCH_MAX: Final = 2000
ASSIGN_BATCH_MAX: Final = 2000
PRUNE_BATCH_MAX: Final = 2000
TICK_WORK_MAX: Final = 2000  #: expiries, backoff ends and DAG failures handled per command
MAX_CLOCK_STEP_MS: Final = 60_000  #: how far one command may move replicated time
LOST_ATTEMPTS_MAX: Final = 3  #: lost attempts before a job is failed (a job that kills its workers)
BACKOFF_MAX_MS: Final = 3_600_000


@dataclass(frozen=True, slots=True)
class NewJob:
    job_id: str
    key: str | None
    spec: JobSpec


@dataclass(frozen=True, slots=True)
class Assignment:
    job_id: str
    worker_id: str
    attempt: int
    devices: tuple[int, ...] = ()  #: device indices the job reserves (since cluster version 4)


@dataclass(frozen=True, slots=True)
class SubmitJobs:
    """All or nothing: every new job is created, or the entry is refused naming the first bad item."""

    TAG: ClassVar[int] = 1
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    jobs: tuple[NewJob, ...]


@dataclass(frozen=True, slots=True)
class CancelJob:
    TAG: ClassVar[int] = 2
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    job_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterWorker:
    """Register a worker, or update one that re-registers (also brings a lost worker back).

    `plugins` (since cluster version 3) are the executor types the worker offers beyond the
    built-ins; at its default the command encodes exactly as before the field existed."""

    TAG: ClassVar[int] = 3
    MOVES_CLOCK: ClassVar[bool] = True
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    worker_id: str
    capacity: int
    tags: tuple[str, ...]
    hardware: tuple[str, ...]
    memory_gb: float
    cuda_compute: float
    cpus: int
    info: bytes
    plugins: tuple[str, ...] = ()
    PLUGINS_SINCE_VERSION: ClassVar[int] = 3
    devices: tuple[Device, ...] = ()  #: accelerators; since cluster version 4
    DEVICES_SINCE_VERSION: ClassVar[int] = 4


@dataclass(frozen=True, slots=True)
class DeregisterWorker:
    TAG: ClassVar[int] = 4
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class DrainWorker:
    TAG: ClassVar[int] = 5
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class MarkWorkerLost:
    TAG: ClassVar[int] = 6
    MOVES_CLOCK: ClassVar[bool] = True
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class AssignJobs:
    """Each item is checked on its own; refused items leave their job as it was."""

    TAG: ClassVar[int] = 7
    MOVES_CLOCK: ClassVar[bool] = True
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    items: tuple[Assignment, ...]


@dataclass(frozen=True, slots=True)
class StartAttempt:
    TAG: ClassVar[int] = 8
    MOVES_CLOCK: ClassVar[bool] = True
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    job_id: str
    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteAttempt:
    TAG: ClassVar[int] = 9
    MOVES_CLOCK: ClassVar[bool] = True
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    job_id: str
    attempt: int
    worker_id: str
    result: bytes
    stats: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class FailAttempt:
    TAG: ClassVar[int] = 10
    MOVES_CLOCK: ClassVar[bool] = True
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    job_id: str
    attempt: int
    worker_id: str
    error: str
    result: bytes
    stats: bytes


@dataclass(frozen=True, slots=True)
class TimeoutAttempt:
    """Proposed by the leader once an attempt ran past its timeout; checked again at apply."""

    TAG: ClassVar[int] = 11
    MOVES_CLOCK: ClassVar[bool] = True
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    job_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Leader time: expires deadlines, ends backoffs, continues DAG failure cascades."""

    TAG: ClassVar[int] = 12
    MOVES_CLOCK: ClassVar[bool] = True
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int


@dataclass(frozen=True, slots=True)
class SetPaused:
    TAG: ClassVar[int] = 13
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    paused: bool


@dataclass(frozen=True, slots=True)
class PruneJobs:
    """Drop final jobs that finished before `finished_before_ms`, and key tombstones created before
    `keys_before_ms`, oldest first, at most PRUNE_BATCH_MAX of each."""

    TAG: ClassVar[int] = 14
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    finished_before_ms: int
    keys_before_ms: int


@dataclass(frozen=True, slots=True)
class SetClusterVersion:
    """Proposed once every replica runs code that knows `version`; unlocks the tags gated on it."""

    TAG: ClassVar[int] = 15
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = 1
    at_ms: int
    version: int


@dataclass(frozen=True, slots=True)
class RevokeToken:
    """Refuse an API token everywhere until it would have expired anyway."""

    TAG: ClassVar[int] = 16
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = 2
    at_ms: int
    token_id: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class UndrainWorker:
    """A draining worker takes new work again (the way back from DrainWorker); a lost worker is
    refused (it comes back by registering), an active one is already undrained."""

    TAG: ClassVar[int] = 17
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = 4
    at_ms: int
    worker_id: str


Command = (
    SubmitJobs | CancelJob | RegisterWorker | DeregisterWorker | DrainWorker | MarkWorkerLost | AssignJobs
    | StartAttempt | CompleteAttempt | FailAttempt | TimeoutAttempt | Tick | SetPaused | PruneJobs
    | SetClusterVersion | RevokeToken | UndrainWorker
    | SubmitFlow | RetryJobs | CreateSchedule | SetSchedulePaused | DeleteSchedule | FireSchedule
    | CreateQueue | UpdateQueue | SetQueuePaused | DeleteQueue
)

COMMAND_TYPES: Final[tuple[type[Command], ...]] = (
    SubmitJobs, CancelJob, RegisterWorker, DeregisterWorker, DrainWorker, MarkWorkerLost, AssignJobs,
    StartAttempt, CompleteAttempt, FailAttempt, TimeoutAttempt, Tick, SetPaused, PruneJobs,
    SetClusterVersion, RevokeToken, UndrainWorker,
    SubmitFlow, RetryJobs, CreateSchedule, SetSchedulePaused, DeleteSchedule, FireSchedule,
    CreateQueue, UpdateQueue, SetQueuePaused, DeleteQueue,
)
TYPE_BY_TAG: Final[dict[int, type[Command]]] = {t.TAG: t for t in COMMAND_TYPES}
assert len(TYPE_BY_TAG) == len(COMMAND_TYPES), "command tags must be unique"
