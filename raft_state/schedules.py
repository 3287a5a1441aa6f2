"""Periodic schedules: create, pause, delete, and fire one slot (the leader's command).

Apply decides everything a slot needs (is it a slot, is it due, was it decided already, is it
still inside the catch-up window, what the overlap policy says), so whatever a deposed or
duplicated leader proposes, each slot fires at most once. `next_fire` is the leader's pure
planner: which slot to propose now. Runs inside `State.apply`'s contract, but `next_fire`
and `upcoming`, which are read-only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

import msgpack

from . import cron, flows, groups, queues
from . import transitions as tr
from .codec import DecodeError, canonical, decode_spec, encode_spec
from .commands import SUBMIT_BATCH_MAX, CancelJob
from .flow_commands import CreateSchedule, DeleteSchedule, FireSchedule, FlowJob, SetSchedulePaused
from .flow_records import Schedule, ScheduleRun
from .outcomes import Accepted, Outcome, Rejected, RejectCode
from .records import JobSpec

if TYPE_CHECKING:
    from .state import State

OVERLAPS: Final = ("skip", "allow", "cancel_previous")
CATCH_UPS: Final = ("all", "latest", "none")
ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
WINDOW_MS_MAX: Final = 366 * 86_400_000
JITTER_MS_MAX: Final = 86_400_000
ON_TIME_MS: Final = 10_000  #: catch-up `none`: a slot this late is still on time (a leader change takes seconds)
SCAN_MAX: Final = 1000  #: slots looked at per planning call
TEMPLATE_BYTES_MAX: Final = 1024 * 1024


def encode_template(jobs: list[tuple[str, JobSpec]]) -> bytes:
    return canonical([[name, encode_spec(spec)] for name, spec in jobs])


def decode_template(raw: bytes) -> list[tuple[str, JobSpec]] | None:
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        if type(value) is not list or not 1 <= len(value) <= SUBMIT_BATCH_MAX:
            return None
        out = []
        for item in value:
            if type(item) is not list or len(item) != 2 or type(item[0]) is not str:
                return None
            out.append((item[0], decode_spec(item[1])))
        return out
    except (DecodeError, ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return None


def template_items(template: list[tuple[str, JobSpec]], job_ids: tuple[str, ...]) -> list[FlowJob]:
    return [FlowJob(job_id=j, name=name, key=None, not_before_ms=0, spec=spec)
            for (name, spec), j in zip(template, job_ids)]


def group_id_of(schedule_id: str, slot_ms: int) -> str:
    return f"{schedule_id}@{cron.iso_compact(slot_ms)}"


def window_of(sc: Schedule) -> int:
    return min(sc.window_ms, ON_TIME_MS) if sc.catch_up == "none" else sc.window_ms


def schedule_problem(cmd: CreateSchedule, template: list[tuple[str, JobSpec]] | None) -> str | None:
    """Why a schedule creation is unusable, or None. Also the API's pre-check."""
    if not ID_RE.match(cmd.schedule_id):
        return "schedule id must be 1 to 64 characters of letters, digits, '_', '.', '-'"
    if (cmd.every_ms > 0) == bool(cmd.cron):
        return "give either a cron expression or an interval (every), not both"
    if cmd.every_ms > 0:
        if not cron.EVERY_MS_MIN <= cmd.every_ms <= cron.EVERY_MS_MAX:
            return f"every must be between {cron.EVERY_MS_MIN // 1000}s and 366 days"
        if cmd.tz:
            return "a time zone goes with a cron expression, not an interval"
    else:
        problem = cron.cron_problem(cmd.cron, cmd.tz)
        if problem is not None:
            return problem
        if cron.next_slot(cmd.cron, cmd.tz, 0, max(cmd.at_ms, 0)) is None:
            return f"cron expression {cmd.cron!r} never fires"
    if cmd.overlap not in OVERLAPS:
        return f"overlap must be one of {', '.join(OVERLAPS)}"
    if cmd.catch_up not in CATCH_UPS:
        return f"catch_up must be one of {', '.join(CATCH_UPS)}"
    if not 0 <= cmd.window_ms <= WINDOW_MS_MAX:
        return "catch_up_window must be between 0 and 366 days"
    if not 0 <= cmd.jitter_ms <= JITTER_MS_MAX or (cmd.every_ms and cmd.jitter_ms >= cmd.every_ms):
        return "jitter must be at least 0, at most a day, and shorter than the interval"
    if len(cmd.template) > TEMPLATE_BYTES_MAX or template is None:
        return "template is not a workflow of 1 to 2000 jobs"
    names = [n for n, _ in template]
    for name, spec in template:
        missing = [d for d in spec.depends_on if d not in names]
        if missing:
            return f"template job {name or '?'}: depends on {missing[0]!r}, not a name in the template"
    return None


