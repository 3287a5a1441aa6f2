"""An assignment committed but never pushed is re-pushed on the worker's next hello, well before
the job's timeout (issue 4).

The worker here is a scripted protocol client (the real websocket, real msgpack frames, against a
real cluster) so that a push can be lost on purpose: it drops the first `assign` frame as if the
frame had died with a connection or with the leader. It reconnects saying it runs nothing; the
leader (the same one, or one elected after a SIGKILL that knows the assignment only from the log)
must push the same (job, attempt) again. The test then runs the attempt to completion: one
attempt, completed, nothing requeued.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import msgpack

from .cluster import Cluster, eventually, http

TIMEOUT_S = 600  # the job's own timeout: a re-push must come long before this


def frame(kind: str, **fields: Any) -> bytes:
    return msgpack.packb({"v": 1, "t": kind, **fields}, use_bin_type=True)


class ScriptedWorker:
    """Speaks the worker protocol; follows redirects; keeps heartbeating while connected."""

    def __init__(self, c: Cluster, worker_id: str) -> None:
        self.c = c
        self.worker_id = worker_id
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.rid = 0

    async def connect(self, session: aiohttp.ClientSession, running: list[list[Any]], deadline_s: float = 20) -> str:
        """Say hello (listing `running`) until a leader welcomes us; returns the leader's URL."""
        deadline = time.monotonic() + deadline_s
        turn = 0
        url: str | None = None
        while time.monotonic() < deadline:
            if url is None:
                alive = self.c.alive()
                url = self.c.nodes[alive[turn % len(alive)]].url
                turn += 1
            try:
                ws = await session.ws_connect(url + "/api/workers/connect", heartbeat=2.0)
            except aiohttp.ClientError:
                url = None
                await asyncio.sleep(0.1)
                continue
            await ws.send_bytes(frame("hello", worker_id=self.worker_id, capacity=1, cpus=1, running=running))
            reply = await self.recv(ws, 5)
            if reply is not None and reply["t"] == "welcome":
                self.ws = ws
                return url
            await ws.close()
            url = reply.get("leader_url") if reply is not None and reply["t"] == "redirect" else None
            await asyncio.sleep(0.1)
        raise AssertionError("no leader welcomed the worker")

    async def recv(self, ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> dict[str, Any] | None:
        try:
            msg = await ws.receive(timeout=timeout_s)
        except asyncio.TimeoutError:
            return None
        if msg.type is not aiohttp.WSMsgType.BINARY:
            return None
        return dict(msgpack.unpackb(msg.data, raw=False))

    async def next_of(self, kind: str, timeout_s: float) -> dict[str, Any]:
        """The next frame of `kind`, answering nothing else; heartbeats every second meanwhile."""
        assert self.ws is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await self.ws.send_bytes(frame("heartbeat", load={}))
            body = await self.recv(self.ws, min(1.0, max(0.01, deadline - time.monotonic())))
            if body is not None and body["t"] == kind:
                return body
            if self.ws.closed:
                raise AssertionError(f"connection closed while waiting for {kind}")
        raise AssertionError(f"no {kind} frame in {timeout_s}s")

    async def report(self, kind: str, job_id: str, attempt: int, **fields: Any) -> dict[str, Any]:
        assert self.ws is not None
        self.rid += 1
        await self.ws.send_bytes(frame(kind, rid=self.rid, job_id=job_id, attempt=attempt, **fields))
        return await self.next_of("ack", 10)


def run_scenario(c: Cluster, kill_leader: bool) -> dict[str, Any]:
    async def scenario() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            w = ScriptedWorker(c, "scripted-1")
            await w.connect(session, running=[])
            eventually(lambda: any(x["worker_id"] == "scripted-1" for x in
                                   http("GET", c.nodes[c.leader()].url + "/api/workers")[1]["workers"]),
                       10, "worker registered")
            status, body = await asyncio.to_thread(
                http, "POST", c.nodes[c.leader()].url + "/api/jobs",
                {"type": "noop", "payload": {}, "timeout_s": TIMEOUT_S, "key": "repush"})
            assert status == 201, body
            job_id = body["job_id"]
            lost = await w.next_of("assign", 20)  # committed and pushed: we drop it on the floor
            assert (lost["job_id"], lost["attempt"]) == (job_id, 1)
            assert w.ws is not None
            dropped_at = time.monotonic()
            if kill_leader:
                await asyncio.to_thread(c.kill, c.leader())
            await w.ws.close()
            await w.connect(session, running=[])  # "I run nothing"
            again = await w.next_of("assign", 30)
            repushed_s = time.monotonic() - dropped_at
            assert (again["job_id"], again["attempt"]) == (job_id, 1), again
            assert (await w.report("started", job_id, 1))["ok"] is True
            ack = await w.report("completed", job_id, 1, result={"ok": True}, stats={})
            assert ack["ok"] is True, ack
            await w.ws.close()
            return {"job_id": job_id, "repushed_s": repushed_s}
    return asyncio.run(scenario())


def check_completed_once(c: Cluster, job_id: str) -> None:
    def done() -> dict[str, Any] | None:
        job = http("GET", c.nodes[c.leader()].url + f"/api/jobs/{job_id}")[1]["job"]
        return job if job["status"] == "completed" else None
    job = eventually(done, 20, "job completed")
    assert [a["outcome"] for a in job["attempts"]] == ["completed"], job["attempts"]


def test_lost_push_is_repushed_on_reconnect(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    c.leader()
    got = run_scenario(c, kill_leader=False)
    print(f"\nre-pushed {got['repushed_s']:.2f}s after the connection dropped (job timeout {TIMEOUT_S}s)")
    assert got["repushed_s"] < 5
    check_completed_once(c, got["job_id"])


def test_push_lost_with_the_leader_is_repushed_by_the_next(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    c.leader()
    got = run_scenario(c, kill_leader=True)
    print(f"\nre-pushed by the new leader {got['repushed_s']:.2f}s after the old one was killed "
          f"(job timeout {TIMEOUT_S}s)")
    assert got["repushed_s"] < 10
    check_completed_once(c, got["job_id"])


