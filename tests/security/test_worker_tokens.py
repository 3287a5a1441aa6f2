"""A worker token opens the websocket only as its own worker id and reports only its own attempts."""

from __future__ import annotations

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


async def test_worker_token_binds_the_worker_id_and_its_reports(cluster: Cluster) -> None:
    url = cluster.nodes[cluster.leader()].url
    async with aiohttp.ClientSession() as http:
        ws = await connect(http, url, cluster.token("worker", "w-b"))  # hello as someone else: refused
        await ws.send_bytes(hello("w-a"))
        frame = await next_frame(ws)
        assert frame is not None and frame["t"] == "error" and frame["code"] == "FORBIDDEN", frame
        assert await next_frame(ws) is None
        for role in ("reader", "submitter"):  # other roles cannot open the websocket at all
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await connect(http, url, cluster.token(role))
            assert exc.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await connect(http, url, None)
        assert exc.value.status == 401

        a = await connect(http, url, cluster.token("worker", "w-a"))
        await a.send_bytes(hello("w-a", tags=["only-a"]))
        assert (await next_frame(a, "welcome"))["worker_id"] == "w-a"  # type: ignore[index]
        b = await connect(http, url, cluster.token("worker", "w-b"))
        await b.send_bytes(hello("w-b"))
        assert await next_frame(b, "welcome") is not None
        status, body = cluster.api(0, "POST", "/api/jobs", {"type": "noop", "required_tags": ["only-a"]})
        assert status == 201, body
        job_id = body["job_id"]
        assign = await next_frame(a, "assign")
        assert assign is not None and assign["job_id"] == job_id
        attempt = assign["attempt"]

        await b.send_bytes(pack("completed", rid="forged", job_id=job_id, attempt=attempt, result={"x": 1}))
        ack = await next_frame(b, "ack")
        assert ack == {**ack, "rid": "forged", "ok": False, "code": "NOT_YOUR_ATTEMPT"}, ack
        await b.send_bytes(pack("completed", rid="unknown", job_id="no-such-job", attempt=1, result=None))
        ack = await next_frame(b, "ack")
        assert ack is not None and ack.get("retry") and ack["rid"] == "unknown", ack
        await b.send_bytes(pack("failed", rid="bad", job_id=job_id, attempt=float("inf")))
        ack = await next_frame(b, "ack")
        assert ack is not None and ack["code"] == "MALFORMED", ack

        await a.send_bytes(pack("completed", rid="real", job_id=job_id, attempt=attempt, result={"by": "a"}))
        ack = await next_frame(a, "ack")
        assert ack is not None and ack["ok"] is True, ack
        for ws in (a, b):
            await ws.close()

    def done() -> dict[str, object] | None:
        job = cluster.api(0, "GET", f"/api/jobs/{job_id}")[1]["job"]
        return job if job["status"] == "completed" else None
    job = eventually(done, 10, "the job completed by its own worker")
    assert job["result"] == {"by": "a"} and [a["worker_id"] for a in job["attempts"]] == ["w-a"]


async def test_a_real_agent_with_a_token_for_another_id_never_registers(cluster: Cluster) -> None:
    cluster.start_worker("w-liar", token=cluster.token("worker", "w-honest"))
    log = cluster.root / "worker-w-liar.log"
    eventually(lambda: "FORBIDDEN" in log.read_text() or "no welcome" in log.read_text(), 20,
               "the agent was refused")
    status, _ = cluster.api(0, "GET", "/api/workers/w-liar")
    assert status == 404


async def test_a_hello_with_a_hostile_running_list_is_welcomed_and_reconciled(cluster: Cluster) -> None:
    url = cluster.nodes[cluster.leader()].url
    async with aiohttp.ClientSession() as http:
        for running in ([["job", "one"], 5, None, ["x", 2**63], ["no-such-job", 3]], {"a": 1}, 7, "text"):
            ws = await connect(http, url, cluster.token("worker", "w-odd"))
            await ws.send_bytes(hello("w-odd", running=running))
            assert await next_frame(ws, "welcome") is not None, running
            await ws.send_bytes(pack("completed", rid="after", job_id="nothing-here", attempt=1))
            ack = await next_frame(ws, "ack")  # the session survived its hello
            assert ack is not None and ack["rid"] == "after", running
            await ws.close()
