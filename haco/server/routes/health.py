"""`GET /api/health/cluster`: the cluster's health verdict (haco.health) as this replica sees it.

The answering replica reads its own info and asks every configured peer for `GET /api/cluster`
(concurrently, with the caller's credentials and a short deadline, like log_forward's reads), so
a replica that is down is still named by its configured id. 200 for healthy and degraded, 503 for
unhealthy, so `curl -f` fails only when writes stop; the body says which and why.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from haco.config import Peer
from haco.health import UNHEALTHY, verdict
from haco.server.keys import PEER_HTTP, REPLICA

routes = web.RouteTableDef()
PEER_TIMEOUT_S = 1.5  #: a peer that has not answered by then counts as unreachable


@routes.get("/api/health/cluster")
async def health_cluster(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    me = {"id": replica.cfg.id, "url": replica.cfg.api_url, "info": replica.info()}
    # the configuration in effect (live membership), not only the configured peers
    peers = await asyncio.gather(*(_peer(request, p) for p in replica.peers()))
    workers = [{"worker_id": w.worker_id, "status": str(w.status), "capacity": w.capacity}
               for w in list(replica.state.workers.values())]
    rows = [me, *peers]
    body = verdict(rows, workers)
    body["replicas"] = [{"id": r["id"], "url": r["url"], "reachable": r["info"] is not None,
                         "error": r.get("error")} for r in rows]
    body["answered_by"] = replica.cfg.id
    return web.json_response(body, status=503 if body["status"] == UNHEALTHY else 200)


async def _peer(request: web.Request, peer: Peer) -> dict[str, Any]:
    row: dict[str, Any] = {"id": peer.id, "url": peer.api_url, "info": None, "error": None}
    headers = {"Authorization": request.headers["Authorization"]} if "Authorization" in request.headers else {}
    try:
        async with request.app[PEER_HTTP].get(f"{peer.api_url.rstrip('/')}/api/cluster", headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)) as resp:
            if resp.status != 200:
                row["error"] = f"HTTP {resp.status}"
                return row
            info = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return row
    row["info"] = info if isinstance(info, dict) else None
    return row
