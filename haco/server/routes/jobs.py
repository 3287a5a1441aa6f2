"""Job routes: submit (single and batch), list, get with long-poll, cancel."""

from __future__ import annotations

import asyncio
import os
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

from aiohttp import web

from raft_state import Accepted, CancelJob, NewJob, SpecError, State, SubmitJobs, parse_job, queries
from raft_state.commands import SUBMIT_BATCH_MAX
from raft_state.payloads import BUILTIN_EXECUTORS
from raft_state.records import JobStatus

from haco.errors import NotFound, Rejected
from haco.scheduler.core import now_ms
from haco.wire import job_json
from haco.server import job_list, queue_specs, workflows
from haco.server.keys import CONFIG, REPLICA, SCHEDULER, WAITERS, Replicator
from haco.server.routes.tokens import ensure_cluster_version
from haco.server.log_forward import progress_of
from haco.server.requests import (fresh_enough, job_id_of, known_params, query_float, raise_bad, read_json,
                                  require_accepted)
from raft_state.flow_commands import FLOWS_SINCE
from raft_state.flow_parse import has_flow_fields

routes = web.RouteTableDef()
_JSON = "application/json"
WAIT_S_MAX = 60.0


_ID_BYTES = 16
_ID_POOL_IDS = 256
_id_pool = b""
_id_at = 0


def new_job_id() -> str:
    """32 random hex digits (as uuid4().hex without its fixed version bits), from one os.urandom call
    per 256 ids: a system call per job cost the loop ~2 us and a GIL hand-off. Loop only."""
    global _id_pool, _id_at
    if _id_at >= len(_id_pool):
        _id_pool, _id_at = os.urandom(_ID_BYTES * _ID_POOL_IDS), 0
    _id_at += _ID_BYTES
    return _id_pool[_id_at - _ID_BYTES:_id_at].hex()


def _new_jobs(state: State, objs: list[Any]) -> tuple[NewJob, ...]:
    """Parsed jobs, checked against the executor types registered workers offer beyond the built-ins
    and the queues that exist; a job without a priority gets its queue's."""
    plugins = state.plugin_offers
    objs = queue_specs.fill_priorities(state, objs)
    items = []
    for index, obj in enumerate(objs):
        try:
            spec, key = parse_job(obj, plugins)
        except SpecError as exc:
            prefix = f"jobs[{index}]." if len(objs) > 1 else ""
            detail: dict[str, Any] = {"field": prefix + exc.field, "index": index}
            if exc.code == "UNKNOWN_EXECUTOR":
                detail["known"] = sorted(BUILTIN_EXECUTORS) + sorted(plugins)
            raise_bad(exc.code, f"{prefix}{exc.field}: {exc.message}", detail)
        items.append(NewJob(new_job_id(), key, spec))
    queue_specs.check_known(state, (item.spec.queue for item in items),
                            lambda i: f"jobs[{i}].queue" if len(objs) > 1 else "queue")
    return tuple(items)


async def _submit(request: web.Request, items: tuple[NewJob, ...]) -> tuple[int, Accepted]:
    replica = request.app[REPLICA]
    needed = max(item.spec.since_version() for item in items)
    if replica.state.cluster_version < needed:  # reservations and queues: every replica must know them
        await ensure_cluster_version(replica, request.app[CONFIG], needed)
    request.app[SCHEDULER].assign_submitted(items)  # proposes first attempts right behind this submit
    index, outcome = await replica.propose(SubmitJobs(now_ms(), items))
    if not isinstance(outcome, Accepted):
        raise _refused(outcome, len(items))
    return index, outcome


def _refused(outcome: Any, count: int) -> Rejected:
    """The refusal of a submit, its item named as the API names fields: `jobs[3]` in a batch, no
    index at all for a single job (apply says `job 3: ...`, which means nothing to one submit)."""
    detail = dict(outcome.detail or {})
    index = detail.get("index")
    message = str(outcome.message)
    if isinstance(index, int) and message.startswith(f"job {index}: "):
        message = message.removeprefix(f"job {index}: ")
        if count > 1:
            message = f"jobs[{index}]: {message}"
    if "dependency" in detail:
        detail.setdefault("field", f"jobs[{index}].depends_on" if count > 1 else "depends_on")
    return Rejected(str(outcome.code), message, detail, status=queue_specs.refusal_status(outcome.code))


