"""Records of workflows and schedules: groups, schedules and their recent runs.

Immutable tuples read by field name, like the records in records.py; absent values are "" and 0
(not None) so that every column of their snapshot tables has one plain type.
"""

from __future__ import annotations

from .records import _Record


class Group(_Record):
    """The jobs of one batch (or one schedule run), answered together by `GET /api/groups/{id}`."""

    __slots__ = ()
    FIELDS = ("group_id", "seq", "created_at_ms", "names", "job_ids", "batch_hash", "schedule_id", "slot_ms")
    group_id: str
    seq: int  #: the state's job sequence after the group's jobs were created: creation order
    created_at_ms: int
    names: tuple[str, ...]  #: the batch's names, in batch order ("" for an unnamed job)
    job_ids: tuple[str, ...]  #: the job id of each name, same order
    batch_hash: bytes  #: identity of the batch without its ids: a repeated submit is recognised
    schedule_id: str  #: "" unless a schedule run
    slot_ms: int  #: the schedule slot this run is for; 0 unless a schedule run


class Schedule(_Record):
    """A periodic schedule and where its firing stands."""

    __slots__ = ()
    FIELDS = ("schedule_id", "created_at_ms", "cron", "tz", "every_ms", "overlap", "catch_up", "window_ms",
              "jitter_ms", "template", "paused", "after_ms", "last_slot_ms", "last_group", "fired", "skipped")
    schedule_id: str
    created_at_ms: int
    cron: str
    tz: str
    every_ms: int
    overlap: str  #: skip | allow | cancel_previous
    catch_up: str  #: all | latest | none
    window_ms: int
    jitter_ms: int
    template: bytes  #: canonical msgpack: [[name, job spec fields], ...]
    paused: bool
    after_ms: int  #: only slots after this fire: the last slot decided, or the creation or resume time
    last_slot_ms: int  #: the last slot fired or skipped; 0 before the first
    last_group: str  #: the group of the last run that created jobs; "" before the first
    fired: int
    skipped: int  #: slots passed over by the overlap policy `skip`


class ScheduleRun(_Record):
    """One decided slot of a schedule: fired (a group) or skipped (the previous run was not final)."""

    __slots__ = ()
    FIELDS = ("schedule_id", "slot_ms", "group_id", "outcome", "at_ms")
    schedule_id: str
    slot_ms: int
    group_id: str  #: "" when skipped
    outcome: str  #: fired | skipped | cancelled_previous
    at_ms: int  #: replicated time of the decision
