"""Group and rerun routes: a group's summary (long-poll until final), group lists, reruns.

Workflow batches themselves come in through the job routes (haco/server/workflows.py).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from raft_state import Accepted
from raft_state.flow_commands import FLOWS_SINCE, RETRY_BATCH_MAX, RetryJobs
from raft_state.groups import RETRYABLE, summary

from haco.errors import NotFound, Rejected
from haco.scheduler.core import now_ms
from haco.server.keys import CONFIG, REPLICA, WAITERS
from haco.server.requests import fresh_enough, job_id_of, known_params, query_float, query_int, raise_bad, read_json
from haco.server.routes.tokens import ensure_cluster_version

routes = web.RouteTableDef()
WAIT_S_MAX = 60.0
GROUP_LIST_MAX = 1000


@routes.get("/api/groups")
async def list_groups(request: web.Request) -> web.Response:
    """Groups newest first; `?schedule=ID` only that schedule's runs."""
    replica = request.app[REPLICA]
    known_params(request, "schedule", "limit")
    index = await fresh_enough(request)
    schedule = request.query.get("schedule")
    limit = query_int(request, "limit", 100, 1, GROUP_LIST_MAX) or 100
    groups = list(replica.state.flows.groups.values())
    picked = sorted((g for g in groups if schedule is None or g.schedule_id == schedule), key=lambda g: -g.seq)[:limit]
    state = replica.state
    return web.json_response({"groups": [summary(state, g) for g in picked], "index": index})


@routes.get("/api/groups/{group_id}")
async def get_group(request: web.Request) -> web.Response:
    """Counts by state, failed jobs with errors, start and end, final state; `?wait_s=` until final."""
    replica = request.app[REPLICA]
    group_id = request.match_info["group_id"]
    wait_s = query_float(request, "wait_s", 0.0, WAIT_S_MAX)
    index = await fresh_enough(request)
    if group_id not in replica.state.flows.groups:
        raise NotFound(f"no group {group_id}", {"group_id": group_id})
    if wait_s:
        loop = asyncio.get_running_loop()
        end = loop.time() + wait_s
        while (left := end - loop.time()) > 0:
            group = replica.state.flows.groups.get(group_id)
            open_ids = [] if group is None else [j for j in group.job_ids if (job := replica.state.jobs.get(j))
                                                  is not None and not job.is_final]
            if not open_ids:
                break
            await request.app[WAITERS].wait_final(open_ids[0], left)
        index = replica.applied_index
    group = replica.state.flows.groups.get(group_id)
    if group is None:
        raise NotFound(f"group {group_id} was pruned", {"group_id": group_id})
    return web.json_response({"group": summary(replica.state, group), "index": index})


@routes.post("/api/jobs/retry")
async def retry_jobs(request: web.Request) -> web.Response:
    """Body `{"job_ids": [...]}`: final failed, cancelled or expired jobs run again."""
    body = await read_json(request)
    ids = body.get("job_ids") if isinstance(body, dict) and set(body) == {"job_ids"} else None
    if not isinstance(ids, list) or not 1 <= len(ids) <= RETRY_BATCH_MAX or not all(isinstance(j, str) for j in ids):
        raise_bad("INVALID", f'body must be {{"job_ids": [1 to {RETRY_BATCH_MAX} job ids]}}', {"field": "job_ids"})
    resolved: list[str] = []
    for text in ids:  # before the version step: a refused request changes nothing
        try:
            resolved.append(await job_id_of(request, text))
        except NotFound:
            raise Rejected("UNKNOWN_JOB", f"no job {text}", {"job_id": text}) from None
    return await _retry(request, tuple(dict.fromkeys(resolved)))


@routes.post("/api/groups/{group_id}/retry")
async def retry_group(request: web.Request) -> web.Response:
    """Retry a group's failed, cancelled and expired jobs (their failed dependents follow)."""
    replica = request.app[REPLICA]
    group = replica.state.flows.groups.get(request.match_info["group_id"])
    if group is None:
        raise NotFound(f"no group {request.match_info['group_id']}", {"group_id": request.match_info["group_id"]})
    jobs = replica.state.jobs
    ids = tuple(j for j in group.job_ids if (job := jobs.get(j)) is not None and job.status in RETRYABLE
                and not (job.error or "").startswith("dependency "))
    if not ids:  # nothing failed on its own: dependents only (or nothing) -- retry them as they are
        ids = tuple(j for j in group.job_ids if (job := jobs.get(j)) is not None and job.status in RETRYABLE)
    if not ids:
        return web.json_response({"retried": [], "dependents": [], "unchanged": {}, "index": replica.applied_index,
                                  "already": True})
    return await _retry(request, ids)


async def _retry(request: web.Request, ids: tuple[str, ...]) -> web.Response:
    replica = request.app[REPLICA]
    await ensure_cluster_version(replica, request.app[CONFIG], FLOWS_SINCE)
    for _ in range(20):  # TOO_EARLY: a failure cascade is still being applied (a few ticks at most)
        index, outcome = await replica.propose(RetryJobs(now_ms(), ids))
        if isinstance(outcome, Accepted) or str(outcome.code) != "TOO_EARLY":
            break
        await asyncio.sleep(0.25)
    if not isinstance(outcome, Accepted):
        raise Rejected(str(outcome.code), outcome.message, outcome.detail)
    return web.json_response({**outcome.value, "index": index, "already": outcome.already})
