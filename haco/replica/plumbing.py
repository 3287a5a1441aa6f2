"""pysyncobj plumbing under `Replica` (haco/replica/node.py): the fault-injecting transport the
chaos harness drives, SyncObj construction on haco's journal, the stop on an entry that keeps failing
to apply, and fsync of files and directories.
With replication.py, the only code that imports pysyncobj; nothing here knows about jobs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pysyncobj.pickle as _pso_pickle
import pysyncobj.syncobj as _pso_syncobj
from pysyncobj import SyncObj
from pysyncobj.monotonic import monotonic
from pysyncobj.transport import TCPTransport

log = logging.getLogger("haco.replica.node")

#: pysyncobj's clock (CLOCK_MONOTONIC_RAW, not time.monotonic's): election deadlines are in it
raft_clock: Callable[[], float] = monotonic


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


def build_syncobj(journal: Any, *args: Any, **kwargs: Any) -> Any:
    """SyncObj(*args, **kwargs) on `journal` (haco/replica/journal.py, opened and checked by the
    caller): pysyncobj builds its journal through the module-level `createJournal`, swapped while
    SyncObj is built (one SyncObj per process; pinned in tests/replica/test_fsync.py)."""
    original = _pso_syncobj.createJournal
    _pso_syncobj.createJournal = lambda path=None: journal if path else original(path)
    try:
        return SyncObj(*args, **kwargs)
    finally:
        _pso_syncobj.createJournal = original


def fsync_info(journal: Any) -> dict[str, Any]:
    """The journal's sync counters for `GET /api/cluster`."""
    if journal is None or not journal.fsync:
        return {"enabled": False}
    return {"enabled": True, "syncs": journal.syncs, "seconds": round(journal.sync_seconds, 3)}


def stop_on_repeated_apply_failure(so: Any, guard: Any) -> None:
    """Report every entry that raises out of pysyncobj's apply loop to `guard`
    (haco/replica/journal.py ApplyGuard), which stops the process once the same index failed a
    few times running; pysyncobj alone retries it on every tick forever. Wraps
    SyncObj.__applyLogEntries, looked up on the instance by _onTick (pinned in
    tests/integration/test_replication.py)."""
    apply = so._SyncObj__applyLogEntries

    def guarded() -> Any:  # tick thread
        try:
            return apply()
        except Exception as exc:  # noqa: BLE001 - counted by the guard, then fatal
            guard.failed(so._SyncObj__raftLastApplied + 1, exc)
            return False

    so._SyncObj__applyLogEntries = guarded


def hold_commands() -> None:
    """Stands in for SyncObj._checkCommandsToApply while leadership is handed over: the queue,
    forwarded commands included, is not drained, so the leader's log stops growing."""


def watch_tick_stalls(so: Any, limit_s: float, on_stall: Callable[[float], None]) -> None:
    """Make pysyncobj's tick thread listen before it stands for election, and tell
    `on_stall(seconds)` (tick thread) after a tick that took over `limit_s` beyond its poll wait.

    pysyncobj checks the election deadline at the start of a tick, before that tick's poll reads
    what the leader sent; a thread that waited for the GIL or a CPU, applied a long batch or
    loaded a snapshot finds its deadline passed with the leader's heartbeats unread. So the
    election waits until a whole tick, poll included, ran after the deadline passed (a stalled
    poll handles only the events it had collected before the stall). Wraps SyncObj._onTick, which the autoTick
    thread looks up on every iteration, and the private __connectedToAnyone, which _onTick asks
    only once the deadline passed (both pinned in tests/integration/test_replication.py)."""
    tick = so._onTick
    connected = so._SyncObj__connectedToAnyone
    last_start = [raft_clock()]  #: when the last completed tick started

    def watched_tick(timeToWait: float = 0.0) -> None:  # noqa: N803 (pysyncobj's name)
        so.haco_stream_budget = STREAM_CHUNKS_PER_TICK  # send_append_entries spends it
        started = raft_clock()
        try:
            tick(timeToWait)
        finally:
            last_start[0] = started
            took = raft_clock() - started - timeToWait
            if took > limit_s:
                on_stall(took)

    def connected_and_listened() -> bool:
        if last_start[0] < so._SyncObj__raftElectionDeadline:  # no whole tick since the deadline passed
            return False
        return bool(connected())

    so._SyncObj__connectedToAnyone = connected_and_listened
    so._onTick = watched_tick


