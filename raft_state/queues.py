"""Named queues: their records, the only code that replaces them (so the digest stays right),
their transitions, and the questions placement asks (is it paused, how much room is left).

A job names its queue in `JobSpec.queue`. A queue without a record (`default` until it is
updated, or a name from before cluster version 5) has the implicit settings: no limit, weight 1,
priority 0, not paused. Records live in `State.queues`; `State.queue_counts` (derived, rebuilt at
snapshot load, not in the digest: the jobs are) counts jobs per queue and status.
"""

from __future__ import annotations

from functools import reduce
from operator import xor
from typing import TYPE_CHECKING, Final

from .digest import _local, _xxh3
from .outcomes import Accepted, Outcome, Rejected, RejectCode
from .queue_commands import QUEUES_SINCE, CreateQueue, DeleteQueue, SetQueuePaused, UpdateQueue
from .records import JobStatus, _Record
from .validate import DEFAULT_QUEUE, PRIORITY_ABS_MAX, QUEUE_RE

if TYPE_CHECKING:
    from .state import State

QUEUES_MAX: Final = 256  #: queue records at most (each scheduling round looks at every queue with ready work)
WEIGHT_MAX: Final = 1000
MAX_RUNNING_MAX: Final = 1_000_000
_QUEUE: Final = ord("Q")  #: the record kind's hash seed (digest.py has J, W, K, T, S; flows.py G, C, R, U)


class QueueRecord(_Record):
    """A named queue's settings."""

    __slots__ = ()
    FIELDS = ("name", "created_at_ms", "max_running", "weight", "priority", "paused")
    name: str
    created_at_ms: int
    max_running: int  #: 0: no limit
    weight: int
    priority: int  #: given to jobs submitted to it without a priority (by the API, before proposing)
    paused: bool


#: the settings of a queue without a record
IMPLICIT: Final = QueueRecord._make(DEFAULT_QUEUE, 0, 0, 1, 0, False)


def settings(s: State, name: str) -> QueueRecord:
    rec = s.queues.get(name)
    if rec is not None:
        return rec
    return IMPLICIT if name == DEFAULT_QUEUE else IMPLICIT.evolve(name=name)


def running(s: State, name: str) -> int:
    return s.queue_counts.get((name, JobStatus.RUNNING), 0)


def room(s: State, name: str) -> int | None:
    """Jobs the queue may still start now: None for no limit, 0 when paused or at its limit."""
    rec = s.queues.get(name)
    if rec is None:
        return None
    if rec.paused:
        return 0
    if not rec.max_running:
        return None
    return max(0, rec.max_running - running(s, name))


def unknown(s: State, name: str) -> Rejected | None:
    """The refusal of a new job naming a queue that has no record (UNKNOWN_QUEUE), from cluster
    version 5 on; None for `default`, a queue with a record, or below version 5 (where any name
    was an implicit queue, as logs written then replay). The API checks this on its replica's
    view; apply checks it again, as a DeleteQueue may apply first."""
    if name == DEFAULT_QUEUE or name in s.queues or s.cluster_version < QUEUES_SINCE:
        return None
    return Rejected(RejectCode.UNKNOWN_QUEUE, f"no queue {name}", {"queue": name})


def queue_hash(q: QueueRecord) -> int:
    return _xxh3(_local.pack(q), _QUEUE)


def records_hash(queues: list[QueueRecord]) -> int:
    """The XOR of the records' hashes: 0 for none, so a state without queues keeps its digest."""
    return reduce(xor, map(queue_hash, queues), 0)


def put_queue(s: State, q: QueueRecord) -> None:
    old = s.queues.get(q.name)
    if old is not None:
        s._xor ^= queue_hash(old)
    s._xor ^= queue_hash(q)
    s.queues[q.name] = q


def drop_queue(s: State, name: str) -> None:
    s._xor ^= queue_hash(s.queues.pop(name))


# ---- transitions ----------------------------------------------------------------------------

def settings_problem(name: str, max_running: int | None, weight: int | None, priority: int | None) -> str | None:
    """Why these queue settings are unusable, or None. Also the API's pre-check."""
    if not QUEUE_RE.match(name):
        return "queue name must be 1 to 64 characters of letters, digits, '_', '.', '-'"
    if max_running is not None and not 0 <= max_running <= MAX_RUNNING_MAX:
        return f"max_running must be 0 (no limit) to {MAX_RUNNING_MAX}"
    if weight is not None and not 1 <= weight <= WEIGHT_MAX:
        return f"weight must be 1 to {WEIGHT_MAX}"
    if priority is not None and not -PRIORITY_ABS_MAX <= priority <= PRIORITY_ABS_MAX:
        return f"priority must be within +-{PRIORITY_ABS_MAX}"
    return None


