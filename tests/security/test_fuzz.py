"""Hostile input against a live 3-replica cluster (queue paused, no workers but one fuzzing
socket): ≥ 10,000 malformed requests and worker frames. No 5xx, no crash, and the state digest
is the same after all of them as before (nothing refused reaches the state; the few that reach
the log are refused at apply and leave it alone).

Ticks and worker liveness are slowed (HACO_TICK_INTERVAL_S, HACO_WORKER_LOST_S) so the leader
proposes nothing of its own meanwhile; any digest change is then the fuzz's doing.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from haco.security.tokens import issue, valid_token_id
from raft_state import SpecError, parse_job
from tests.integration.cluster import Cluster, eventually

from .conftest import ClusterMaker
from .fuzz_strategies import (HttpCase, batched_reports, bodies, first_frames, frame_batch, frame_heads, frame_tails, http_batch,
                              queries, targets)
from .wsclient import connect, hello, next_frame

T = TypeVar("T")


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@dataclass
class Fuzz:
    cluster: Cluster
    loop: asyncio.AbstractEventLoop
    http: aiohttp.ClientSession
    tokens: dict[str, str | None]
    job_ids: list[str]
    baseline: dict[str, Any]
    ws: aiohttp.ClientWebSocketResponse
    acks: int = 0
    reports_sent: int = 0
    batch_acks: int = 0
    batches_sent: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)


@pytest.fixture(scope="module")
def fuzz(make_cluster: ClusterMaker) -> Iterator[Fuzz]:
    c = make_cluster(auth=True, extra_env={"HACO_TICK_INTERVAL_S": "3600", "HACO_WORKER_LOST_S": "3600"})
    leader = c.leader()
    assert c.api(0, "POST", "/api/queue/pause")[0] == 200
    job_ids = [c.api(1, "POST", "/api/jobs", {"type": "noop", "key": f"setup-{n}"})[1]["job_id"] for n in range(5)]
    secret = c.secret_file.read_text().encode()
    tokens = {"none": None, "garbage": "haco1.e30.AAAA", "expired": issue(secret, "admin", 5, now_s=time.time() - 60)[0],
              "forged": issue(b"some-other-secret-entirely", "admin", 600, now_s=time.time())[0],
              **{r: c.token(r) for r in ("reader", "submitter", "admin")}, "worker": c.token("worker", "w-other")}
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-loop", daemon=True)
    thread.start()

    async def open_session() -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        ws = await connect(http, c.nodes[leader].url, c.token("worker", "w-fuzz"))
        await ws.send_bytes(hello("w-fuzz", capacity=0))  # capacity 0: nothing is ever assigned to it
        assert await next_frame(ws, "welcome") is not None
        return http, ws
    http, ws = asyncio.run_coroutine_threadsafe(open_session(), loop).result(30)
    f = Fuzz(c, loop, http, tokens, job_ids, c.converged(), ws)
    reader = asyncio.run_coroutine_threadsafe(_count_acks(f), loop)
    yield f
    reader.cancel()
    f.run(_close(f))
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def _count_acks(f: Fuzz) -> None:
    async for msg in f.ws:
        kind = msgpack.unpackb(msg.data, raw=False).get("t") if msg.type is aiohttp.WSMsgType.BINARY else None
        f.acks += kind == "ack"
        f.batch_acks += kind == "acks"


async def _close(f: Fuzz) -> None:
    await f.ws.close()
    await f.http.close()


def neutralize(case: HttpCase) -> HttpCase:
    """Keep a hostile request from being a valid write: a parseable job gets a missing dependency
    (refused at apply), a well-formed revocation an invalid id, a resume a reader's token."""
    writes = case.token in ("submitter", "admin") and case.method == "POST"
    body = case.body
    if writes and case.path == "/api/jobs" and _parses(body):
        return replace(case, body={**body, "depends_on": ["fuzz-missing-dependency"]})
    if writes and case.path == "/api/jobs/batch" and isinstance(body, dict) and isinstance(body.get("jobs"), list) \
            and body["jobs"] and all(_parses(j) for j in body["jobs"]):
        first = {**body["jobs"][0], "depends_on": ["fuzz-missing-dependency"]}
        return replace(case, body={**body, "jobs": [first, *body["jobs"][1:]]})
    if writes and case.path == "/api/queue/resume" and case.token == "admin":
        return replace(case, token="reader")
    if writes and case.path == "/api/tokens/revoke" and isinstance(body, dict) and isinstance(body.get("token_id"), str) \
            and valid_token_id(body["token_id"]):
        return replace(case, body={**body, "token_id": body["token_id"] + " !"})
    return case


def _parses(obj: Any) -> bool:
    try:
        parse_job(obj)
    except (SpecError, RecursionError):
        return False
    return True


async def _send(f: Fuzz, case: HttpCase, i: int) -> tuple[HttpCase, int, Any]:
    base = f.cluster.nodes[i % 3].url
    token = f.tokens[case.token]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(case.body, bytes):
        data = case.body
    elif case.body is None:
        data = None
    else:
        import json
        data = json.dumps(case.body).encode()
        headers["Content-Type"] = "application/json"
    async with f.http.request(case.method, URL(case.url(base), encoded=True), data=data, headers=headers) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return case, resp.status, body


