"""`GET /api/dashboard`: everything the dashboard page (`GET /`, static/index.html) shows, in one read.

The replica asks its peers for their `/api/cluster` itself (a browser could not: the peers' pod
addresses are not reachable from outside a cluster, and they are other origins), and the leader for
its worker table (workers connect to the leader: only its hub knows their connections and load),
forwarding the caller's Authorization header. Jobs, the queue and the named queues are this replica's
local view at its applied index.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

import aiohttp
from aiohttp import web

from raft_state import queries
from raft_state.records import Job, JobStatus

from haco.config import NodeConfig
from haco.health import verdict
from haco.replica.node import Replica
from haco.security.tls import client_context
from haco.wire import job_json, queue_json, worker_json
from haco.scheduler.core import now_ms
from haco.server.keys import CONFIG, HUB, REPLICA
from haco.server.rates import RATES

PEER_TIMEOUT_S = 1.0
RECENT_JOBS = 25
RECENT_SCAN = 400  #: newest jobs looked at to pick the most recent
REASONS_MAX = 10  #: pending jobs whose reason is computed per refresh
IMPLICIT_QUEUES_SHOWN = 50  #: queue names without a record listed one by one; the rest summed as "(other)"


async def snapshot(request: web.Request) -> dict[str, Any]:
    replica = request.app[REPLICA]
    hub = request.app[HUB]
    me = replica.info()
    auth = request.headers.get("Authorization")
    state = replica.state
    workers = [worker_json(w, connected=w.worker_id in hub.conns, load=_load(hub, w.worker_id))
               for w in sorted(list(state.workers.values()), key=lambda w: w.seq)]
    async with _peer_session(request.app[CONFIG]) as session:
        peers, leader_workers = await asyncio.gather(
            asyncio.gather(*(_peer_info(session, p, auth) for p in me["peers"])),
            _leader_workers(session, me, auth))
    recent, (named, other) = await asyncio.gather(asyncio.to_thread(_recent_jobs, replica),
                                                  asyncio.to_thread(_queues, replica))
    shown = leader_workers or workers
    rows = [{"id": me["id"], "url": me.get("api_url"), "info": me}, *peers]
    health = verdict(rows, shown)
    return {
        "replica": me["id"], "leader": me["leader"], "term": me["term"], "applied_index": me["applied_index"],
        "replicas": _replica_rows(rows, health), "workers": shown,
        "workers_from": me["leader"] if leader_workers is not None else me["id"],
        "queue": {"counts": queries.counts(state), "ready": len(state.ready), "paused": state.paused},
        "queues": named, "queues_other": other,
        "jobs": recent, "health": {k: health[k] for k in ("status", "summary", "problems")},
        "rates": request.app[RATES].series(now_ms()),
        "actions": {"undrain": _has_route(request.app, "POST", "/api/workers/{worker_id}/undrain"),
                    "queue_pause": _has_route(request.app, "POST", "/api/queues/{queue}/pause")},
    }


def _has_route(app: web.Application, method: str, path: str) -> bool:
    """Whether this replica's API has a route: the page shows a button only for what exists."""
    return any(r.method == method and r.resource is not None and r.resource.canonical == path
               for r in app.router.routes())


def _replica_rows(rows: list[dict[str, Any]], health: dict[str, Any]) -> list[dict[str, Any]]:
    """Each replica's figures, its lag (entries behind the leader's commit index) and the verdict's
    problems that name it (`problems`: then the page flags the row)."""
    infos = [r["info"] for r in rows if r["info"] is not None]
    leader = next((i for i in infos if i.get("role") == "leader"), None)
    commit = int((leader or {}).get("commit_index") or 0)
    out = []
    for r in rows:
        name = str((r["info"] or {}).get("id") or r["id"])
        mine = [p["what"] for p in health["problems"] if re.search(rf"\b{re.escape(name)}\b", p["what"])]
        if r["info"] is None:
            out.append({"id": r["id"], "api_url": r["url"], "role": None, "reachable": False,
                        "error": r.get("error"), "problems": mine})
            continue
        row = _replica_row(r["info"], reachable=True)
        row["lag"] = max(0, commit - int(r["info"].get("applied_index") or 0)) if leader is not None else None
        row["problems"] = mine
        out.append(row)
    return out