@routes.post("/api/jobs")
async def submit(request: web.Request) -> web.Response:
    body = await read_json(request)
    if has_flow_fields(body):  # not_before (or a name): the workflow command, a single job without a group
        index, answer, already = await workflows.submit_flow(request, "", workflows.flow_items(request.app[REPLICA].state, [body], new_job_id))
        return web.json_response({"job_id": answer["job_ids"][0], "index": index, **({"already": True} if already
                                                                                     else {})},
                                 status=200 if already else 201)
    items = _new_jobs(request.app[REPLICA].state, [body])
    index, outcome = await _submit(request, items)
    # formatted directly (ASCII JSON): json_response's json.dumps, text and charset cost ~4 us more
    body = f'{{"job_id": {_json_str(outcome.value[0])}, "index": {int(index)}'
    if outcome.already:
        return web.Response(body=f'{body}, "already": true}}'.encode(), status=200, content_type=_JSON)
    return web.Response(body=f"{body}}}".encode(), status=201, content_type=_JSON)


@routes.post("/api/jobs/batch")
async def submit_batch(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not {"jobs"} <= set(body) <= {"jobs", "group"} or not isinstance(body["jobs"], list):
        raise_bad("INVALID", 'body must be {"jobs": [job, ...], "group": "optional id"}', {"field": "jobs"})
    if not 1 <= len(body["jobs"]) <= SUBMIT_BATCH_MAX:
        raise_bad("INVALID", f"a batch holds 1 to {SUBMIT_BATCH_MAX} jobs", {"field": "jobs"})
    keyed = any(isinstance(j, dict) and j.get("key") is not None for j in body["jobs"])
    wants_flow = "group" in body or any(has_flow_fields(j) for j in body["jobs"])
    if wants_flow or (not keyed and request.app[REPLICA].state.cluster_version >= FLOWS_SINCE):
        return await workflows.submit_batch(request, body, new_job_id)  # a group, names resolved, all or nothing
    index, outcome = await _submit(request, _new_jobs(request.app[REPLICA].state, body["jobs"]))
    return web.json_response({"job_ids": outcome.value, "index": index, "already": outcome.already},
                             status=200 if outcome.already else 201)


@routes.get("/api/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    """A page of jobs: filters, sort orders and the cursor are haco/server/job_list.py's."""
    known_params(request, *job_list.PARAMS)
    index = await fresh_enough(request)
    f = job_list.parse(request.query, request.query.getall("label", []))
    group = request.query.get("group")
    replica = request.app[REPLICA]
    if group is not None:
        g = replica.state.flows.groups.get(group)
        if g is None:
            raise NotFound(f"no group {group}", {"group_id": group})
        jobs = [replica.state.jobs.get(j) for j in g.job_ids]
        answer = job_list.page(jobs, f, now_ms())
    else:
        answer = await asyncio.to_thread(_page, replica, f)
    return web.json_response({**answer, "index": index})


def _page(replica: Replicator, f: job_list.JobQuery) -> dict[str, Any]:
    snapshot = list(replica.state.jobs.values())  # one atomic copy; records are immutable
    return job_list.page(snapshot, f, now_ms())


@routes.get("/api/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    wait_s = query_float(request, "wait_s", 0.0, WAIT_S_MAX)
    index = await fresh_enough(request)
    job_id = await job_id_of(request)
    if wait_s:
        await request.app[WAITERS].wait_final(job_id, wait_s)
        index = replica.applied_index
    job = replica.state.jobs.get(job_id)
    if job is None:
        raise NotFound(f"job {job_id} was pruned", {"job_id": job_id})
    reason = None
    if job.status is JobStatus.PENDING:
        reason = await asyncio.to_thread(_why, replica, job_id)
    out = job_json(job, reason)
    group = replica.state.flows.groups.get(replica.state.flows.group_of.get(job_id, ""))
    out["group_id"] = group.group_id if group is not None else None
    out["schedule_id"] = group.schedule_id or None if group is not None else None
    out["reruns"] = replica.state.flows.reruns.get(job_id, 0)
    if job.status is JobStatus.RUNNING:
        out["progress"] = await progress_of(request, job)
    return web.json_response({"job": out, "index": index})


def _why(replica: Replicator, job_id: str) -> dict[str, Any] | None:
    with replica.state_lock:
        return queries.why_pending(replica.state, job_id)


@routes.post("/api/jobs/{job_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    try:
        job_id = await job_id_of(request)
    except NotFound:  # maybe not applied on this replica yet: apply decides
        job_id = request.match_info["job_id"]
    reason = "cancelled by user"
    if request.can_read_body:
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) - {"reason"} or not isinstance(body.get("reason", ""), str):
            raise_bad("INVALID", 'body, when given, is {"reason": "..."}', {"field": "reason"})
        reason = body.get("reason") or reason
    index, outcome = await replica.propose(CancelJob(now_ms(), job_id, reason[:1024]))
    outcome = require_accepted(outcome)
    return web.json_response({"job_id": job_id, "index": index, "already": outcome.already})
