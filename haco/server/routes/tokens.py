"""Token revocation (`POST /api/tokens/revoke`, admin) and the cluster-version step it needs.

`RevokeToken` is gated on cluster version 2. A fresh cluster starts at 1, so the first
revocation asks every peer's `/api/cluster` for its `code_version` (replica-to-replica HTTP,
same TLS, a short-lived admin token minted with the shared secret) and, when all run code that
knows version 2, proposes `SetClusterVersion` first. A peer that does not answer blocks the
step (503, retry once it is back): an old replica would otherwise refuse the log entry.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import web

from raft_state import CODE_VERSION, Accepted, RevokeToken, SetClusterVersion

from haco.config import NodeConfig
from haco.errors import NotApplied, Rejected
from haco.replica.node import Replica
from haco.scheduler.core import now_ms
from haco.security.tls import client_context
from haco.security.tokens import TTL_S_MAX, TokenError, issue, unverified_claims, valid_token_id
from haco.server.keys import CONFIG, REPLICA
from haco.server.requests import raise_bad, read_json, require_accepted

routes = web.RouteTableDef()
PEER_TIMEOUT_S = 3.0


@routes.post("/api/tokens/revoke")
async def revoke(request: web.Request) -> web.Response:
    """Body `{"token": "haco1..."}` (id and expiry read from it) or `{"token_id": ID}` (kept
    for the longest a token can live, TTL_S_MAX)."""
    body = await read_json(request)
    if not isinstance(body, dict) or len(body) != 1 or not isinstance(next(iter(body.values())), str) \
            or set(body) - {"token", "token_id"}:
        raise_bad("INVALID", 'body must be {"token": "<token>"} or {"token_id": "<id>"}', {"field": "token"})
    if "token" in body:
        try:
            claims = unverified_claims(body["token"])
        except TokenError as exc:
            raise_bad("INVALID", f"token: {exc.message}", {"field": "token"})
        token_id, expires_at_ms = claims.id, claims.expires_at_ms
    else:
        token_id = body["token_id"]
        if not valid_token_id(token_id):
            raise_bad("INVALID", "token_id must be 1 to 128 characters of [A-Za-z0-9_-]", {"field": "token_id"})
        expires_at_ms = now_ms() + TTL_S_MAX * 1000
    replica = request.app[REPLICA]
    await ensure_cluster_version(replica, request.app[CONFIG], RevokeToken.SINCE_VERSION)
    index, outcome = await replica.propose(RevokeToken(now_ms(), token_id, expires_at_ms))
    outcome = require_accepted(outcome)
    return web.json_response({"token_id": token_id, "expires_at_ms": expires_at_ms, "index": index,
                              "already": outcome.already})


async def ensure_cluster_version(replica: Replica, cfg: NodeConfig, needed: int) -> None:
    """Raise the replicated cluster version to `needed` if every replica's code knows it."""
    if replica.state.cluster_version >= needed:
        return
    if CODE_VERSION < needed:
        raise_bad("VERSION_GATED", f"this replica runs code version {CODE_VERSION}; {needed} is needed")
    peers = replica.peers()  # the configuration in effect (membership changes), learners included
    versions = await asyncio.gather(*(_peer_code_version(cfg, p.api_url) for p in peers))
    missing = [p.id for p, v in zip(peers, versions) if v is None]
    if missing:
        raise NotApplied(f"cannot confirm the code version of {', '.join(missing)}; retry when every replica is up",
                         {"replicas": missing, "retry_after_s": 2})
    old = [f"{p.id}={v}" for p, v in zip(peers, versions) if v is not None and v < needed]
    if old:
        raise_bad("VERSION_GATED", f"replicas run code older than version {needed}: {', '.join(old)}; upgrade them",
                  {"replicas": old})
    _, outcome = await replica.propose(SetClusterVersion(now_ms(), needed))
    if not isinstance(outcome, Accepted) and replica.state.cluster_version < needed:
        raise Rejected(str(outcome.code), outcome.message, outcome.detail)


def peer_session(cfg: NodeConfig) -> aiohttp.ClientSession:
    """A session for calls to peers' APIs: trusts `ca_file` (else the client CA), presents this
    replica's certificate (it carries clientAuth) so a peer requiring mTLS accepts it, and
    sends a 60 s admin token minted with the shared secret."""
    ctx = client_context(cfg.ca_file or cfg.tls_client_ca, cfg.tls_cert, cfg.tls_key) if cfg.tls_cert else \
        client_context(cfg.ca_file)
    headers: dict[str, str] = {}
    if cfg.token_secret:
        token, _ = issue(cfg.token_secret.encode(), "admin", 60, now_s=time.time())
        headers["Authorization"] = f"Bearer {token}"
    return aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(ssl=ctx if ctx else True),
                                 timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S))


async def _peer_code_version(cfg: NodeConfig, url: str) -> int | None:
    try:
        async with peer_session(cfg) as http, http.get(url.rstrip("/") + "/api/cluster") as resp:
            if resp.status != 200:
                return None
            info: Any = await resp.json()
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None
    version = info.get("code_version") if isinstance(info, dict) else None
    return version if type(version) is int else None
