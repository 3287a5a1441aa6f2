"""The application's typed keys, and the Protocols the routes see behind them.

Routes find what they need on `request.app[KEY]`. `REPLICA` is typed as `Replicator`, the part of
`haco.replica.node.Replica` that the server uses, so route tests can run over an in-process fake
(tests/server) instead of a Raft cluster. This module imports no route, so routes import it and
never each other or the app factory.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import aiohttp
from aiohttp import web

from raft_state import Command, State
from raft_state.outcomes import Outcome

from haco.config import NodeConfig, Peer

from haco.results.store import ResultsStore
from haco.scheduler.core import Scheduler
from haco.server.hub import Hub
from haco.server.waiters import JobWaiters

if TYPE_CHECKING:
    from haco.replica.node import Applied

Authorize = Callable[[web.Request], Awaitable[None]]


class Replicator(Protocol):
    """What the server needs from its replica: the applied state, proposals, and cluster facts."""

    cfg: NodeConfig
    state: State  #: the applied state; read it on the loop only, or under `state_lock` off it
    state_lock: threading.Lock  #: held by whoever applies an entry
    dump_path: Path
    snapshot_index: int
    snapshot_failures: int  #: snapshot writes failed in a row
    admission_refused: int  #: proposals refused by admission control (503)
    forwarded: int  #: commands proposed while following

    @property
    def applied_index(self) -> int: ...

    def is_leader(self) -> bool: ...

    def leader_id(self) -> str | None: ...

    def leader_url(self) -> str | None: ...

    def peers(self) -> list[Peer]: ...  #: the other members of the configuration in effect

    def info(self) -> dict[str, Any]: ...

    async def propose(self, cmd: Command, *, timeout_s: float | None = None) -> tuple[int, Outcome]: ...

    def propose_batch(self, cmds: list[Command]) -> list[asyncio.Future[tuple[int, Outcome]]]: ...

    async def wait_applied(self, index: int, timeout_s: float) -> bool: ...

    def add_listener(self, fn: Callable[[Applied], None]) -> None: ...

    def add_role_listener(self, fn: Callable[[str], None]) -> None: ...

    def force_snapshot(self) -> None: ...

    def open_dump(self) -> tuple[BinaryIO, int] | None: ...


REPLICA = web.AppKey("replica", Replicator)
CONFIG = web.AppKey("config", NodeConfig)
HUB = web.AppKey("hub", Hub)
SCHEDULER = web.AppKey("scheduler", Scheduler)
WAITERS = web.AppKey("waiters", JobWaiters)
AUTHORIZE: web.AppKey[Authorize] = web.AppKey("authorize")
RESULTS: web.AppKey[ResultsStore | None] = web.AppKey("results")
PEER_HTTP = web.AppKey("peer_http", aiohttp.ClientSession)  #: forwards reads to the leader (log_forward.py)
