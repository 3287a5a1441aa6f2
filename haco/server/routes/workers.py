"""Worker routes: the table, drain, deregister, and the worker websocket."""

from __future__ import annotations

from aiohttp import web

from raft_state import DeregisterWorker, DrainWorker

from haco.errors import NotFound
from haco.scheduler.core import now_ms
from haco.wire import worker_json
from haco.server.keys import HUB, REPLICA
from haco.server.requests import fresh_enough, require_accepted
from haco.server.auth import worker_identity
from haco.server.hub import Hub

routes = web.RouteTableDef()


@routes.get("/api/workers/connect")
async def connect(request: web.Request) -> web.StreamResponse:
    return await request.app[HUB].handle(request, worker_identity(request))


@routes.get("/api/workers")
async def list_workers(request: web.Request) -> web.Response:
    index = await fresh_enough(request)
    hub = request.app[HUB]
    workers = sorted(request.app[REPLICA].state.workers.values(), key=lambda w: w.seq)
    return web.json_response({"workers": [worker_json(w, connected=w.worker_id in hub.conns,
                                                      load=_load(hub, w.worker_id)) for w in workers], "index": index})


def _load(hub: Hub, worker_id: str) -> dict[str, object] | None:
    conn = hub.conns.get(worker_id)
    return None if conn is None else conn.load


@routes.get("/api/workers/{worker_id}")
async def get_worker(request: web.Request) -> web.Response:
    index = await fresh_enough(request)
    worker_id = request.match_info["worker_id"]
    w = request.app[REPLICA].state.workers.get(worker_id)
    if w is None:
        raise NotFound(f"no worker {worker_id}", {"worker_id": worker_id})
    hub = request.app[HUB]
    return web.json_response({"worker": worker_json(w, connected=worker_id in hub.conns, load=_load(hub, worker_id)),
                              "index": index})


async def _worker_command(request: web.Request, cmd: object) -> web.Response:
    index, outcome = await request.app[REPLICA].propose(cmd)  # type: ignore[arg-type]
    outcome = require_accepted(outcome)
    return web.json_response({"worker_id": request.match_info["worker_id"], "index": index,
                              "already": outcome.already})


@routes.post("/api/workers/{worker_id}/drain")
async def drain(request: web.Request) -> web.Response:
    return await _worker_command(request, DrainWorker(now_ms(), request.match_info["worker_id"]))


@routes.delete("/api/workers/{worker_id}")
async def deregister(request: web.Request) -> web.Response:
    return await _worker_command(request, DeregisterWorker(now_ms(), request.match_info["worker_id"]))
