"""Every REST endpoint on a real 3-replica cluster: its success path and its 4xx paths."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster, http

SHELL = {"type": "shell", "payload": {"argv": ["echo", "hi"]}}


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("api")
    cluster = Cluster(root, 3)
    cluster.start_all()
    try:
        cluster.leader()
        yield cluster
    finally:
        cluster.stop()


def url(c: Cluster, path: str, i: int = 0) -> str:
    return c.nodes[i].url + path


def code(body: object) -> str:
    assert isinstance(body, dict) and "error" in body, body
    return str(body["error"]["code"])


def test_submit_and_get(c: Cluster) -> None:
    status, body = http("POST", url(c, "/api/jobs"), {**SHELL, "key": "s1", "priority": 3, "labels": {"a": "b"}})
    assert status == 201 and body["index"] > 0
    status, again = http("POST", url(c, "/api/jobs", 1), {**SHELL, "key": "s1", "priority": 3, "labels": {"a": "b"}})
    assert status == 200 and again["job_id"] == body["job_id"] and again["already"] is True
    status, got = http("GET", url(c, f"/api/jobs/{body['job_id']}?min_index={again['index']}", 2))
    assert status == 200 and got["job"]["labels"] == {"a": "b"} and got["job"]["priority"] == 3
    assert got["job"]["pending_reason"] is not None


@pytest.mark.parametrize("payload,expected", [
    (b"{not json", "BAD_JSON"), (b"", "BAD_JSON"), ({"type": "shell", "bogus": 1}, "INVALID"),
    ({"type": "shell", "priority": "high"}, "INVALID"), ({"type": "shell", "timeout_s": -1}, "INVALID"),
    ({"type": "shell", "priority": 2**70}, "INVALID"), ({"type": "Bad Type"}, "INVALID"),
    ({"type": "noop", "depends_on": ["nope"]}, "UNKNOWN_DEPENDENCY"), ([1, 2], "INVALID"),
    ({"type": "shell", "deadline": "tomorrow"}, "INVALID"), ({"type": "shell", "requirements": {"gpu": 1}}, "INVALID"),
])
def test_submit_rejects_bad_input(c: Cluster, payload: object, expected: str) -> None:
    before = http("GET", url(c, "/api/queue/stats?consistency=leader"))[1]["counts"]
    status, body = http("POST", url(c, "/api/jobs"), payload)
    assert 400 <= status < 500 and code(body) == expected, body
    after = http("GET", url(c, "/api/queue/stats?consistency=leader"))[1]["counts"]
    assert before == after, "a refused submission changed the queue"


def test_key_reused_is_409(c: Cluster) -> None:
    assert http("POST", url(c, "/api/jobs"), {**SHELL, "key": "r1"})[0] == 201
    status, body = http("POST", url(c, "/api/jobs"), {"type": "noop", "key": "r1"})
    assert status == 409 and code(body) == "KEY_REUSED"


def test_huge_body_is_413(c: Cluster) -> None:
    status, body = http("POST", url(c, "/api/jobs"), b'{"type": "noop", "payload": "' + b"x" * (9 * 2**20) + b'"}')
    assert status == 413 and code(body) == "PAYLOAD_TOO_LARGE"


def test_batch(c: Cluster) -> None:
    status, body = http("POST", url(c, "/api/jobs/batch", 1), {"jobs": [{**SHELL, "key": f"b{i}"} for i in range(5)]})
    assert status == 201 and len(body["job_ids"]) == 5
    status, body = http("POST", url(c, "/api/jobs/batch"), {"jobs": []})
    assert status == 400 and code(body) == "INVALID"
    status, body = http("POST", url(c, "/api/jobs/batch"), {"jobs": [SHELL, {"type": "shell", "x": 1}]})
    assert status == 400 and body["error"]["detail"]["index"] == 1


def test_list_and_paging(c: Cluster) -> None:
    status, body = http("GET", url(c, "/api/jobs?limit=2&consistency=leader"))
    assert status == 200 and len(body["jobs"]) == 2 and body["next"] is not None
    status, nxt = http("GET", url(c, f"/api/jobs?limit=2&after={body['next']}"))
    assert status == 200 and not {j["job_id"] for j in nxt["jobs"]} & {j["job_id"] for j in body["jobs"]}
    assert code(http("GET", url(c, "/api/jobs?status=bogus"))[1]) == "BAD_QUERY"
    assert code(http("GET", url(c, "/api/jobs?limit=abc"))[1]) == "BAD_QUERY"


def test_unknown_ids_are_404(c: Cluster) -> None:
    for method, path in (("GET", "/api/jobs/nope"), ("POST", "/api/jobs/nope/cancel"), ("GET", "/api/workers/nope"),
                         ("POST", "/api/workers/nope/drain"), ("DELETE", "/api/workers/nope"), ("GET", "/api/nope")):
        status, body = http(method, url(c, path))
        assert status == 404, (path, body)


def test_cancel_pending_then_again_then_wrong_state(c: Cluster) -> None:
    _, body = http("POST", url(c, "/api/jobs"), {**SHELL, "key": "c1", "required_tags": ["nobody-has-this"]})
    status, out = http("POST", url(c, f"/api/jobs/{body['job_id']}/cancel", 2))
    assert status == 200 and out["already"] is False
    status, out = http("POST", url(c, f"/api/jobs/{body['job_id']}/cancel"))
    assert status == 200 and out["already"] is True
    status, got = http("GET", url(c, f"/api/jobs/{body['job_id']}?wait_s=5&min_index={out['index']}"))
    assert got["job"]["status"] == "cancelled"
    status, bad = http("POST", url(c, f"/api/jobs/{body['job_id']}/cancel"), {"reason": 5})
    assert status == 400


def test_queue_pause_resume_and_stats(c: Cluster) -> None:
    status, body = http("POST", url(c, "/api/queue/pause", 1))
    assert status == 200 and body["paused"] is True
    status, stats = http("GET", url(c, f"/api/queue/stats?min_index={body['index']}", 2))
    assert stats["paused"] is True
    status, body = http("POST", url(c, "/api/queue/resume"))
    assert status == 200 and body["paused"] is False


def test_cluster_health_metrics_dashboard(c: Cluster) -> None:
    status, info = http("GET", url(c, "/api/cluster"))
    assert status == 200 and info["role"] in ("leader", "follower") and len(info["peers"]) == 2
    assert http("GET", url(c, "/api/health"))[0] == 200
    assert http("GET", url(c, "/api/health/ready"))[0] == 200
    assert http("GET", url(c, "/api/health/db"))[0] == 200
    with urllib.request.urlopen(url(c, "/metrics"), timeout=5) as resp:
        text = resp.read().decode()
    assert "haco_raft_term" in text and 'haco_jobs{state="pending"}' in text
    with urllib.request.urlopen(url(c, "/"), timeout=5) as resp:
        assert b"haco" in resp.read()


def test_min_index_in_the_future_is_a_clear_error(c: Cluster) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url(c, "/api/jobs?min_index=999999999"), timeout=15)
    assert err.value.code == 503 and code(json.loads(err.value.read())) == "NOT_READY"
    assert err.value.headers["Retry-After"] == "1"  # every 503 says when to come back


@pytest.mark.parametrize("sql,expected", [
    ("SELECT * FROM read_csv('/etc/passwd')", "SQL_REFUSED"), ("DELETE FROM results", "SQL_REFUSED"),
    ("ATTACH '/tmp/x.duckdb'", "SQL_REFUSED"), ("INSTALL httpfs", "SQL_REFUSED"),
    ("COPY results TO '/tmp/x.csv'", "SQL_REFUSED"), ("SELECT 1; SELECT 2", "SQL_REFUSED"),
    ("SELECT count(*) FROM range(100000000000)", "SQL_TIMEOUT"), ("SELEKT 1", "SQL_ERROR"),
    ("SELECT list(range(10000000))", "SQL_MEMORY_LIMIT"),
    ("SELECT * FROM range(100000) a, range(100000) b", "SQL_RESULT_LIMIT"),
])
def test_results_sql_is_sandboxed(c: Cluster, sql: str, expected: str) -> None:
    status, body = http("POST", url(c, "/api/results/query"), {"sql": sql}, timeout=30)
    assert 400 <= status < 500 and body["error"]["code"] in (expected, "SQL_ERROR"), body
    status, ok = http("POST", url(c, "/api/results/query"), {"sql": "SELECT count(*) AS n FROM results"})
    assert status == 200 and ok["columns"] == ["n"]
