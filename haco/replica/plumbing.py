"""Plumbing under `Replica` (haco/replica/node.py): the fault-injecting transport the chaos
harness drives, the upgrade of a previous-release snapshot's raft data, fsync of files and
directories, the small helpers of proposal futures. Nothing here knows about jobs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from haco.errors import OutcomeUnknown

from .raft import TCPTransport

log = logging.getLogger("haco.replica")


class FaultTransport(TCPTransport):
    """Chaos seam: the Raft transport, cutting this replica off from the peers a blocklist names.

    Used only when `HACO_FAULT_FILE` is set (by `python -m chaos`). The file is JSON,
    `{"<own raft addr>": ["<peer raft addr>", ...], ...}`; the harness rewrites it atomically and
    this replica re-reads it when its identity changes (one stat per tick, tick thread only). A
    blocked peer's connection is closed, never re-dialled, refused when it dials in (after its
    hello authenticated it) and nothing is sent to it. A cut is symmetric only when both replicas
    list each other, so A<->B cut while both reach C is two entries.
    """

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        self._fault_file = Path(os.environ["HACO_FAULT_FILE"])
        self._fault_seen: tuple[int, int, int] | None = None
        self._blocked: frozenset[str] = frozenset()
        super().__init__(syncObj, selfNode, otherNodes)

    def _onTick(self) -> None:
        try:
            st = self._fault_file.stat()
            seen: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            seen = None
        if seen != self._fault_seen:
            self._fault_seen = seen
            self._reload_blocklist(seen is not None)
        super()._onTick()

    def _reload_blocklist(self, exists: bool) -> None:
        try:
            table = json.loads(self._fault_file.read_text()) if exists else {}
            blocked = frozenset(str(a) for a in table.get(self._selfNode.address, ()))
        except (OSError, ValueError, AttributeError) as exc:  # half-written or bad: keep the old list
            log.warning("fault file unreadable path=%s: %s", self._fault_file, exc)
            self._fault_seen = None
            return
        if blocked != self._blocked:
            log.info("fault blocklist replica=%s blocked=%s", self._selfNode.address, ",".join(sorted(blocked)))
        self._blocked = blocked
        for node, conn in list(self._connections.items()):
            if getattr(node, "address", None) in blocked:
                conn.disconnect()  # fires _onDisconnected, whose re-dial _connectIfNecessarySingle refuses

    def _connectIfNecessarySingle(self, node: Any) -> bool:
        if getattr(node, "address", None) in self._blocked:
            return False
        return bool(super()._connectIfNecessarySingle(node))

    def _acceptPeer(self, node: Any) -> bool:
        return getattr(node, "address", None) not in self._blocked

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        if getattr(node, "address", None) not in self._blocked:
            super()._onMessageReceived(node, message)

    def send(self, node: Any, message: Any) -> bool:
        if getattr(node, "address", None) in self._blocked:
            return False
        return bool(super().send(node, message))


def fsync_info(journal: Any) -> dict[str, Any]:
    """The journal's sync counters for `GET /api/cluster`."""
    if journal is None or not journal.fsync:
        return {"enabled": False}
    return {"enabled": True, "syncs": journal.syncs, "seconds": round(journal.sync_seconds, 3)}


def rewrite_raft_data(path: Path, raft_data: bytes) -> None:
    """Replace the raft data blob of the snapshot at `path` (the previous release's pickle becomes
    msgpack before the file can be streamed to a peer): on a copy, renamed into place, synced."""
    tmp = path.with_name(path.name + ".upgrade")
    shutil.copyfile(path, tmp)
    con = duckdb.connect(str(tmp))
    try:
        con.execute("UPDATE meta SET v = ? WHERE k = 'raft_data'", [raft_data])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime, size) of a file, None when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory (a rename is durable once its directory is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def time_out(fut: asyncio.Future[Any]) -> None:
    """A proposal's caller stops waiting: its outcome is unknown (a queued one is never proposed)."""
    if not fut.done():
        fut.set_exception(OutcomeUnknown("the write was not confirmed in time; retry with the same key"))


class Once:
    """Calls `fn` the first time it is called, never again (an entry settles or times out once)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self.fn = self.fn, None
        if fn is not None:
            fn()
