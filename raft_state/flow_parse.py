"""JSON shapes of workflows and schedules -> commands, naming the bad field, as validate.py does for jobs.

`parse_flow_jobs` and `parse_schedule` raise `SpecError(field, message)`; what they accept, apply
accepts too, except what only the state can tell (a dependency on an unknown job, a taken id).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any, Final

from .codec import INT64_MAX
from .flow_commands import CreateSchedule, FlowJob
from .groups import NAME_CHARS_MAX
from .records import JobSpec
from .schedules import CATCH_UPS, OVERLAPS, encode_template, schedule_problem
from .validate import SpecError, parse_job

FLOW_FIELDS: Final = frozenset({"name", "not_before"})
SCHEDULE_FIELDS: Final = frozenset({"id", "cron", "tz", "every", "overlap", "catch_up", "catch_up_window", "jitter",
                                    "job", "workflow"})
DURATION_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}
GROUP_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


def parse_duration_ms(field: str, value: Any) -> int:
    """`30s`, `10m`, `2h`, `1d`, `500ms`, or a number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SpecError(field, "must be a duration like 30s, 10m, 2h or a number of seconds")
    if isinstance(value, str):
        m = DURATION_RE.match(value)
        if m is None:
            raise SpecError(field, f"{value!r} is not a duration like 30s, 10m, 2h")
        ms = float(m.group(1)) * _UNIT_MS[m.group(2)]
    else:
        ms = float(value) * 1000
    if not 0 <= ms <= 10 * 366 * 86_400_000:
        raise SpecError(field, "out of range")
    return round(ms)


def parse_time_ms(field: str, value: Any) -> int:
    """An ISO 8601 time with a zone (2026-12-03T02:00Z) as epoch milliseconds."""
    if not isinstance(value, str):
        raise SpecError(field, "must be an ISO 8601 time like 2026-12-03T02:00:00Z")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(field, "must be an ISO 8601 time like 2026-12-03T02:00:00Z") from None
    if when.tzinfo is None:
        raise SpecError(field, "needs a time zone (Z or +hh:mm)")
    ms = round(when.timestamp() * 1000)
    if not 0 <= ms <= INT64_MAX:
        raise SpecError(field, "out of range")
    return ms


def split_flow_fields(obj: Any) -> tuple[dict[str, Any], str, int]:
    """A job object without its workflow fields, its name ("" for none), and not_before in ms (0)."""
    if not isinstance(obj, dict):
        raise SpecError("job", "must be an object")
    rest = {k: v for k, v in obj.items() if k not in FLOW_FIELDS}
    name = obj.get("name", "")
    if not isinstance(name, str) or len(name) > NAME_CHARS_MAX:
        raise SpecError("name", f"must be a string of up to {NAME_CHARS_MAX} characters")
    not_before = obj.get("not_before")
    return rest, name, 0 if not_before is None else parse_time_ms("not_before", not_before)


def has_flow_fields(obj: Any) -> bool:
    return isinstance(obj, dict) and not FLOW_FIELDS.isdisjoint(obj)


def parse_flow_jobs(objs: list[Any], new_id: Callable[[], str], plugins: Collection[str] | None = None
                    ) -> tuple[FlowJob, ...]:
    """Job objects (each may carry `name` and `not_before`) -> FlowJobs with fresh ids."""
    out: list[FlowJob] = []
    names: dict[str, int] = {}
    for index, obj in enumerate(objs):
        try:
            rest, name, not_before = split_flow_fields(obj)
            spec, key = parse_job(rest, plugins)
        except SpecError as exc:
            label = obj.get("name") if isinstance(obj, dict) and isinstance(obj.get("name"), str) else None
            raise SpecError(f"jobs[{index}].{exc.field}", f"{exc.message}" + (f" (job {label})" if label else ""),
                            exc.code) from None
        if name and name in names:
            raise SpecError(f"jobs[{index}].name", f"duplicate name {name!r} (also jobs[{names[name]}])")
        if name:
            names[name] = index
        out.append(FlowJob(job_id=new_id(), name=name, key=key, not_before_ms=not_before, spec=spec))
    return tuple(out)