async def _leader_workers(session: aiohttp.ClientSession, me: dict[str, Any], authorization: str | None
                          ) -> list[dict[str, Any]] | None:
    """Workers connect to the leader, so only its hub knows who is connected and their load."""
    if me["role"] == "leader" or not me["leader_url"]:
        return None
    headers = {"Authorization": authorization} if authorization else {}
    try:
        async with session.get(me["leader_url"] + "/api/workers", headers=headers) as resp:
            if resp.status == 200:
                body = await resp.json()
                return list(body["workers"])
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
        pass
    return None


def _replica_row(info: dict[str, Any], *, reachable: bool) -> dict[str, Any]:
    keys = ("id", "api_url", "role", "leader", "term", "commit_index", "applied_index", "log_entries",
            "snapshot_index", "snapshot_age_s", "digest", "code_version", "cluster_version", "has_quorum")
    return {**{k: info.get(k) for k in keys}, "reachable": reachable}


def _peer_session(cfg: NodeConfig) -> aiohttp.ClientSession:
    """Peers' APIs over the same TLS as this replica's (trusting `ca_file`, presenting this replica's
    certificate where peers require mTLS); no credentials of its own: the caller's are forwarded."""
    ctx = (client_context(cfg.ca_file or cfg.tls_client_ca, cfg.tls_cert, cfg.tls_key) if cfg.tls_cert
           else client_context(cfg.ca_file))
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx if ctx else True),
                                 timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S))


async def _peer_info(session: aiohttp.ClientSession, peer: dict[str, Any], authorization: str | None
                     ) -> dict[str, Any]:
    """{"id", "url", "info": its /api/cluster answer, or None and "error"}: haco.health's row shape."""
    headers = {"Authorization": authorization} if authorization else {}
    try:
        async with session.get(peer["api_url"] + "/api/cluster", headers=headers) as resp:
            if resp.status == 200:
                info = await resp.json()
                if isinstance(info, dict):
                    return {"id": peer["id"], "url": peer["api_url"], "info": info}
                error = "not a JSON object"
            else:
                error = f"HTTP {resp.status}"
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        error = type(exc).__name__
    return {"id": peer["id"], "url": peer["api_url"], "info": None, "error": error}


def _load(hub: Any, worker_id: str) -> Any:
    conn = hub.conns.get(worker_id)
    return None if conn is None else conn.load


def _queues(replica: Replica) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every named queue as GET /api/queues shows it, and the implicit names past the bound summed
    (worker thread: the summary reads the ready queue's classes under the state lock)."""
    with replica.state_lock:
        rows, other = queries.queue_summaries(replica.state, IMPLICIT_QUEUES_SHOWN)
    return [queue_json(q) for q in rows], None if other is None else queue_json(other)


def _recent_jobs(replica: Replica) -> list[dict[str, Any]]:
    """The newest jobs, newest first, with why each pending one waits (worker thread).

    Jobs are inserted in submission order, so the dict's tail holds the newest; a reversed walk
    is cut short if the tick thread inserts meanwhile (then the next refresh shows them).
    """
    jobs = replica.state.jobs
    picked: list[Job] = []
    try:
        for job_id in itertools.islice(reversed(jobs), RECENT_SCAN):
            job = jobs.get(job_id)
            if job is not None:
                picked.append(job)
    except RuntimeError:  # the dict changed size during the walk
        pass
    picked.sort(key=lambda j: j.seq, reverse=True)
    out = []
    reasons_left = REASONS_MAX
    for job in picked[:RECENT_JOBS]:
        reason = None
        if job.status is JobStatus.PENDING and reasons_left > 0:
            reasons_left -= 1
            with replica.state_lock:
                reason = queries.why_pending(replica.state, job.job_id)
        out.append({**job_json(job, full=False), "pending_reason": reason})
    return out
