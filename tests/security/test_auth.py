"""401/403 for every protected endpoint with no, wrong, expired, revoked and wrong-role tokens;
the right role works; a revocation holds on all three replicas once it is applied there."""

from __future__ import annotations

import time
from typing import Any

import pytest

from haco.security.tokens import issue
from haco.server.auth import ALLOWED, ROUTE_RULES
from tests.integration.cluster import Cluster, eventually

from .conftest import ClusterMaker

JOB = {"type": "noop", "payload": {}}
ROLES = ("admin", "submitter", "reader", "worker")


@pytest.fixture(scope="module")
def cluster(make_cluster: ClusterMaker) -> Cluster:
    c = make_cluster(auth=True)
    c.leader()
    status, body = c.api(0, "POST", "/api/queue/pause")
    assert status == 200, body
    return c


@pytest.fixture(scope="module")
def ids(cluster: Cluster) -> dict[str, str]:
    """A pending job and a registered worker (a real agent with its own worker token)."""
    status, body = cluster.api(0, "POST", "/api/jobs", {**JOB, "key": "matrix-job"})
    assert status == 201, body
    cluster.start_worker("w-matrix", capacity=1)
    eventually(lambda: cluster.api(0, "GET", "/api/workers/w-matrix")[0] == 200, 20, "the worker registered")
    status, group = cluster.api(0, "POST", "/api/jobs/batch", {"jobs": [{**JOB, "name": "a"}], "group": "matrix-g"})
    assert status == 201, group
    status, sched = cluster.api(0, "POST", "/api/schedules", {"id": "matrix-s", "every": "1h", "job": JOB})
    assert status == 201, sched
    status, queue = cluster.api(0, "POST", "/api/queues", {"name": "matrix-q"})
    assert status == 201, queue
    return {"job_id": body["job_id"], "worker_id": "w-matrix", "group_id": "matrix-g", "schedule_id": "matrix-s",
            "member_id": "r-none", "queue": "matrix-q"}


def endpoints(ids: dict[str, str]) -> list[tuple[str, str, Any]]:
    """Every route of ROUTE_RULES with a concrete path and a body that works for an allowed role."""
    fill = {"{job_id}": ids["job_id"], "{worker_id}": ids["worker_id"], "{group_id}": ids["group_id"],
            "{schedule_id}": ids["schedule_id"], "{member_id}": ids["member_id"], "{queue}": ids["queue"]}
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/api/jobs"): {**JOB, "key": "matrix-2"}, ("POST", "/api/jobs/batch"): {"jobs": [JOB]},
        ("POST", "/api/results/query"): {"sql": "SELECT 1 AS one"},
        ("POST", "/api/tokens/revoke"): {"token_id": "never-issued"},
        ("POST", "/api/jobs/retry"): {"job_ids": [ids["job_id"]]},
        ("POST", "/api/schedules"): {"id": "matrix-s", "every": "1h", "job": JOB},
        ("POST", "/api/queues"): {"name": "matrix-q"},  # already made: the same settings are `already`
        ("PATCH", "/api/queues/{queue}"): {"weight": 1},  # its weight already: `already`, again and again
    }
    out = []
    for (method, route), _ in ROUTE_RULES.items():
        path = route
        for k, v in fill.items():
            path = path.replace(k, v)
        out.append((method, path, bodies.get((method, route))))
    return out


def bad_tokens(cluster: Cluster) -> dict[str, str | None]:
    secret = cluster.secret_file.read_text().encode()
    expired, _ = issue(secret, "admin", 60, now_s=time.time() - 3600)
    forged, _ = issue(b"not-the-cluster-secret-at-all", "admin", 3600, now_s=time.time())
    good = cluster.token("admin")
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    return {"none": None, "expired": expired, "wrong-secret": forged, "tampered": tampered, "garbage": "x.y.z"}


def test_open_routes_need_no_token(cluster: Cluster) -> None:
    for path in ("/api/health", "/api/health/ready", "/"):
        status, _ = cluster.api(1, "GET", path, token=None)
        assert status == 200, path


def test_every_protected_endpoint_refuses_bad_tokens_with_401(cluster: Cluster, ids: dict[str, str]) -> None:
    for name, token in bad_tokens(cluster).items():
        for method, path, body in endpoints(ids):
            if ROUTE_RULES.get((method, path)) == "open":
                continue
            status, answer = cluster.api(1, method, path, body, token=token)
            assert status == 401, (name, method, path, status, answer)
            assert answer["error"]["code"] == "UNAUTHORIZED", answer


