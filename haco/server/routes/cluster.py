"""Cluster, health, queue, results SQL, metrics, the dashboard and the OpenAPI document."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from raft_state import SetPaused

from haco.scheduler.core import now_ms
from haco.server.keys import HUB, REPLICA, RESULTS, SCHEDULER
from haco.server.openapi import OPENAPI_PATH, document
from haco.server.requests import fresh_enough, raise_bad, read_json, require_accepted
from haco.results.feed import RESULTS_FEED
from haco.results.sandbox import ROW_LIMIT_DEFAULT, ROW_LIMIT_MAX

routes = web.RouteTableDef()
STATIC = Path(__file__).parent.parent / "static"


@routes.get("/api/cluster")
async def cluster(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    info = replica.info()
    info["workers_connected"] = len(request.app[HUB].conns)
    info["stale_reports_refused"] = request.app[HUB].stale_reports
    info["assigned"] = request.app[SCHEDULER].assigned
    info["assigned_behind_reports"] = request.app[SCHEDULER].assigned_behind
    info["assigned_with_submit"] = request.app[SCHEDULER].assigned_with_submit
    return web.json_response(info)


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "id": request.app[REPLICA].cfg.id})


@routes.get("/api/health/ready")
async def ready(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    info = replica.info()
    stuck = bool((info.get("apply") or {}).get("stuck"))
    ok = info["leader"] is not None and info["applied_index"] >= info["commit_index"] - 1000 and not stuck
    return web.json_response({"ready": ok, "leader": info["leader"], "applied_index": info["applied_index"],
                              "commit_index": info["commit_index"], "stuck": stuck}, status=200 if ok else 503)


@routes.get("/api/health/db")
async def health_db(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    results = request.app[RESULTS]
    body = {"snapshot_index": replica.snapshot_index, "snapshot_path": str(replica.dump_path),
            "snapshot_exists": replica.dump_path.exists(), "results": None}
    if results is not None:
        body["results"] = {"watermark": await asyncio.to_thread(results.watermark)}
    return web.json_response(body)


@routes.get("/api/queue/stats")
async def queue_stats(request: web.Request) -> web.Response:
    index = await fresh_enough(request)
    state = request.app[REPLICA].state
    return web.json_response({"counts": {str(k): v for k, v in state.counts.items()}, "paused": state.paused,
                              "ready": len(state.ready), "index": index})


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    index, outcome = await request.app[REPLICA].propose(SetPaused(now_ms(), paused))
    outcome = require_accepted(outcome)
    return web.json_response({"paused": paused, "index": index, "already": outcome.already})


@routes.post("/api/queue/pause")
async def pause(request: web.Request) -> web.Response:
    return await _set_paused(request, True)


@routes.post("/api/queue/resume")
async def resume(request: web.Request) -> web.Response:
    return await _set_paused(request, False)


@routes.post("/api/results/query")
async def results_query(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"sql", "limit"} or not isinstance(body.get("sql"), str):
        raise_bad("INVALID", 'body must be {"sql": "SELECT ..."}', {"field": "sql"})
    results = request.app[RESULTS]
    if results is None:
        raise_bad("NOT_READY", "the results store is not open on this replica")
    limit = body.get("limit", ROW_LIMIT_DEFAULT)
    if type(limit) is not int or not 1 <= limit <= ROW_LIMIT_MAX:
        raise_bad("INVALID", f"limit must be an integer from 1 to {ROW_LIMIT_MAX}", {"field": "limit"})
    feed = request.app.get(RESULTS_FEED)
    if feed is not None:  # rows of jobs that already ended here may wait for the feed's next write
        await feed.flushed(timeout_s=5.0)
    out = await asyncio.to_thread(results.query, body["sql"], row_limit=limit)  # QueryError is a 4xx HacoError
    return web.Response(body=out.body, content_type="application/json")


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    from haco.server.metrics import METRICS
    return web.Response(body=await request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get(OPENAPI_PATH)
async def openapi(request: web.Request) -> web.Response:
    """The API's OpenAPI 3.1 document (haco/server/openapi.py)."""
    return web.json_response(document())


@routes.get("/api/dashboard")
async def dashboard_data(request: web.Request) -> web.Response:
    from haco.server.dashboard import snapshot
    return web.json_response(await snapshot(request))


@routes.get("/")
async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")
