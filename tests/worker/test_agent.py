"""The worker agent against in-test replicas that speak the replica side of worker protocol v1.

Each FakeReplica is a real aiohttp server on 127.0.0.1; the Agent is the real one with the real
executors. Waits are deadlines on frames or conditions, never bare sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from haco.worker.agent import Agent, WorkerConfig, config_from_args
from haco.worker.executors import ExecContext, ExecResult, Executor, get_executor
from haco.worker.hardware import Capabilities, Gpu
from haco.worker.protocol import CONNECT_PATH, Backoff, decode, encode

DEADLINE_S = 10.0
CAPS = Capabilities(cpus=4, memory_gb=8.0, disk_free_gb=20.0, hardware=("cuda", "gpu", "x86_64"),
                    gpus=(Gpu("T4", 16.0, 7.5),), cuda_compute=7.5)
Acker = Callable[[dict[str, Any]], dict[str, Any] | None]  # report -> ack fields, or None for no ack


def ack_ok(report: dict[str, Any]) -> dict[str, Any] | None:
    return {"ok": True}


class FakeReplica:
    """The replica side: hello → welcome (or redirect), acks reports with `acker`, records frames."""

    def __init__(self, *, redirect: str | None | bool = False, heartbeat_s: float = 0.2) -> None:
        self.redirect = redirect  # False: lead; a URL or None: answer hello with a redirect there
        self.heartbeat_s = heartbeat_s
        self.acker: Acker = ack_ok
        self.hellos: list[dict[str, Any]] = []
        self.inbox: list[dict[str, Any]] = []  # frames not yet taken by next()
        self.arrived = asyncio.Event()
        self.log: list[dict[str, Any]] = []  # every frame after hello, heartbeats excepted
        self.ws: web.WebSocketResponse | None = None
        self.connected = asyncio.Event()
        app = web.Application()
        app.router.add_get(CONNECT_PATH, self._handle)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        hello = await self._first(ws)
        if hello is None:
            return ws
        self.hellos.append(hello)
        if self.redirect is not False:
            await ws.send_bytes(encode("redirect", leader_url=self.redirect))
            await ws.close()
            return ws
        await ws.send_bytes(encode("welcome", worker_id=hello["worker_id"], leader=True, heartbeat_s=self.heartbeat_s))
        self.ws = ws
        self.connected.set()
        async for msg in ws:
            body = decode(msg.data) if msg.type is WSMsgType.BINARY else None
            if body is None:
                continue
            if body["t"] != "heartbeat":
                self.log.append(body)
            self.inbox.append(body)
            self.arrived.set()
            if "rid" in body and (fields := self.acker(body)) is not None:
                await ws.send_bytes(encode("ack", rid=body["rid"], **fields))
            if body["t"] == "bye":
                await ws.close()
        self.connected.clear()
        return ws

    @staticmethod
    async def _first(ws: web.WebSocketResponse) -> dict[str, Any] | None:
        msg = await asyncio.wait_for(ws.receive(), DEADLINE_S)
        return decode(msg.data) if msg.type is WSMsgType.BINARY else None

    async def send(self, kind: str, **fields: Any) -> None:
        await asyncio.wait_for(self.connected.wait(), DEADLINE_S)
        assert self.ws is not None
        await self.ws.send_bytes(encode(kind, **fields))

    async def next(self, kind: str, within_s: float = DEADLINE_S, **match: Any) -> dict[str, Any]:
        """Takes the oldest frame of this type (and these field values) not taken yet, waiting for one."""
        async def find() -> dict[str, Any]:
            while True:
                self.arrived.clear()
                for i, body in enumerate(self.inbox):
                    if body["t"] == kind and all(body.get(k) == v for k, v in match.items()):
                        return self.inbox.pop(i)
                await self.arrived.wait()
        return await asyncio.wait_for(find(), within_s)

    async def drop_connection(self) -> None:
        assert self.ws is not None
        self.connected.clear()
        await self.ws.close()


async def eventually(check: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def replicas() -> AsyncIterator[Callable[..., Awaitable[FakeReplica]]]:
    made: list[FakeReplica] = []

    async def make(**kwargs: Any) -> FakeReplica:
        replica = FakeReplica(**kwargs)
        await replica.server.start_server()
        made.append(replica)
        return replica

    yield make
    for replica in made:
        await replica.server.close()


@pytest.fixture
async def start_agent(tmp_path: Path) -> AsyncIterator[Any]:
    running: list[tuple[Agent, asyncio.Task[int]]] = []

    def start(*urls: str, executors: Any = get_executor, **overrides: Any) -> tuple[Agent, asyncio.Task[int]]:
        fields: dict[str, Any] = dict(coordinators=list(urls), worker_id="w1", capacity=2, tags=("fast",),
                                      workdir=tmp_path / "work", hardware=CAPS, resend_s=0.3,
                                      drain_timeout_s=5.0, flush_timeout_s=2.0)
        agent = Agent(WorkerConfig(**{**fields, **overrides}), executors=executors)
        task = asyncio.create_task(agent.run())
        running.append((agent, task))
        return agent, task

    yield start
    for _, task in running:
        task.cancel()
    await asyncio.gather(*(task for _, task in running), return_exceptions=True)


def assign(job_id: str, type_: str, payload: Any, attempt: int = 1, timeout_s: float = 30.0) -> dict[str, Any]:
    return {"job_id": job_id, "attempt": attempt, "type": type_, "payload": payload, "timeout_s": timeout_s}


async def test_hello_carries_capabilities_and_heartbeats_follow(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    start_agent(replica.url)
    beat = await replica.next("heartbeat")
    hello = replica.hellos[0]
    assert hello["v"] == 1
    assert (hello["worker_id"], hello["capacity"], hello["tags"]) == ("w1", 2, ["fast"])
    assert (hello["cpus"], hello["memory_gb"], hello["cuda_compute"]) == (4, 8.0, 7.5)
    assert hello["hardware"] == ["cuda", "gpu", "x86_64"] and hello["running"] == []
    assert hello["info"]["pid"] == os.getpid() and hello["info"]["disk_free_gb"] == 20.0
    assert hello["info"]["gpus"] == [{"name": "T4", "memory_gb": 16.0, "compute_cap": 7.5, "index": 0, "kind": "cuda"}]
    assert hello["devices"] == [{"kind": "cuda", "index": 0, "model": "T4", "memory_gb": 16.0, "compute": 7.5}]
    assert set(beat["load"]) == {"cpu_percent", "memory_percent", "running"}


async def test_redirect_is_followed_to_the_leader(replicas: Any, start_agent: Any) -> None:
    leader = await replicas()
    follower = await replicas(redirect=leader.url)
    start_agent(follower.url)
    await asyncio.wait_for(leader.connected.wait(), DEADLINE_S)
    assert len(follower.hellos) == 1 and leader.hellos[0]["worker_id"] == "w1"


async def test_redirect_without_a_leader_tries_another_replica(replicas: Any, start_agent: Any) -> None:
    lost = await replicas(redirect=None)
    leader = await replicas()
    start_agent(lost.url, leader.url)
    await asyncio.wait_for(leader.connected.wait(), DEADLINE_S)


async def test_shell_job_reports_started_then_completed_with_its_result(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    agent, _ = start_agent(replica.url)
    await replica.send("assign", **assign("j1", "shell", {"argv": ["echo", "hi"]}))
    started = await replica.next("started", job_id="j1")
    done = await replica.next("completed", job_id="j1")
    assert started["attempt"] == done["attempt"] == 1 and started["rid"] != done["rid"]
    assert done["result"]["exit_code"] == 0 and done["result"]["stdout_tail"] == "hi\n"
    assert {"wall_ms", "cpu_ms", "peak_rss_bytes"} <= set(done["stats"])
    await eventually(lambda: not agent.outbox and not agent.jobs, "outbox emptied by the acks")


async def test_failed_job_and_unknown_executor_report_failed(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    start_agent(replica.url)
    await replica.send("assign", **assign("j1", "shell", {"argv": ["false"]}))
    await replica.send("assign", **assign("j2", "no-such-executor", {}))
    failed = await replica.next("failed", job_id="j1")
    assert failed["result"]["exit_code"] == 1 and failed["timed_out"] is False and failed["error"]
    unknown = await replica.next("failed", job_id="j2")
    assert "no-such-executor" in unknown["error"]


async def test_default_relative_workdir_runs_python_pytest_and_benchmark_jobs(
    replicas: Any, start_agent: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # `haco worker` with no --workdir: ./haco-work/ID, relative
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_two.py").write_text("def test_ok():\n    pass\n\ndef test_bad():\n    assert 0\n")
    replica = await replicas()
    agent, _ = start_agent(replica.url, workdir=Path("haco-work") / "w1")
    assert agent.config.workdir == tmp_path / "haco-work" / "w1"
    await replica.send("assign", **assign("j1", "python", {"function": "math:sqrt", "args": [16]}))
    await replica.send("assign", **assign("j2", "pytest", {"path": str(suite), "args": ["-p", "no:asyncio"]}))
    await replica.send("assign", **assign("j3", "benchmark", {"function": "math:sqrt", "args": [2], "repeat": 3}))
    assert (await replica.next("completed", job_id="j1", within_s=30))["result"] == 4.0
    tests = await replica.next("failed", job_id="j2", within_s=60)  # a pytest start-up: seconds on a busy box
    assert (tests["result"]["passed"], tests["result"]["failed"]) == (1, 1)
    assert [f.rsplit("/", 1)[-1] for f in tests["result"]["failing"]] == ["test_two.py::test_bad"]
    assert (await replica.next("completed", job_id="j3", within_s=30))["result"]["runs"] == 3


class _SetReturning:
    """A plugin that breaks the contract: its result is not JSON-able."""

    name = "sets"

    async def run(self, payload: Any, ctx: ExecContext) -> ExecResult:
        return ExecResult(True, {1, 2}, None, {"wall_ms": 0.0, "cpu_ms": 0.0, "peak_rss_bytes": 0})


async def test_unserializable_result_fails_the_attempt_not_the_worker(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()

    def lookup(name: str) -> Executor:
        return _SetReturning() if name == "sets" else get_executor(name)

    start_agent(replica.url, executors=lookup)
    await replica.send("assign", **assign("j1", "sets", None))
    failed = await replica.next("failed", job_id="j1")
    assert "not serializable" in failed["error"]
    await replica.send("assign", **assign("j2", "noop", "still here"))
    assert (await replica.next("completed", job_id="j2"))["result"] == "still here"


async def test_retry_ack_resends_the_same_report(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    answers = iter([{"retry": True}, {"retry": True}])
    replica.acker = lambda r: next(answers, {"ok": True}) if r["t"] == "completed" else {"ok": True}
    agent, _ = start_agent(replica.url)
    await replica.send("assign", **assign("j1", "noop", {"x": 1}))
    first = await replica.next("completed", job_id="j1")
    again = await replica.next("completed", job_id="j1")
    third = await replica.next("completed", job_id="j1")
    assert first == again == third and first["result"] == {"x": 1}
    await eventually(lambda: not agent.outbox, "the report dropped once acked")


async def test_refused_report_is_dropped(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    replica.acker = lambda r: ({"ok": False, "code": "STALE_ATTEMPT", "message": "attempt 1 is not current"}
                               if r["job_id"] == "j1" else {"ok": True})
    agent, _ = start_agent(replica.url, resend_s=0.1)
    await replica.send("assign", **assign("j1", "noop", 1))
    refused = await replica.next("completed", job_id="j1")
    await eventually(lambda: not agent.outbox, "refused reports dropped")
    await replica.send("assign", **assign("j2", "noop", 2))  # frames are handled in order: a sync point
    await replica.next("completed", job_id="j2")
    assert [f["rid"] for f in replica.log].count(refused["rid"]) == 1


async def test_duplicate_assign_is_ignored(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    agent, _ = start_agent(replica.url)
    sleeper = assign("j1", "shell", {"argv": ["sleep", "30"]})
    await replica.send("assign", **sleeper)
    await replica.send("assign", **sleeper)
    await replica.send("assign", **assign("j2", "noop", None))
    await replica.next("completed", job_id="j2")
    assert [f["job_id"] for f in replica.log if f["t"] == "started"].count("j1") == 1
    assert set(agent.jobs) == {("j1", 1)}


async def test_reconnect_lists_running_jobs_and_resends_unacked_reports(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    replica.acker = lambda r: None if r["job_id"] == "j2" else {"ok": True}  # j2's reports never answered
    agent, _ = start_agent(replica.url, resend_s=30.0)
    await replica.send("assign", **assign("j1", "shell", {"argv": ["sleep", "30"]}))
    await replica.send("assign", **assign("j2", "noop", "r2", attempt=3))
    await replica.next("started", job_id="j1")
    unacked = [await replica.next("completed", job_id="j2")]  # noop ends before its start goes out: one report
    await replica.drop_connection()
    await asyncio.wait_for(replica.connected.wait(), DEADLINE_S)
    assert replica.hellos[1]["running"] == [["j1", 1], ["j2", 3]]
    resent = [await replica.next("completed", job_id="j2")]
    assert resent == unacked
    assert ("j1", 1) in agent.jobs  # it kept running across the reconnect


async def test_cancel_kills_the_running_job(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    agent, _ = start_agent(replica.url)
    await replica.send("assign", **assign("j1", "shell", {"argv": ["sleep", "30"]}))
    await replica.next("started", job_id="j1")
    sleeper = await eventually(lambda: _child("sleep"), "the sleep process")
    await replica.send("cancel", job_id="j1", attempt=1)
    await eventually(lambda: not agent.jobs, "the job task ended")
    await eventually(lambda: not sleeper.is_running() or sleeper.status() == psutil.STATUS_ZOMBIE, "sleep killed")
    assert not [f for f in replica.log if f["t"] in ("completed", "failed")]


async def test_drain_finishes_the_running_job_says_bye_and_returns(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    agent, run = start_agent(replica.url)
    await replica.send("assign", **assign("j1", "shell", {"argv": ["sleep", "0.5"]}))
    await replica.next("started", job_id="j1")
    agent.request_drain()
    await replica.next("draining")
    await replica.send("assign", **assign("j2", "noop", None))  # ignored: the replica requeues on bye
    await replica.next("completed", job_id="j1")
    await replica.next("bye")
    assert await asyncio.wait_for(run, DEADLINE_S) == 0
    assert not [f for f in replica.log if f.get("job_id") == "j2"]


async def test_drain_deadline_cancels_jobs_still_running(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    agent, run = start_agent(replica.url, drain_timeout_s=0.3)
    await replica.send("assign", **assign("j1", "shell", {"argv": ["sleep", "30"]}))
    await replica.next("started", job_id="j1")
    agent.request_drain()
    await replica.next("bye")
    assert await asyncio.wait_for(run, DEADLINE_S) == 0
    assert not [f for f in replica.log if f["t"] in ("completed", "failed")]


async def test_reports_that_never_commit_make_it_move_on(replicas: Any, start_agent: Any) -> None:
    replica = await replicas()
    replica.acker = lambda r: {"retry": True}
    start_agent(replica.url, stall_s=0.5)
    await replica.send("assign", **assign("j1", "noop", None))
    await replica.next("completed", job_id="j1")
    await eventually(lambda: len(replica.hellos) >= 2, "a new connection after the stall")
    replica.acker = ack_ok
    await replica.next("completed", job_id="j1")


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(0.1, 5.0)
    delays = [backoff.next() for _ in range(12)]
    assert 0.05 <= delays[0] <= 0.1 and all(2.5 <= d <= 5.0 for d in delays[7:])
    backoff.reset()
    assert backoff.next() <= 0.1


def test_cli_flags_build_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from haco.cli import build_parser

    args = build_parser().parse_args(["worker", "--coordinators", "http://a:1,http://b:2/", "--id", "w7",
                                      "--capacity", "3", "--tags", "gpu, big", "--drain-timeout", "9"])
    cfg = config_from_args(args, {})
    assert cfg.coordinators == ("http://a:1", "http://b:2/") and cfg.worker_id == "w7"
    assert (cfg.capacity, cfg.tags, cfg.drain_timeout_s) == (3, ("gpu", "big"), 9.0)
    defaults = config_from_args(build_parser().parse_args(["worker"]), {"HACO_COORDINATORS": "http://c:3"})
    assert defaults.coordinators == ("http://c:3",) and defaults.capacity >= 1 and defaults.worker_id


async def test_sigterm_drains_the_worker_process(replicas: Any, tmp_path: Path) -> None:
    replica = await replicas()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "haco.worker.agent", "--coordinators", replica.url, "--id", "w9",
        "--capacity", "1", "--workdir", str(tmp_path / "w9"), "--log-level", "debug",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.wait_for(replica.connected.wait(), DEADLINE_S)
        await replica.send("assign", **assign("j1", "shell", {"argv": ["sleep", "0.3"]}))
        await replica.next("started", job_id="j1")
        proc.send_signal(signal.SIGTERM)
        await replica.next("draining")
        await replica.next("completed", job_id="j1")
        await replica.next("bye")
        assert await asyncio.wait_for(proc.wait(), DEADLINE_S) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert replica.hellos[0]["worker_id"] == "w9"


def _child(name: str) -> psutil.Process | None:
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == name:
                return child
        except psutil.NoSuchProcess:
            continue
    return None


@pytest.mark.parametrize("url", ["127.0.0.1:7001", "http://127.0.0.1:99999", "ws://127.0.0.1:7001"])
def test_a_coordinator_url_the_cli_would_refuse_is_refused_by_the_worker_too(tmp_path: Path, url: str) -> None:
    cfg = WorkerConfig(coordinators=("http://127.0.0.1:7001", url), worker_id="w1", capacity=1, workdir=tmp_path)
    with pytest.raises(ValueError, match="coordinator URL"):
        cfg.validate()
