"""The part of the state that workflows and schedules add, and the only code that replaces its
records (so the digest stays right): groups, schedules, their recent runs, rerun counts.

Held by `State.flows`. Everything here runs under `State.apply`'s contract. The derived maps
(`group_of`, `live`, `stale_finished`) are rebuilt at snapshot load and are not in the digest.
"""

from __future__ import annotations

from functools import reduce
from operator import xor
from typing import TYPE_CHECKING, Final

from .digest import _local, _xxh3
from .flow_records import Group, Schedule, ScheduleRun

if TYPE_CHECKING:
    from .state import State

#: runs remembered per schedule (older ones are dropped; their groups stay until pruned)
RUNS_KEPT: Final = 200
#: seeds of the record kinds added here (digest.py has J, W, K, T, S)
_GROUP, _SCHEDULE, _RUN, _RERUN = (ord(c) for c in "GCRU")


class Flows:
    __slots__ = ("groups", "group_of", "live", "schedules", "runs", "reruns", "stale_finished")

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.group_of: dict[str, str] = {}  #: job id -> its group (derived)
        self.live: dict[str, int] = {}  #: group id -> how many of its jobs are still in the state (derived)
        self.schedules: dict[str, Schedule] = {}
        self.runs: dict[str, list[ScheduleRun]] = {}  #: per schedule, in slot order, at most RUNS_KEPT
        self.reruns: dict[str, int] = {}  #: job id -> times it was put back to pending by RetryJobs
        #: job id -> entries of `State._finished` that stand for an earlier finish of a job since
        #: retried; prune skips them. Not state: a snapshot's finish order holds only live entries.
        self.stale_finished: dict[str, int] = {}


def group_hash(g: Group) -> int:
    return _xxh3(_local.pack(g), _GROUP)


def schedule_hash(sc: Schedule) -> int:
    return _xxh3(_local.pack(sc), _SCHEDULE)


def run_hash(r: ScheduleRun) -> int:
    return _xxh3(_local.pack(r), _RUN)


def rerun_hash(job_id: str, n: int) -> int:
    return _xxh3(_local.pack([job_id, n]), _RERUN)


def records_hash(groups: list[Group], schedules: list[Schedule], runs: list[ScheduleRun],
                 reruns: dict[str, int]) -> int:
    """The XOR of the hashes of these records: 0 for none, so a state without them keeps its digest."""
    return (reduce(xor, map(group_hash, groups), 0) ^ reduce(xor, map(schedule_hash, schedules), 0)
            ^ reduce(xor, map(run_hash, runs), 0) ^ reduce(xor, map(rerun_hash, reruns, reruns.values()), 0))


def state_hash(f: Flows) -> int:
    return records_hash(list(f.groups.values()), list(f.schedules.values()),
                        [r for rs in f.runs.values() for r in rs], f.reruns)


# ---- record replacement -------------------------------------------------------------------

def put_group(s: State, g: Group) -> None:
    f = s.flows
    old = f.groups.get(g.group_id)
    if old is not None:
        s._xor ^= group_hash(old)
    s._xor ^= group_hash(g)
    f.groups[g.group_id] = g
    if old is None:
        n = 0
        for job_id in g.job_ids:
            f.group_of[job_id] = g.group_id
            n += job_id in s.jobs
        f.live[g.group_id] = n


def drop_group(s: State, group_id: str) -> None:
    f = s.flows
    g = f.groups.pop(group_id)
    s._xor ^= group_hash(g)
    f.live.pop(group_id, None)
    for job_id in g.job_ids:
        if f.group_of.get(job_id) == group_id:
            del f.group_of[job_id]


def put_schedule(s: State, sc: Schedule) -> None:
    f = s.flows
    old = f.schedules.get(sc.schedule_id)
    if old is not None:
        s._xor ^= schedule_hash(old)
    s._xor ^= schedule_hash(sc)
    f.schedules[sc.schedule_id] = sc


def drop_schedule(s: State, schedule_id: str) -> None:
    f = s.flows
    s._xor ^= schedule_hash(f.schedules.pop(schedule_id))
    for r in f.runs.pop(schedule_id, []):
        s._xor ^= run_hash(r)


def add_run(s: State, run: ScheduleRun) -> None:
    runs = s.flows.runs.setdefault(run.schedule_id, [])
    runs.append(run)
    s._xor ^= run_hash(run)
    while len(runs) > RUNS_KEPT:
        s._xor ^= run_hash(runs.pop(0))


def bump_rerun(s: State, job_id: str) -> None:
    f = s.flows
    old = f.reruns.get(job_id)
    if old is not None:
        s._xor ^= rerun_hash(job_id, old)
    n = (old or 0) + 1
    f.reruns[job_id] = n
    s._xor ^= rerun_hash(job_id, n)


def on_job_dropped(s: State, job_id: str) -> None:
    """A pruned job: forget its rerun count, and its group once none of the group's jobs is left."""
    f = s.flows
    n = f.reruns.pop(job_id, None)
    if n is not None:
        s._xor ^= rerun_hash(job_id, n)
    f.stale_finished.pop(job_id, None)
    group_id = f.group_of.get(job_id)
    if group_id is None:
        return
    left = f.live.get(group_id, 0) - 1
    if left > 0:
        f.live[group_id] = left
    else:
        drop_group(s, group_id)


def deadline_binds(s: State, job_id: str, attempt: int) -> bool:
    """A deadline bounds a job's first start only: not once it ran, nor after a user's retry."""
    return attempt == 0 and job_id not in s.flows.reruns
