"""`GET /api/jobs/{id}/logs` and `GET /api/jobs/{id}/progress` on every replica.

A follower forwards both to the leader (the caller's Authorization goes along), streaming the
answer through as it comes; the leader asks the worker that ran the attempt over its websocket
(hub_logs.py). Nothing here is replicated: the output stays on the worker.

Query: `attempt` (default: the latest), `stream` = stdout | stderr | both (default both), `offset`
(default 0: a log offset counts the bytes of both streams before it), `limit` (bytes, at most 1 MiB),
`tail` (lines: start where the last N lines of the stream begin), `follow=1`.

Without `follow`: one JSON page, `{"job_id", "attempt", "worker_id", "stream", "chunks": [{"offset",
"stream", "t_ms", "text" | "b64"}], "next_offset", "start", "dropped_bytes", "skipped", "at_end",
"ended", "exit_code"}`; read on from `next_offset` until `at_end`. A chunk carries `text` when its
bytes are UTF-8, else `b64`.

With `follow=1`: `application/x-ndjson` over chunked HTTP, one JSON object per line, each with an
`event`: `start` (the page fields without chunks), `output` (one chunk), `keepalive` (every few
seconds without output, with `next_offset`), then `end` (`next_offset`, `exit_code`) when the
attempt's output is complete, or `error` (`code`, `message`, `next_offset`) when the stream cannot
go on (the worker went offline, leadership moved). A client that lost the stream asks again, on any
replica, with `offset` = the last `next_offset` (or the end of the last chunk): no byte is lost or
repeated. The leader asks the worker for the next page only once the previous one was written to
the caller, so a slow reader holds at most one page in the leader's memory and the worker's.

A job with no attempt yet answers an empty page (`attempt` null, `at_end` true, `ended` false).

Errors: 404 (no such job, or no such attempt), 409 NOT_STARTED (follow before any attempt), 409 WORKER_OFFLINE
(`detail.worker_id`, `detail.tail`: the replicated stdout/stderr tails and their cut counts), 409
LOG_UNAVAILABLE (connected worker without that log), 503 when there is no leader.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from raft_state.records import Attempt, Job

from haco.errors import HacoError, LogUnavailable, NotFound, NotStarted, WorkerOffline
from haco.server.keys import HUB, REPLICA
from haco.server.log_forward import ASK_MARGIN_S, FOLLOW_WAIT_S, forward, peer_http_ctx
from haco.server.requests import job_id_of, query_int, raise_bad
from haco.wire import unpack

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
PAGE_BYTES_MAX: Final = 1024 * 1024
FOLLOW_PAGE_BYTES: Final = 256 * 1024  #: one follow step: bounds what a slow reader keeps in memory
NOT_YET_S: Final = 0.2  #: a running attempt whose log the worker has not opened yet: ask again after this
_STREAMS: Final = {"stdout": ["stdout"], "stderr": ["stderr"], "both": ["stdout", "stderr"]}
_STREAM_NAME: Final = {1: "stdout", 2: "stderr"}


@dataclass(frozen=True, slots=True)
class LogQuery:
    attempt: int | None
    stream: str
    offset: int
    limit: int
    tail: int | None
    follow: bool

    @classmethod
    def parse(cls, request: web.Request) -> LogQuery:
        stream = request.query.get("stream", "both")
        if stream not in _STREAMS:
            raise_bad("BAD_QUERY", "?stream must be stdout, stderr or both", {"field": "stream"})
        follow = request.query.get("follow", "0")
        if follow not in ("0", "1", "true", "false"):
            raise_bad("BAD_QUERY", "?follow must be 0 or 1", {"field": "follow"})
        return cls(attempt=query_int(request, "attempt", None, 1, 2**31),
                   stream=stream, offset=query_int(request, "offset", 0, 0, 2**62) or 0,
                   limit=query_int(request, "limit", PAGE_BYTES_MAX, 1, PAGE_BYTES_MAX) or PAGE_BYTES_MAX,
                   tail=query_int(request, "tail", None, 0, 1_000_000), follow=follow in ("1", "true"))


@routes.get("/api/jobs/{job_id}/logs")
async def job_logs(request: web.Request) -> web.StreamResponse:
    query = LogQuery.parse(request)
    replica = request.app[REPLICA]
    if not replica.is_leader():
        return await forward(request, stream=query.follow)
    try:
        job, attempt = _attempt(request, await job_id_of(request), query.attempt)
    except NotStarted as exc:
        if query.follow:
            raise
        return web.json_response(_not_started(exc, query))  # nothing yet: an empty page
    conn = _worker_conn(request, job, attempt)
    fields = {"job_id": job.job_id, "attempt": attempt.number, "streams": _STREAMS[query.stream]}
    if not query.follow:
        body = await _ask(request, conn, job, attempt, {**fields, "offset": query.offset, "limit": query.limit,
                                                        "tail": query.tail, "wait_s": 0})
        return web.json_response({**_page_meta(job, attempt, query.stream, body),
                                  "chunks": [_chunk_json(c) for c in body.get("chunks") or ()]})
    return await _follow(request, query, job, attempt, conn, fields)


@routes.get("/api/jobs/{job_id}/progress")
async def job_progress(request: web.Request) -> web.Response:
    """The latest progress of the job's running attempt (leader memory; null when none)."""
    replica = request.app[REPLICA]
    if not replica.is_leader():
        return await forward(request, stream=False)  # type: ignore[return-value]
    job = replica.state.jobs.get(await job_id_of(request))
    if job is None:
        raise NotFound(f"no job {request.match_info['job_id']}", {"job_id": request.match_info["job_id"]})
    return web.json_response({"job_id": job.job_id, "attempt": job.attempt,
                              "progress": request.app[HUB].progress.get(job)})


