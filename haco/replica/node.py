"""The replication adapter: drives haco's Raft (haco/replica/raft, a fork of pysyncobj 0.3.17).

Two contexts meet here. The Raft tick thread (autoTick) does Raft I/O, applies entries
(`_apply_on_tick`) and runs the snapshot hooks; the asyncio loop proposes commands and reads
state. Every crossing happens in this file:

- loop -> tick: `propose()` queues commands; one `call_soon` flush packs everything queued in
  that loop iteration into one log entry (group commit) and hands it to Raft, which never
  blocks the caller. Outcomes come back through `call_soon_threadsafe`.
- tick -> loop: after each applied entry the tick thread records (index, ended job ids) and
  schedules at most one `_publish` on the loop; the tick thread never waits on the loop.
- Readers on the loop see whole records (they are immutable); multi-structure queries take
  `state_lock` from a worker thread, never on the loop (see haco/server/DESIGN.md).

Snapshots: the serializer hook only captures (cheap) and starts a background writer that
publishes the DuckDB file atomically itself; the deserializer verifies and swaps in a fully
built state, or stops the process. The Raft layer's behaviour is in haco/replica/DESIGN.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from raft_state import CODE_VERSION, Command, Rejected, RejectCode, State, encode, outcome_from_wire, outcome_to_wire
from raft_state import snapshot
from raft_state.outcomes import Outcome

from haco.config import NodeConfig, Peer
from haco.errors import NotApplied, OutcomeUnknown, Overloaded
from haco.replica.journal import ApplyGuard, RaftJournal
from haco.replica.membership import Membership
from haco.replica.plumbing import (FaultTransport, Once, file_identity, fsync_info, fsync_path, rewrite_raft_data,
                                   time_out)
from haco.replica.progress import ApplyProgress
from haco.replica.raft import FAIL_REASON, SERIALIZER_STATE, SyncObj, SyncObjConf, TCPTransport
from haco.replica.raft import legacy

__all__ = ["Applied", "Replica"]

log = logging.getLogger(__name__)

_NOT_APPLIED = {FAIL_REASON.QUEUE_FULL: "queue full", FAIL_REASON.MISSING_LEADER: "no leader",
                FAIL_REASON.DISCARDED: "discarded by a new leader", FAIL_REASON.NOT_LEADER: "not leader",
                FAIL_REASON.REQUEST_DENIED: "request denied"}
_ROLES = {0: "follower", 1: "candidate", 2: "leader"}
DIGEST_EVERY = 16  #: every replica records its digest at indexes that are multiples of this
#: Log entries this replica has handed to Raft and not yet seen settle. pysyncobj 0.3.17 rewound
#: a follower's nextIndex to the acknowledged index on every success response, so each further entry
#: in flight got re-sent (and truncated and re-appended by the follower) again and again: with 64
#: busy clients that quadratic traffic took batch submits down to ~200 jobs/s (the Raft fork
#: stops the rewind; 4 in flight measured no better than 2). Proposals made while the pipeline is
#: full wait in the queue and go out together in the next entry (group commit).
ENTRIES_IN_FLIGHT_MAX = 2
ENTRY_WEIGHT_MAX = 1000  #: jobs (or assignments) per log entry, so one apply stays well under a heartbeat
#: snapshot chunks (logCompactionBatchSize each, 256 KiB) a leader streams per tick, to all followers
#: together; more per tick stalled a leader streaming a dump of 1M jobs
STREAM_CHUNKS_PER_TICK = 2


@dataclass(frozen=True, slots=True)
class Applied:
    """What one published batch of applied entries changed, for listeners on the loop."""

    index: int
    ended: tuple[str, ...]  #: job ids whose attempt ended or that became final
    replaced: bool  #: the whole state was swapped (a snapshot was installed)


class Replica:
    """One coordinator replica: State + Raft node + snapshot hooks + the asyncio bridge."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg.data_dir)
        self.dump_path = self.data_dir / "snapshot.duckdb"
        self.journal_path = self.data_dir / "raft.journal"
        self.state = State()
        self.state_lock = threading.Lock()  #: held by the tick thread while it applies one entry
        #: (applied index, digest of exactly that state), replaced as one tuple by the tick thread after
        #: each entry: other threads read both from it (the live state may be mid-entry when they look)
        self.applied: tuple[int, int] = (0, self.state.digest())
        self.digests: deque[tuple[int, int]] = deque(maxlen=64)
        self.snapshot_index = 0
        self.snapshot_at = 0.0  #: wall time the current dump file was written or loaded
        self.snapshot_seconds = 0.0  #: how long the last background write took
        self.snapshot_installs = 0  #: snapshots received from a leader and loaded
        self.snapshot_failures = 0  #: snapshot writes failed in a row (haco.health: degraded from 2)
        self.progress = ApplyProgress.from_env(cfg.raft.stuck_after_s, os.environ)  #: is apply keeping up?
        self.elections = 0
        self.stalls, self.stall_max_s = 0, 0.0  #: Raft ticks over half an election timeout; longest
        self.role = "follower"
        self._addr_to_id = {p.raft_addr: p.id for p in cfg.peers} | {cfg.raft_addr: cfg.id}
        self._dump_identity: tuple[int, int, int] | None = None  #: the dump file last written or loaded
        self._dump_lock = threading.Lock()  #: publishing a dump: ours (background writer) or a streamed one
        self._dump_raft_data: Any = None
        self._snap_state = SERIALIZER_STATE.NOT_SERIALIZING
        self._events: deque[Applied] = deque()
        self._publish_pending = False
        # the tick thread's calls into the loop (applied events, settled proposals) share one
        # wake-up: a write to the loop's self-pipe per call was ~20% of the leader's Raft thread
        self._mail: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._mail_pending = False
        self._queue: list[tuple[Command, asyncio.Future[tuple[int, Outcome]]]] = []
        self._flush_pending = False
        self._entries_out = 0  #: entries handed to Raft, not yet settled (ENTRIES_IN_FLIGHT_MAX)
        self.in_flight = 0
        self.admission_refused = 0  #: proposals refused by admission control (503)
        self.forwarded = 0  #: commands proposed while following: Raft forwards them to the leader
        self._listeners: list[Callable[[Applied], None]] = []
        self._role_listeners: list[Callable[[str], None]] = []
        self._index_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._syncobj: Any = None
        self._journal: RaftJournal | None = None
        self._stopping = False
        #: a joining replica's starting configuration, learned from the cluster ([[id, addr, voter, meta]])
        self.join_members: list[list[Any]] | None = None
        self.membership = Membership(self)

    # ---- start and stop -------------------------------------------------------------------

    def load_local_snapshot(self) -> None:
        """Load this replica's dump file, if any, before Raft starts. Raises SnapshotError."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.data_dir.glob("snapshot.duckdb.*"):
            leftover.unlink(missing_ok=True)  # half-written dumps from a crash; never published
        if not self.dump_path.exists():
            return
        started = time.monotonic()
        loaded = snapshot.load(self.dump_path)
        self.state = loaded.state
        self.applied = (loaded.raft_index, loaded.digest)
        raft_data, previous_release = legacy.unpack_raft_data(loaded.raft_data, local=True)
        if previous_release:  # never stream pickled raft data to a peer: rewrite it once, as msgpack
            rewrite_raft_data(self.dump_path, legacy.pack_raft_data(raft_data))
            log.info("snapshot raft data of the previous release rewritten index=%d", loaded.raft_index)
        self._remember_dump(loaded.raft_index, raft_data)
        self.snapshot_at = self.dump_path.stat().st_mtime
        log.info("loaded snapshot index=%d term=%d digest=%016x jobs=%d seconds=%.2f", loaded.raft_index,
                 loaded.raft_term, loaded.digest, len(self.state.jobs), time.monotonic() - started)

    def open_journal(self) -> None:
        """Open and check raft.journal before Raft starts (a damaged tail is cut off with a warning).
        Raises haco.replica.journal.JournalCorrupt for damage before its last good record."""
        if self._journal is None:
            self._journal = RaftJournal(self.journal_path, fsync=self.cfg.raft.fsync)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.open_journal()
        r = self.cfg.raft
        conf = SyncObjConf(
            password=self.cfg.raft_password, bindAddress=self.cfg.raft_bind or self.cfg.raft_addr, autoTick=True,
            autoTickPeriod=r.tick_period_s, commandsQueueSize=100_000, raftMinTimeout=r.election_timeout_s_min,
            raftMaxTimeout=r.election_timeout_s_max, appendEntriesPeriod=r.append_entries_period_s,
            connectionTimeout=self._connection_timeout_s(), connectionRetryTime=r.connection_retry_s,
            leaderFallbackTimeout=r.leader_fallback_timeout_s, appendEntriesUseBatch=False,
            appendEntriesBatchSizeBytes=2**20, sendBufferSize=2**20, recvBufferSize=2**20,
            dnsCacheTime=r.dns_cache_s, dnsFailCacheTime=min(1.0, r.dns_cache_s),
            logCompactionMinEntries=r.compaction_min_entries, logCompactionMinTime=r.compaction_min_time_s,
            logCompactionSplit=True, logCompactionBatchSize=2**18, commandsWaitLeader=False,
            fullDumpFile=str(self.dump_path), journalFile=str(self.journal_path), bindRetryTime=0.5,
            maxBindRetries=20, onReady=None, onStateChanged=self._on_state_changed_tick,
            dynamicMembershipChange=False, pollerType="auto", useFork=False, serializer=self._serialize_tick,
            serializeChecker=self._check_serialize_tick, deserializer=self._deserialize_tick,
            onCodeVersionChanged=None, tcp_keepalive=(16, 3, 5),
            nodeId=self.cfg.id, nodeIds=dict(self._addr_to_id), onTickStall=self._on_tick_stall,
            tickStallLimit=r.election_timeout_s_min / 2, streamChunksPerTick=STREAM_CHUNKS_PER_TICK,
            dumpPublishLock=self._dump_lock, applyGuard=ApplyGuard(self.journal_path),
        )
        others = [p.raft_addr for p in self.cfg.peers]
        members = [[self.cfg.id, self.cfg.raft_addr, True, {"url": self.cfg.api_url}]] + [
            [p.id, p.raft_addr, True, {"url": p.api_url}] for p in self.cfg.peers]
        if self.join_members is not None:  # a new replica: not a member yet, so it never stands for election
            members = self.join_members
            others = [m[1] for m in members if m[1] != self.cfg.raft_addr]
        transport = FaultTransport if os.environ.get("HACO_FAULT_FILE") else TCPTransport  # chaos runs only
        self._syncobj = SyncObj(self.cfg.raft_addr, others, conf, applier=self._apply_on_tick, journal=self._journal,
                                transportClass=transport, members=members,
                                membersLearned=self.join_members is not None)
        # a restarted replica must hear from the leader (which re-dials it every connection_retry_s)
        # before it may call an election: otherwise its higher term deposes the leader
        self._postpone_election(r.connection_retry_s + r.election_timeout_s_max)
        log.info("raft started replica=%s raft=%s peers=%s", self.cfg.id, self.cfg.raft_addr, ",".join(others))

    async def stop(self, *, transfer: bool = True) -> None:
        """Hand leadership over when leading, then stop Raft (off the loop)."""
        so = self._syncobj
        if so is None:
            return
        self._stopping = True  # local proposals are refused from now on: the log must stop growing
        if transfer and self.is_leader():
            sent = await self._transfer_leadership(so, timeout_s=3.0)
            successor = self.leader_id()
            log.info("leadership transfer %s (timeout_now sent %d times, leader now %s)",
                     "done" if not self.is_leader() else "timed out", sent, successor)
        await asyncio.to_thread(so.destroy_synchronous)
        self._syncobj = None
        self._journal = None  # closed by Raft

    async def _transfer_leadership(self, so: Any, timeout_s: float) -> int:
        """Raft TimeoutNow, retried on the tick thread until a follower took over; returns how
        many were sent. The log stops growing first (Raft's transfer rule): the command
        queue, which also holds what followers forward, is no longer drained (those commands end
        LEADER_CHANGED once the successor is known; clients retry with their keys). Else an entry
        appended after the TimeoutNow reaches the third replica but not the target, both refuse
        the target their votes and a second election follows (term +2/+3). Raft denies a
        transfer unless the target's match index is the leader's last index, so each tick retries
        until one is sent (resent after 0.2 s if no election followed). This replica never stands
        for election again and waits to hear from its successor, so its vote is there for the target.
        """
        sent: list[float] = []

        def on_sent(_result: Any, err: int) -> None:  # tick thread
            if err == FAIL_REASON.SUCCESS:
                sent.append(time.monotonic())

        def on_tick() -> None:  # tick thread: transferLeadership is not thread-safe
            self._postpone_election(timeout_s + 1.0)  # once deposed, its stale deadline would fire at once
            if so._isLeader() and (not sent or time.monotonic() - sent[-1] > 0.2):
                so.transferLeadership(callback=on_sent)

        so.holdCommands()
        await asyncio.to_thread(so.addOnTickCallback, on_tick)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and (self.is_leader() or self.leader_id() in (None, self.cfg.id)):
                await asyncio.sleep(0.01)
        finally:
            await asyncio.to_thread(so.removeOnTickCallback, on_tick)
        return len(sent)

    async def hand_over(self, timeout_s: float) -> str | None:
        """Hand leadership to a caught-up voter and go on as a follower (a membership change removing
        this replica); returns the new leader's id, or None if none took over in time."""
        so = self._syncobj
        if so is None or not self.is_leader():
            return self.leader_id()
        try:
            sent = await self._transfer_leadership(so, timeout_s=timeout_s)
        finally:
            so.holdCommands(False)
        log.info("leadership handed over (timeout_now sent %d times, leader now %s)", sent, self.leader_id())
        return self.leader_id()

    # ---- the tick thread ------------------------------------------------------------------

    def _apply_on_tick(self, entry: bytes, index: int | None = None) -> bytes:
        """Apply the entry at `index` (tick thread; every replica; also on replay; by default the
        next one). Never raises."""
        if index is None:
            index = self.applied_index + 1
        self.progress.before_apply()
        with self.state_lock:
            try:
                outcomes = self.state.apply_entry(entry)
            except Exception:  # a bug; left alone, Raft would retry this entry forever and halt
                log.critical("apply failed index=%d", index, exc_info=True)
                outcomes = [Rejected(RejectCode.INTERNAL, "apply failed")]
            ended = self.state.ended
            self.state.ended = []
            self.applied = (index, self.state.digest())
            if index % DIGEST_EVERY == 0:
                self.digests.append(self.applied)
        self.progress.after_apply()
        # entries are applied only once a leader (or, replaying at restart, the persisted commit
        # index) committed them: a long replay must not end in an election
        self._postpone_election(self.cfg.raft.election_timeout_s_min)
        self._emit(Applied(index, tuple(ended), False))
        packed: bytes = msgpack.packb([index, [outcome_to_wire(o) for o in outcomes]], use_bin_type=True)
        return packed

    def _emit(self, event: Applied) -> None:
        self._events.append(event)
        if not self._publish_pending and self._loop is not None:
            self._publish_pending = True
            self._post(self._publish)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run fn(*args) on the loop, soon (any thread): calls posted before the loop drains them
        share one wake-up, and run in the order posted."""
        loop = self._loop
        if loop is None:
            return
        self._mail.append((fn, args))
        if not self._mail_pending:
            self._mail_pending = True
            try:
                loop.call_soon_threadsafe(self._drain_mail)
            except RuntimeError:  # the loop closed during shutdown
                pass

    def _drain_mail(self) -> None:
        self._mail_pending = False  # reset before draining: a later post schedules again
        mail = self._mail
        while mail:
            fn, args = mail.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("tick-thread callback failed")

    def _on_state_changed_tick(self, old: int, new: int) -> None:
        role = _ROLES.get(new, "follower")
        so = self._syncobj
        if role == "candidate":
            self.elections += 1
        term = int(so.raftCurrentTerm) if so is not None else 0  # tick thread: the term of this role
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._role_changed, role, term)
            except RuntimeError:
                pass

    def _serialize_tick(self, tmp_name: str, raft_data: Any) -> None:
        """Raft's serializer hook: capture now (tick thread), write in the background.
        Raft renames `tmp_name` into place if it exists when this returns; it must not, so the
        background writer publishes the real file itself."""
        Path(tmp_name).unlink(missing_ok=True)
        started = time.monotonic()
        with self.state_lock:
            cap = snapshot.capture(self.state)
        self._postpone_election(self.cfg.raft.election_timeout_s_min)  # capture: ~70-300 ms at 1M jobs
        index, term = int(raft_data[0][1]), int(raft_data[0][2])
        self._snap_state = SERIALIZER_STATE.SERIALIZING
        log.info("snapshot capture index=%d ms=%.1f", index, (time.monotonic() - started) * 1000)
        threading.Thread(target=self._write_snapshot, args=(cap, index, term, raft_data),
                         name="haco-snapshot", daemon=True).start()

    def _write_snapshot(self, cap: snapshot.Capture, index: int, term: int, raft_data: Any) -> None:
        started = time.monotonic()
        writing = self.dump_path.with_name(self.dump_path.name + ".writing")
        try:
            snapshot.dump(cap, writing, raft_index=index, raft_term=term, raft_data=legacy.pack_raft_data(raft_data))
            with self._dump_lock:  # Raft renames a dump streamed from the leader into place under it
                if file_identity(self.dump_path) != self._dump_identity:
                    writing.unlink(missing_ok=True)  # a newer dump was streamed in meanwhile: keep that
                    log.info("snapshot superseded index=%d by a dump from the leader", index)
                    self._snap_state = SERIALIZER_STATE.FAILED
                    return
                os.replace(writing, self.dump_path)
                fsync_path(self.data_dir)
                self._remember_dump(index, raft_data)
            self.snapshot_at = time.time()
            self.snapshot_seconds = time.monotonic() - started
            self._snap_state = SERIALIZER_STATE.SUCCESS
            self.snapshot_failures = 0
            log.info("snapshot written index=%d jobs=%d seconds=%.2f", index, len(cap.jobs), self.snapshot_seconds)
        except Exception:
            log.exception("snapshot write failed index=%d", index)
            self.snapshot_failures += 1
            writing.unlink(missing_ok=True)
            self._snap_state = SERIALIZER_STATE.FAILED

    def _check_serialize_tick(self) -> int:
        state: int = self._snap_state
        if state in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._snap_state = SERIALIZER_STATE.NOT_SERIALIZING
        return state

    def _remember_dump(self, index: int, raft_data: Any) -> None:
        self._dump_identity = file_identity(self.dump_path)
        self._dump_raft_data = raft_data
        self.snapshot_index = index

    def _deserialize_tick(self, path: str) -> Any:
        """Raft's deserializer: at start (our own file, already loaded) or after a leader
        streamed us its dump. Verifies and swaps in a fully built state, or stops the process."""
        if self._dump_identity == file_identity(Path(path)):
            return self._dump_raft_data
        started = time.monotonic()
        try:
            loaded = snapshot.load(path)
            raft_data, _ = legacy.unpack_raft_data(loaded.raft_data, local=False)  # streamed: msgpack only
        except Exception:
            log.critical("installed snapshot %s does not load; stopping rather than running on a broken state",
                         path, exc_info=True)
            logging.shutdown()
            os._exit(70)
        with self.state_lock:
            self.state = loaded.state
            self.applied = (loaded.raft_index, loaded.digest)
        del loaded
        if self.cfg.raft.fsync:  # Raft renamed the streamed file into place without a sync
            fsync_path(path)
            fsync_path(Path(path).parent)
        self._remember_dump(self.applied_index, raft_data)
        self.snapshot_at = time.time()
        self.snapshot_installs += 1
        log.info("installed snapshot from leader index=%d jobs=%d seconds=%.2f", self.applied_index,
                 len(self.state.jobs), time.monotonic() - started)
        self._emit(Applied(self.applied_index, (), True))
        return raft_data

    # ---- operators: a snapshot now, the published dump -----------------------------------------

    def force_snapshot(self) -> None:
        """Ask Raft to compact at its next tick, outside the replica's usual window (any thread)."""
        so = self._syncobj
        if so is None or self._stopping:
            raise NotApplied("replica is not running")
        so.forceLogCompaction()

    def open_dump(self) -> tuple[BinaryIO, int] | None:
        """The published dump file, opened, with its Raft index; None when there is none yet, or
        while a dump streamed from the leader is in place and not loaded (its index is unknown).

        Blocks on the dump lock (never call it on the loop). The open file stays whole while a
        newer dump replaces the path: a replace only renames."""
        with self._dump_lock:
            try:
                f = open(self.dump_path, "rb")
            except FileNotFoundError:
                return None
            st = os.fstat(f.fileno())
            if (st.st_ino, st.st_mtime_ns, st.st_size) != self._dump_identity:
                f.close()
                return None
            return f, self.snapshot_index

    def _connection_timeout_s(self) -> float:
        return max(3.0, self.cfg.raft.election_timeout_s_max)

    def _on_tick_stall(self, took_s: float) -> None:
        """A tick took `took_s` beyond its poll wait (tick thread; the Raft conf's onTickStall). Past half the connection
        timeout (a 1M-job dump from the leader: 20-30 s in the deserializer) both ends drop the connection
        unread and re-dial; without PreVote an election meanwhile raises every term needlessly."""
        self.stalls += 1
        self.stall_max_s = max(self.stall_max_s, took_s)
        r = self.cfg.raft
        if took_s > self._connection_timeout_s() / 2:
            grace_s = 2 * r.connection_retry_s + r.election_timeout_s_max
            self._postpone_election(grace_s)
            log.info("raft tick stalled ms=%.0f: election postponed %.1fs", took_s * 1000, grace_s)
        elif took_s >= r.election_timeout_s_min:
            log.info("raft tick stalled ms=%.0f", took_s * 1000)

    def _postpone_election(self, seconds: float) -> None:
        """Push this replica's election deadline at least `seconds` out (the Raft layer has no PreVote;
        tick thread, or just after SyncObj starts)."""
        so = self._syncobj
        if so is not None:
            so.postponeElection(seconds)

    # ---- the loop ----------------------------------------------------------------------------

    def add_listener(self, fn: Callable[[Applied], None]) -> None:
        self._listeners.append(fn)

    def add_role_listener(self, fn: Callable[[str], None]) -> None:
        self._role_listeners.append(fn)

    def _publish(self) -> None:
        self._publish_pending = False  # reset before draining: a later append schedules again
        while self._events:
            event = self._events.popleft()
            for fn in self._listeners:
                try:
                    fn(event)
                except Exception:
                    log.exception("applied listener failed")
        applied = self.applied_index
        if self._index_waiters:
            keep = []
            for index, fut in self._index_waiters:
                if index <= applied:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((index, fut))
            self._index_waiters = keep

    def _role_changed(self, role: str, term: int) -> None:
        if role != self.role:  # chaos's leader-per-term checker parses this line
            log.info("role changed replica=%s role=%s term=%d", self.cfg.id, role, term)
        self.role = role
        for fn in self._role_listeners:
            fn(role)

    async def wait_applied(self, index: int, timeout_s: float) -> bool:
        """Wait until this replica applied `index`; False on timeout."""
        if self.applied_index >= index:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._index_waiters.append((index, fut))
        try:
            async with asyncio.timeout(timeout_s):
                await fut
            return True
        except TimeoutError:
            return False

    async def propose(self, cmd: Command, *, timeout_s: float | None = None) -> tuple[int, Outcome]:
        """Replicate one command; returns (applied index, outcome).

        Raises NotApplied (nothing happened, safe to retry), Overloaded (admission control), or
        OutcomeUnknown (maybe applied: retry with the same idempotency key).
        """
        (fut,) = self.propose_batch([cmd])
        # a plain timer on the future, not asyncio.timeout (a context manager, a timer and a task
        # uncancel per write): the loop's cost per single submit
        timer = asyncio.get_running_loop().call_later(timeout_s or self.cfg.raft.propose_timeout_s, time_out, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    def propose_batch(self, cmds: list[Command]) -> list[asyncio.Future[tuple[int, Outcome]]]:
        """Queue commands in order (group commit usually puts them in one entry) and return their
        futures, which fail like propose(); the caller bounds the wait itself and cancels the
        futures it stops waiting for (a queued one is then never proposed). Raises NotApplied or
        Overloaded for all of them, before queueing any."""
        if self._syncobj is None or self._stopping:
            raise NotApplied("replica is not running")
        if self.in_flight >= self.cfg.raft.in_flight_max:
            self.admission_refused += len(cmds)
            raise Overloaded(f"{self.in_flight} writes in flight; retry shortly", {"retry_after_s": 1})
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[tuple[int, Outcome]]] = []
        for cmd in cmds:
            fut: asyncio.Future[tuple[int, Outcome]] = loop.create_future()
            self._queue.append((cmd, fut))
            futures.append(fut)
        self.in_flight += len(cmds)
        if not self._flush_pending:
            self._flush_pending = True
            loop.call_soon(self._flush)
        return futures

    def _flush(self) -> None:
        """Group commit: whatever was proposed while the pipeline was full goes out in few entries.

        At most ENTRIES_IN_FLIGHT_MAX entries are out at once; each holds at most
        `entry_commands_max` commands and ENTRY_WEIGHT_MAX jobs. Proposals whose caller already
        gave up (timed out, cancelled) are dropped here: never proposed, so nothing to retry."""
        self._flush_pending = False
        loop = self._loop
        assert loop is not None
        while self._queue and self._entries_out < ENTRIES_IN_FLIGHT_MAX:
            chunk = self._take_chunk()
            if not chunk:
                continue
            so = self._syncobj
            futures = [fut for _, fut in chunk]
            if so is None:
                self._settle(futures, None, FAIL_REASON.NOT_LEADER)
                continue
            if not so._isLeader():
                self.forwarded += len(chunk)
            self._entries_out += 1
            release = Once(self._entry_settled)
            timer = loop.call_later(self.cfg.raft.propose_timeout_s + 1.0, release)  # a callback may never come

            def on_result(result: Any, err: int, futures: list[Any] = futures, release: Once = release,
                          timer: asyncio.TimerHandle = timer) -> None:  # either thread
                self._post(self._settle_entry, futures, result, err, release, timer)
            so.propose(encode(*(cmd for cmd, _ in chunk)), on_result)

    def _take_chunk(self) -> list[tuple[Command, asyncio.Future[tuple[int, Outcome]]]]:
        """Pop the next entry's worth of live proposals off the queue."""
        chunk: list[tuple[Command, asyncio.Future[tuple[int, Outcome]]]] = []
        weight = 0
        taken = 0
        for cmd, fut in self._queue:
            if len(chunk) >= self.cfg.raft.entry_commands_max:
                break
            w = len(getattr(cmd, "jobs", ())) or len(getattr(cmd, "items", ())) or 1
            if chunk and weight + w > ENTRY_WEIGHT_MAX:
                break
            taken += 1
            if fut.done():  # its caller gave up waiting
                self.in_flight -= 1
                continue
            chunk.append((cmd, fut))
            weight += w
        del self._queue[:taken]
        return chunk

    def _entry_settled(self) -> None:
        self._entries_out -= 1
        if self._queue and not self._flush_pending:
            self._flush_pending = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _settle_entry(self, futures: list[asyncio.Future[tuple[int, Outcome]]], result: Any, err: int,
                      release: Once, timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        self._settle(futures, result, err)
        release()

    def _settle(self, futures: list[asyncio.Future[tuple[int, Outcome]]], result: Any, err: int) -> None:
        self.in_flight -= len(futures)
        if err == FAIL_REASON.SUCCESS:
            index, wires = msgpack.unpackb(result, raw=False)
            outcomes = [outcome_from_wire(w) for w in wires]
            if len(outcomes) != len(futures):  # the envelope itself was refused
                outcomes = [outcomes[0]] * len(futures)
            for fut, outcome in zip(futures, outcomes):
                if not fut.done():
                    fut.set_result((index, outcome))
            return
        exc: Exception
        if err in _NOT_APPLIED:
            exc = NotApplied(f"not applied: {_NOT_APPLIED[err]}", {"reason": _NOT_APPLIED[err], "retry_after_s": 1})
        else:
            exc = OutcomeUnknown("leader changed before the write was confirmed; retry with the same key")
        for fut in futures:
            if not fut.done():
                fut.set_exception(exc)

    # ---- what the API reports --------------------------------------------------------------

    @property
    def applied_index(self) -> int:
        return self.applied[0]

    def is_leader(self) -> bool:
        so = self._syncobj
        return bool(so is not None and so._isLeader())

    def term(self) -> int:
        so = self._syncobj
        return int(so.raftCurrentTerm) if so is not None else 0

    @property
    def raft(self) -> Any:
        """The Raft node (haco/replica/raft), None before start and after stop."""
        return self._syncobj

    def peers(self) -> list[Peer]:
        """Every other member of the configuration in effect (learners included)."""
        so = self._syncobj
        if so is None:
            return list(self.cfg.peers)
        return [Peer(m[0], m[1], str(m[3].get("url", ""))) for m in so.members() if m[0] != self.cfg.id]

    def leader_id(self) -> str | None:
        so = self._syncobj
        leader = so._getLeader() if so is not None else None
        if leader is None:
            return None
        addr = str(leader)
        ids = {m[1]: m[0] for m in so.members()}
        return ids.get(addr) or self._addr_to_id.get(addr, addr)

    def leader_url(self) -> str | None:
        leader = self.leader_id()
        if leader == self.cfg.id:
            return self.cfg.api_url
        return next((p.api_url for p in self.peers() if p.id == leader), None)

    def info(self) -> dict[str, Any]:
        """`GET /api/cluster` for this replica."""
        so = self._syncobj
        status = so.getStatus() if so is not None else {}
        peers = []
        voters = {m[0] for m in so.members() if m[2]} if so is not None else {self.cfg.id}
        for p in self.peers():
            reachable = status.get(f"partner_node_status_server_{p.raft_addr}") == 2
            peers.append({"id": p.id, "raft_addr": p.raft_addr, "api_url": p.api_url, "reachable": reachable,
                          "voter": p.id in voters})
        digests = list(self.digests)
        applied_index, digest = self.applied
        commit_index = int(status.get("commit_idx", 0))
        return {
            "id": self.cfg.id, "api_url": self.cfg.api_url, "raft_addr": self.cfg.raft_addr,
            "role": _ROLES.get(status.get("state", 0), "follower") if so is not None else "stopped",
            "leader": self.leader_id(), "leader_url": self.leader_url(), "term": self.term(),
            "commit_index": commit_index, "applied_index": applied_index,
            "apply": self.progress.report(applied_index, commit_index) if so is not None else None,
            "log_entries": int(status.get("log_len", 0)), "has_quorum": bool(status.get("has_quorum", False)),
            "snapshot_index": self.snapshot_index,
            "snapshot_age_s": round(time.time() - self.snapshot_at, 1) if self.snapshot_at else None,
            "snapshot_seconds": round(self.snapshot_seconds, 3), "snapshot_installs": self.snapshot_installs,
            "snapshot_failures": self.snapshot_failures, "digest": f"{digest:016x}",
            "digests": [[i, f"{d:016x}"] for i, d in digests], "elections": self.elections,
            "tick_stalls": self.stalls, "tick_stall_max_s": round(self.stall_max_s, 3),
            "peers": peers, "voter": self.cfg.id in voters, "in_flight": self.in_flight, "code_version": CODE_VERSION,
            "append_sent": {"messages": so.sentMessages, "entries": so.sentEntries} if so is not None else {},
            "cluster_version": self.state.cluster_version, "version": _version(), "fsync": fsync_info(self._journal),
            "journal": self._journal.stats() if self._journal is not None else None,
            "raft_wire": so.wireStats() if so is not None else {"refused": {}, "refused_total": 0},
        }


def _version() -> str:
    from haco import __version__
    return __version__
