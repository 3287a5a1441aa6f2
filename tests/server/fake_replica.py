"""An in-process stand-in for haco.replica.node.Replica: the `Replicator` the routes see
(haco/server/keys.py), without Raft. Commands apply to a real raft_state.State at once, in order,
as one log entry each; it always leads (or never, with `leading=False`). What the routes do with
the state, the outcomes and the errors is the real code; only replication is left out."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from raft_state import CODE_VERSION, Command, State
from raft_state.outcomes import Outcome

from haco.config import NodeConfig
from haco.replica.node import Applied


class FakeReplica:
    def __init__(self, cfg: NodeConfig, *, leading: bool = True) -> None:
        self.cfg = cfg
        self.state = State()
        self.state_lock = threading.Lock()
        self.dump_path = Path(cfg.data_dir) / "snapshot.duckdb"
        self.snapshot_index = 0
        self.snapshot_failures = 0
        self.leading = leading
        self.index = 0
        self.admission_refused = 0  #: counters /metrics reads
        self.forwarded = 0
        self.proposed: list[Command] = []
        self._listeners: list[Callable[[Applied], None]] = []
        self._role_listeners: list[Callable[[str], None]] = []

    @property
    def applied_index(self) -> int:
        return self.index

    def is_leader(self) -> bool:
        return self.leading

    def peers(self) -> list[Any]:
        return list(self.cfg.peers)

    def leader_id(self) -> str | None:
        return self.cfg.id if self.leading else None

    def leader_url(self) -> str | None:
        return self.cfg.api_url if self.leading else None

    def info(self) -> dict[str, Any]:
        digest = f"{self.state.digest():016x}"
        return {"id": self.cfg.id, "api_url": self.cfg.api_url, "raft_addr": self.cfg.raft_addr,
                "role": "leader" if self.leading else "follower", "leader": self.leader_id(),
                "leader_url": self.leader_url(), "term": 1, "commit_index": self.index, "applied_index": self.index,
                "log_entries": self.index, "has_quorum": self.leading, "snapshot_index": 0, "snapshot_age_s": None,
                "snapshot_seconds": 0.0, "snapshot_installs": 0, "digest": digest, "digests": [[self.index, digest]],
                "elections": 1, "tick_stalls": 0, "tick_stall_max_s": 0.0, "peers": [], "in_flight": 0,
                "append_sent": {}, "code_version": CODE_VERSION, "cluster_version": self.state.cluster_version,
                "version": "test", "fsync": None, "journal": None}

    async def propose(self, cmd: Command, *, timeout_s: float | None = None) -> tuple[int, Outcome]:
        return self._apply(cmd)

    def propose_batch(self, cmds: list[Command]) -> list[asyncio.Future[tuple[int, Outcome]]]:
        loop = asyncio.get_running_loop()
        futures = []
        for cmd in cmds:
            fut: asyncio.Future[tuple[int, Outcome]] = loop.create_future()
            fut.set_result(self._apply(cmd))
            futures.append(fut)
        return futures

    def _apply(self, cmd: Command) -> tuple[int, Outcome]:
        with self.state_lock:
            outcome = self.state.apply(cmd)
            ended, self.state.ended = self.state.ended, []
            self.index += 1
        self.proposed.append(cmd)
        event = Applied(self.index, tuple(ended), False)
        for fn in self._listeners:
            fn(event)
        return self.index, outcome

    async def wait_applied(self, index: int, timeout_s: float) -> bool:
        return index <= self.index

    def add_listener(self, fn: Callable[[Applied], None]) -> None:
        self._listeners.append(fn)

    def add_role_listener(self, fn: Callable[[str], None]) -> None:
        self._role_listeners.append(fn)

    def force_snapshot(self) -> None:
        """Dump the state at once, as a replica's background writer would (with fake raft data)."""
        from raft_state import snapshot
        self.dump_path.parent.mkdir(parents=True, exist_ok=True)
        with self.state_lock:
            cap, index = snapshot.capture(self.state), self.index
        raft_data = msgpack.packb([[b"\x04", index, 1], [b"\x04", max(index - 1, 0), 1], []], use_bin_type=True)
        snapshot.dump(cap, self.dump_path, raft_index=index, raft_term=1, raft_data=raft_data)
        self.snapshot_index = index

    def open_dump(self) -> tuple[BinaryIO, int] | None:
        try:
            return open(self.dump_path, "rb"), self.snapshot_index
        except FileNotFoundError:
            return None