def parse_group_id(value: Any) -> str:
    if not isinstance(value, str) or not GROUP_RE.match(value):
        raise SpecError("group", "must be 1 to 128 characters of letters, digits, '_', '.', ':', '@', '-'")
    return value


def parse_schedule(obj: Any, at_ms: int) -> CreateSchedule:
    """A schedule object -> CreateSchedule; checks cron, time zone, policies and the template."""
    if not isinstance(obj, dict):
        raise SpecError("schedule", "must be an object")
    unknown = sorted(set(obj) - SCHEDULE_FIELDS)
    if unknown:
        raise SpecError(unknown[0], "unknown field")
    cron_expr, tz = obj.get("cron") or "", obj.get("tz") or ("UTC" if obj.get("cron") else "")
    if not isinstance(cron_expr, str) or not isinstance(tz, str):
        raise SpecError("cron", "cron and tz are strings")
    every_ms = parse_duration_ms("every", obj["every"]) if obj.get("every") is not None else 0
    overlap, catch_up = obj.get("overlap", "skip"), obj.get("catch_up", "latest")
    if overlap not in OVERLAPS:
        raise SpecError("overlap", f"must be one of {', '.join(OVERLAPS)}")
    if catch_up not in CATCH_UPS:
        raise SpecError("catch_up", f"must be one of {', '.join(CATCH_UPS)}")
    template = _template(obj)
    cmd = CreateSchedule(
        at_ms=at_ms, schedule_id=obj.get("id") if isinstance(obj.get("id"), str) else "", cron=cron_expr, tz=tz,
        every_ms=every_ms, overlap=overlap, catch_up=catch_up,
        window_ms=parse_duration_ms("catch_up_window", obj.get("catch_up_window", "1h")),
        jitter_ms=parse_duration_ms("jitter", obj.get("jitter", 0)), template=encode_template(template))
    problem = schedule_problem(cmd, template)
    if problem is not None:
        field = ("id" if "schedule id" in problem else "cron" if "cron" in problem else "tz" if "time zone" in problem
                 else "every" if "every" in problem or "interval" in problem else "jitter" if "jitter" in problem
                 else "template" if "template" in problem else "schedule")
        raise SpecError(field, problem)
    from .schedules import _template_check
    from .state import State
    bad = _template_check(State(), template)  # names, specs and cycles, as apply will check them
    if bad is not None:
        raise SpecError("workflow" if "workflow" in obj else "job", bad.message, str(bad.code))
    return cmd


def _template(obj: dict[str, Any]) -> list[tuple[str, JobSpec]]:
    if ("job" in obj) == ("workflow" in obj):
        raise SpecError("job", "give a job or a workflow to run")
    if "job" in obj:
        jobs = [{"name": "job", **obj["job"]}] if isinstance(obj["job"], dict) else [obj["job"]]
        prefix = "job"
    else:
        wf = obj["workflow"]
        jobs = wf.get("jobs") if isinstance(wf, dict) else None
        if not isinstance(jobs, list) or not jobs:
            raise SpecError("workflow.jobs", "must be a non-empty list of jobs")
        prefix = "workflow"
    out: list[tuple[str, JobSpec]] = []
    for index, job in enumerate(jobs):
        try:
            rest, name, not_before = split_flow_fields(job)
            if not_before:
                raise SpecError("not_before", "a schedule's jobs start at their slot")
            spec, key = parse_job(rest)
        except SpecError as exc:
            raise SpecError(f"{prefix}.jobs[{index}].{exc.field}" if prefix == "workflow" else f"job.{exc.field}",
                            exc.message) from None
        if key is not None:
            raise SpecError(f"{prefix}.key", "a schedule's jobs take no idempotency key (each run is new)")
        out.append((name, spec))
    return out
