"""Named queues at submit: what a job asks of the queue it names.

Every route that parses job specs (single and batch submits, workflow batches, schedules) calls
`fill_priorities` on the job objects before parsing them, so a job that gives no `priority` gets
its queue's default, and `check_known` on the parsed queue names before anything is proposed, so
a job naming a queue that does not exist is a 400 UNKNOWN_QUEUE naming the field. The records and
their transitions are raft_state/queues.py's; these functions only read the applied state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from raft_state import JobSpec, State
from raft_state.validate import DEFAULT_QUEUE

from haco.errors import Rejected

_NAMES_SHOWN: Final = 20


def fill_priorities(state: State, objs: list[Any], earlier: Sequence[JobSpec | None] = ()) -> list[Any]:
    """The job objects, a copy of each one that names (or defaults to) a queue with a record and
    gives no priority of its own carrying the priority it gets; the others as they are.

    A job gets its queue's priority, unless the request repeats one already applied: `earlier[i]`
    (the i-th job of the group or schedule of that id) or the job its idempotency key names, in
    the same queue, gives its priority. The key, the group's batch and the schedule's template
    hash the priority, so a retry after the queue's priority changed is still the same request,
    not a KEY_REUSED, GROUP_EXISTS or SCHEDULE_EXISTS. Loop only: reads a few records per job."""
    queues = state.queues
    if not queues:
        return objs
    out = []
    for index, obj in enumerate(objs):
        if isinstance(obj, dict) and "priority" not in obj:
            given = obj.get("queue")
            name = (given or DEFAULT_QUEUE) if given is None or isinstance(given, str) else None
            rec = queues.get(name) if name is not None else None
            prior = earlier[index] if index < len(earlier) else None
            prior = prior if prior is not None else _keyed(state, obj.get("key"))
            if prior is not None and prior.queue == name:
                obj = {**obj, "priority": prior.priority}
            elif rec is not None and rec.priority:
                obj = {**obj, "priority": rec.priority}
        out.append(obj)
    return out


def _keyed(state: State, key: Any) -> JobSpec | None:
    """The spec of the job an idempotency key names, if both are still there."""
    rec = state.keys.get(key) if isinstance(key, str) else None
    job = state.jobs.get(rec.job_id) if rec is not None else None
    return job.spec if job is not None else None


def group_specs(state: State, group_id: str) -> list[JobSpec | None]:
    """The specs of an existing group's jobs in its batch order (None for a pruned one); [] for none."""
    group = state.flows.groups.get(group_id) if group_id else None
    if group is None:
        return []
    return [job.spec if (job := state.jobs.get(job_id)) is not None else None for job_id in group.job_ids]


def refusal_status(code: Any) -> int | None:
    """The HTTP status of a submit's refusal by apply: UNKNOWN_QUEUE (a DeleteQueue applied before
    the submit the API checked) is a 400, as the API's own check answers; others keep theirs."""
    return 400 if str(code) == "UNKNOWN_QUEUE" else None


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