def create(s: State, cmd: CreateQueue) -> Outcome:
    problem = settings_problem(cmd.name, cmd.max_running, cmd.weight, cmd.priority)
    if problem is not None:
        return Rejected(RejectCode.INVALID, problem)
    old = settings(s, cmd.name) if cmd.name in s.queues or cmd.name == DEFAULT_QUEUE else None
    if old is not None:
        if (old.max_running, old.weight, old.priority) == (cmd.max_running, cmd.weight, cmd.priority):
            return Accepted(cmd.name, already=True)
        return Rejected(RejectCode.QUEUE_EXISTS, f"queue {cmd.name} exists with other settings (update it)",
                        {"queue": cmd.name})
    if len(s.queues) >= QUEUES_MAX:
        return Rejected(RejectCode.INVALID, f"the cluster holds {QUEUES_MAX} queues, the most it can")
    put_queue(s, QueueRecord._make(cmd.name, cmd.at_ms, cmd.max_running, cmd.weight, cmd.priority, False))
    return Accepted(cmd.name)


def _known(s: State, name: str) -> QueueRecord | Rejected:
    if name in s.queues:
        return s.queues[name]
    if name == DEFAULT_QUEUE:
        if len(s.queues) >= QUEUES_MAX:
            return Rejected(RejectCode.INVALID, f"the cluster holds {QUEUES_MAX} queues, the most it can")
        return IMPLICIT
    return Rejected(RejectCode.UNKNOWN_QUEUE, f"no queue {name}", {"queue": name})


def update(s: State, cmd: UpdateQueue) -> Outcome:
    problem = settings_problem(cmd.name, cmd.max_running, cmd.weight, cmd.priority)
    if problem is not None:
        return Rejected(RejectCode.INVALID, problem)
    old = _known(s, cmd.name)
    if isinstance(old, Rejected):
        return old
    new = old.evolve(**{k: v for k, v in (("max_running", cmd.max_running), ("weight", cmd.weight),
                                          ("priority", cmd.priority)) if v is not None})
    if new == old and cmd.name in s.queues:
        return Accepted(cmd.name, already=True)
    put_queue(s, new)
    return Accepted(cmd.name)


def set_paused(s: State, cmd: SetQueuePaused) -> Outcome:
    old = _known(s, cmd.name)
    if isinstance(old, Rejected):
        return old
    if old.paused == cmd.paused:
        return Accepted(cmd.name, already=True)
    put_queue(s, old.evolve(paused=cmd.paused))
    return Accepted(cmd.name)


def delete(s: State, cmd: DeleteQueue) -> Outcome:
    if cmd.name == DEFAULT_QUEUE:
        return Rejected(RejectCode.INVALID, "the default queue cannot be deleted (update it instead)")
    if cmd.name not in s.queues:
        return Accepted(cmd.name, already=True)
    waiting = sum(s.queue_counts.get((cmd.name, st), 0) for st in (JobStatus.PENDING, JobStatus.RUNNING))
    if waiting:
        return Rejected(RejectCode.QUEUE_NOT_EMPTY, f"queue {cmd.name} holds {waiting} pending or running jobs",
                        {"queue": cmd.name, "jobs": waiting})
    feeding = _schedules_into(s, cmd.name)
    if feeding:
        shown = ", ".join(feeding[:10]) + (", ..." if len(feeding) > 10 else "")
        return Rejected(RejectCode.QUEUE_NOT_EMPTY, f"queue {cmd.name} is where schedules {shown} submit "
                        "(delete them first)", {"queue": cmd.name, "jobs": 0, "schedules": feeding[:100]})
    drop_queue(s, cmd.name)
    return Accepted(cmd.name)


def _schedules_into(s: State, name: str) -> list[str]:
    """The schedules whose template names queue `name`, by id. Left alone, their runs would land
    in a queue without a record: no limit, no pause, and a name no submit may give."""
    from .schedules import decode_template  # late: schedules imports transitions, which imports this

    return sorted(sid for sid, sc in s.flows.schedules.items()
                  if any(spec.queue == name for _, spec in decode_template(sc.template) or ()))
