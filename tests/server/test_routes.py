"""Every route's success and error paths, over the real app and an in-process replica.

`CASES` drives one request per row and checks its status and error code; `test_every_route_has_a_case`
fails when a route is added to the app without a row here. Routes whose success needs more than
one request (a worker's websocket, long polls, logs) have tests of their own below."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from aiohttp.test_utils import TestClient

from raft_state import RegisterWorker

from tests.server.fake_replica import FakeReplica

JOB = {"type": "shell", "payload": {"argv": ["echo", "hi"]}}


def _register(replica: FakeReplica, worker_id: str = "w1") -> None:
    cmd = RegisterWorker(at_ms=1_000, worker_id=worker_id, capacity=2, tags=(), hardware=(), memory_gb=1.0,
                         cuda_compute=0.0, cpus=2, info=msgpack.packb({}))
    replica._apply(cmd)


async def _job(client: TestClient, **fields: Any) -> str:
    r = await client.post("/api/jobs", json={**JOB, **fields})
    assert r.status == 201, await r.text()
    return str((await r.json())["job_id"])


#: (method, route template, path, JSON body or raw bytes, expected status, expected error code or None)
#: `{job}` is a job submitted first; `{worker}` a registered worker.
CASES: list[tuple[str, str, str, Any, int, str | None]] = [
    ("GET", "/api/health", "/api/health", None, 200, None),
    ("GET", "/api/health/ready", "/api/health/ready", None, 200, None),
    ("GET", "/api/health/db", "/api/health/db", None, 200, None),
    ("GET", "/api/health/cluster", "/api/health/cluster", None, 200, None),
    ("GET", "/api/cluster", "/api/cluster", None, 200, None),
    ("GET", "/api/jobs", "/api/jobs", None, 200, None),
    ("GET", "/api/jobs", "/api/jobs?status=sleeping", None, 400, "BAD_QUERY"),
    ("GET", "/api/jobs", "/api/jobs?limit=0", None, 400, "BAD_QUERY"),
    ("GET", "/api/jobs", "/api/jobs?consistency=eventual", None, 400, "BAD_QUERY"),
    ("POST", "/api/jobs", "/api/jobs", JOB, 201, None),
    ("POST", "/api/jobs", "/api/jobs", b"{not json", 400, "BAD_JSON"),
    ("POST", "/api/jobs", "/api/jobs", b"", 400, "BAD_JSON"),
    ("POST", "/api/jobs", "/api/jobs", {"type": "shell", "payload": {"argv": ["x"]}, "colour": "red"}, 400, "INVALID"),
    ("POST", "/api/jobs", "/api/jobs", {"type": "shell", "payload": {"argv": ["x"]}, "priority": "high"}, 400,
     "INVALID"),
    ("POST", "/api/jobs/batch", "/api/jobs/batch", {"jobs": [JOB, JOB]}, 201, None),
    ("POST", "/api/jobs/batch", "/api/jobs/batch", {"jobs": []}, 400, None),
    ("POST", "/api/jobs/batch", "/api/jobs/batch", {"jobs": [JOB, {"type": 3}]}, 400, "INVALID"),
    ("POST", "/api/jobs/batch", "/api/jobs/batch", [JOB], 400, None),
    ("GET", "/api/jobs/{job_id}", "/api/jobs/{job}", None, 200, None),
    ("GET", "/api/jobs/{job_id}", "/api/jobs/nosuchjob", None, 404, "NOT_FOUND"),
    ("GET", "/api/jobs/{job_id}", "/api/jobs/{job}?wait_s=-1", None, 400, "BAD_QUERY"),
    ("POST", "/api/jobs/{job_id}/cancel", "/api/jobs/{job}/cancel", None, 200, None),
    ("POST", "/api/jobs/{job_id}/cancel", "/api/jobs/{job}/cancel", {"reason": "no longer needed"}, 200, None),
    ("POST", "/api/jobs/{job_id}/cancel", "/api/jobs/{job}/cancel", {"reason": 5}, 400, "INVALID"),
    ("POST", "/api/jobs/{job_id}/cancel", "/api/jobs/nosuchjob/cancel", None, 404, None),
    ("GET", "/api/jobs/{job_id}/logs", "/api/jobs/{job}/logs", None, 200, None),
    ("GET", "/api/jobs/{job_id}/logs", "/api/jobs/nosuchjob/logs", None, 404, None),
    ("GET", "/api/jobs/{job_id}/logs", "/api/jobs/{job}/logs?stream=both&offset=-1", None, 400, None),
    ("GET", "/api/jobs/{job_id}/progress", "/api/jobs/{job}/progress", None, 200, None),
    ("GET", "/api/jobs/{job_id}/progress", "/api/jobs/nosuchjob/progress", None, 404, None),
    ("GET", "/api/queue/stats", "/api/queue/stats", None, 200, None),
    ("POST", "/api/queue/pause", "/api/queue/pause", None, 200, None),
    ("POST", "/api/queue/resume", "/api/queue/resume", None, 200, None),
    ("GET", "/api/workers", "/api/workers", None, 200, None),
    ("GET", "/api/workers/{worker_id}", "/api/workers/{worker}", None, 200, None),
    ("GET", "/api/workers/{worker_id}", "/api/workers/nobody", None, 404, "NOT_FOUND"),
    ("POST", "/api/workers/{worker_id}/drain", "/api/workers/{worker}/drain", None, 200, None),
    ("POST", "/api/workers/{worker_id}/drain", "/api/workers/nobody/drain", None, 404, None),
    ("POST", "/api/workers/{worker_id}/undrain", "/api/workers/{worker}/undrain", None, 200, None),
    ("POST", "/api/workers/{worker_id}/undrain", "/api/workers/nobody/undrain", None, 404, None),
    ("DELETE", "/api/workers/{worker_id}", "/api/workers/{worker}", None, 200, None),
    ("DELETE", "/api/workers/{worker_id}", "/api/workers/nobody", None, 404, None),
    ("GET", "/api/workers/connect", "/api/workers/connect", None, 400, None),
    ("POST", "/api/results/query", "/api/results/query", {"sql": "SELECT count(*) AS n FROM results"}, 200, None),
    ("POST", "/api/results/query", "/api/results/query", {"sql": "DROP TABLE results"}, 400, None),
    ("POST", "/api/results/query", "/api/results/query", {"query": "SELECT 1"}, 400, None),
    ("POST", "/api/tokens/revoke", "/api/tokens/revoke", {"token_id": "abc123"}, 200, None),
    ("POST", "/api/tokens/revoke", "/api/tokens/revoke", {"token_id": "bad id!"}, 400, "INVALID"),
    ("POST", "/api/jobs", "/api/jobs", {**JOB, "not_before": "2030-01-01T00:00:00Z"}, 201, None),
    ("POST", "/api/jobs", "/api/jobs", {**JOB, "not_before": "tomorrow"}, 400, "INVALID"),
    ("POST", "/api/jobs/batch", "/api/jobs/batch",
     {"group": "g1", "jobs": [{**JOB, "name": "b", "depends_on": ["a"]}, {**JOB, "name": "a"}]}, 201, None),
    ("POST", "/api/jobs/batch", "/api/jobs/batch",
     {"jobs": [{**JOB, "name": "a", "depends_on": ["b"]}, {**JOB, "name": "b", "depends_on": ["a"]}]}, 400,
     "DEPENDENCY_CYCLE"),
    ("POST", "/api/jobs/batch", "/api/jobs/batch", {"jobs": [{**JOB, "name": "a", "depends_on": ["ghost"]}]}, 400,
     "UNKNOWN_DEPENDENCY"),
    ("POST", "/api/jobs/batch", "/api/jobs/batch", {"jobs": [{**JOB, "name": "a"}, {**JOB, "name": "a"}]}, 400,
     "INVALID"),
    ("POST", "/api/jobs/batch", "/api/jobs/batch", {"jobs": [JOB], "group": "bad group!"}, 400, "INVALID"),
    ("GET", "/api/groups", "/api/groups", None, 200, None),
    ("GET", "/api/groups/{group_id}", "/api/groups/{group}", None, 200, None),
    ("GET", "/api/groups/{group_id}", "/api/groups/nosuch", None, 404, "NOT_FOUND"),
    ("GET", "/api/jobs", "/api/jobs?group={group}&label=a=b", None, 200, None),
    ("GET", "/api/jobs", "/api/jobs?label=nokeyvalue", None, 400, "BAD_QUERY"),
    ("GET", "/api/jobs", "/api/jobs?type=shell&label=a=b&label=c=d&order=newest&after=5", None, 200, None),
    ("GET", "/api/jobs", "/api/jobs?labels=a=b", None, 400, "BAD_QUERY"),
    ("GET", "/api/jobs", "/api/jobs?order=sideways", None, 400, "BAD_QUERY"),
    ("GET", "/api/workers", "/api/workers?status=active", None, 400, "BAD_QUERY"),
    ("GET", "/api/groups", "/api/groups?schedul=s1", None, 400, "BAD_QUERY"),
    ("GET", "/api/schedules", "/api/schedules?limit=5", None, 400, "BAD_QUERY"),
    ("POST", "/api/groups/{group_id}/retry", "/api/groups/{group}/retry", None, 200, None),
    ("POST", "/api/groups/{group_id}/retry", "/api/groups/nosuch/retry", None, 404, None),
    ("POST", "/api/jobs/retry", "/api/jobs/retry", {"job_ids": ["{job}"]}, 200, None),
    ("POST", "/api/jobs/retry", "/api/jobs/retry", {"job_ids": ["nosuchjob"]}, 404, "UNKNOWN_JOB"),
    ("POST", "/api/jobs/retry", "/api/jobs/retry", {"job_ids": []}, 400, "INVALID"),
    ("POST", "/api/schedules", "/api/schedules", {"id": "s2", "every": "30s", "job": JOB}, 201, None),
    ("POST", "/api/schedules", "/api/schedules", {"id": "s2", "cron": "61 * * * *", "job": JOB}, 400, "INVALID"),
    ("POST", "/api/schedules", "/api/schedules", {"id": "s2", "cron": "0 2 * * *", "tz": "Mars/Base", "job": JOB},
     400, "INVALID"),
    ("POST", "/api/schedules", "/api/schedules", {"id": "s2", "every": "30s", "job": {"type": "Bad"}}, 400,
     "INVALID"),
    ("POST", "/api/schedules", "/api/schedules",
     {"id": "s2", "every": "30s", "workflow": {"jobs": [{**JOB, "name": "a", "depends_on": ["a"]}]}}, 400,
     "DEPENDENCY_CYCLE"),
    ("GET", "/api/schedules", "/api/schedules", None, 200, None),
    ("GET", "/api/schedules/{schedule_id}", "/api/schedules/{schedule}", None, 200, None),
    ("GET", "/api/schedules/{schedule_id}", "/api/schedules/nosuch", None, 404, "NOT_FOUND"),
    ("POST", "/api/schedules/{schedule_id}/pause", "/api/schedules/{schedule}/pause", None, 200, None),
    ("POST", "/api/schedules/{schedule_id}/pause", "/api/schedules/nosuch/pause", None, 404, None),
    ("POST", "/api/schedules/{schedule_id}/resume", "/api/schedules/{schedule}/resume", None, 200, None),
    ("DELETE", "/api/schedules/{schedule_id}", "/api/schedules/{schedule}", None, 200, None),
    ("GET", "/api/members", "/api/members", None, 200, None),
    ("POST", "/api/members", "/api/members", {"id": "r9", "raft_addr": "127.0.0.1:1", "api_url": "ftp://x"}, 400,
     "INVALID"),
    ("POST", "/api/members", "/api/members", {"id": "r9", "raft_addr": "nohost", "api_url": "http://x:1"}, 400,
     "INVALID"),
    ("POST", "/api/members", "/api/members", {"id": "bad id!", "raft_addr": "h:1", "api_url": "http://x:1"}, 400,
     "INVALID"),
    ("POST", "/api/members", "/api/members", {"id": "r9", "raft_addr": "h:1", "api_url": "http://x:1"}, 503,
     "NOT_APPLIED"),
    ("DELETE", "/api/members/{member_id}", "/api/members/bad%20id", None, 400, "INVALID"),
    ("DELETE", "/api/members/{member_id}", "/api/members/r9", None, 503, "NOT_APPLIED"),
    ("POST", "/api/snapshot", "/api/snapshot", None, 200, None),
    ("GET", "/api/snapshot", "/api/snapshot", None, 200, None),
    ("GET", "/metrics", "/metrics", None, 200, None),
    ("GET", "/api/dashboard", "/api/dashboard", None, 200, None),
    ("GET", "/api/openapi.json", "/api/openapi.json", None, 200, None),
    ("GET", "/", "/", None, 200, None),
    ("GET", "/static/{name}", "/static/app.js", None, 200, None),
    ("GET", "/static/{name}", "/static/nothing.js", None, 404, "NOT_FOUND"),
    ("GET", "/static/{name}", "/static/..%2Fapp.py", None, 404, "NOT_FOUND"),
    ("GET", "/api/jobs/{job_id}/graph", "/api/jobs/{job}/graph", None, 200, None),
    ("GET", "/api/jobs/{job_id}/graph", "/api/jobs/nosuchjob/graph", None, 404, "NOT_FOUND"),
    ("GET", "/api/jobs/{job_id}/graph", "/api/jobs/{job}/graph?depth=9", None, 400, "BAD_QUERY"),
    ("GET", "/api/jobs", "/api/jobs?q=abc&sort=-duration&status=pending&type=shell&queue=default", None, 200, None),
    ("GET", "/api/jobs", "/api/jobs?sort=colour", None, 400, "BAD_QUERY"),
    ("GET", "/api/jobs", "/api/jobs?cursor=garbage", None, 400, "BAD_QUERY"),
    ("GET", "/api/jobs", "/api/jobs?sort=worker&after=3", None, 400, "BAD_QUERY"),
    ("GET", "/api/jobs", "/api/jobs?colour=red", None, 400, "BAD_QUERY"),
    ("GET", "/api/queues", "/api/queues", None, 200, None),
    ("GET", "/api/queues", "/api/queues?colour=red", None, 400, "BAD_QUERY"),
    ("GET", "/api/queues/{queue}", "/api/queues/default", None, 200, None),
    ("GET", "/api/queues/{queue}", "/api/queues/{queue}", None, 200, None),
    ("GET", "/api/queues/{queue}", "/api/queues/nosuch", None, 404, "UNKNOWN_QUEUE"),
    ("POST", "/api/queues", "/api/queues", {"name": "q1", "max_running": 2, "weight": 3, "priority": 5}, 201, None),
    ("POST", "/api/queues", "/api/queues", {"name": "q1"}, 201, None),
    ("POST", "/api/queues", "/api/queues", {"name": "default"}, 200, None),
    ("POST", "/api/queues", "/api/queues", {"name": "q1", "colour": 1}, 400, "INVALID"),
    ("POST", "/api/queues", "/api/queues", {"name": "bad name!"}, 400, "INVALID"),
    ("POST", "/api/queues", "/api/queues", {"name": 5}, 400, "INVALID"),
    ("POST", "/api/queues", "/api/queues", {"weight": 2}, 400, "INVALID"),
    ("POST", "/api/queues", "/api/queues", {"name": "q1", "weight": 0}, 400, "INVALID"),
    ("POST", "/api/queues", "/api/queues", {"name": "q1", "weight": True}, 400, "INVALID"),
    ("POST", "/api/queues", "/api/queues", {"name": "q1", "max_running": "2"}, 400, "INVALID"),
    ("POST", "/api/queues", "/api/queues", {"name": "q1", "priority": 2_000_000_000}, 400, "INVALID"),
    ("POST", "/api/queues", "/api/queues", ["q1"], 400, "INVALID"),
    ("POST", "/api/queues", "/api/queues", {"name": "default", "weight": 5}, 409, "QUEUE_EXISTS"),
    ("PATCH", "/api/queues/{queue}", "/api/queues/{queue}", {"weight": 2}, 200, None),
    ("PATCH", "/api/queues/{queue}", "/api/queues/default", {"max_running": 5, "priority": -3}, 200, None),
    ("PATCH", "/api/queues/{queue}", "/api/queues/nosuch", {"weight": 2}, 404, "UNKNOWN_QUEUE"),
    ("PATCH", "/api/queues/{queue}", "/api/queues/{queue}", {}, 400, "INVALID"),
    ("PATCH", "/api/queues/{queue}", "/api/queues/{queue}", {"name": "x"}, 400, "INVALID"),
    ("PATCH", "/api/queues/{queue}", "/api/queues/{queue}", {"max_running": -1}, 400, "INVALID"),
    ("POST", "/api/queues/{queue}/pause", "/api/queues/{queue}/pause", None, 200, None),
    ("POST", "/api/queues/{queue}/pause", "/api/queues/default/pause", None, 200, None),
    ("POST", "/api/queues/{queue}/pause", "/api/queues/nosuch/pause", None, 404, "UNKNOWN_QUEUE"),
    ("POST", "/api/queues/{queue}/resume", "/api/queues/{queue}/resume", None, 200, None),
    ("POST", "/api/queues/{queue}/resume", "/api/queues/bad%20name/resume", None, 404, "UNKNOWN_QUEUE"),
    ("DELETE", "/api/queues/{queue}", "/api/queues/{queue}", None, 200, None),
    ("DELETE", "/api/queues/{queue}", "/api/queues/nosuch", None, 200, None),
    ("DELETE", "/api/queues/{queue}", "/api/queues/default", None, 400, "INVALID"),
    ("POST", "/api/jobs", "/api/jobs", {**JOB, "queue": "default"}, 201, None),
    ("POST", "/api/jobs", "/api/jobs", {**JOB, "queue": "{queue}"}, 201, None),
    ("POST", "/api/jobs", "/api/jobs", {**JOB, "queue": "nosuch"}, 400, "UNKNOWN_QUEUE"),
    ("POST", "/api/jobs", "/api/jobs", {**JOB, "queue": "bad name!"}, 400, "INVALID"),
    ("POST", "/api/jobs", "/api/jobs", {**JOB, "queue": "nosuch", "not_before": "2030-01-01T00:00:00Z"}, 400,
     "UNKNOWN_QUEUE"),
    ("POST", "/api/jobs/batch", "/api/jobs/batch", {"jobs": [JOB, {**JOB, "queue": "nosuch"}]}, 400,
     "UNKNOWN_QUEUE"),
    ("POST", "/api/jobs/batch", "/api/jobs/batch", {"jobs": [{**JOB, "key": "k"}, {**JOB, "queue": "nosuch"}]}, 400,
     "UNKNOWN_QUEUE"),
    ("POST", "/api/schedules", "/api/schedules", {"id": "s3", "every": "30s", "job": {**JOB, "queue": "nosuch"}},
     400, "UNKNOWN_QUEUE"),
    ("POST", "/api/schedules", "/api/schedules",
     {"id": "s3", "every": "30s", "workflow": {"jobs": [{**JOB, "name": "a", "queue": "nosuch"}]}}, 400,
     "UNKNOWN_QUEUE"),
]


@pytest.mark.parametrize(("method", "route", "path", "body", "status", "code"), CASES,
                         ids=[f"{m} {p} -> {s}" for m, _, p, _, s, _ in CASES])
async def test_route(client: TestClient, replica: FakeReplica, method: str, route: str, path: str, body: Any,
                     status: int, code: str | None) -> None:
    if "{job}" in path or "{job}" in str(body):
        job_id = await _job(client)
        path = path.replace("{job}", job_id)
        body = {k: [job_id if x == "{job}" else x for x in v] if isinstance(v, list) else v for k, v in body.items()} \
            if isinstance(body, dict) else body
    if "{group}" in path:
        r = await client.post("/api/jobs/batch", json={"group": "g-case", "jobs": [{**JOB, "name": "a"}]})
        assert r.status == 201, await r.text()
        path = path.replace("{group}", "g-case")
    if "{schedule}" in path:
        r = await client.post("/api/schedules", json={"id": "s-case", "every": "1h", "job": JOB})
        assert r.status == 201, await r.text()
        path = path.replace("{schedule}", "s-case")
    if "{worker}" in path:
        _register(replica)
        path = path.replace("{worker}", "w1")
    if "{queue}" in path or "{queue}" in str(body):
        r = await client.post("/api/queues", json={"name": "q-case", "max_running": 1})
        assert r.status == 201, await r.text()
        path = path.replace("{queue}", "q-case")
        body = {k: "q-case" if v == "{queue}" else v for k, v in body.items()} if isinstance(body, dict) else body
    before = replica.state.digest()
    kwargs: dict[str, Any] = {}
    if isinstance(body, bytes):
        kwargs["data"], kwargs["headers"] = body, {"Content-Type": "application/json"}
    elif body is not None:
        kwargs["json"] = body
    r = await client.request(method, path, **kwargs)
    text = (await r.read()).decode(errors="replace")  # GET /api/snapshot answers a binary file
    assert r.status == status, text
    if status >= 400:
        if r.content_type == "application/json":
            error = (await r.json())["error"]
            assert error["message"], error
            if code is not None:
                assert error["code"] == code, error
        assert "Traceback" not in text
        if method != "GET":
            assert replica.state.digest() == before, "a refused request changed the state"


def test_every_route_has_a_case(client: TestClient) -> None:
    routes = {(r.method, r.resource.canonical) for r in client.app.router.routes()  # type: ignore[union-attr]
              if r.method != "HEAD" and r.resource is not None}
    assert len(routes) > 20, routes
    covered = {(m, route) for m, route, *_ in CASES}
    assert routes - covered == set(), f"routes without a case in CASES: {sorted(routes - covered)}"


async def test_list_filters_count_and_page_newest_first(client: TestClient) -> None:
    for n in range(5):
        await _job(client, labels={"suite": "nightly" if n % 2 else "smoke", "n": str(n)})
    await _job(client, type="noop", payload={})
    r = await client.get("/api/jobs?label=suite=nightly")
    assert [j["labels"]["n"] for j in (await r.json())["jobs"]] == ["1", "3"]
    r = await client.get("/api/jobs?label=suite=smoke&label=n=4")
    assert [j["labels"]["n"] for j in (await r.json())["jobs"]] == ["4"]
    r = await client.get("/api/jobs?type=noop")
    assert [j["type"] for j in (await r.json())["jobs"]] == ["noop"]
    first = await (await client.get("/api/jobs?order=newest&limit=4")).json()
    assert first["total"] == 6 and first["jobs"][0]["type"] == "noop" and first["next"] is not None
    rest = await (await client.get(f"/api/jobs?order=newest&limit=4&after={first['next']}")).json()
    assert [j["labels"].get("n") for j in rest["jobs"]] == ["1", "0"] and rest["next"] is None
    r = await client.get("/api/jobs?stauts=failed&colour=red")
    error = (await r.json())["error"]
    assert r.status == 400 and error["detail"]["unknown"] == ["colour", "stauts"]
    assert "?colour, ?stauts" in error["message"] and "?status" in error["message"]


async def test_a_job_id_prefix_resolves_in_every_job_route(client: TestClient, replica: FakeReplica) -> None:
    job_id = await _job(client)
    prefix = job_id[:8]
    r = await client.get(f"/api/jobs/{prefix}")
    assert r.status == 200 and (await r.json())["job"]["job_id"] == job_id
    assert (await client.get(f"/api/jobs/{prefix}/progress")).status == 200
    assert (await client.get(f"/api/jobs/{prefix}/logs")).status == 200  # not started: an empty page
    r = await client.post(f"/api/jobs/{prefix}/cancel", json={"reason": "wrong input"})
    assert r.status == 200 and (await r.json())["job_id"] == job_id
    assert replica.state.jobs[job_id].error == "wrong input"
    r = await client.post("/api/jobs/retry", json={"job_ids": [prefix]})
    assert r.status == 200, await r.text()
    short = await client.get(f"/api/jobs/{job_id[:5]}")
    assert short.status == 404 and "6 characters" in (await short.json())["error"]["message"]


async def test_an_ambiguous_job_id_prefix_lists_the_matches(client: TestClient, replica: FakeReplica) -> None:
    from raft_state import NewJob, SubmitJobs, parse_job
    spec, _ = parse_job(JOB, {})
    replica._apply(SubmitJobs(1_000, (NewJob("abcdef01", None, spec), NewJob("abcdef02", None, spec))))
    before = replica.state.digest()
    for method, path in (("GET", "/api/jobs/abcdef"), ("POST", "/api/jobs/abcdef/cancel")):
        r = await client.request(method, path)
        error = (await r.json())["error"]
        assert r.status == 400 and error["code"] == "AMBIGUOUS_JOB_ID", error
        assert error["detail"]["matches"] == ["abcdef01", "abcdef02"] and "abcdef01, abcdef02" in error["message"]
    assert replica.state.digest() == before
    assert (await client.get("/api/jobs/abcdef02")).status == 200  # a whole id is never a prefix


async def test_a_follower_without_the_leader_says_connections_are_unknown(client: TestClient,
                                                                          replica: FakeReplica) -> None:
    _register(replica)
    r = await client.get("/api/workers")
    led = await r.json()
    assert led["view"] == "leader" and led["workers"][0]["connected"] is False
    replica.leading = False  # and no leader known: nothing to ask
    for path, key in (("/api/workers", "workers"), ("/api/workers/w1", "worker")):
        body = await (await client.get(path)).json()
        worker = body[key][0] if key == "workers" else body[key]
        assert body["view"] == "local" and worker["connected"] is None and worker["load"] is None
        assert worker["status"] == "active"


async def test_unknown_route_and_method_are_json_errors(client: TestClient) -> None:
    r = await client.get("/api/nothing-here")
    assert r.status == 404 and (await r.json())["error"]["code"] == "NOT_FOUND"
    r = await client.put("/api/jobs")
    assert r.status == 405 and (await r.json())["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_a_repeated_key_gets_the_same_job_and_another_spec_is_a_conflict(client: TestClient) -> None:
    first = await client.post("/api/jobs", json={**JOB, "key": "k1"})
    again = await client.post("/api/jobs", json={**JOB, "key": "k1"})
    assert (first.status, again.status) == (201, 200)
    assert (await first.json())["job_id"] == (await again.json())["job_id"]
    other = await client.post("/api/jobs", json={**JOB, "key": "k1", "priority": 3})
    assert other.status == 409 and (await other.json())["error"]["code"] == "KEY_REUSED"


async def test_long_poll_answers_when_the_job_is_final(client: TestClient) -> None:
    job_id = await _job(client)
    poll = asyncio.ensure_future(client.get(f"/api/jobs/{job_id}?wait_s=10"))
    await asyncio.sleep(0.1)
    assert not poll.done()
    r = await client.post(f"/api/jobs/{job_id}/cancel")
    assert r.status == 200
    answer = await asyncio.wait_for(poll, 5)
    assert (await answer.json())["job"]["status"] == "cancelled"


async def test_a_worker_says_hello_over_the_websocket_and_is_registered(client: TestClient,
                                                                        replica: FakeReplica) -> None:
    async with client.ws_connect("/api/workers/connect") as ws:
        await ws.send_bytes(msgpack.packb({"v": 1, "t": "hello", "worker_id": "w7", "capacity": 3, "running": []}))
        welcome = msgpack.unpackb(await asyncio.wait_for(ws.receive_bytes(), 5))
        assert welcome["t"] == "welcome" and welcome["worker_id"] == "w7"
        assert replica.state.workers["w7"].capacity == 3
        r = await client.get("/api/workers/w7")
        assert (await r.json())["worker"]["connected"] is True


async def test_a_websocket_that_does_not_say_hello_is_closed_and_registers_nothing(client: TestClient,
                                                                                  replica: FakeReplica) -> None:
    async with client.ws_connect("/api/workers/connect") as ws:
        await ws.send_bytes(msgpack.packb({"v": 1, "t": "heartbeat"}))
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type.name in ("CLOSE", "CLOSED", "CLOSING")
    assert replica.state.workers == {} or "heartbeat" not in replica.state.workers


async def test_without_a_leader_writes_are_refused_and_ready_fails(client: TestClient, replica: FakeReplica) -> None:
    replica.leading = False
    r = await client.get("/api/health/ready")
    assert r.status == 503
    r = await client.get("/api/health")
    assert r.status == 200