# ---- the leader: one page, or a follow stream ------------------------------------------------------


def _attempt(request: web.Request, job_id: str, number: int | None) -> tuple[Job, Attempt]:
    job = request.app[REPLICA].state.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id}", {"job_id": job_id})
    if (not job.attempts or number == len(job.attempts) + 1) and not job.is_final:
        raise NotStarted(f"job {job_id} has not started attempt {number or 1} yet (it is {job.status})",
                         {"job_id": job_id, "status": str(job.status), "attempt": number or 1})
    if not job.attempts:
        raise NotFound(f"job {job_id} ended without running (it is {job.status})", {"job_id": job_id})
    if number is None:
        return job, job.attempts[-1]
    if not 1 <= number <= len(job.attempts):
        raise NotFound(f"job {job_id} has no attempt {number} (it has {len(job.attempts)})",
                       {"job_id": job_id, "attempts": len(job.attempts)})
    return job, job.attempts[number - 1]


def _tail(attempt: Attempt) -> dict[str, Any] | None:
    """The replicated tails of an ended attempt's result (shell, python): what we have without the worker."""
    result = unpack(attempt.result)
    if not isinstance(result, dict):
        return None
    keys = ("stdout_tail", "stderr_tail", "stdout_cut_bytes", "stderr_cut_bytes")
    tail = {k: result[k] for k in keys if k in result}
    return tail or None


def _worker_conn(request: web.Request, job: Job, attempt: Attempt) -> Any:
    conn = request.app[HUB].conns.get(attempt.worker_id)
    detail = _offline_detail(job, attempt)
    if conn is None:
        raise WorkerOffline(f"worker {attempt.worker_id}, which ran attempt {attempt.number} of {job.job_id}, is "
                            "offline: its full log is readable again when it reconnects", detail)
    if not conn.logs:
        raise LogUnavailable(f"worker {attempt.worker_id} runs a version without job logs", detail)
    return conn


def _offline_detail(job: Job, attempt: Attempt) -> dict[str, Any]:
    return {"job_id": job.job_id, "attempt": attempt.number, "worker_id": attempt.worker_id,
            "running": _running(attempt), "tail": _tail(attempt)}


def _running(attempt: Attempt) -> bool:
    return attempt.outcome is None


async def _ask(request: web.Request, conn: Any, job: Job, attempt: Attempt, fields: dict[str, Any]) -> dict[str, Any]:
    """One `log_read`; a worker that has not opened a running attempt's log yet gives an empty page."""
    try:
        body = await request.app[HUB].log_asks.ask(conn, fields, float(fields.get("wait_s") or 0) + ASK_MARGIN_S)
    except WorkerOffline as exc:  # it went away while asked: the same answer as when it was already gone
        raise WorkerOffline(exc.message, _offline_detail(job, attempt)) from None
    if body.get("ok"):
        return body
    if body.get("code") == "NO_LOG" and _running(attempt):
        return {"ok": True, "chunks": [], "next_offset": fields.get("offset", 0), "start": 0, "at_end": True,
                "ended": False, "exit_code": None, "skipped": 0}
    raise LogUnavailable(str(body.get("message") or "no log"),
                         {"job_id": job.job_id, "attempt": attempt.number, "worker_id": attempt.worker_id,
                          "code": body.get("code"), "tail": _tail(attempt)})


