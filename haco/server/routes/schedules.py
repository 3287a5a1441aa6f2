"""Schedule routes: create, list, show (last runs, next due times), pause, resume, delete.

The leader fires the slots (haco/scheduler/fire.py); these routes only change the schedule table.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from raft_state import Accepted, SpecError, State
from raft_state.flow_commands import FLOWS_SINCE, DeleteSchedule, SetSchedulePaused
from raft_state.flow_parse import parse_schedule
from raft_state.schedules import decode_template, schedule_json

from haco.errors import NotFound, Rejected
from haco.scheduler.core import now_ms
from haco.server import queue_specs
from haco.server.keys import CONFIG, REPLICA
from haco.server.requests import fresh_enough, known_params, query_int, raise_bad, read_json
from haco.server.routes.tokens import ensure_cluster_version

routes = web.RouteTableDef()
RUNS_SHOWN = 20


@routes.post("/api/schedules")
async def create_schedule(request: web.Request) -> web.Response:
    body = await read_json(request)
    replica = request.app[REPLICA]
    try:
        cmd = parse_schedule(_with_priorities(replica.state, body), now_ms())
    except SpecError as exc:
        raise_bad(exc.code, f"{exc.field}: {exc.message}", {"field": exc.field})
    names = [spec.queue for _, spec in decode_template(cmd.template) or ()]
    queue_specs.check_known(replica.state, names,
                            lambda i: "job.queue" if "job" in body else f"workflow.jobs[{i}].queue")
    await ensure_cluster_version(replica, request.app[CONFIG], FLOWS_SINCE)
    index, outcome = await replica.propose(cmd)
    if not isinstance(outcome, Accepted):
        raise Rejected(str(outcome.code), outcome.message, outcome.detail,
                       status=queue_specs.refusal_status(outcome.code))
    sc = replica.state.flows.schedules.get(cmd.schedule_id)
    shown = schedule_json(replica.state, sc, replica.state.now_ms) if sc is not None else None
    return web.json_response({"schedule": shown, "index": index, "already": outcome.already},
                             status=200 if outcome.already else 201)


def _with_priorities(state: State, body: Any) -> Any:
    """The body with its template's jobs given their queue's priority where they give none (at
    creation: a queue's priority changed later does not change the schedule's jobs, nor a repeat
    of the creation, whose jobs get the priorities the schedule's template holds)."""
    if not isinstance(body, dict):
        return body
    sc = state.flows.schedules.get(body["id"]) if isinstance(body.get("id"), str) else None
    earlier = [spec for _, spec in (decode_template(sc.template) or ())] if sc is not None else []
    if isinstance(body.get("job"), dict):
        return {**body, "job": queue_specs.fill_priorities(state, [body["job"]], earlier)[0]}
    wf = body.get("workflow")
    if isinstance(wf, dict) and isinstance(wf.get("jobs"), list):
        return {**body, "workflow": {**wf, "jobs": queue_specs.fill_priorities(state, wf["jobs"], earlier)}}
    return body


@routes.get("/api/schedules")
async def list_schedules(request: web.Request) -> web.Response:
    known_params(request)
    index = await fresh_enough(request)  # ?min_index and ?consistency are honoured, not just allowed
    state = request.app[REPLICA].state
    schedules = sorted(state.flows.schedules.values(), key=lambda sc: sc.schedule_id)
    return web.json_response({"schedules": [schedule_json(state, sc, now_ms()) for sc in schedules],
                              "index": index})


@routes.get("/api/schedules/{schedule_id}")
async def get_schedule(request: web.Request) -> web.Response:
    """One schedule with its last `?runs=` runs (20) and next due times."""
    replica = request.app[REPLICA]
    index = await fresh_enough(request)
    runs = query_int(request, "runs", RUNS_SHOWN, 1, 1000) or RUNS_SHOWN
    sc = replica.state.flows.schedules.get(request.match_info["schedule_id"])
    if sc is None:
        raise NotFound(f"no schedule {request.match_info['schedule_id']}",
                       {"schedule_id": request.match_info["schedule_id"]})
    return web.json_response({"schedule": schedule_json(replica.state, sc, now_ms(), runs=runs), "index": index})


async def _change(request: web.Request, cmd: SetSchedulePaused | DeleteSchedule) -> web.Response:
    replica = request.app[REPLICA]
    if isinstance(cmd, SetSchedulePaused) and cmd.schedule_id not in replica.state.flows.schedules:
        raise NotFound(f"no schedule {cmd.schedule_id}", {"schedule_id": cmd.schedule_id})
    await ensure_cluster_version(replica, request.app[CONFIG], FLOWS_SINCE)
    index, outcome = await replica.propose(cmd)
    if not isinstance(outcome, Accepted):
        raise Rejected(str(outcome.code), outcome.message, outcome.detail)
    return web.json_response({"schedule_id": cmd.schedule_id, "index": index, "already": outcome.already})


@routes.post("/api/schedules/{schedule_id}/pause")
async def pause(request: web.Request) -> web.Response:
    return await _change(request, SetSchedulePaused(now_ms(), request.match_info["schedule_id"], True))


@routes.post("/api/schedules/{schedule_id}/resume")
async def resume(request: web.Request) -> web.Response:
    return await _change(request, SetSchedulePaused(now_ms(), request.match_info["schedule_id"], False))


@routes.delete("/api/schedules/{schedule_id}")
async def delete(request: web.Request) -> web.Response:
    return await _change(request, DeleteSchedule(now_ms(), request.match_info["schedule_id"]))