def _template_check(s: State, template: list[tuple[str, JobSpec]]) -> Rejected | None:
    """Names, specs and cycles as a batch would be checked (with ids no job can have)."""
    planned = groups.plan_batch(s, template_items(template, tuple(f"\0{i}" for i in range(len(template)))))
    return planned if isinstance(planned, Rejected) else None


# ---- commands -----------------------------------------------------------------------------

def create(s: State, cmd: CreateSchedule) -> Outcome:
    template = decode_template(cmd.template)
    problem = schedule_problem(cmd, template)
    if problem is not None:
        return Rejected(RejectCode.INVALID, problem)
    assert template is not None
    bad = _template_check(s, template)
    if bad is not None:
        return Rejected(bad.code, f"template: {bad.message}", bad.detail)
    for index, (name, spec) in enumerate(template):
        missing = queues.unknown(s, spec.queue)
        if missing is not None:  # its runs would land in a queue without a record
            return Rejected(missing.code, f"template: job {name or index}: {missing.message}", missing.detail)
    fields = dict(cron=cmd.cron, tz=cmd.tz, every_ms=cmd.every_ms, overlap=cmd.overlap, catch_up=cmd.catch_up,
                  window_ms=cmd.window_ms, jitter_ms=cmd.jitter_ms, template=cmd.template)
    old = s.flows.schedules.get(cmd.schedule_id)
    if old is not None:
        if all(getattr(old, k) == v for k, v in fields.items()):
            return Accepted(cmd.schedule_id, already=True)
        return Rejected(RejectCode.SCHEDULE_EXISTS, f"schedule {cmd.schedule_id} exists with other settings",
                        {"schedule_id": cmd.schedule_id})
    flows.put_schedule(s, Schedule(schedule_id=cmd.schedule_id, created_at_ms=cmd.at_ms, paused=False,
                                   after_ms=s.now_ms, last_slot_ms=0, last_group="", fired=0, skipped=0, **fields))
    return Accepted(cmd.schedule_id)


def set_paused(s: State, cmd: SetSchedulePaused) -> Outcome:
    sc = s.flows.schedules.get(cmd.schedule_id)
    if sc is None:
        return Rejected(RejectCode.UNKNOWN_SCHEDULE, f"no schedule {cmd.schedule_id}")
    if sc.paused == cmd.paused:
        return Accepted(cmd.schedule_id, already=True)
    # resumed: the slots that passed while paused are not caught up
    after = sc.after_ms if cmd.paused else max(sc.after_ms, s.now_ms)
    flows.put_schedule(s, sc.evolve(paused=cmd.paused, after_ms=after))
    return Accepted(cmd.schedule_id)


def delete(s: State, cmd: DeleteSchedule) -> Outcome:
    if cmd.schedule_id not in s.flows.schedules:
        return Accepted(cmd.schedule_id, already=True)
    flows.drop_schedule(s, cmd.schedule_id)
    return Accepted(cmd.schedule_id)


