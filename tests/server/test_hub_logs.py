"""The leader's log asks and progress board: an answer counts only from the connection asked, progress
only from the worker running the attempt, and both stay bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

from raft_state.records import JobStatus

from haco.errors import NotApplied, WorkerOffline
from haco.server.hub_logs import ASKS_PER_WORKER_MAX, LogAsks, ProgressBoard


class FakeWs:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(msgpack.unpackb(data, raw=False))


class FakeConn:
    def __init__(self, worker_id: str) -> None:
        self.worker_id, self.ws = worker_id, FakeWs()


async def test_an_answer_counts_only_from_the_connection_that_was_asked() -> None:
    asks, w1, w2 = LogAsks(), FakeConn("w1"), FakeConn("w2")
    task = asyncio.create_task(asks.ask(w1, {"job_id": "j", "attempt": 1}, 2.0))
    await asyncio.sleep(0)
    rid = w1.ws.sent[0]["rid"]
    asks.on_data(w2, {"t": "log_data", "rid": rid, "ok": True, "chunks": [[0, 1, 0, b"forged"]]})
    asks.on_data(w1, {"t": "log_data", "rid": "not-asked", "ok": True})
    assert asks.unsolicited == 2 and not task.done()
    asks.on_data(w1, {"t": "log_data", "rid": rid, "ok": True, "chunks": [[0, 1, 0, b"real"]]})
    assert (await task)["chunks"] == [[0, 1, 0, b"real"]]


async def test_a_closed_connection_or_a_late_answer_is_worker_offline() -> None:
    asks, w1 = LogAsks(), FakeConn("w1")
    task = asyncio.create_task(asks.ask(w1, {}, 5.0))
    await asyncio.sleep(0)
    asks.on_closed(w1)
    with pytest.raises(WorkerOffline) as exc:
        await task
    assert exc.value.detail["worker_id"] == "w1"
    with pytest.raises(WorkerOffline):
        await asks.ask(w1, {}, 0.05)


async def test_reads_waiting_on_one_worker_are_bounded() -> None:
    asks, w1 = LogAsks(), FakeConn("w1")
    tasks = [asyncio.create_task(asks.ask(w1, {}, 5.0)) for _ in range(ASKS_PER_WORKER_MAX)]
    await asyncio.sleep(0)
    with pytest.raises(NotApplied):
        await asks.ask(w1, {}, 5.0)
    asks.on_closed(w1)
    await asyncio.gather(*tasks, return_exceptions=True)
    assert not asks._pending and not asks._per_conn


class Job:
    def __init__(self, job_id: str, worker_id: str, attempt: int = 1, status: JobStatus = JobStatus.RUNNING) -> None:
        self.job_id, self.worker_id, self.attempt, self.status = job_id, worker_id, attempt, status


class State:
    def __init__(self, *jobs: Job) -> None:
        self.jobs = {j.job_id: j for j in jobs}


def test_progress_is_taken_only_from_the_worker_running_the_attempt() -> None:
    board = ProgressBoard()
    mine, theirs, done = Job("a", "w1"), Job("b", "w2"), Job("c", "w1", status=JobStatus.COMPLETED)
    state: Any = State(mine, theirs, done)
    items = [["a", 1, 0.5, "half", 1], ["b", 1, 0.9, "forged", 1], ["c", 1, 0.1, "late", 1],
             ["a", 2, 0.7, "stale attempt", 1], ["a", 1, 2.0, "out of range", 1], ["a", 1, float("nan"), "", 1],
             "junk", ["a", 1, True, "bool", 1]]
    assert board.update(state, "w1", items, now_ms=5) == 1
    assert board.get(mine) == {"fraction": 0.5, "message": "half", "t_ms": 1, "received_ms": 5}  # type: ignore[arg-type]
    assert board.get(theirs) is None  # type: ignore[arg-type]
    board.forget(state, ("a",))
    assert board.get(mine) is None and len(board) == 0  # type: ignore[arg-type]
    assert board.update(state, "w1", [["a", 1, 0.1, "x" * 10_000, 1]], now_ms=6) == 1
    assert len(board.get(mine)["message"]) == 200  # type: ignore[arg-type,index]