#: a success would change the test cluster's membership: an allowed role's request is refused for its
#: body (empty) or changes nothing (removing an unknown member is `already`), never 401/403
CHANGES_MEMBERSHIP = {("POST", "/api/members"), ("DELETE", "/api/members/{member_id}")}


def test_wrong_role_is_403_and_right_role_works(cluster: Cluster, ids: dict[str, str]) -> None:
    tokens = {r: cluster.token(r, "w-matrix" if r == "worker" else None) for r in ROLES}
    checked = 0
    for (method, route), rule in ROUTE_RULES.items():
        if rule == "open":
            continue
        path = next(p for m, p, _ in endpoints(ids) if m == method and _same(route, p, ids))
        body = next(b for m, p, b in endpoints(ids) if m == method and p == path)
        for role in ROLES:
            if route == "/api/workers/{worker_id}" and method == "DELETE" and role == "admin":
                continue  # deregisters the worker the other rows name: done last, below
            at = cluster.leader() if (method, route) in CHANGES_MEMBERSHIP else 0  # a follower points there
            status, answer = cluster.api(at, method, path, body, token=tokens[role])
            if role in ALLOWED[rule]:
                assert status not in (401, 403) and status < 500, (role, method, path, status, answer)
                if (method, route) in CHANGES_MEMBERSHIP:  # refused (empty body) or already (unknown member)
                    assert status == 400 or answer.get("already") is True, (role, method, path, status, answer)
                elif rule != "worker":  # the websocket route answers a plain GET with 400: not an upgrade
                    assert status < 300, (role, method, path, status, answer)
            else:
                assert status == 403, (role, method, path, status, answer)
                assert answer["error"]["code"] == "FORBIDDEN"
            checked += 1
    status, answer = cluster.api(0, "DELETE", f"/api/workers/{ids['worker_id']}", token=tokens["admin"])
    assert status == 200, answer
    assert checked == 4 * sum(rule != "open" for rule in ROUTE_RULES.values()) - 1


def _same(route: str, path: str, ids: dict[str, str]) -> bool:
    for k in ("job_id", "worker_id", "group_id", "schedule_id", "member_id", "queue"):
        route = route.replace("{" + k + "}", ids[k])
    return route == path


def test_revocation_holds_on_all_three_replicas(cluster: Cluster) -> None:
    token = cluster.token("submitter")
    for i in range(3):
        assert cluster.api(i, "GET", "/api/jobs", token=token)[0] == 200
    status, answer = cluster.api(2, "POST", "/api/tokens/revoke", {"token": token})
    assert status == 200, answer
    index = answer["index"]
    for i in range(3):
        eventually(lambda: cluster.info(i)["applied_index"] >= index, 10, f"r{i + 1} applied the revocation")
        assert cluster.info(i)["cluster_version"] >= 2  # 3 once a workflow or schedule was made
        for method, path, body in (("GET", "/api/jobs", None), ("POST", "/api/jobs", {**JOB, "key": "revoked"})):
            status, answer = cluster.api(i, method, path, body, token=token)
            assert status == 401 and answer["error"]["detail"]["reason"] == "REVOKED", (i, path, answer)
    # a revocation by id (the CLI's `haco token revoke ID`), and a repeat, are accepted too
    other = cluster.token("reader")
    from haco.security.tokens import unverified_claims
    tid = unverified_claims(other).id
    for _ in range(2):
        status, answer = cluster.api(0, "POST", "/api/tokens/revoke", {"token_id": tid})
        assert status == 200, answer
    eventually(lambda: cluster.api(1, "GET", "/api/jobs", token=other)[0] == 401, 10, "revoked by id on r2")


def test_revoke_refuses_bad_bodies(cluster: Cluster) -> None:
    for body in ({}, {"token": 5}, {"token_id": "a b"}, {"token": "haco1.x.y"}, {"token_id": "x" * 200},
                 {"token": "t", "token_id": "u"}, [], "x"):
        status, answer = cluster.api(0, "POST", "/api/tokens/revoke", body)
        assert status == 400, (body, answer)