#: snapshot chunks (logCompactionBatchSize each, 256 KiB) a leader streams per tick, to all followers together:
#: each costs ~5-10 ms of zlib + Fernet on the tick thread; more per tick stalled a leader at 1M jobs
STREAM_CHUNKS_PER_TICK = 2


def patch_append_entries(so: Any) -> None:
    """Replace SyncObj.__sendAppendEntries (looked up on the instance at every call) with ours."""
    so._SyncObj__sendAppendEntries = lambda: send_append_entries(so)


def send_append_entries(so: Any) -> None:
    """SyncObj.__sendAppendEntries of pysyncobj 0.3.17 (source pinned in test_replication.py), with
    three changes for a follower that needs the leader's snapshot streamed:

    - pysyncobj sends no chunk while its serializer is busy, which with our background writer is
      the whole DuckDB write (20-40 s at 1M jobs, and compactions are frequent): the stream
      stalled, and pysyncobj then spun for appendEntriesPeriod (50 ms) in every call, several
      calls a tick, sending empty messages. The published dump is always complete (written
      aside, renamed into place), so it is streamed while a newer one is written.
    - With nothing to send it moves on to the next follower instead of spinning.
    - At most STREAM_CHUNKS_PER_TICK chunks per tick (watch_tick_stalls refills the budget), so
      streaming a big dump never holds the tick thread: pysyncobj streamed for up to 50 ms in
      each of several calls a tick, the leader's ticks took 300-900 ms, a follower called an
      election, and the stream (restarted in the new term) never finished.
    """
    p = "_SyncObj__"
    conf = getattr(so, p + "conf")
    setattr(so, p + "newAppendEntriesTime", raft_clock() + conf.appendEntriesPeriod)
    start = raft_clock()
    batch = conf.appendEntriesBatchSizeBytes
    raft_log, next_index = getattr(so, p + "raftLog"), getattr(so, p + "raftNextIndex")
    connected, transport = getattr(so, p + "connectedNodes"), getattr(so, p + "transport")
    serializer = getattr(so, p + "serializer")
    last_index = getattr(so, p + "getCurrentLogIndex")
    for node in getattr(so, p + "otherNodes") | getattr(so, p + "readonlyNodes"):
        if node not in connected:
            serializer.cancelTransmisstion(node)
            continue
        send_single, sending_serialized = True, False
        node_next = next_index[node]
        while node_next <= last_index() or send_single or sending_serialized:
            head = {"type": "append_entries", "term": getattr(so, p + "raftCurrentTerm"),
                    "commit_index": getattr(so, p + "raftCommitIndex")}
            if node_next > raft_log[0][1]:
                prev_idx, prev_term = getattr(so, p + "getPrevLogIndexTerm")(node_next)
                entries = []
                if node_next <= last_index():
                    entries = getattr(so, p + "getEntries")(node_next, None, batch)
                    next_index[node] = entries[-1][1] + 1
                if len(entries) == 1 and len(entries[0][0]) >= batch:
                    entry = _pso_pickle.dumps(entries[0])
                    for pos in range(0, len(entry), batch):
                        if pos == 0:
                            transmission = "start"
                        elif pos + batch >= len(entries[0][0]):  # sic (pysyncobj compares the raw entry)
                            transmission = "finish"
                        else:
                            transmission = "process"
                        transport.send(node, {**head, "transmission": transmission, "data": entry[pos:pos + batch],
                                              "prevLogIdx": prev_idx, "prevLogTerm": prev_term})
                        if node not in connected:
                            break
                else:
                    transport.send(node, {**head, "entries": entries, "prevLogIdx": prev_idx, "prevLogTerm": prev_term})
                    so.haco_sent_messages = getattr(so, "haco_sent_messages", 0) + 1
                    so.haco_sent_entries = getattr(so, "haco_sent_entries", 0) + len(entries)
                    if node not in connected:
                        break
            else:
                budget = getattr(so, "haco_stream_budget", STREAM_CHUNKS_PER_TICK)
                data = _transmission_data(serializer, node) if budget > 0 else None
                transport.send(node, {**head, "serialized": data or None})  # None: a heartbeat
                if node not in connected or not data:
                    break
                so.haco_stream_budget = budget - 1
                if data[2]:  # the last chunk
                    next_index[node] = raft_log[1][1] + 1
                    sending_serialized = False
                else:
                    sending_serialized = True
            node_next = next_index[node]
            send_single = False
            if raft_clock() - start > conf.appendEntriesPeriod:
                break


