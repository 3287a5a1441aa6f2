"""Named queue routes: list, show, create, update, pause, resume, delete.

The records and their rules are raft_state/queues.py's (settings_problem is the pre-check here,
so a bad body is a 400 naming the field and nothing is proposed); the leader's placement shares
capacity between queues by weight. The global pause stays at /api/queue/pause (routes/cluster.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web

from raft_state import queries
from raft_state.queue_commands import QUEUES_SINCE, CreateQueue, DeleteQueue, SetQueuePaused, UpdateQueue
from raft_state.queues import settings, settings_problem
from raft_state.validate import DEFAULT_QUEUE

from haco.errors import Rejected
from haco.scheduler.core import now_ms
from haco.server.keys import CONFIG, REPLICA, Replicator
from haco.server.requests import fresh_enough, known_params, raise_bad, read_json, require_accepted
from haco.server.routes.tokens import ensure_cluster_version
from haco.wire import queue_json

routes = web.RouteTableDef()
SETTINGS: Final = ("max_running", "weight", "priority")
CREATE_DEFAULTS: Final = {"max_running": 0, "weight": 1, "priority": 0}


@routes.get("/api/queues")
async def list_queues(request: web.Request) -> web.Response:
    """Every queue with a record, `default`, and the 256 names jobs carry that hold the most jobs
    (the rest summed as `other`, else null); `paused` is the global pause."""
    known_params(request)
    index = await fresh_enough(request)
    answer = await asyncio.to_thread(_listing, request.app[REPLICA])
    return web.json_response({**answer, "index": index})


@routes.get("/api/queues/{queue}")
async def get_queue(request: web.Request) -> web.Response:
    known_params(request)
    index = await fresh_enough(request)
    shown = await asyncio.to_thread(_one, request.app[REPLICA], request.match_info["queue"])
    if shown is None:
        raise _unknown(request.match_info["queue"])
    return web.json_response({"queue": shown, "index": index})


@routes.post("/api/queues")
async def create_queue(request: web.Request) -> web.Response:
    """Body {"name", "max_running"?: 0, "weight"?: 1, "priority"?: 0}: 201, or 200 when a queue
    of that name has these settings already (409 QUEUE_EXISTS with others)."""
    body = await read_json(request)
    if not isinstance(body, dict) or "name" not in body:
        raise_bad("INVALID", 'body must be {"name": "...", "max_running": 0, "weight": 1, "priority": 0}',
                  {"field": "name"})
    _check_fields(body, ("name", *SETTINGS))
    name = _name(body["name"])
    values = {**CREATE_DEFAULTS, **_settings(body)}
    state = request.app[REPLICA].state
    if name in state.queues or name == DEFAULT_QUEUE:  # apply refuses it too; refused here, no version step
        old = settings(state, name)
        if (old.max_running, old.weight, old.priority) != tuple(values[f] for f in SETTINGS):
            raise Rejected("QUEUE_EXISTS", f"queue {name} exists with other settings (update it: haco queue "
                           f"update {name})", {"queue": name})
    cmd = CreateQueue(at_ms=now_ms(), name=name, **values)
    index, already = await _propose(request, cmd)
    return web.json_response({"queue": await _shown(request, name), "index": index, "already": already},
                             status=200 if already else 201)


@routes.patch("/api/queues/{queue}")
async def update_queue(request: web.Request) -> web.Response:
    """Body: any of max_running, weight, priority; the others stay as they are."""
    name = _existing(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not body:
        raise_bad("INVALID", 'body must give any of {"max_running", "weight", "priority"}', {"field": "body"})
    _check_fields(body, SETTINGS)
    index, already = await _propose(request, UpdateQueue(at_ms=now_ms(), name=name, **_settings(body)))
    return web.json_response({"queue": await _shown(request, name), "index": index, "already": already})


@routes.post("/api/queues/{queue}/pause")
async def pause(request: web.Request) -> web.Response:
    return await _set_paused(request, True)


@routes.post("/api/queues/{queue}/resume")
async def resume(request: web.Request) -> web.Response:
    return await _set_paused(request, False)


@routes.delete("/api/queues/{queue}")
async def delete(request: web.Request) -> web.Response:
    """A queue holding pending or running jobs, or that a schedule submits to, is refused (409
    QUEUE_NOT_EMPTY); `default` (400) cannot go; a queue that does not exist is already deleted."""
    name = request.match_info["queue"]
    if name == DEFAULT_QUEUE:
        raise_bad("INVALID", "the default queue cannot be deleted (update it instead)", {"field": "name"})
    replica = request.app[REPLICA]
    if replica.state.cluster_version < QUEUES_SINCE:  # no queue has a record yet: nothing to delete
        return web.json_response({"name": name, "index": replica.applied_index, "already": True})
    index, already = await _propose(request, DeleteQueue(now_ms(), name))
    return web.json_response({"name": name, "index": index, "already": already})


# ---- helpers ----------------------------------------------------------------------------------

def _listing(replica: Replicator) -> dict[str, Any]:
    with replica.state_lock:  # apply changes the counts and the ready index on the tick thread
        rows, other = queries.queue_summaries(replica.state)
        paused = replica.state.paused
    return {"queues": [queue_json(q) for q in rows], "other": None if other is None else queue_json(other),
            "paused": paused}


def _one(replica: Replicator, name: str) -> dict[str, Any] | None:
    with replica.state_lock:
        state = replica.state
        if name != DEFAULT_QUEUE and name not in state.queues and not any(
                n for (queue, _), n in list(state.queue_counts.items()) if queue == name):
            return None
        rows, _ = queries.queue_summaries(state, len(state.queue_counts))  # every name jobs carry
    return next((queue_json(q) for q in rows if q.settings.name == name), None)


async def _shown(request: web.Request, name: str) -> dict[str, Any] | None:
    """The queue as applied here after a write."""
    return await asyncio.to_thread(_one, request.app[REPLICA], name)


def _unknown(name: str) -> Rejected:
    return Rejected("UNKNOWN_QUEUE", f"no queue {name}", {"queue": name})


def _existing(request: web.Request) -> str:
    """The path's queue. Apply refuses one without a record (404 UNKNOWN_QUEUE); this pre-check
    refuses what cannot be a queue before the cluster version is raised for it."""
    name = request.match_info["queue"]
    state = request.app[REPLICA].state
    if name != DEFAULT_QUEUE and (settings_problem(name, None, None, None) is not None
                                  or (state.cluster_version < QUEUES_SINCE and name not in state.queues)):
        raise _unknown(name)
    return name


def _check_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise_bad("INVALID", f"{unknown[0][:64]}: unknown field (a queue takes {', '.join(allowed)})",
                  {"field": unknown[0][:64]})


def _name(value: Any) -> str:
    if not isinstance(value, str) or settings_problem(value, None, None, None) is not None:
        raise_bad("INVALID", "name: queue name must be 1 to 64 characters of letters, digits, '_', '.', '-' "
                  "(starting with a letter or digit)", {"field": "name"})
    return value


def _settings(body: dict[str, Any]) -> dict[str, int]:
    """The settings the body gives, each an integer in its bounds (400 naming the first that is not)."""
    out: dict[str, int] = {}
    for field in SETTINGS:
        if field not in body:
            continue
        value = body[field]
        problem = "must be an integer" if type(value) is not int else settings_problem(
            DEFAULT_QUEUE, *(value if f == field else None for f in SETTINGS))
        if problem is not None:
            raise_bad("INVALID", f"{field}: {problem.removeprefix(field + ' ')}", {"field": field})
        out[field] = value
    return out


async def _propose(request: web.Request, cmd: CreateQueue | UpdateQueue | SetQueuePaused | DeleteQueue
                   ) -> tuple[int, bool]:
    replica = request.app[REPLICA]
    await ensure_cluster_version(replica, request.app[CONFIG], QUEUES_SINCE)
    index, outcome = await replica.propose(cmd)
    return index, require_accepted(outcome).already


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    name = _existing(request)
    index, already = await _propose(request, SetQueuePaused(now_ms(), name, paused))
    return web.json_response({"name": name, "paused": paused, "index": index, "already": already})