def fire(s: State, cmd: FireSchedule) -> Outcome:
    sc = s.flows.schedules.get(cmd.schedule_id)
    if sc is None:
        return Rejected(RejectCode.UNKNOWN_SCHEDULE, f"no schedule {cmd.schedule_id}")
    slot = cmd.slot_ms
    if slot <= sc.after_ms:
        run = next((r for r in s.flows.runs.get(sc.schedule_id, ()) if r.slot_ms == slot), None)
        if run is not None:
            return Accepted(_run_json(run), already=True)
        return Rejected(RejectCode.SLOT_PASSED, f"slot {slot} of {sc.schedule_id} is not after {sc.after_ms}",
                        {"after_ms": sc.after_ms})
    if sc.paused:
        return Rejected(RejectCode.SCHEDULE_PAUSED, f"schedule {sc.schedule_id} is paused")
    if not cron.is_slot(sc.cron, sc.tz, sc.every_ms, slot):
        return Rejected(RejectCode.INVALID, f"{slot} is not a slot of schedule {sc.schedule_id}")
    due = slot + cron.jitter_of(sc.schedule_id, slot, sc.jitter_ms)
    if due > s.now_ms:
        return Rejected(RejectCode.TOO_EARLY, f"slot {slot} is due at {due}", {"due_ms": due})
    if s.now_ms - due > window_of(sc):
        return Rejected(RejectCode.TOO_LATE, f"slot {slot} is past its catch-up window", {"due_ms": due})
    template = decode_template(sc.template)
    if template is None or len(cmd.job_ids) != len(template):
        return Rejected(RejectCode.INVALID, f"a run of {sc.schedule_id} needs {len(template or ())} job ids")
    group_id = group_id_of(sc.schedule_id, slot)
    if group_id in s.flows.groups:
        return Rejected(RejectCode.GROUP_EXISTS, f"group {group_id} exists", {"group_id": group_id})
    items = template_items(template, cmd.job_ids)
    planned = groups.plan_batch(s, items)
    if isinstance(planned, Rejected):
        return planned
    previous_final = groups.is_final(s, sc.last_group) if sc.last_group else True
    if sc.overlap == "skip" and not previous_final:
        run = ScheduleRun(schedule_id=sc.schedule_id, slot_ms=slot, group_id="", outcome="skipped", at_ms=s.now_ms)
        flows.add_run(s, run)
        flows.put_schedule(s, sc.evolve(after_ms=slot, last_slot_ms=slot, skipped=sc.skipped + 1))
        return Accepted(_run_json(run))
    outcome = "fired"
    if sc.overlap == "cancel_previous" and not previous_final:
        outcome = "cancelled_previous"
        reason = f"cancelled: schedule {sc.schedule_id} fired its next slot"
        for job_id in s.flows.groups[sc.last_group].job_ids:
            job = s.jobs.get(job_id)
            if job is not None and not job.is_final:
                tr.cancel(s, CancelJob(s.now_ms, job_id, reason))
    groups.create(s, group_id, s.now_ms, items, *planned, schedule_id=sc.schedule_id, slot_ms=slot)
    run = ScheduleRun(schedule_id=sc.schedule_id, slot_ms=slot, group_id=group_id, outcome=outcome, at_ms=s.now_ms)
    flows.add_run(s, run)
    flows.put_schedule(s, sc.evolve(after_ms=slot, last_slot_ms=slot, last_group=group_id, fired=sc.fired + 1))
    return Accepted(_run_json(run))


def _run_json(run: ScheduleRun) -> dict[str, Any]:
    return {"schedule_id": run.schedule_id, "slot_ms": run.slot_ms, "group_id": run.group_id or None,
            "outcome": run.outcome, "at_ms": run.at_ms}


# ---- the leader's planning, and reads -----------------------------------------------------

def next_fire(sc: Schedule, now_ms: int) -> int | None:
    """The slot the leader should propose now, per the catch-up policy; None when none is due."""
    if sc.paused:
        return None
    window = window_of(sc)
    after = max(sc.after_ms, now_ms - window - sc.jitter_ms - 1)
    if sc.every_ms > 0 and sc.catch_up != "all":  # the latest slot at once, without a walk
        after = max(after, (now_ms // sc.every_ms - 1) * sc.every_ms - 1)
    due: list[int] = []
    for _ in range(SCAN_MAX):
        slot = cron.next_slot(sc.cron, sc.tz, sc.every_ms, after)
        if slot is None or slot > now_ms:
            break
        at = slot + cron.jitter_of(sc.schedule_id, slot, sc.jitter_ms)
        if at <= now_ms and now_ms - at <= window:
            if sc.catch_up == "all":
                return slot
            due.append(slot)
        after = slot
    return due[-1] if due else None


def upcoming(sc: Schedule, now_ms: int, n: int = 3) -> list[int]:
    """The next `n` due times (slot plus its jitter) after now."""
    out: list[int] = []
    after = max(sc.after_ms, now_ms)
    for _ in range(n):
        slot = cron.next_slot(sc.cron, sc.tz, sc.every_ms, after)
        if slot is None:
            break
        out.append(slot + cron.jitter_of(sc.schedule_id, slot, sc.jitter_ms))
        after = slot
    return out


def schedule_json(s: State, sc: Schedule, now_ms: int, *, runs: int = 0) -> dict[str, Any]:
    template = decode_template(sc.template) or []
    out: dict[str, Any] = {
        "schedule_id": sc.schedule_id, "cron": sc.cron or None, "tz": sc.tz or None,
        "every_s": sc.every_ms / 1000 if sc.every_ms else None, "overlap": sc.overlap, "catch_up": sc.catch_up,
        "catch_up_window_s": sc.window_ms / 1000, "jitter_s": sc.jitter_ms / 1000, "paused": sc.paused,
        "created_at_ms": sc.created_at_ms, "last_slot_ms": sc.last_slot_ms or None,
        "last_group": sc.last_group or None, "fired": sc.fired, "skipped": sc.skipped,
        "jobs": [name for name, _ in template], "next_due_ms": [] if sc.paused else upcoming(sc, now_ms),
    }
    if runs:
        out["runs"] = [_run_json(r) for r in s.flows.runs.get(sc.schedule_id, [])[-runs:]]
    return out
