"""Submitting a workflow batch: names resolved, checked against the state, one `SubmitFlow` entry.

Used by the job routes for `POST /api/jobs/batch` (and `POST /api/jobs` with `not_before`). Every
such batch is gated on cluster version 3, raised on first use when every replica knows it.
"""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from raft_state import Accepted, NewJob, SpecError, State
from raft_state.flow_commands import FLOWS_SINCE, FlowJob, SubmitFlow
from raft_state.flow_parse import parse_flow_jobs, parse_group_id
from raft_state.groups import plan_batch
from raft_state.payloads import BUILTIN_EXECUTORS

from haco.errors import Rejected
from haco.scheduler.core import now_ms
from haco.server import queue_specs
from haco.server.keys import CONFIG, REPLICA, SCHEDULER
from haco.server.requests import raise_bad
from haco.server.routes.tokens import ensure_cluster_version


def new_group_id() -> str:
    return "g-" + os.urandom(8).hex()


def flow_items(state: State, objs: list[Any], new_id: Any, group_id: str = "") -> tuple[FlowJob, ...]:
    """Parsed workflow jobs, checked against the executor types registered workers offer beyond
    the built-ins and the queues that exist; a job without a priority gets its queue's (or, in a
    repeat of group `group_id`, the one its job got)."""
    plugins = state.plugin_offers
    earlier = queue_specs.group_specs(state, group_id)
    try:
        items = parse_flow_jobs(queue_specs.fill_priorities(state, objs, earlier), new_id, plugins)
    except SpecError as exc:
        field = exc.field if len(objs) > 1 else exc.field.split(".", 1)[-1]
        detail: dict[str, Any] = {"field": field}
        if exc.code == "UNKNOWN_EXECUTOR":
            detail["known"] = sorted(BUILTIN_EXECUTORS) + sorted(plugins)
        raise_bad(exc.code, f"{field}: {exc.message}", detail)
    queue_specs.check_known(state, (item.spec.queue for item in items),
                            lambda i: f"jobs[{i}].queue" if len(objs) > 1 else "queue")
    return items


async def submit_flow(request: web.Request, group_id: str, items: tuple[FlowJob, ...]) -> tuple[int, dict[str, Any], bool]:
    """Check, propose, and answer (index, {"group_id", "job_ids", "names"}, already)."""
    replica = request.app[REPLICA]
    known = replica.state.flows.groups.get(group_id) if group_id else None
    if known is None and not (len(items) == 1 and items[0].key is not None):
        planned = plan_batch(replica.state, items)  # the refusal apply would give, before any proposal
        if not isinstance(planned, tuple):
            raise Rejected(str(planned.code), planned.message, planned.detail)
    await ensure_cluster_version(replica, request.app[CONFIG], max([FLOWS_SINCE, *(i.spec.since_version() for i in items)]))
    # first attempts right behind the submit for jobs ready at once (apply refuses the rest harmlessly)
    request.app[SCHEDULER].assign_submitted(tuple(NewJob(i.job_id, i.key, i.spec) for i in items
                                                  if not i.not_before_ms and not i.spec.depends_on))
    index, outcome = await replica.propose(SubmitFlow(at_ms=now_ms(), group_id=group_id, jobs=items))
    if not isinstance(outcome, Accepted):
        raise Rejected(str(outcome.code), outcome.message, outcome.detail,
                       status=queue_specs.refusal_status(outcome.code))
    return index, dict(outcome.value), outcome.already


async def submit_batch(request: web.Request, body: dict[str, Any], new_id: Any) -> web.Response:
    group_id = parse_or_400(parse_group_id, body["group"]) if body.get("group") is not None else new_group_id()
    items = flow_items(request.app[REPLICA].state, body["jobs"], new_id, group_id)
    index, answer, already = await submit_flow(request, group_id, items)
    return web.json_response({**answer, "index": index, "already": already}, status=200 if already else 201)


def parse_or_400(fn: Any, value: Any) -> Any:
    try:
        return fn(value)
    except SpecError as exc:
        raise_bad("INVALID", f"{exc.field}: {exc.message}", {"field": exc.field})
