"""Commands of workflows and time: a whole DAG in one entry, reruns, periodic schedules.

Tags 20-29, all gated on cluster version 3. As for every command, ids and times come in the
command: the proposer mints job ids, the leader stamps `FireSchedule`. See raft_state/DESIGN.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from .records import JobSpec

FLOWS_SINCE: Final = 3
RETRY_BATCH_MAX: Final = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowJob:
    """One job of a workflow batch. `spec.depends_on` may hold names of this batch's jobs (resolved
    to their ids at apply) or ids of jobs already in the state."""

    job_id: str
    name: str  #: unique within the batch; "" for a job nothing names
    key: str | None  #: idempotency key; only for a batch of one job (the group id covers a batch)
    not_before_ms: int  #: not started before this replicated time; 0 for none
    spec: JobSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitFlow:
    """A batch of jobs that may name each other, applied all or nothing, as one group.

    `group_id` "" creates no group (a single delayed job). A repeated group id with the same batch
    is answered with the ids it got the first time; with another batch it is refused."""

    TAG: ClassVar[int] = 20
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = FLOWS_SINCE
    at_ms: int
    group_id: str
    jobs: tuple[FlowJob, ...]


@dataclass(frozen=True, slots=True)
class RetryJobs:
    """Put final failed, cancelled or expired jobs back to pending with a fresh retry budget; the
    dependents that failed because of them wait again. Pending, running and completed jobs are
    left as they are."""

    TAG: ClassVar[int] = 21
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = FLOWS_SINCE
    at_ms: int
    job_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSchedule:
    """A periodic schedule: `cron` in `tz`, or every `every_ms`; its runs are `template` (a
    canonical msgpack workflow: [[name, key-less job spec fields], ...]). Repeating the same
    creation is accepted as already done; the same id with other fields is refused."""

    TAG: ClassVar[int] = 22
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = FLOWS_SINCE
    at_ms: int
    schedule_id: str
    cron: str  #: "" when `every_ms` is set
    tz: str  #: an IANA time zone name for `cron`
    every_ms: int  #: 0 when `cron` is set; slots are the multiples of it since the epoch
    overlap: str  #: skip | allow | cancel_previous
    catch_up: str  #: all | latest | none
    window_ms: int  #: a slot later than this past its due time never fires
    jitter_ms: int  #: each slot fires up to this much after it (a fixed amount per slot)
    template: bytes


@dataclass(frozen=True, slots=True)
class SetSchedulePaused:
    """Pause or resume; a resumed schedule fires no slot from before it resumed."""

    TAG: ClassVar[int] = 23
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = FLOWS_SINCE
    at_ms: int
    schedule_id: str
    paused: bool


@dataclass(frozen=True, slots=True)
class DeleteSchedule:
    TAG: ClassVar[int] = 24
    MOVES_CLOCK: ClassVar[bool] = False
    SINCE_VERSION: ClassVar[int] = FLOWS_SINCE
    at_ms: int
    schedule_id: str


@dataclass(frozen=True, slots=True)
class FireSchedule:
    """The leader's decision that `slot_ms` of a schedule is due. Apply refuses a slot already
    fired (or older than one), not due yet, not a slot of the schedule, or past its catch-up
    window; it applies the overlap policy, and a run is a group named by schedule and slot."""

    TAG: ClassVar[int] = 25
    MOVES_CLOCK: ClassVar[bool] = True
    SINCE_VERSION: ClassVar[int] = FLOWS_SINCE
    at_ms: int
    schedule_id: str
    slot_ms: int
    job_ids: tuple[str, ...]  #: one per template job, in template order


FLOW_COMMAND_TYPES: Final = (SubmitFlow, RetryJobs, CreateSchedule, SetSchedulePaused, DeleteSchedule, FireSchedule)
