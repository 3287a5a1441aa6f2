"""Live membership (`haco operator members|add-replica|remove-replica`): list, add and remove replicas.

Changes run on the leader (haco/replica/membership.py); a follower answers 503 with the leader's
URL and the client retries there. Before an add proposes anything, the leader checks that the new
replica answers at its URL as that id, accepts this cluster's token, runs code that knows membership
entries (code version 4) and that its Raft port accepts connections: an unreachable replica is
refused with nothing written. A replica with another Raft password passes these checks and is
refused by the learner step (it never catches up, and is removed again).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from aiohttp import web

from haco.config import NodeConfig
from haco.errors import NotApplied
from haco.replica.membership import MembershipRefused
from haco.server.keys import CONFIG, REPLICA
from haco.server.requests import raise_bad, read_json
from haco.server.routes.tokens import ensure_cluster_version, peer_session

routes = web.RouteTableDef()

MEMBERSHIP_SINCE = 4  #: code version that knows the Raft fork's membership entries
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ADDR = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,253}:[0-9]{1,5}$")
CATCH_UP_S_DEFAULT = 30.0
PROBE_TIMEOUT_S = 3.0


def _membership(request: web.Request) -> Any:
    membership = getattr(request.app[REPLICA], "membership", None)
    if membership is None:
        raise NotApplied("this replica has no Raft node", {"retry_after_s": 1})
    return membership


@routes.get("/api/members")
async def members(request: web.Request) -> web.Response:
    replica = request.app[REPLICA]
    membership = getattr(replica, "membership", None)
    if membership is None:
        cfg = replica.cfg
        rows = [{"id": cfg.id, "raft_addr": cfg.raft_addr, "api_url": cfg.api_url, "voter": True, "self": True}]
        rows += [{"id": p.id, "raft_addr": p.raft_addr, "api_url": p.api_url, "voter": True, "self": False}
                 for p in cfg.peers]
        return web.json_response({"members": rows, "leader": replica.leader_id(), "leader_url": replica.leader_url(),
                                  "in_flight": False, "busy": None, "learned": False,
                                  "index": replica.applied_index})
    return web.json_response(membership.view())


def _add_body(body: Any) -> tuple[str, str, str, float]:
    if not isinstance(body, dict) or set(body) - {"id", "raft_addr", "api_url", "catch_up_s"}:
        raise_bad("INVALID", 'body must be {"id": ..., "raft_addr": "HOST:PORT", "api_url": "http://HOST:PORT"}')
    node_id, addr, url = body.get("id"), body.get("raft_addr"), body.get("api_url")
    if not isinstance(node_id, str) or not _ID.match(node_id):
        raise_bad("INVALID", "id must be 1-63 letters, digits, '.', '_' or '-'", {"field": "id"})
    if not isinstance(addr, str) or not _ADDR.match(addr) or not 0 < int(addr.rsplit(":", 1)[1]) < 65536:
        raise_bad("INVALID", "raft_addr must be HOST:PORT", {"field": "raft_addr"})
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+$", url.rstrip("/")):
        raise_bad("INVALID", "api_url must be http(s)://HOST:PORT", {"field": "api_url"})
    catch_up = body.get("catch_up_s", CATCH_UP_S_DEFAULT)
    if type(catch_up) not in (int, float) or not 1 <= catch_up <= 600:
        raise_bad("INVALID", "catch_up_s must be a number from 1 to 600", {"field": "catch_up_s"})
    return str(node_id), str(addr), str(url).rstrip("/"), float(catch_up)


@routes.post("/api/members")
async def add_member(request: web.Request) -> web.Response:
    node_id, addr, url, catch_up_s = _add_body(await read_json(request))
    replica = request.app[REPLICA]
    membership = _membership(request)
    if not replica.is_leader():
        raise NotApplied("membership changes are made on the leader", {"leader_url": replica.leader_url(),
                                                                      "retry_after_s": 0.2})
    known = next((m for m in membership.members() if m.id == node_id), None)
    if known is None or not known.voter:
        await ensure_cluster_version(replica, request.app[CONFIG], MEMBERSHIP_SINCE)
        await probe(request.app[CONFIG], node_id, addr, url)
    return web.json_response(await membership.add(node_id, addr, url, catch_up_s=catch_up_s))


@routes.delete("/api/members/{member_id}")
async def remove_member(request: web.Request) -> web.Response:
    node_id = request.match_info["member_id"]
    if not _ID.match(node_id):
        raise_bad("INVALID", "member id must be 1-63 letters, digits, '.', '_' or '-'", {"field": "id"})
    return web.json_response(await _membership(request).remove(node_id))


async def probe(cfg: NodeConfig, node_id: str, raft_addr: str, api_url: str) -> None:
    """Refuse (MembershipRefused, nothing written) a replica that is not reachable as `node_id`."""
    def refused(why: str, kind: str) -> MembershipRefused:
        return MembershipRefused(f"{node_id} refused before any change: {why}", {"id": node_id, "refused": kind})
    try:
        async with peer_session(cfg) as http, http.get(api_url + "/api/cluster",
                                                       timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as resp:
            status = resp.status
            info: Any = await resp.json() if status == 200 else None
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise refused(f"its API at {api_url} does not answer ({type(exc).__name__})", "unreachable") from None
    if status in (401, 403):
        raise refused(f"its API at {api_url} refuses this cluster's token (another token secret?)", "auth")
    if status != 200 or not isinstance(info, dict):
        raise refused(f"its API at {api_url} answered {status}", "unreachable")
    if info.get("id") != node_id or info.get("raft_addr") != raft_addr:
        raise refused(f"{api_url} is replica {info.get('id')!r} with Raft address {info.get('raft_addr')!r}", "identity")
    if not isinstance(info.get("code_version"), int) or info["code_version"] < MEMBERSHIP_SINCE:
        raise refused(f"it runs code version {info.get('code_version')}; {MEMBERSHIP_SINCE} is needed", "version")
    host, _, port = raft_addr.rpartition(":")
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.close()
    except (OSError, TimeoutError):
        raise refused(f"its Raft port {raft_addr} does not accept connections", "unreachable") from None
