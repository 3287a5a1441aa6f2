"""Weighted fair share between named queues: which queue's job the planners offer next.

Stride scheduling: each queue has a pass; placing one of its jobs advances it by 1/weight, and
the next job comes from the queue with runnable work and the lowest pass (ties: by name). Two
flooded queues of weights 3 and 1 get placements 3:1; a queue's own priorities and FIFO order
hold within it, so a flood of high-priority work in one queue starves no other. A queue that
comes back after an idle spell starts at the lowest pass in play (`floor`), so it gets its share
from then on, not a burst for the time it was idle.

Leader memory, not replicated: fairness is a policy of the leader's placement, while the limits
that must hold (`max_running`, pause) are checked again at apply. A new leader starts with every
pass equal, so shares resume within a few placements of a failover.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Final

from raft_state import Assignment, State
from raft_state import queries, queues
from raft_state.records import Job, JobStatus, Worker

PASSES_MAX: Final = 4 * queues.QUEUES_MAX  #: queue names remembered; past it every pass starts over


class FairShare:
    __slots__ = ("passes", "floor")

    def __init__(self) -> None:
        self.passes: dict[str, float] = {}
        self.floor = 0.0

    def pick(self, names: Iterator[str] | list[str]) -> str | None:
        """The queue whose turn it is among `names` (lifting any below the floor)."""
        passes, floor = self.passes, self.floor
        best: str | None = None
        best_pass = 0.0
        for name in names:
            p = passes.get(name)
            if p is None or p < floor:
                p = passes[name] = floor
            if best is None or p < best_pass or (p == best_pass and name < best):
                best, best_pass = name, p
        return best

    def charge(self, name: str, weight: int) -> None:
        """One job of `name` was placed."""
        if len(self.passes) > PASSES_MAX:
            self.passes.clear()
            self.floor = 0.0
        p = self.passes.get(name, self.floor)
        self.floor = max(self.floor, p)
        self.passes[name] = p + 1.0 / weight


class Turns:
    """Ready jobs in the order the planners offer them: queue by queue as the fair share says,
    priority then FIFO within a queue. A queue drops out of this round when its stream ends, it
    reaches its `max_running` (counting assignments in flight), or `scan_max` of its jobs found
    no place (each queue has that budget; all of them together at most four times it). Classes no
    worker of `pool` can ever take are skipped by their first job and count against neither."""

    def __init__(self, state: State, pool: list[Worker], inflight: Mapping[str, Assignment] | None,
                 share: FairShare, scan_max: int) -> None:
        self.share = share
        self.scan_max = scan_max
        self._state, self._pool = state, pool
        #: placement class -> whether a worker of the pool can ever take it: a class no worker
        #: takes is skipped without counting against any scan budget
        self._verdicts: dict[object, bool] = {}
        self.budget = scan_max * min(4, max(1, len(state.queues) + 1))
        flying: Counter[str] = Counter()
        for item in (inflight or {}).values():
            job = state.jobs.get(item.job_id)
            if job is not None and job.status is JobStatus.PENDING:
                flying[job.spec.queue] += 1
        self.runnables: dict[str, queries.Runnable] = {}
        #: a queue's jobs, walked only once its turn comes (a plan of one job looks at one queue)
        self.streams: dict[str, Iterator[Job] | None] = {}
        self.room: dict[str, int | None] = {}
        self.weight: dict[str, int] = {}
        for name in queries.ready_queues(state):
            room = queues.room(state, name)
            if room is not None:
                room -= flying[name]
                if room <= 0:
                    continue
            self.room[name] = room
            self.weight[name] = queues.settings(state, name).weight
            self.streams[name] = None
        self.misses = dict.fromkeys(self.streams, 0)

    def __iter__(self) -> Iterator[Job]:
        streams = self.streams
        while streams and self.budget > 0:
            name = next(iter(streams)) if len(streams) == 1 else self.share.pick(list(streams))
            assert name is not None
            stream = streams[name]
            if stream is None:
                self.runnables[name] = runnable = queries.Runnable(self._state, name, self._pool, self._verdicts)
                stream = streams[name] = iter(runnable)
            job = next(stream, None)
            if job is None:
                del streams[name]
                continue
            self.budget -= 1
            yield job

    def klass(self, job: Job) -> object:
        """The placement class of `job`, the one just offered."""
        return self.runnables[job.spec.queue].klass

    def drop(self, job: Job) -> None:
        """No more jobs of `job`'s placement class in this round."""
        self.runnables[job.spec.queue].drop(self.klass(job))

    def missed(self, job: Job) -> None:
        name = job.spec.queue
        self.misses[name] = n = self.misses.get(name, 0) + 1
        if n >= self.scan_max:
            self.streams.pop(name, None)

    def placed(self, job: Job) -> None:
        name = job.spec.queue
        self.share.charge(name, self.weight.get(name, 1))
        room = self.room.get(name)
        if room is not None:
            self.room[name] = room - 1
            if room <= 1:
                self.streams.pop(name, None)