@fuzz_settings(250)
@given(st.lists(bodies, min_size=4, max_size=4), st.lists(targets, min_size=7, max_size=7), queries)
def test_hostile_http_requests(fuzz: Fuzz, bodies_: list[Any], targets_: list[Any], query: dict[str, str]) -> None:
    cases = http_batch(bodies_, targets_, query)

    async def batch() -> list[tuple[HttpCase, int, Any]]:
        return await asyncio.gather(*(_send(fuzz, neutralize(c), i) for i, c in enumerate(cases)))
    for case, status, body in fuzz.run(batch()):
        fuzz.counts["http"] += 1
        fuzz.statuses[status] += 1
        assert status < 500, (case, status, body)
        if status >= 400 and case.method != "HEAD":
            assert isinstance(body, dict) and set(body["error"]) >= {"code", "message"}, (case, status, body)
        if status < 300 and case.method in ("POST", "DELETE", "PUT", "PATCH"):
            assert isinstance(body, dict) and body.get("already") is True, ("a fuzz write was applied", case, body)


@fuzz_settings(125)
@given(st.data())
def test_hostile_frames_on_a_registered_worker_socket(fuzz: Fuzz, data: st.DataObject) -> None:
    heads = data.draw(st.lists(frame_heads(fuzz.job_ids), min_size=5, max_size=5))
    frames = frame_batch(heads, data.draw(st.lists(frame_tails, min_size=5, max_size=5)))
    frames += data.draw(st.lists(batched_reports(fuzz.job_ids), min_size=2, max_size=2))
    as_text = [i % 11 == 10 for i in range(len(frames))]

    async def send() -> None:
        for body, text in zip(frames, as_text):
            if text:
                await fuzz.ws.send_str(str(body)[:1000])
                continue
            await fuzz.ws.send_bytes(msgpack.packb(body, use_bin_type=True))
            if body["t"] in ("started", "completed", "failed"):
                fuzz.reports_sent += 1
            fuzz.batches_sent += body["t"] == "reports"
    fuzz.run(send())
    fuzz.counts["frames"] += len(frames)
    assert not fuzz.ws.closed, fuzz.ws.close_code


@fuzz_settings(30)
@given(st.lists(st.tuples(st.sampled_from(["none", "garbage", "reader", "submitter", "worker"]), first_frames),
                min_size=10, max_size=10))
def test_hostile_first_frames_never_register(fuzz: Fuzz, attempts: list[tuple[str, Any]]) -> None:
    url = fuzz.cluster.nodes[fuzz.cluster.leader()].url

    async def one(kind: str, first: Any) -> str:
        try:
            ws = await connect(fuzz.http, url, fuzz.tokens[kind])
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status in (401, 403), exc.status
            return f"handshake {exc.status}"
        try:
            if isinstance(first, dict) and first.get("worker_id") == "w-other":
                first = {**first, "capacity": -1}  # the token's own id: keep the hello invalid
            await ws.send_bytes(first if isinstance(first, bytes) else msgpack.packb(first, use_bin_type=True))
            reply = await next_frame(ws, timeout_s=10)
            assert reply is None or reply["t"] == "error", reply
            assert await next_frame(ws, timeout_s=10) is None
            return "closed"
        finally:
            await ws.close()
    async def all_of() -> list[str]:
        return await asyncio.gather(*(one(k, f) for k, f in attempts))
    outcomes = fuzz.run(all_of())
    fuzz.counts["first_frames"] += len(outcomes)


def test_huge_bodies_and_malformed_http(fuzz: Fuzz) -> None:
    big = b'{"type": "noop", "payload": "' + b"x" * (9 * 1024 * 1024) + b'"}'

    async def huge() -> list[int]:
        out = []
        for path in ("/api/jobs", "/api/results/query", "/api/tokens/revoke"):
            async with fuzz.http.post(fuzz.cluster.nodes[0].url + path, data=io.BytesIO(big),
                                      headers={"Authorization": f"Bearer {fuzz.tokens['admin']}"}) as resp:
                out.append(resp.status)
        return out
    assert fuzz.run(huge()) == [413, 413, 413]
    port = fuzz.cluster.nodes[1].http_port
    for raw in (b"GARBAGE\r\n\r\n", b"GET /api/jobs HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000 + b"\r\n\r\n",
                b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\xff" + b"\x00" * 300):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(raw)
            answer = s.recv(200)
        assert answer == b"" or answer[:10] in (b"HTTP/1.1 4", b"HTTP/1.0 4"), answer
    fuzz.counts["raw"] += 8


def test_state_unchanged_and_every_replica_alive(fuzz: Fuzz) -> None:
    c = fuzz.cluster
    eventually(lambda: fuzz.acks >= fuzz.reports_sent and fuzz.batch_acks >= fuzz.batches_sent, 30,
               f"an ack for each of {fuzz.reports_sent} reports and {fuzz.batches_sent} batches")
    assert all(n.proc is not None and n.proc.poll() is None for n in c.nodes), "a replica died"
    after = c.converged(30)
    assert after["digest"] == fuzz.baseline["digest"], (fuzz.baseline["applied_index"], after["applied_index"])
    for i in range(3):  # each replica's (index, digest) history agrees with the others at the same index
        assert c.info(i)["digest"] == after["digest"]
    worker = c.api(c.leader(), "GET", "/api/workers/w-fuzz")[1]["worker"]
    assert worker["connected"] and worker["capacity"] == 0
    logs = c.dump_logs()
    for marker in ("Traceback", "unhandled error", "Error handling request", "Task exception was never retrieved"):
        assert marker not in logs, marker
    total = sum(fuzz.counts.values())
    print(f"fuzz: {dict(fuzz.counts)} total={total} statuses={dict(sorted(fuzz.statuses.items()))} "
          f"index {fuzz.baseline['applied_index']}->{after['applied_index']} digest {after['digest']}")
    if fuzz.counts["http"] and fuzz.counts["frames"]:
        assert total >= 10_000
