"""`haco coordinator --join URL`: a new replica joins a running cluster (live membership).

1. Before Raft starts, `learn_members` reads `GET /api/members` from the cluster: the new replica
   starts with that configuration, in which it is not a member, so it never stands for election
   and counts for nothing. If no URL answers it starts knowing no member at all (inert the same
   way); a configuration it learned earlier (in its journal or snapshot) wins over either.
2. Once its API serves, `ask_to_join` posts `POST /api/members` for itself (following the leader),
   with an admin token minted from the token secret: the leader checks it, adds it as a learner,
   waits for it to catch up and promotes it (haco/replica/membership.py). Already a voter in the
   leader's configuration: nothing to do (its own, local configuration is not trusted: it may
   have been removed meanwhile). Refused: logged, and the replica keeps running as a non-member.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from haco.config import NodeConfig
from haco.replica.node import Replica
from haco.server.routes.tokens import peer_session

log = logging.getLogger(__name__)

LEARN_S = 15.0  #: how long a starting replica tries to read the cluster's members
JOIN_S = 300.0  #: how long it keeps asking to be added (leader elections, a change in progress)


async def learn_members(cfg: NodeConfig) -> list[list[Any]]:
    """The cluster's configuration as [[id, addr, voter, meta]], or this replica alone as a non-voter."""
    deadline = time.monotonic() + LEARN_S
    while time.monotonic() < deadline:
        for url in cfg.join:
            try:
                async with peer_session(cfg) as http, http.get(url + "/api/members") as resp:
                    body: Any = await resp.json() if resp.status == 200 else None
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                log.info("join: %s does not answer (%s)", url, type(exc).__name__)
                continue
            if isinstance(body, dict) and isinstance(body.get("members"), list):
                members = [[str(m["id"]), str(m["raft_addr"]), bool(m["voter"]), {"url": str(m["api_url"])}]
                           for m in body["members"] if m.get("id") != cfg.id]
                log.info("join: learned %d members from %s", len(members), url)
                return members
        await asyncio.sleep(1.0)
    log.warning("join: no replica of %s answered; starting as a non-member until the cluster reaches this one",
                ",".join(cfg.join))
    return [[cfg.id, cfg.raft_addr, False, {"url": cfg.api_url}]]


async def ask_to_join(cfg: NodeConfig, replica: Replica) -> None:
    """Ask the cluster to add this replica; retries through elections and a change in progress."""
    body = {"id": cfg.id, "raft_addr": cfg.raft_addr, "api_url": cfg.api_url, "catch_up_s": cfg.join_catch_up_s}
    deadline = time.monotonic() + JOIN_S
    urls = list(cfg.join)
    attempt = 0
    while time.monotonic() < deadline:
        url = urls[attempt % len(urls)]
        attempt += 1
        try:
            async with peer_session(cfg) as http, http.post(
                    url + "/api/members", json=body,
                    timeout=aiohttp.ClientTimeout(total=cfg.join_catch_up_s + 30)) as resp:
                answer: Any = await resp.json()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.info("join: %s does not answer (%s)", url, type(exc).__name__)
            await asyncio.sleep(1.0)
            continue
        if status == 200:
            log.info("join: added to the cluster as a voter (%s)", "already" if answer.get("already") else "now")
            return
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        leader_url = (error.get("detail") or {}).get("leader_url")
        if status == 503 and isinstance(leader_url, str) and leader_url:
            urls = [leader_url.rstrip("/"), *cfg.join]
            attempt = 0
        elif status == 409 and "in progress" not in str(error.get("message", "")) \
                and "not committed" not in str(error.get("message", "")):
            log.error("join: refused: %s", error.get("message"))
            return
        await asyncio.sleep(1.0)
    log.error("join: not added within %.0fs", JOIN_S)
