"""Named queues at submit: what a job asks of the queue it names.

Every route that parses job specs (single and batch submits, workflow batches, schedules) calls
`fill_priorities` on the job objects before parsing them, so a job that gives no `priority` gets
its queue's default, and `check_known` on the parsed queue names before anything is proposed, so
a job naming a queue that does not exist is a 400 UNKNOWN_QUEUE naming the field. The records and
their transitions are raft_state/queues.py's; these functions only read the applied state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from raft_state import State
from raft_state.validate import DEFAULT_QUEUE

from haco.errors import Rejected

_NAMES_SHOWN: Final = 20


def fill_priorities(state: State, objs: list[Any]) -> list[Any]:
    """The job objects, a copy of each one that names (or defaults to) a queue with a default
    priority and gives no priority of its own carrying that priority; the others as they are.
    Loop only: reads one record per job."""
    queues = state.queues
    if not queues:
        return objs
    out = []
    for obj in objs:
        if isinstance(obj, dict) and "priority" not in obj:
            name = obj.get("queue", DEFAULT_QUEUE)
            rec = queues.get(name or DEFAULT_QUEUE) if name is None or isinstance(name, str) else None
            if rec is not None and rec.priority:
                obj = {**obj, "priority": rec.priority}
        out.append(obj)
    return out


def known_names(state: State) -> list[str]:
    """The queues a job may name: `default` and every queue with a record, by name."""
    return sorted({DEFAULT_QUEUE, *state.queues})


def check_known(state: State, names: Iterable[str], field: Callable[[int], str]) -> None:
    """Raise a 400 UNKNOWN_QUEUE for the first name that is neither `default` nor a queue with a
    record; `field(i)` names the field of the i-th job as the request spells it (`jobs[2].queue`)."""
    for index, name in enumerate(names):
        if name != DEFAULT_QUEUE and name not in state.queues:
            known = known_names(state)
            shown = ", ".join(known[:_NAMES_SHOWN]) + (", ..." if len(known) > _NAMES_SHOWN else "")
            raise Rejected("UNKNOWN_QUEUE", f"{field(index)}: no queue {name} (known: {shown}; "
                           f"create it with haco queue create {name})",
                           {"field": field(index), "queue": name, "known": known[:256]}, status=400)
