"""Worker routes: the table, drain and undrain, deregister, and the worker websocket."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from raft_state import DeregisterWorker, DrainWorker
from raft_state.commands import UndrainWorker
from raft_state.records import Worker
from raft_state.resources import Free, free_of

from haco.errors import NotFound
from haco.scheduler.core import now_ms
from haco.wire import worker_json
from haco.server.keys import CONFIG, HUB, REPLICA, Replicator
from haco.server.requests import fresh_enough, known_params, require_accepted
from haco.server.auth import worker_identity
from haco.server.hub import Hub
from haco.server.log_forward import leader_json
from haco.server.routes.tokens import ensure_cluster_version

routes = web.RouteTableDef()


@routes.get("/api/workers/connect")
async def connect(request: web.Request) -> web.StreamResponse:
    return await request.app[HUB].handle(request, worker_identity(request))


@routes.get("/api/workers")
async def list_workers(request: web.Request) -> web.Response:
    """The worker table; `connected` and `load` are the leader's (workers connect to it): a follower
    asks the leader, and when it cannot, answers its replicated table with both null, `view: local`.
    `reserved` and `free` come from the applied state: what the worker's running jobs reserve."""
    known_params(request)
    index = await fresh_enough(request)
    answer = await leader_json(request)
    if answer is not None and isinstance(answer.get("workers"), list):
        return web.json_response(answer)
    live = request.app[REPLICA].is_leader()
    workers = await asyncio.to_thread(_with_free, request.app[REPLICA], None)
    return web.json_response({"workers": [_json(request, w, f, live) for w, f in workers], "index": index,
                              "view": "leader" if live else "local"})


def _with_free(replica: Replicator, worker_id: str | None) -> list[tuple[Worker, Free]]:
    """Workers in registration order (only `worker_id`'s when given), each with what its running
    jobs leave free, read together under the state lock (a worker thread: it looks up jobs)."""
    with replica.state_lock:
        state = replica.state
        if worker_id is not None:
            one = state.workers.get(worker_id)
            workers = [one] if one is not None else []
        else:
            workers = sorted(state.workers.values(), key=lambda w: w.seq)
        return [(w, free_of(w, state.jobs)) for w in workers]


def _json(request: web.Request, w: Worker, f: Free, live: bool) -> dict[str, Any]:
    hub = request.app[HUB]
    out = worker_json(w, connected=w.worker_id in hub.conns, load=_load(hub, w.worker_id),
                      free={"cpus": f.cpus, "memory_gb": round(f.memory_gb, 3), "devices": sorted(f.devices)})
    if not live:
        out["connected"] = out["load"] = None  # unknown here: only the leader's hub holds connections
    return out


def _load(hub: Hub, worker_id: str) -> dict[str, object] | None:
    conn = hub.conns.get(worker_id)
    return None if conn is None else conn.load


@routes.get("/api/workers/{worker_id}")
async def get_worker(request: web.Request) -> web.Response:
    index = await fresh_enough(request)
    worker_id = request.match_info["worker_id"]
    if worker_id not in request.app[REPLICA].state.workers:
        raise NotFound(f"no worker {worker_id}", {"worker_id": worker_id})
    answer = await leader_json(request)
    if answer is not None and isinstance(answer.get("worker"), dict):
        return web.json_response(answer)
    live = request.app[REPLICA].is_leader()
    found = await asyncio.to_thread(_with_free, request.app[REPLICA], worker_id)
    if not found:  # deregistered while the leader was asked
        raise NotFound(f"no worker {worker_id}", {"worker_id": worker_id})
    w, f = found[0]
    return web.json_response({"worker": _json(request, w, f, live), "index": index,
                              "view": "leader" if live else "local"})


async def _worker_command(request: web.Request, cmd: object) -> web.Response:
    index, outcome = await request.app[REPLICA].propose(cmd)  # type: ignore[arg-type]
    outcome = require_accepted(outcome)
    return web.json_response({"worker_id": request.match_info["worker_id"], "index": index,
                              "already": outcome.already})


@routes.post("/api/workers/{worker_id}/drain")
async def drain(request: web.Request) -> web.Response:
    return await _worker_command(request, DrainWorker(now_ms(), request.match_info["worker_id"]))


@routes.post("/api/workers/{worker_id}/undrain")
async def undrain(request: web.Request) -> web.Response:
    """A draining worker takes work again (cluster version 4; raised here once every replica runs it)."""
    worker_id = request.match_info["worker_id"]
    if worker_id not in request.app[REPLICA].state.workers:  # before the version step: a refusal changes nothing
        raise NotFound(f"no worker {worker_id}", {"worker_id": worker_id})
    await ensure_cluster_version(request.app[REPLICA], request.app[CONFIG], UndrainWorker.SINCE_VERSION)
    return await _worker_command(request, UndrainWorker(now_ms(), worker_id))


@routes.delete("/api/workers/{worker_id}")
async def deregister(request: web.Request) -> web.Response:
    return await _worker_command(request, DeregisterWorker(now_ms(), request.match_info["worker_id"]))
