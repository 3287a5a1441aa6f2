"""Snapshots for operators: download this replica's latest dump, or have it take one now (admin).

`GET /api/snapshot` streams the replica's published DuckDB dump (the file a leader streams to a
follower) in chunks read off the loop; with no dump yet it takes one first. `POST /api/snapshot`
compacts now, outside the replica's usual staggered window, and answers once the dump covers the
index applied when it was asked. `haco snapshot save` and `haco operator compact` call them;
`haco snapshot inspect` verifies a saved file (haco/server/snapshot_file.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from aiohttp import web

from haco.errors import NotApplied, NotFound
from haco.server.keys import REPLICA, Replicator

routes = web.RouteTableDef()

CHUNK_BYTES: Final = 1 << 20  #: read and written per step: one thread hop per MiB
COMPACT_TIMEOUT_S: Final = 120.0  #: a dump of 1M jobs takes 20-40 s on 2 cores
_POLL_S: Final = 0.1


async def take_snapshot(replica: Replicator, timeout_s: float = COMPACT_TIMEOUT_S) -> dict[str, Any]:
    """Compact now and wait until the published dump covers the index applied at the call.

    Raises NotApplied when the replica is not running, a write failed, or none came in time
    (nothing changed that a retry could harm)."""
    target, failures = replica.applied_index, replica.snapshot_failures
    started = time.monotonic()
    already = replica.snapshot_index >= target and replica.dump_path.exists()
    if not already:
        replica.force_snapshot()
    deadline = started + timeout_s
    while not (replica.snapshot_index >= target and replica.dump_path.exists()):
        if replica.snapshot_failures != failures:
            raise NotApplied("the snapshot write failed; the replica's log says why", {"retry_after_s": 5})
        if time.monotonic() >= deadline:
            raise NotApplied(f"no snapshot within {timeout_s:g}s (index {target}); retry later",
                             {"retry_after_s": 5})
        await asyncio.sleep(_POLL_S)
    return {"id": replica.cfg.id, "snapshot_index": replica.snapshot_index, "applied_index": target,
            "already": already, "seconds": round(time.monotonic() - started, 3)}


@routes.post("/api/snapshot")
async def compact(request: web.Request) -> web.Response:
    return web.json_response(await take_snapshot(request.app[REPLICA]))


@routes.get("/api/snapshot")
async def download(request: web.Request) -> web.StreamResponse:
    replica = request.app[REPLICA]
    opened = await asyncio.to_thread(replica.open_dump)
    if opened is None:
        await take_snapshot(replica)
        opened = await asyncio.to_thread(replica.open_dump)
    if opened is None:  # replaced by a dump from the leader meanwhile, not loaded yet
        raise NotFound("no snapshot to send yet; retry shortly", {"retry_after_s": 1})
    f, index = opened
    try:
        size = (await asyncio.to_thread(f.seek, 0, 2))
        await asyncio.to_thread(f.seek, 0)
        resp = web.StreamResponse(headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="haco-snapshot-{index}.duckdb"',
            "X-Haco-Snapshot-Index": str(index), "X-Haco-Replica": str(replica.cfg.id)})
        await resp.prepare(request)
        while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
            await resp.write(chunk)
    finally:
        await asyncio.to_thread(f.close)
    await resp.write_eof()
    return resp
