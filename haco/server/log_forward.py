"""Reads a follower cannot answer itself: forwarded to the leader (job logs, progress, the
workers' connections and load).

The leader's hub alone talks to the workers and holds progress, so a follower sends these reads to
it with the caller's Authorization header and streams the answer back. A forwarded request carries
FORWARDED; a replica that gets one while not the leader answers 503 instead of forwarding again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
from aiohttp import web

from raft_state.records import Job

from haco.config import NodeConfig
from haco.errors import NotApplied
from haco.security.tls import client_context
from haco.server.keys import CONFIG, HUB, PEER_HTTP, REPLICA

log = logging.getLogger(__name__)

FOLLOW_WAIT_S: Final = 5.0  #: the worker holds a follow read this long without output (then keepalive)
ASK_MARGIN_S: Final = 5.0
PROGRESS_TIMEOUT_S: Final = 0.5
LEADER_READ_TIMEOUT_S: Final = 2.0
FORWARDED: Final = "X-Haco-Forwarded"


async def progress_of(request: web.Request, job: Job) -> dict[str, Any] | None:
    """For `GET /api/jobs/{id}`: the running job's progress, from the leader's memory (asked over
    HTTP with a short deadline on a follower; None when it cannot say)."""
    replica = request.app[REPLICA]
    if replica.is_leader():
        return request.app[HUB].progress.get(job)
    leader = replica.leader_url()
    if not leader or request.headers.get(FORWARDED):
        return None
    try:
        async with request.app[PEER_HTTP].get(f"{leader.rstrip('/')}/api/jobs/{job.job_id}/progress",
                                              headers=_forward_headers(request),
                                              timeout=aiohttp.ClientTimeout(total=PROGRESS_TIMEOUT_S)) as resp:
            if resp.status != 200:
                return None
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    progress = body.get("progress") if isinstance(body, dict) else None
    return progress if isinstance(progress, dict) and body.get("attempt") == job.attempt else None


async def leader_json(request: web.Request, timeout_s: float = LEADER_READ_TIMEOUT_S) -> dict[str, Any] | None:
    """On a follower: the leader's 200 JSON answer to this same GET (path and query), for reads
    of leader memory (which workers are connected, their load). None on the leader, for a
    forwarded request, without a known leader, or when the leader does not answer in time:
    the caller then answers from its own state and says the live part is unknown."""
    replica = request.app[REPLICA]
    leader = replica.leader_url()
    if replica.is_leader() or not leader or request.headers.get(FORWARDED) \
            or leader.rstrip("/") == request.app[CONFIG].api_url.rstrip("/"):
        return None
    try:
        async with request.app[PEER_HTTP].get(leader.rstrip("/") + request.path_qs, headers=_forward_headers(request),
                                              timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                return None
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.debug("leader read failed leader=%s path=%s error=%r", leader, request.path, exc)
        return None
    return body if isinstance(body, dict) else None


def _forward_headers(request: web.Request) -> dict[str, str]:
    headers = {FORWARDED: "1"}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    return headers


async def forward(request: web.Request, *, stream: bool) -> web.StreamResponse:
    """Send the request to the leader and pass its answer through (streamed when `stream`)."""
    replica = request.app[REPLICA]
    leader = replica.leader_url()
    if request.headers.get(FORWARDED) or not leader or leader.rstrip("/") == request.app[CONFIG].api_url.rstrip("/"):
        raise NotApplied("no leader to read logs from; retry", {"retry_after_s": 1, "leader_url": None})
    timeout = aiohttp.ClientTimeout(total=None if stream else 30.0, sock_connect=2.0,
                                    sock_read=FOLLOW_WAIT_S + 3 * ASK_MARGIN_S)
    url = leader.rstrip("/") + request.path_qs
    try:
        async with request.app[PEER_HTTP].get(url, headers=_forward_headers(request), timeout=timeout) as upstream:
            if upstream.status != 200 or not stream:
                data = await upstream.read()
                return web.Response(body=data, status=upstream.status, content_type=upstream.content_type,
                                    headers=_passed_headers(upstream))
            resp = web.StreamResponse(headers={"Content-Type": upstream.headers.get("Content-Type", ""),
                                               "Cache-Control": "no-store"})
            await resp.prepare(request)
            try:
                async for data in upstream.content.iter_chunked(64 * 1024):
                    await resp.write(data)
            except (aiohttp.ClientError, TimeoutError):
                pass  # the leader went away mid-stream: the caller resumes from its offset elsewhere
            await resp.write_eof()
            return resp
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NotApplied(f"leader {leader} unreachable: {type(exc).__name__}",
                         {"retry_after_s": 1, "leader_url": None}) from None


def _passed_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: upstream.headers[k] for k in ("Retry-After", "WWW-Authenticate") if k in upstream.headers}


def peer_session(cfg: NodeConfig) -> aiohttp.ClientSession:
    """The session a follower forwards with: the same TLS trust and client certificate as the
    dashboard's peer calls; the caller's credentials are forwarded, none of its own."""
    ctx = (client_context(cfg.ca_file or cfg.tls_client_ca, cfg.tls_cert, cfg.tls_key) if cfg.tls_cert
           else client_context(cfg.ca_file))
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx if ctx else True, limit=64))


async def peer_http_ctx(app: web.Application) -> AsyncIterator[None]:
    app[PEER_HTTP] = peer_session(app[CONFIG])
    yield
    await app[PEER_HTTP].close()


__all__ = ["ASK_MARGIN_S", "FOLLOW_WAIT_S", "FORWARDED", "forward", "leader_json", "peer_http_ctx", "peer_session",
           "progress_of"]
