"""Commands of named queues: create, update, pause or resume, delete.

Tags 30-39, all gated on cluster version 5. A job names its queue in its spec (`queue`, default
`default`); these commands set a queue's concurrency limit, its weight in the fair share between
queues, and the priority jobs submitted without one get. See raft_state/DESIGN.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

QUEUES_SINCE: Final = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateQueue:
    """A named queue. The same name with the same settings is already done; with others it is
    refused (QUEUE_EXISTS): `UpdateQueue` changes settings."""

    TAG: ClassVar[int] = 30
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = QUEUES_SINCE
    at_ms: int
    name: str
    max_running: int  #: running jobs of this queue across the cluster at most; 0 for no limit
    weight: int  #: its share of capacity against other queues with runnable work
    priority: int  #: the priority of a job submitted to it without one


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateQueue:
    """Change the settings given (None leaves one as it is). Updating `default` makes its
    settings explicit; any other unknown name is refused (UNKNOWN_QUEUE)."""

    TAG: ClassVar[int] = 31
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = QUEUES_SINCE
    at_ms: int
    name: str
    max_running: int | None = None
    weight: int | None = None
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class SetQueuePaused:
    """Pause (nothing of the queue is assigned; running jobs go on) or resume one queue."""

    TAG: ClassVar[int] = 32
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = QUEUES_SINCE
    at_ms: int
    name: str
    paused: bool


@dataclass(frozen=True, slots=True)
class DeleteQueue:
    """Delete a queue that holds no pending or running job and that no schedule's template names
    (QUEUE_NOT_EMPTY otherwise); `default` cannot be deleted."""

    TAG: ClassVar[int] = 33
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = QUEUES_SINCE
    at_ms: int
    name: str