def _not_started(exc: NotStarted, query: LogQuery) -> dict[str, Any]:
    return {"job_id": exc.detail["job_id"], "attempt": None, "worker_id": None, "stream": query.stream,
            "status": exc.detail["status"], "next_offset": query.offset, "start": 0, "dropped_bytes": 0, "skipped": 0,
            "at_end": True, "ended": False, "exit_code": None, "chunks": []}


def _page_meta(job: Job, attempt: Attempt, stream: str, body: dict[str, Any]) -> dict[str, Any]:
    start = int(body.get("start") or 0)
    return {"job_id": job.job_id, "attempt": attempt.number, "worker_id": attempt.worker_id, "stream": stream,
            "next_offset": int(body.get("next_offset") or 0), "start": start, "dropped_bytes": start,
            "skipped": int(body.get("skipped") or 0), "at_end": bool(body.get("at_end")),
            "ended": bool(body.get("ended")), "exit_code": body.get("exit_code")}


def _chunk_json(chunk: Any) -> dict[str, Any]:
    pos, stream, t_ms, data = chunk
    out: dict[str, Any] = {"offset": pos, "stream": _STREAM_NAME.get(stream, "stdout"), "t_ms": t_ms}
    try:
        out["text"] = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        out["b64"] = base64.b64encode(bytes(data)).decode("ascii")
    return out


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


async def _follow(request: web.Request, query: LogQuery, job: Job, attempt: Attempt, conn: Any,
                  fields: dict[str, Any]) -> web.StreamResponse:
    replica, hub = request.app[REPLICA], request.app[HUB]
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
    await resp.prepare(request)
    offset, tail = query.offset, query.tail
    await resp.write(_line({"event": "start", "job_id": job.job_id, "attempt": attempt.number,
                            "worker_id": attempt.worker_id, "stream": query.stream, "offset": offset}))
    while True:
        current = replica.state.jobs.get(job.job_id)
        if current is not None and attempt.number <= len(current.attempts):
            attempt = current.attempts[attempt.number - 1]
        if not replica.is_leader():
            await resp.write(_line(_error("LEADER_CHANGED", "this replica is no longer the leader; ask again", offset)))
            break
        conn = hub.conns.get(attempt.worker_id)
        if conn is None:
            await resp.write(_line({**_error("WORKER_OFFLINE", f"worker {attempt.worker_id} went offline", offset),
                                    "worker_id": attempt.worker_id, "running": _running(attempt),
                                    "tail": _tail(attempt)}))
            break
        try:
            body = await _ask(request, conn, job, attempt, {**fields, "offset": offset, "tail": tail,
                                                            "limit": min(query.limit, FOLLOW_PAGE_BYTES),
                                                            "wait_s": FOLLOW_WAIT_S})
        except HacoError as exc:
            await resp.write(_line({**_error(exc.code, exc.message, offset), **exc.detail}))
            break
        tail = None
        chunks = body.get("chunks") or []
        for chunk in chunks:  # each write waits for the caller when its buffer is full: back-pressure
            await resp.write(_line({"event": "output", **_chunk_json(chunk)}))
        offset = int(body.get("next_offset") or offset)
        if body.get("ended"):
            await resp.write(_line({"event": "end", "next_offset": offset, "exit_code": body.get("exit_code"),
                                    "dropped_bytes": int(body.get("start") or 0)}))
            break
        if not chunks:
            await resp.write(_line({"event": "keepalive", "next_offset": offset}))
            if _running(attempt) and body.get("at_end"):
                await asyncio.sleep(NOT_YET_S)  # an empty page answered at once (log not opened yet)
    await resp.write_eof()
    return resp


def _error(code: str, message: str, offset: int) -> dict[str, Any]:
    return {"event": "error", "code": code, "message": message, "next_offset": offset}


def install(app: web.Application) -> None:
    app.add_routes(routes)
    app.cleanup_ctx.append(peer_http_ctx)


__all__ = ["FOLLOW_PAGE_BYTES", "LogQuery", "install", "routes"]
