"""The leader's half of log reads and progress over the worker websockets.

`LogAsks` sends `log_read` frames and matches `log_data` answers to them by request id *and*
connection: an answer counts only from the connection it was asked on, so a worker can send
output only for reads of its own attempts (the route asks the worker the attempt names). At most
ASKS_PER_WORKER_MAX reads wait on one worker; past that a read is refused with 503.

`ProgressBoard` keeps the latest progress of running attempts in memory (not replicated): an entry
is taken only from the worker that runs the attempt, and dropped when the attempt ends.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any, Final

from raft_state import State
from raft_state.records import Job, JobStatus

from haco.errors import NotApplied, WorkerOffline
from haco.wire import encode as frame

ASKS_PER_WORKER_MAX: Final = 32
PROGRESS_ITEMS_MAX: Final = 1000  #: items in one `progress` frame; more are ignored
PROGRESS_MESSAGE_MAX: Final = 200


class LogAsks:
    def __init__(self) -> None:
        self._pending: dict[str, tuple[Any, asyncio.Future[dict[str, Any]]]] = {}
        self._per_conn: dict[int, int] = {}
        self.unsolicited = 0  #: `log_data` frames that answered nothing asked on their connection

    async def ask(self, conn: Any, fields: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one `log_read` on `conn` and return its `log_data` body. Raises WorkerOffline when
        the connection closes first or the answer is late, NotApplied when too many reads wait."""
        key = id(conn)
        if self._per_conn.get(key, 0) >= ASKS_PER_WORKER_MAX:
            raise NotApplied(f"too many log reads waiting on worker {conn.worker_id}; retry",
                             {"worker_id": conn.worker_id, "retry_after_s": 1})
        rid = uuid.uuid4().hex
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (conn, fut)
        self._per_conn[key] = self._per_conn.get(key, 0) + 1
        try:
            await conn.ws.send_bytes(frame("log_read", rid=rid, **fields))
            async with asyncio.timeout(timeout_s):
                return await fut
        except (TimeoutError, ConnectionError, RuntimeError):
            raise WorkerOffline(f"worker {conn.worker_id} did not answer the log read",
                                {"worker_id": conn.worker_id}) from None
        finally:
            self._pending.pop(rid, None)
            left = self._per_conn.get(key, 1) - 1
            if left:
                self._per_conn[key] = left
            else:
                self._per_conn.pop(key, None)

    def on_data(self, conn: Any, body: dict[str, Any]) -> None:
        entry = self._pending.get(body.get("rid")) if isinstance(body.get("rid"), str) else None
        if entry is None or entry[0] is not conn:
            self.unsolicited += 1
            return
        if not entry[1].done():
            entry[1].set_result(body)

    def on_closed(self, conn: Any) -> None:
        for other, fut in list(self._pending.values()):
            if other is conn and not fut.done():
                fut.set_exception(ConnectionError("worker connection closed"))


class ProgressBoard:
    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, dict[str, Any]]] = {}  #: job id -> (attempt, progress)

    def update(self, state: State, worker_id: str, items: Any, now_ms: int) -> int:
        """Take a `progress` frame's items; returns how many were taken."""
        if not isinstance(items, list):
            return 0
        taken = 0
        for item in items[:PROGRESS_ITEMS_MAX]:
            if not isinstance(item, list) or len(item) != 5:
                continue
            job_id, attempt, fraction, message, t_ms = item
            if not isinstance(job_id, str) or type(attempt) is not int or isinstance(fraction, bool) or \
                    not isinstance(fraction, (int, float)) or not math.isfinite(fraction) or \
                    not 0.0 <= fraction <= 1.0 or type(t_ms) is not int:
                continue
            job = state.jobs.get(job_id)
            if job is None or job.status is not JobStatus.RUNNING or job.attempt != attempt or \
                    job.worker_id != worker_id:
                continue  # not this worker's running attempt
            self._latest[job_id] = (attempt, {"fraction": float(fraction),
                                              "message": str(message)[:PROGRESS_MESSAGE_MAX],
                                              "t_ms": t_ms, "received_ms": now_ms})
            taken += 1
        return taken

    def get(self, job: Job) -> dict[str, Any] | None:
        entry = self._latest.get(job.job_id)
        if job.status is not JobStatus.RUNNING or entry is None or entry[0] != job.attempt:
            return None
        return entry[1]

    def forget(self, state: State, job_ids: tuple[str, ...]) -> None:
        """Drop entries of jobs that ended (called after each applied batch)."""
        if not self._latest:
            return
        for job_id in job_ids:
            self._latest.pop(job_id, None)
        if len(self._latest) > 10_000:  # a replaced state (snapshot install) may have ended many at once
            for job_id in [k for k, (a, _) in self._latest.items() if (j := state.jobs.get(k)) is None
                           or j.attempt != a or j.status is not JobStatus.RUNNING]:
                del self._latest[job_id]

    def __len__(self) -> int:
        return len(self._latest)


__all__ = ["ASKS_PER_WORKER_MAX", "LogAsks", "ProgressBoard"]
