"""Builders for the workflow and schedule tests of raft_state."""

from __future__ import annotations

from typing import Any

from raft_state import JobSpec, canonical
from raft_state.flow_commands import CreateSchedule, FlowJob, SubmitFlow
from raft_state.schedules import encode_template
from tests.raft_state.state_helpers import spec


def flow_job(job_id: str, name: str = "", deps: tuple[str, ...] = (), *, not_before_ms: int = 0,
             key: str | None = None, the_spec: JobSpec | None = None, **spec_fields: Any) -> FlowJob:
    return FlowJob(job_id=job_id, name=name, key=key, not_before_ms=not_before_ms,
                   spec=(the_spec or spec(**spec_fields)).evolve(depends_on=deps))


def flow(group_id: str, *jobs: FlowJob, at_ms: int = 0) -> SubmitFlow:
    return SubmitFlow(at_ms=at_ms, group_id=group_id, jobs=tuple(jobs))


def diamond(prefix: str = "") -> tuple[FlowJob, ...]:
    """a -> (b, c) -> d, listed out of order: d first names jobs that come later."""
    return (flow_job(f"{prefix}jd", "d", ("b", "c")), flow_job(f"{prefix}jb", "b", ("a",)),
            flow_job(f"{prefix}jc", "c", ("a",)), flow_job(f"{prefix}ja", "a"))


def create_schedule(schedule_id: str = "s1", *, every_ms: int = 2000, cron: str = "", tz: str = "",
                    overlap: str = "allow", catch_up: str = "all", window_ms: int = 60_000, jitter_ms: int = 0,
                    template: list[tuple[str, JobSpec]] | None = None, at_ms: int = 0) -> CreateSchedule:
    return CreateSchedule(at_ms=at_ms, schedule_id=schedule_id, cron=cron, tz=tz, every_ms=every_ms,
                          overlap=overlap, catch_up=catch_up, window_ms=window_ms, jitter_ms=jitter_ms,
                          template=encode_template(template or [("run", spec())]))


EMPTY = canonical({})
