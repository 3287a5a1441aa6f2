"""pysyncobj plumbing under `Replica` (haco/replication.py): the fault-injecting transport the
chaos harness drives, the fsync journal, SyncObj construction, and fsync of files and directories.
With replication.py, the only code that imports pysyncobj; nothing here knows about jobs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pysyncobj.syncobj as _pso_syncobj
from pysyncobj import SyncObj
from pysyncobj.journal import FileJournal
from pysyncobj.transport import TCPTransport

log = logging.getLogger("haco.replication")


class _FaultTransport(TCPTransport):  # type: ignore[misc]
    """Chaos seam: TCPTransport that cuts this replica off from the peers a blocklist names.

    Used only when `HACO_FAULT_FILE` is set (by `python -m chaos`). The file is JSON,
    `{"<own raft addr>": ["<peer raft addr>", ...], ...}`; the harness rewrites it atomically and
    this replica re-reads it when its identity changes (one stat per tick, tick thread only). A
    blocked peer's connection is closed, never re-dialled, refused when it dials in (peers
    identify themselves by address after the key exchange) and nothing is sent to it. A cut is
    symmetric only when both replicas list each other, so A<->B cut while both reach C is two entries.
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

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:
        if isinstance(message, str) and message in self._blocked:  # the peer's self-address
            self._unknownConnections.discard(conn)
            conn.disconnect()
            return
        super()._onIncomingMessageReceived(conn, message)

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        if getattr(node, "address", None) not in self._blocked:
            super()._onMessageReceived(node, message)

    def send(self, node: Any, message: Any) -> bool:
        if getattr(node, "address", None) in self._blocked:
            return False
        return bool(super().send(node, message))


class _FsyncJournal(FileJournal):  # type: ignore[misc]
    """`--fsync`: pysyncobj's FileJournal, made durable before pysyncobj acts on a change.

    pysyncobj 0.3.17 has no flush option (its journal is an mmap, never synced). Every path that
    writes a record goes through add/clear/deleteEntriesFrom/deleteEntriesTo, and pysyncobj sends
    nothing about a record (a follower's ack, the leader's append_entries, hence the commit and
    the client's answer) before that call returns, so msync there makes an acknowledged write
    survive a power loss on a majority. The term and vote are fsynced before pysyncobj sends a
    vote. A compaction rewrites the kept records with one msync at the end. Installed by
    swapping `pysyncobj.syncobj.createJournal` while SyncObj is built (tests/haco/test_fsync.py
    pins the internals this relies on).
    """

    def __init__(self, path: str) -> None:
        self._bulk = False
        self.syncs = 0
        self.sync_seconds = 0.0
        super().__init__(path)
        self._meta_path = path + ".meta"
        self._sync()

    def _sync(self) -> None:
        started = time.monotonic()
        self.flush()  # mmap.flush: msync(MS_SYNC) of the journal's dirty pages
        self.syncs += 1
        self.sync_seconds += time.monotonic() - started

    def add(self, command: Any, idx: int, term: int) -> None:
        super().add(command, idx, term)
        if not self._bulk:
            self._sync()

    def clear(self) -> None:
        super().clear()
        if not self._bulk:
            self._sync()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        super().deleteEntriesFrom(entryFrom)
        self._sync()

    def deleteEntriesTo(self, entryTo: int) -> None:
        self._bulk = True
        try:
            super().deleteEntriesTo(entryTo)
        finally:
            self._bulk = False
        self._sync()

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        super().setCurrentTerm(term, votedForNodeId)  # writes <journal>.meta.tmp, renames it into place
        fsync_path(self._meta_path)
        fsync_path(Path(self._meta_path).parent)


def build_syncobj(fsync: bool, *args: Any, **kwargs: Any) -> Any:
    """SyncObj(*args, **kwargs), with the fsync journal when asked (one SyncObj per process)."""
    if not fsync:
        return SyncObj(*args, **kwargs)
    original = _pso_syncobj.createJournal
    _pso_syncobj.createJournal = lambda path=None: _FsyncJournal(path) if path else original(path)
    try:
        return SyncObj(*args, **kwargs)
    finally:
        _pso_syncobj.createJournal = original


def hold_commands() -> None:
    """Stands in for SyncObj._checkCommandsToApply while leadership is handed over: the queue,
    forwarded commands included, is not drained, so the leader's log stops growing."""


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory (a rename is durable once its directory is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
