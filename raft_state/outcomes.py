"""What apply answers: `Accepted` or `Rejected(code, message)`. Values, never exceptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RejectCode(StrEnum):
    MALFORMED = "MALFORMED"  #: an entry that does not decode; refused on every replica alike
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"  #: a tag this code does not know
    VERSION_GATED = "VERSION_GATED"  #: a tag the cluster version does not allow yet
    INVALID = "INVALID"  #: a command whose fields break a bound (batch too big, bad spec)
    UNKNOWN_JOB = "UNKNOWN_JOB"
    UNKNOWN_WORKER = "UNKNOWN_WORKER"
    UNKNOWN_DEPENDENCY = "UNKNOWN_DEPENDENCY"
    DUPLICATE_JOB_ID = "DUPLICATE_JOB_ID"
    KEY_REUSED = "KEY_REUSED"  #: same idempotency key, different spec
    STALE_ATTEMPT = "STALE_ATTEMPT"  #: a report or assignment for an attempt that is not current
    NOT_PENDING = "NOT_PENDING"
    NOT_RUNNABLE = "NOT_RUNNABLE"  #: dependencies, backoff, deadline or pause
    QUEUE_PAUSED = "QUEUE_PAUSED"
    WORKER_UNAVAILABLE = "WORKER_UNAVAILABLE"  #: lost, draining or full
    REQUIREMENTS_UNMET = "REQUIREMENTS_UNMET"
    RESOURCES_BUSY = "RESOURCES_BUSY"  #: the worker's free CPUs, memory or devices do not cover the job now
    UNKNOWN_QUEUE = "UNKNOWN_QUEUE"
    QUEUE_FULL = "QUEUE_FULL"  #: the job's queue runs its max_running already
    QUEUE_EXISTS = "QUEUE_EXISTS"  #: same queue name, other settings
    QUEUE_NOT_EMPTY = "QUEUE_NOT_EMPTY"  #: a queue deleted while jobs wait or run in it, or a schedule submits to it
    JOB_FINAL = "JOB_FINAL"  #: the job already reached a final state
    TOO_EARLY = "TOO_EARLY"  #: a timeout proposed before the attempt's time was up
    INTERNAL = "INTERNAL"  #: apply hit a bug; the adapter's guard turned it into a refusal
    DEPENDENCY_CYCLE = "DEPENDENCY_CYCLE"  #: a workflow whose jobs depend on each other in a circle
    GROUP_EXISTS = "GROUP_EXISTS"  #: a group id already taken by another batch
    UNKNOWN_SCHEDULE = "UNKNOWN_SCHEDULE"
    SCHEDULE_EXISTS = "SCHEDULE_EXISTS"  #: same schedule id, other settings
    SCHEDULE_PAUSED = "SCHEDULE_PAUSED"
    SLOT_PASSED = "SLOT_PASSED"  #: a slot at or before one already decided
    TOO_LATE = "TOO_LATE"  #: a slot past its catch-up window


@dataclass(frozen=True, slots=True)
class Accepted:
    value: Any = None  #: msgpack-able: a job id, a list of job ids, per-item results
    already: bool = False  #: a repeat of something already recorded; nothing changed


@dataclass(frozen=True, slots=True)
class Rejected:
    code: RejectCode
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


Outcome = Accepted | Rejected


def outcome_to_wire(outcome: Outcome) -> list[Any]:
    if isinstance(outcome, Accepted):
        return [0, outcome.value, outcome.already]
    return [1, str(outcome.code), outcome.message, outcome.detail]


def outcome_from_wire(raw: Any) -> Outcome:
    if raw[0] == 0:
        return Accepted(raw[1], bool(raw[2]))
    try:
        code = RejectCode(raw[1])
    except ValueError:
        code = RejectCode.INTERNAL
    return Rejected(code, str(raw[2]), dict(raw[3] or {}))
