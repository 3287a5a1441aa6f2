"""The WorkerHub: worker websockets on a replica (`GET /api/workers/connect`).

Only the leader keeps workers: a follower answers `redirect` with the leader's URL and closes.
On the leader, every state-changing frame becomes a command stamped with the leader's clock;
the worker gets an `ack` once the outcome is known (ok, refused for good, or retry). Assignments
are pushed only after they commit. On every hello the worker lists what it runs, and the hub
reconciles: re-push what the state says it should run, cancel what it should not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from aiohttp import WSMsgType, web

from raft_state import (Accepted, Assignment, CompleteAttempt, DeregisterWorker, DrainWorker, FailAttempt,
                        RegisterWorker, Rejected, StartAttempt, State, canonical)
from raft_state.payloads import BUILTIN_EXECUTORS
from raft_state.records import Device, JobStatus, WorkerStatus
from raft_state.validate import worker_problem

from haco.errors import HacoError, ReplicationError
from haco.replica.node import Replica
from haco.scheduler.core import now_ms
from haco.wire import FRAME_BYTES_MAX, unpack
from haco.wire import encode as frame
from haco.server.hub_guards import RESULT_BYTES_MAX, STATS_BYTES_MAX, FrameBudget, bounded, report_verdict
from haco.server.hub_logs import LogAsks, ProgressBoard

log = logging.getLogger(__name__)


REPORTS_PER_FRAME_MAX = 1000  #: items in one `reports` frame; more closes the socket
BATCH_FRAME_BYTES = 1 << 20  #: an `assigns` frame is cut past about this many payload bytes
REPORT_KINDS = frozenset({"started", "completed", "failed"})


class _Conn:
    __slots__ = ("ws", "worker_id", "load", "batch", "logs")

    def __init__(self, ws: web.WebSocketResponse, worker_id: str, batch: bool = False, logs: bool = False) -> None:
        self.ws = ws
        self.worker_id = worker_id
        self.load: dict[str, Any] | None = None
        self.batch = batch  #: the worker's hello said it takes `assigns` and sends `reports` frames
        self.logs = logs  #: and that it answers `log_read` frames


class Hub:
    def __init__(self, replica: Replica, heartbeat_s: float) -> None:
        self.replica = replica
        self.heartbeat_s = heartbeat_s
        self.conns: dict[str, _Conn] = {}
        self._seen: dict[str, float] = {}
        self.stale_reports = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.log_asks = LogAsks()
        self._drained: set[str] = set()  #: workers told to drain, not told to undrain since
        self.progress = ProgressBoard()
        #: called with (worker id, slots its final reports free) while they are proposed (Scheduler.assign_behind)
        self.assign_behind: Callable[[str, int], None] | None = None
        #: raises the replicated cluster version (routes_tokens.ensure_cluster_version); None in tests
        self.raise_version: Callable[[int], Awaitable[None]] | None = None

    # ---- WorkerHub protocol (used by the scheduler) ----------------------------------------

    def connected(self) -> set[str]:
        return set(self.conns)

    def last_seen(self, worker_id: str) -> float | None:
        return self._seen.get(worker_id)

    def push_assignments(self, state: State, items: list[Assignment]) -> None:
        """Send committed assignments: one `assigns` frame per worker (cut at BATCH_FRAME_BYTES)
        to a worker that takes them, else one `assign` frame each."""
        batches: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            job = state.jobs.get(item.job_id)
            conn = self.conns.get(item.worker_id)
            if job is None or conn is None:
                continue  # reconciled when the worker says hello again
            if item.worker_id in self._drained:  # committed work means active again: undrain it first
                self.notify_undrain(item.worker_id)
            fields = {"job_id": job.job_id, "attempt": item.attempt, "type": job.spec.type,
                      "payload": unpack(job.spec.payload), "timeout_s": job.spec.timeout_ms / 1000}
            worker = state.workers.get(item.worker_id)
            if worker is not None and worker.devices:  # the devices it holds, and so which it must not see
                fields["devices"] = list(item.devices or worker.devices_of(job.job_id))
            if job.spec.pin_cpus:
                fields["pin_cpus"] = job.spec.cpus
            if conn.batch:
                batches.setdefault(item.worker_id, []).append(fields)
            else:
                self._send(conn, frame("assign", **fields))
        for worker_id, assigns in batches.items():
            conn = self.conns[worker_id]
            size, start = 0, 0
            for i, fields in enumerate(assigns):
                size += len(state.jobs[fields["job_id"]].spec.payload) + 128
                if size >= BATCH_FRAME_BYTES or i == len(assigns) - 1:
                    self._send(conn, frame("assigns", items=assigns[start:i + 1]))
                    size, start = 0, i + 1

    def push_cancel(self, worker_id: str, job_id: str, attempt: int) -> None:
        conn = self.conns.get(worker_id)
        if conn is not None:
            self._send(conn, frame("cancel", job_id=job_id, attempt=attempt))

    def notify_drain(self, worker_id: str) -> None:
        conn = self.conns.get(worker_id)
        if conn is not None:
            self._drained.add(worker_id)
            self._send(conn, frame("drain"))

    def notify_undrain(self, worker_id: str) -> None:
        """Sent before anything is assigned to a worker this hub drained (frames keep their order)."""
        self._drained.discard(worker_id)
        conn = self.conns.get(worker_id)
        if conn is not None:
            self._send(conn, frame("undrain"))

    def on_role(self, role: str) -> None:
        """No longer the leader: send every worker to the new one (an idle worker has no reports
        that could stall, so it would otherwise stay here while the leader marks it lost)."""
        if role == "leader" or not self.conns:
            return
        leader_url = self.replica.leader_url()
        log.info("leadership lost: redirecting workers=%d leader=%s", len(self.conns), leader_url)
        for conn in list(self.conns.values()):
            self._spawn(self._redirect(conn, leader_url))

    async def _redirect(self, conn: _Conn, leader_url: str | None) -> None:
        try:
            await conn.ws.send_bytes(frame("redirect", leader_url=leader_url))
            await conn.ws.close()
        except (ConnectionError, RuntimeError):
            pass

    def on_applied(self, state: State, ended: tuple[str, ...]) -> None:
        """Tell workers to stop attempts that ended without them (cancelled, timed out)."""
        if ended:
            self.progress.forget(state, ended)
        if not self.conns:  # a follower (or a leader without workers): nobody to tell
            return
        for job_id in ended:
            job = state.jobs.get(job_id)
            if job is None or not job.attempts:
                continue
            last = job.attempts[-1]
            if last.outcome in ("cancelled", "timed_out") and last.worker_id in self.conns:
                self.push_cancel(last.worker_id, job_id, last.number)

    def _send(self, conn: _Conn, data: bytes) -> None:
        if conn.ws.closed:
            return
        task = asyncio.get_running_loop().create_task(self._send_now(conn, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_now(self, conn: _Conn, data: bytes) -> None:
        try:
            await conn.ws.send_bytes(data)
        except (ConnectionError, RuntimeError):
            pass

    # ---- the websocket -----------------------------------------------------------------------

    async def handle(self, request: web.Request, bound_worker_id: str | None = None) -> web.WebSocketResponse:
        """Serve one worker websocket; `bound_worker_id` (a worker token's) is the only id its hello may use."""
        ws = web.WebSocketResponse(heartbeat=max(5.0, 5 * self.heartbeat_s), max_msg_size=FRAME_BYTES_MAX)
        await ws.prepare(request)
        if not self.replica.is_leader():
            await ws.send_bytes(frame("redirect", leader_url=self.replica.leader_url()))
            await ws.close()
            return ws
        conn: _Conn | None = None
        budget = FrameBudget()
        try:
            async for msg in ws:
                if not budget.take():
                    await ws.close(code=1008, message=b"frame rate limit exceeded")
                    break
                if msg.type is not WSMsgType.BINARY:
                    if msg.type is WSMsgType.ERROR:
                        break
                    continue
                body = _decode(msg.data)
                if body is None:
                    await ws.close(code=1003, message=b"bad frame")
                    break
                if conn is None:
                    conn = await self._hello(ws, body, bound_worker_id)
                    if conn is None:
                        break
                    continue
                self._seen[conn.worker_id] = time.monotonic()
                await self._on_frame(conn, body)
        finally:
            if conn is not None:
                self.log_asks.on_closed(conn)
            if conn is not None and self.conns.get(conn.worker_id) is conn:
                del self.conns[conn.worker_id]
                self._seen[conn.worker_id] = time.monotonic()
                log.info("worker disconnected worker=%s", conn.worker_id)
        return ws

    async def _hello(self, ws: web.WebSocketResponse, body: dict[str, Any], bound: str | None) -> _Conn | None:
        if body.get("t") != "hello" or not isinstance(body.get("worker_id"), str):
            await ws.close(code=1008, message=b"expected hello")
            return None
        if bound is not None and body["worker_id"] != bound:
            await ws.send_bytes(frame("error", code="FORBIDDEN", message=f"this token is for worker {bound}"))
            await ws.close(code=1008, message=b"token is for another worker")
            return None
        try:
            cmd = RegisterWorker(
                at_ms=now_ms(), worker_id=body["worker_id"], capacity=int(body.get("capacity", 1)),
                tags=tuple(str(t) for t in body.get("tags") or ()),
                hardware=tuple(str(h) for h in body.get("hardware") or ()),
                memory_gb=float(body.get("memory_gb", 0.0)), cuda_compute=float(body.get("cuda_compute", 0.0)),
                cpus=int(body.get("cpus", 1)), info=canonical(body.get("info") or {}),
                plugins=await self._plugins(body["worker_id"], body.get("executors")),
                devices=await self._devices(body["worker_id"], body.get("devices")))
            problem = worker_problem(cmd)  # refused here: a bad hello costs no log entry
            if problem is not None:
                raise ValueError(problem)
            # heard from now: the scheduler's liveness pass may run between this commit and the line
            # that records the connection below, and must not find a fresh registration silent
            self._seen[cmd.worker_id] = time.monotonic()
            _, outcome = await self.replica.propose(cmd)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            await ws.close(code=1008, message=f"bad hello: {exc}"[:120].encode())
            return None
        except ReplicationError:
            await ws.send_bytes(frame("redirect", leader_url=self.replica.leader_url()))
            await ws.close()
            return None
        if isinstance(outcome, Rejected):
            await ws.send_bytes(frame("error", code=str(outcome.code), message=outcome.message))
            await ws.close(code=1008)
            return None
        worker_id = cmd.worker_id
        old = self.conns.get(worker_id)
        if old is not None:
            await old.ws.close(code=1000, message=b"replaced by a new connection")
        conn = _Conn(ws, worker_id, batch=body.get("batch") is True, logs=body.get("logs") == 1)
        self.conns[worker_id] = conn
        self._seen[worker_id] = time.monotonic()
        log.info("worker connected worker=%s capacity=%d", worker_id, cmd.capacity)
        registered = self.replica.state.workers.get(worker_id)
        draining = registered is not None and registered.status is WorkerStatus.DRAINING
        (self._drained.add if draining else self._drained.discard)(worker_id)
        await ws.send_bytes(frame("welcome", worker_id=worker_id, leader=True, heartbeat_s=self.heartbeat_s,
                                  batch=True, draining=draining))
        self._reconcile(conn, body.get("running") or [])
        return conn

    async def _devices(self, worker_id: str, devices: Any) -> tuple[Device, ...]:
        """A hello's devices, once the cluster version can carry them (raised here when every
        replica's code knows it; else none, the worker's GPU jobs wait and the log says why).
        Raises ValueError on a malformed list."""
        if not devices:
            return ()
        if not isinstance(devices, list) or not all(isinstance(d, dict) and "kind" in d and "index" in d
                                                    for d in devices):
            raise ValueError("devices must be a list of {kind, index, model, memory_gb, compute}")
        out = tuple(Device(kind=str(d["kind"]), index=int(d["index"]), model=str(d.get("model", "")),
                           memory_gb=float(d.get("memory_gb", 0.0)), compute=float(d.get("compute", 0.0)))
                    for d in devices)
        needed = RegisterWorker.DEVICES_SINCE_VERSION
        if self.replica.state.cluster_version >= needed:
            return out
        try:
            if self.raise_version is None:
                raise HacoError(f"cluster version {self.replica.state.cluster_version} < {needed}")
            await self.raise_version(needed)
        except HacoError as exc:
            log.warning("worker devices not registered worker=%s reason=%s", worker_id, exc)
            return ()
        return out

    async def _plugins(self, worker_id: str, executors: Any) -> tuple[str, ...]:
        """The executor types a hello advertises beyond the built-ins, once the cluster version can
        carry them; raises the version if every replica's code knows it, else registers none (the
        worker's plugin jobs then stay refused at submit) and says so in the log."""
        if executors is None:
            return ()
        if not isinstance(executors, list) or not all(isinstance(e, str) for e in executors):
            raise ValueError("executors must be a list of names")
        plugins = tuple(sorted(set(executors) - BUILTIN_EXECUTORS))
        needed = RegisterWorker.PLUGINS_SINCE_VERSION
        if not plugins or self.replica.state.cluster_version >= needed:
            return plugins
        try:
            if self.raise_version is None:
                raise HacoError(f"cluster version {self.replica.state.cluster_version} < {needed}")
            await self.raise_version(needed)
        except HacoError as exc:
            log.warning("worker plugins not registered worker=%s plugins=%s reason=%s", worker_id,
                        ",".join(plugins), exc)
            return ()
        return plugins

    def _reconcile(self, conn: _Conn, running: list[Any]) -> None:
        state = self.replica.state
        reported = {(str(r[0]), r[1]) for r in (running if isinstance(running, list) else ())
                    if isinstance(r, (list, tuple)) and len(r) == 2 and type(r[1]) is int}
        worker = state.workers.get(conn.worker_id)
        expected = set()
        if worker is not None:
            for job_id in worker.running:
                job = state.jobs.get(job_id)
                if job is not None and job.status is JobStatus.RUNNING and job.worker_id == conn.worker_id:
                    expected.add((job_id, job.attempt))
        missing = [Assignment(j, conn.worker_id, a) for j, a in sorted(expected - reported)]
        if missing:
            log.info("re-pushing assignments worker=%s count=%d", conn.worker_id, len(missing))
            self.push_assignments(state, missing)
        for job_id, attempt in sorted(reported - expected):
            job = state.jobs.get(job_id)
            if job is not None and job.attempts and len(job.attempts) >= attempt and \
                    job.attempts[attempt - 1].outcome is None and job.status is JobStatus.RUNNING:
                continue
            self.push_cancel(conn.worker_id, job_id, attempt)

    async def _on_frame(self, conn: _Conn, body: dict[str, Any]) -> None:
        kind = body.get("t")
        if kind == "heartbeat":
            conn.load = body.get("load") if isinstance(body.get("load"), dict) else None
            return
        if kind in REPORT_KINDS:
            self._spawn(self._report(conn, kind, body))
            return
        if kind == "reports":
            items = body.get("items")
            if not isinstance(items, list) or len(items) > REPORTS_PER_FRAME_MAX:
                await conn.ws.close(code=1008, message=b"reports: items must be a list of at most 1000")
                return
            self._spawn(self._reports(conn, items))
            return
        if kind == "log_data":
            self.log_asks.on_data(conn, body)
            return
        if kind == "progress":
            self.progress.update(self.replica.state, conn.worker_id, body.get("items"), now_ms())
            return
        if kind == "draining":
            await self._propose_quietly(DrainWorker(now_ms(), conn.worker_id))
            return
        if kind == "bye":
            await self._propose_quietly(DeregisterWorker(now_ms(), conn.worker_id))
            await conn.ws.close()

    async def _propose_quietly(self, cmd: Any) -> None:
        try:
            await self.replica.propose(cmd)
        except ReplicationError as exc:
            log.info("worker command not applied cmd=%s: %s", type(cmd).__name__, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, conn: _Conn, kind: str, body: dict[str, Any]) -> None:
        ack, cmd = self._report_command(conn, kind, body)
        if cmd is not None:
            try:
                _, outcome = await self.replica.propose(cmd)
            except ReplicationError:
                outcome = None
            ack = self._ack(conn, cmd, body.get("rid"), outcome)
        self._send(conn, frame("ack", **ack))

    async def _reports(self, conn: _Conn, items: list[Any]) -> None:
        """A `reports` frame: every item proposed at once, in order (group commit puts them in few
        log entries, usually one), answered by one `acks` frame in the same order. One batch of
        futures, not a task and a timer per report (they were a fifth of the leader's loop)."""
        acks: list[dict[str, Any]] = []
        proposed: list[tuple[int, Any, Any]] = []  #: (index in acks, rid, command)
        for item in items:
            if not isinstance(item, dict):
                acks.append(_malformed(None, "a report is a map"))
                continue
            ack, cmd = self._report_command(conn, str(item.get("t")), item)
            if cmd is not None:
                proposed.append((len(acks), item.get("rid"), cmd))
            acks.append(ack)
        if proposed:
            if self.assign_behind is not None:  # first: its proposal runs after these, before their flush
                self.assign_behind(conn.worker_id, _slots_freed(self.replica.state, conn.worker_id, items))
            try:
                futures = self.replica.propose_batch([cmd for _, _, cmd in proposed])
            except ReplicationError:
                futures = []
            if futures:
                _, late = await asyncio.wait(futures, timeout=self.replica.cfg.raft.propose_timeout_s)
                for fut in late:
                    fut.cancel()  # never handed to Raft if still queued; answered `retry` either way
            for n, (i, rid, cmd) in enumerate(proposed):
                outcome = None
                if futures and futures[n].done() and not futures[n].cancelled() and futures[n].exception() is None:
                    outcome = futures[n].result()[1]
                acks[i] = self._ack(conn, cmd, rid, outcome)
        self._send(conn, frame("acks", items=acks))

    def _report_command(self, conn: _Conn, kind: str, body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """The command for one report, or (its final ack, None) when it is refused here: malformed,
        or not this worker's attempt (a forged report costs no log entry)."""
        rid = body.get("rid")
        try:
            if kind not in REPORT_KINDS:
                raise ValueError(f"unknown report kind {kind!r}")
            job_id, attempt = str(body["job_id"])[:256], int(body["attempt"])
            verdict = report_verdict(self.replica.state, conn.worker_id, job_id, attempt)
            if verdict is not None:
                return {"rid": rid, **verdict}, None
            if kind == "started":
                cmd: Any = StartAttempt(now_ms(), job_id, attempt, conn.worker_id)
            elif kind == "completed":
                cmd = CompleteAttempt(at_ms=now_ms(), job_id=job_id, attempt=attempt, worker_id=conn.worker_id,
                                      result=bounded(body.get("result"), RESULT_BYTES_MAX),
                                      stats=bounded(body.get("stats") or {}, STATS_BYTES_MAX))
            else:
                cmd = FailAttempt(at_ms=now_ms(), job_id=job_id, attempt=attempt, worker_id=conn.worker_id,
                                  error=str(body.get("error") or "failed")[:4096],
                                  result=bounded(body.get("result"), RESULT_BYTES_MAX),
                                  stats=bounded(body.get("stats") or {}, STATS_BYTES_MAX))
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            return _malformed(rid, str(exc)), None
        return {"rid": rid, "retry": True}, cmd

    def _ack(self, conn: _Conn, cmd: Any, rid: Any, outcome: Any) -> dict[str, Any]:
        """A proposed report's ack: ok, refused for good with a code, or retry (outcome None: not
        applied, or not known in time; the worker resends and a repeat is accepted as recorded)."""
        if outcome is None:
            return {"rid": rid, "retry": True}
        if isinstance(outcome, Accepted):
            return {"rid": rid, "ok": True}
        if outcome.code == "STALE_ATTEMPT":
            self.stale_reports += 1
            log.info("stale report refused worker=%s job=%s attempt=%s", conn.worker_id, cmd.job_id, cmd.attempt)
        return {"rid": rid, "ok": False, "code": str(outcome.code), "message": outcome.message}


def _malformed(rid: Any, message: str) -> dict[str, Any]:
    return {"rid": rid, "ok": False, "code": "MALFORMED", "message": message[:200]}


def _slots_freed(state: State, worker_id: str, items: list[Any]) -> int:
    """How many of `items` end an attempt that `worker_id` runs now (final reports the hub proposes)."""
    freed = 0
    for item in items:
        if not isinstance(item, dict) or item.get("t") not in ("completed", "failed"):
            continue
        job = state.jobs.get(str(item.get("job_id")))
        if job is not None and job.status is JobStatus.RUNNING and job.worker_id == worker_id and \
                job.attempt == item.get("attempt"):
            freed += 1
    return freed


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        body = msgpack.unpackb(data, raw=False)
    except Exception:
        return None
    return body if isinstance(body, dict) else None