def append_sent(so: Any) -> dict[str, int]:
    """append_entries messages this node sent as leader (heartbeats included) and the log entries
    they carried, summed over followers (`GET /api/cluster`): each entry should go out once per follower."""
    return {"messages": getattr(so, "haco_sent_messages", 0), "entries": getattr(so, "haco_sent_entries", 0)}


def _transmission_data(serializer: Any, node: Any) -> Any:
    """The next chunk of the published dump for `node`, also while a newer dump is being written."""
    busy = serializer._Serializer__pid
    serializer._Serializer__pid = 0
    try:
        return serializer.getTransmissionData(node)
    finally:
        serializer._Serializer__pid = busy


def publish_streamed_dumps_under(so: Any, lock: Any) -> None:
    """Hold `lock` while pysyncobj writes (and at the end renames into place) a dump streamed from
    the leader, so the background writer never replaces it with an older snapshot of its own.

    Also answer each chunk but the last as pysyncobj answers a chunk of a big log entry
    (next_node_idx, neither success nor reset: the leader only notes the response). pysyncobj
    answers a streamed dump only once it is loaded, so the leader heard nothing for the whole
    stream, dropped the connection after its 3 s timeout, and restarted the stream from its
    first chunk: a 94 MB dump (1M jobs) never arrived."""
    serializer = so._SyncObj__serializer
    receive = serializer.setTransmissionData

    def locked_receive(data: Any) -> bool:
        with lock:
            done = bool(receive(data))
        leader = so._SyncObj__raftLeader  # append_entries set it before handing over the chunk
        if not done and data is not None and leader is not None:
            so._SyncObj__sendNextNodeIdx(leader, success=False, reset=False)
        return done

    serializer.setTransmissionData = locked_receive


def defer_compaction_while_streaming(so: Any) -> bool:
    """True, and the next compaction put off one logCompactionMinTime, while this node streams its
    dump to a follower (tick thread, from the serializer hook; the caller reports FAILED)."""
    if so is None or not so._SyncObj__serializer._Serializer__transmissions:
        return False
    so._SyncObj__lastSerializedTime = raft_clock()
    log.info("snapshot deferred: the dump is being streamed to a follower")
    return True


def cancel_transmissions(so: Any) -> None:
    """Forget every snapshot stream this node was sending (on any role change, tick thread).

    pysyncobj keeps a stream's open file and position across terms: a leader that lost and
    regained leadership resumed it mid-file, while the follower had dropped the chunks sent in
    the old term (a lower term is ignored) and appended the rest: a corrupt DuckDB file
    ("field id mismatch") that stopped the follower. Restarted streams begin with a first chunk."""
    transmissions = so._SyncObj__serializer._Serializer__transmissions
    for stream in transmissions.values():
        f = stream.get("file")
        if f is not None:
            f.close()
    transmissions.clear()


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

