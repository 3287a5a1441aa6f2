"""Routes the dashboard page needs beyond the API's own: its static modules and a job's graph.

`GET /static/{name}` serves the page's ES modules and stylesheet from haco/server/static (names
are checked against the directory's listing: no path ever reaches the file system from a request).
`GET /api/jobs/{job_id}/graph` is a job's dependencies and dependents, a few levels each way.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from raft_state import State

from haco.errors import NotFound
from haco.server.keys import REPLICA, Replicator
from haco.server.requests import fresh_enough, job_id_of, known_params, query_int

routes = web.RouteTableDef()
STATIC: Final = Path(__file__).parent.parent / "static"
_NAME: Final = re.compile(r"^[a-z][a-z0-9_]*\.(js|css)$")
_TYPES: Final = {"js": "text/javascript", "css": "text/css"}
GRAPH_NODES_MAX: Final = 60
GRAPH_DEPTH_MAX: Final = 5


@routes.get("/static/{name}")
async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    match = _NAME.match(name)
    path = STATIC / name
    if match is None or not path.is_file():
        raise NotFound(f"no file {name[:64]}", {"name": name[:64]})
    return web.FileResponse(path, headers={"Content-Type": _TYPES[match.group(1)], "Cache-Control": "no-cache"})


@routes.get("/api/jobs/{job_id}/graph")
async def job_graph(request: web.Request) -> web.Response:
    """Nodes (id, group name, status, type, level: negative upstream, 0 the job, positive downstream)
    and edges [dependency, dependent]; `?depth=` levels each way (2, at most 5), GRAPH_NODES_MAX nodes."""
    known_params(request, "depth")
    index = await fresh_enough(request)
    depth = query_int(request, "depth", 2, 1, GRAPH_DEPTH_MAX) or 2
    replica = request.app[REPLICA]
    job_id = await job_id_of(request)
    return web.json_response({**await asyncio.to_thread(_graph_locked, replica, job_id, depth), "index": index})


def _graph_locked(replica: Replicator, job_id: str, depth: int) -> dict[str, Any]:
    with replica.state_lock:
        return graph(replica.state, job_id, depth)


def graph(state: State, job_id: str, depth: int) -> dict[str, Any]:
    """Upstream through `depends_on`; downstream through the jobs of the same group that name it
    (dependents outside a group are not indexed, so they are not shown)."""
    group = state.flows.groups.get(state.flows.group_of.get(job_id, ""))
    names = dict(zip(group.job_ids, group.names)) if group is not None else {}
    dependents: dict[str, list[str]] = {}
    for member in names:
        job = state.jobs.get(member)
        for dep in job.spec.depends_on if job is not None else ():
            dependents.setdefault(dep, []).append(member)
    levels = {job_id: 0}
    edges: set[tuple[str, str]] = set()
    truncated = False
    for direction in (-1, 1):
        frontier = [job_id]
        for level in range(1, depth + 1):
            nxt = []
            for node in frontier:
                job = state.jobs.get(node)
                linked = (list(job.spec.depends_on) if job is not None else []) if direction < 0 \
                    else dependents.get(node, [])
                for other in linked:
                    if other not in levels:
                        if len(levels) >= GRAPH_NODES_MAX:
                            truncated = True
                            continue
                        levels[other] = direction * level
                        nxt.append(other)
                    if other in levels:
                        edges.add((other, node) if direction < 0 else (node, other))
            frontier = nxt
        truncated = truncated or any(
            (state.jobs[n].spec.depends_on if direction < 0 and n in state.jobs else dependents.get(n, ()))
            for n in frontier)
    nodes = []
    for node, level in levels.items():
        job = state.jobs.get(node)
        nodes.append({"job_id": node, "name": names.get(node) or None, "level": level,
                      "status": str(job.status) if job is not None else "pruned",
                      "type": job.spec.type if job is not None else None})
    return {"nodes": nodes, "edges": sorted(edges), "truncated": truncated,
            "group_id": group.group_id if group is not None else None}
