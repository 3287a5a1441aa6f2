"""A stand-in for a replica's REST API, just enough of the contract for client and CLI tests.

`FakeReplica` keeps jobs in a dict and can be scripted to fail: `fail("submit", 503, ...)` queues
a canned answer for the next request of that kind. `serve(*fakes)` runs them on 127.0.0.1 in a
background thread's event loop (aiohttp's TestServer), so sync tests (the CLI, SyncClient) and
async tests alike can talk to them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

FINAL = {"completed", "failed", "cancelled", "expired"}


@dataclass
class Canned:
    status: int
    code: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    apply_first: bool = False  #: do the work, then answer with this (a lost answer: 504)


def error(status: int, code: str, message: str = "", detail: dict[str, Any] | None = None,
          headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message or code.lower(), "detail": detail or {}}}
    return web.json_response(body, status=status, headers=headers)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeReplica:
    def __init__(self, name: str = "r1", *, role: str = "leader") -> None:
        self.name = name
        self.url = ""
        self.jobs: dict[str, dict[str, Any]] = {}
        self.last_query: dict[str, Any] | None = None
        self.keys: dict[str, tuple[str, str]] = {}  # key -> (job id, spec fingerprint)
        self.seen_keys: list[str] = []
        self.requests: list[str] = []
        self.script: dict[str, list[Canned]] = {}
        self.steps: dict[str, list[dict[str, Any]]] = {}  # job id -> states its GETs walk through
        self.index = 10
        self.paused = False
        self.cluster_info: dict[str, Any] = {"id": name, "role": role, "leader": "r1", "term": 2,
                                             "commit_index": 10, "applied_index": 10, "log_entries": 10,
                                             "snapshot_index": 0, "snapshot_age_s": 5.0,
                                             "digests": [[8, "aa"], [10, "bb"]], "peers": []}
        self.workers = [{"worker_id": "w1", "status": "active", "capacity": 4, "running": ["j1"], "tags": ["gpu"],
                         "hardware": [], "memory_gb": 16, "cuda_compute": 0, "cpus": 4, "connected": True,
                         "load": None}]

    def fail(self, kind: str, status: int, code: str, **kw: Any) -> None:
        self.script.setdefault(kind, []).append(Canned(status, code, **kw))

    def _canned(self, kind: str) -> Canned | None:
        queue = self.script.get(kind)
        return queue.pop(0) if queue else None

    def _answer(self, canned: Canned) -> web.Response:
        return error(canned.status, canned.code, detail=canned.detail, headers=canned.headers)

    def add_job(self, job_id: str, **fields: Any) -> dict[str, Any]:
        job = {"job_id": job_id, "key": job_id, "type": "shell", "payload": {}, "priority": 0, "status": "pending",
               "attempt": 0, "created_at_ms": 0, "finished_at_ms": None, "worker_id": None, "result": None,
               "error": None, "attempts": [], "pending_reason": None, "depends_on": [], "required_tags": [],
               "labels": {}, **fields}
        self.jobs[job_id] = job
        return job

    def _submit_one(self, body: dict[str, Any]) -> tuple[int, str]:
        key = body.get("key") or ""
        self.seen_keys.append(key)
        spec = json.dumps({k: v for k, v in body.items() if k != "key"}, sort_keys=True)
        if key in self.keys:
            job_id, old = self.keys[key]
            return (200, job_id) if old == spec else (409, job_id)
        job_id = f"job{len(self.jobs) + 1}"
        self.add_job(job_id, **{k: v for k, v in body.items() if k in ("type", "payload", "priority", "key")})
        self.keys[key] = (job_id, spec)
        self.index += 1
        return 201, job_id

    # --- routes --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requests.append(f"{request.method} {request.path}")
            return await handler(request)  # type: ignore[no-any-return]

        app.middlewares.append(record)
        app.add_routes([
            web.post("/api/jobs", self.submit), web.post("/api/jobs/batch", self.batch),
            web.get("/api/jobs", self.list_jobs), web.get("/api/jobs/{id}", self.get_job),
            web.post("/api/jobs/{id}/cancel", self.cancel), web.get("/api/workers", self.list_workers),
            web.post("/api/workers/{id}/drain", self.drain), web.get("/api/queue/stats", self.stats),
            web.post("/api/queue/pause", self.pause), web.get("/api/cluster", self.cluster),
            web.post("/api/results/query", self.query),
        ])
        return app

    async def submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        canned = self._canned("submit")
        if canned and not canned.apply_first:
            self.seen_keys.append(body.get("key", ""))
            return self._answer(canned)
        status, job_id = self._submit_one(body)
        if canned:
            return self._answer(canned)
        if status == 409:
            return error(409, "KEY_REUSED", "key reused with another spec", {"job_id": job_id})
        return web.json_response({"job_id": job_id, "index": self.index, **({"already": True} if status == 200
                                                                            else {})}, status=status)

    async def batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        if len(body["jobs"]) > 1000:
            return error(400, "INVALID", "too many")
        ids = [self._submit_one(job)[1] for job in body["jobs"]]
        return web.json_response({"job_ids": ids, "index": self.index}, status=201)

    async def list_jobs(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "100"))
        after = int(request.query.get("after", "0"))
        status = request.query.get("status")
        jobs = [j for n, j in enumerate(self.jobs.values(), 1) if n > after and status in (None, j["status"])]
        page = jobs[: min(limit, 2)]  # tiny pages, so the client has to follow the cursor
        nxt = after + len(page) if len(jobs) > len(page) else None
        return web.json_response({"jobs": page, "index": self.index, "next": nxt})

    async def get_job(self, request: web.Request) -> web.Response:
        canned = self._canned("get")
        if canned:
            return self._answer(canned)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return error(404, "UNKNOWN_JOB", f"no job {request.match_info['id']}")
        steps = self.steps.get(job["job_id"])
        if steps:
            job.update(steps.pop(0))
        return web.json_response({"job": job, "index": self.index})

    async def cancel(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return error(404, "UNKNOWN_JOB", "no such job")
        if job["status"] in FINAL:
            return error(409, "JOB_FINAL", f"job is already {job['status']}")
        job["status"] = "cancelled"
        return web.json_response({"job_id": job["job_id"], "index": self.index, "already": False})

    async def list_workers(self, request: web.Request) -> web.Response:
        return web.json_response({"workers": self.workers, "index": self.index})

    async def drain(self, request: web.Request) -> web.Response:
        return web.json_response({"worker_id": request.match_info["id"], "index": self.index})

    async def stats(self, request: web.Request) -> web.Response:
        counts: dict[str, int] = {}
        for j in self.jobs.values():
            counts[j["status"]] = counts.get(j["status"], 0) + 1
        return web.json_response({"counts": counts, "paused": self.paused, "ready": 0, "index": self.index})

    async def pause(self, request: web.Request) -> web.Response:
        self.paused = True
        return web.json_response({"paused": True, "index": self.index})

    async def cluster(self, request: web.Request) -> web.Response:
        return web.json_response({**self.cluster_info, "api_url": self.url})

    async def query(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.last_query = body
        if "drop" in body["sql"].lower():
            return error(400, "BAD_REQUEST", "read-only")
        return web.json_response({"columns": ["status", "n"], "rows": [["completed", 3], ["failed", 1]]})


@contextmanager
def serve(*fakes: FakeReplica) -> Iterator[list[str]]:
    """Run the fakes on 127.0.0.1 in a background loop; yields their base URLs."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers = [TestServer(f.app(), host="127.0.0.1") for f in fakes]
    try:
        for fake, server in zip(fakes, servers, strict=True):
            asyncio.run_coroutine_threadsafe(server.start_server(), loop).result(10)
            fake.url = str(server.make_url("")).rstrip("/")
        yield [f.url for f in fakes]
    finally:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
