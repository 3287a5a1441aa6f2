"""Job logs and progress against hostile workers: a worker answers only the log reads it was asked,
progress counts only from the attempt's own worker, and the frame limits still close a flood."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.integration.cluster import Cluster, eventually

from .conftest import ClusterMaker
from .wsclient import connect, hello, next_frame, pack


@pytest.fixture(scope="module")
def cluster(make_cluster: ClusterMaker) -> Cluster:
    c = make_cluster(auth=True)
    c.leader()
    return c


async def test_only_the_asked_worker_answers_and_only_its_own_progress_counts(cluster: Cluster) -> None:
    leader = cluster.nodes[cluster.leader()].url
    reader = {"Authorization": f"Bearer {cluster.token('reader')}"}
    async with aiohttp.ClientSession() as http:
        a = await connect(http, leader, cluster.token("worker", "w-a"))
        await a.send_bytes(hello("w-a", tags=["only-a"], logs=1))
        assert await next_frame(a, "welcome") is not None
        b = await connect(http, leader, cluster.token("worker", "w-b"))
        await b.send_bytes(hello("w-b", logs=1))
        assert await next_frame(b, "welcome") is not None
        status, body = cluster.api(0, "POST", "/api/jobs", {"type": "shell", "payload": {"argv": ["true"]},
                                                            "required_tags": ["only-a"]})
        assert status == 201, body
        job_id = body["job_id"]
        assign = await next_frame(a, "assign")
        assert assign is not None and assign["job_id"] == job_id
        attempt = assign["attempt"]
        await a.send_bytes(pack("started", rid="s", job_id=job_id, attempt=attempt))
        assert (await next_frame(a, "ack"))["ok"] is True  # type: ignore[index]

        await b.send_bytes(pack("progress", items=[[job_id, attempt, 0.99, "forged", 1]]))
        await a.send_bytes(pack("progress", items=[[job_id, attempt, 0.5, "real", 1]]))

        def progress() -> object:
            return cluster.api(0, "GET", f"/api/jobs/{job_id}")[1]["job"].get("progress")
        seen = eventually(progress, 10, "the attempt's own progress")
        assert seen == {**seen, "fraction": 0.5, "message": "real"}  # type: ignore[dict-item]

        read = asyncio.create_task(http.get(f"{leader}/api/jobs/{job_id}/logs", headers=reader))
        ask = await next_frame(a, "log_read")
        assert ask is not None and ask["job_id"] == job_id and ask["attempt"] == attempt
        for rid in (ask["rid"], "guessed"):  # the other worker answering, with the real rid or not
            await b.send_bytes(pack("log_data", rid=rid, ok=True, chunks=[[0, 1, 1, b"forged\n"]], next_offset=7,
                                    start=0, at_end=True, ended=True, exit_code=0, skipped=0))
        await asyncio.sleep(0.3)
        assert not read.done()
        await a.send_bytes(pack("log_data", rid=ask["rid"], ok=True, chunks=[[0, 1, 1, b"real\n"]], next_offset=5,
                                start=0, at_end=True, ended=True, exit_code=0, skipped=0))
        resp = await read
        page = await resp.json()
        resp.release()
        assert resp.status == 200 and [c["text"] for c in page["chunks"]] == ["real\n"], page

        flood = pack("log_data", rid="x", ok=True, chunks=[])
        closed = False
        for _ in range(30):  # the frame budget (10,000 at once, 5,000/s) closes the socket
            for _ in range(1000):
                await b.send_bytes(flood)
            await asyncio.sleep(0)
            if b.closed or b.close_code is not None:
                closed = True
                break
        if not closed:
            closed = await next_frame(b, "never", timeout_s=10) is None
        assert closed
        big = await connect(http, leader, cluster.token("worker", "w-c"))
        await big.send_bytes(hello("w-c", logs=1))
        assert await next_frame(big, "welcome") is not None
        try:  # past the 4 MiB frame limit: the replica drops the connection, maybe mid-send
            await big.send_bytes(pack("log_data", rid="y", ok=True, chunks=[[0, 1, 1, b"x" * (5 << 20)]]))
        except (ConnectionError, aiohttp.ClientError):
            pass
        else:
            assert await next_frame(big, "never", timeout_s=10) is None
        for ws in (a, b, big):
            await ws.close()
