"""Named queues on a real cluster (docs/resources.md): a queue's `max_running` holds across a
leader kill, two flooded queues of weights 3 and 1 complete about 3:1, and a queue of
high-priority jobs does not starve another queue."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .cluster import Cluster, eventually, http
from .test_resources import _never_over
from .test_workers import final, job_on

SLEEP = {"type": "shell", "payload": {"argv": ["sleep", "0.4"]}, "timeout_s": 60}


def _queue(c: Cluster, name: str, **settings: Any) -> None:
    status, body = http("POST", c.nodes[c.leader()].url + "/api/queues", {"name": name, **settings})
    assert status in (200, 201), body


def _batch(c: Cluster, jobs: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(jobs), 500):
        status, body = http("POST", c.nodes[c.leader()].url + "/api/jobs/batch", {"jobs": jobs[start:start + 500]},
                            timeout=30)
        assert status == 201, body
        ids += body["job_ids"]
    return ids


def _running_in(c: Cluster, queue: str) -> int:
    status, body = http("GET", c.nodes[c.leader()].url + f"/api/jobs?status=running&queue={queue}&limit=100")
    assert status == 200, body
    return len(body["jobs"])


def test_max_running_holds_across_a_leader_kill(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    c.leader()
    c.start_worker("w1", capacity=3)
    c.start_worker("w2", capacity=3)
    _queue(c, "limited", max_running=2)
    ids = _batch(c, [{**SLEEP, "queue": "limited"} for _ in range(16)] + [{**SLEEP} for _ in range(4)])
    eventually(lambda: _running_in(c, "limited") == 2, 30, "the queue at its limit")
    waiting = next(j for j in ids[:16] if job_on(c, c.leader(), j)["status"] == "pending")
    reason = job_on(c, c.leader(), waiting)["pending_reason"]
    assert "runs 2 of max_running 2" in reason.get("queue_full", ""), reason
    c.kill(c.leader())
    jobs = [final(c, j, 90) for j in ids]
    assert all(j["status"] == "completed" for j in jobs), [j["status"] for j in jobs]
    spans = [(a["assigned_at_ms"], a["ended_at_ms"], 1.0) for j in jobs[:16] for a in j["attempts"]]
    assert _never_over(spans, 2) == 2  # at the limit, never past it, before and after the kill
    # the default queue has no limit: its jobs ran beside the limited ones
    others = [(a["assigned_at_ms"], a["ended_at_ms"], 1.0) for j in jobs for a in j["attempts"]]
    assert _never_over(others, 6) > 2


def _finish_order(c: Cluster, ids: list[str]) -> list[dict[str, Any]]:
    jobs = [final(c, j, 120) for j in ids]
    assert all(j["status"] == "completed" for j in jobs)
    return sorted(jobs, key=lambda j: (j["finished_at_ms"], j["attempts"][-1]["assigned_at_ms"]))


def test_weights_share_completions_and_a_priority_flood_starves_no_queue(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(1)
    c.start_worker("w1", capacity=2)
    _queue(c, "heavy", weight=3)
    _queue(c, "light", weight=1)
    _queue(c, "urgent", priority=100)  # its jobs get priority 100 unless they name one
    _queue(c, "batch")
    eventually(lambda: http("GET", c.nodes[0].url + "/api/workers")[1]["workers"], 30, "the worker registered")
    job = {"type": "shell", "payload": {"argv": ["true"]}}

    assert http("POST", c.nodes[0].url + "/api/queue/pause")[0] == 200  # flood both before anything runs
    ids = _batch(c, [{**job, "queue": q} for _ in range(160) for q in ("heavy", "light")])
    assert http("POST", c.nodes[0].url + "/api/queue/resume")[0] == 200
    first = Counter(j["queue"] for j in _finish_order(c, ids)[:160])
    print("weights 3:1, first 160 completions:", dict(first))
    assert 2.4 <= first["heavy"] / first["light"] <= 3.75, first  # 3:1 is 120:40

    assert http("POST", c.nodes[0].url + "/api/queue/pause")[0] == 200
    ids = _batch(c, [{**job, "queue": q} for _ in range(100) for q in ("urgent", "batch")])
    assert job_on(c, 0, ids[0])["priority"] == 100 and job_on(c, 0, ids[1])["priority"] == 0
    assert http("POST", c.nodes[0].url + "/api/queue/resume")[0] == 200
    first = Counter(j["queue"] for j in _finish_order(c, ids)[:100])
    print("urgent vs batch, first 100 completions:", dict(first))
    assert first["batch"] >= 35, first  # equal weights: about half, although every urgent job outranks it
