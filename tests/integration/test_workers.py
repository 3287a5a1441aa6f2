"""Jobs run on real workers against a real cluster: redirect to the leader, results recorded
once on every replica, failover while jobs run, a paused worker's late report refused."""

from __future__ import annotations

import signal
from typing import Any

from .cluster import Cluster, eventually, http


def submit(c: Cluster, job: dict[str, Any], i: int = 0) -> str:
    status, body = http("POST", c.nodes[i].url + "/api/jobs", job)
    assert status == 201, body
    return str(body["job_id"])


def job_on(c: Cluster, i: int, job_id: str) -> dict[str, Any]:
    status, body = http("GET", c.nodes[i].url + f"/api/jobs/{job_id}")
    assert status == 200, body
    return body["job"]


def final(c: Cluster, job_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for i in c.alive():
            try:
                job = job_on(c, i, job_id)
            except (AssertionError, OSError):
                continue
            return job if job["status"] in ("completed", "failed", "cancelled", "expired") else None
        return None
    return eventually(check, timeout_s, f"job {job_id} final")


def results_rows(c: Cluster, i: int, job_id: str) -> list[list[Any]]:
    status, body = http("POST", c.nodes[i].url + "/api/results/query",
                        {"sql": f"SELECT job_id, attempt FROM results WHERE job_id = '{job_id}'"})
    assert status == 200, body
    return body["rows"]


def test_job_runs_on_worker_connected_to_follower_and_is_recorded_once_everywhere(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    leader = c.leader()
    follower = (leader + 1) % 3
    c.start_worker("w1", urls=[c.nodes[follower].url])
    job_id = submit(c, {"type": "shell", "payload": {"argv": ["echo", "hello"]}, "key": "e1"}, follower)
    job = final(c, job_id)
    assert job["status"] == "completed", job
    assert "hello" in job["result"]["stdout_tail"]
    for i in range(3):
        eventually(lambda i=i: results_rows(c, i, job_id) == [[job_id, 1]], 20, f"result row on r{i + 1}")
    c.kill(follower)
    c.start(follower)
    c.converged(30)
    eventually(lambda: results_rows(c, follower, job_id) == [[job_id, 1]], 20, "one row after restart and replay")


def test_priority_fifo_and_unplaceable_job_says_why(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    c.leader()
    status, _ = http("POST", c.nodes[0].url + "/api/queue/pause")
    assert status == 200
    order = [("low-1", 1), ("high-1", 9), ("low-2", 1), ("high-2", 9)]
    ids = {name: submit(c, {"type": "noop", "payload": name, "priority": p, "key": name}) for name, p in order}
    gpu = submit(c, {"type": "noop", "required_tags": ["gpu"], "key": "gpu"})
    c.start_worker("w1", capacity=1)
    eventually(lambda: http("GET", c.nodes[0].url + "/api/workers")[1]["workers"], 20, "worker registered")
    http("POST", c.nodes[0].url + "/api/queue/resume")
    for job_id in ids.values():
        final(c, job_id)
    started = sorted(ids, key=lambda n: job_on(c, 0, ids[n])["attempts"][0]["assigned_at_ms"])
    assert started == ["high-1", "high-2", "low-1", "low-2"], started
    why = job_on(c, 0, gpu)["pending_reason"]
    assert why and "no_worker_fits" in why and "gpu" in str(why["no_worker_fits"]), why


def test_leader_kill_while_jobs_run_records_each_once(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3, start=False)
    c.extra_env = {"HACO_GRACE_S": "3", "HACO_WORKER_LOST_S": "3"}
    c.start_all()
    c.leader()
    c.start_worker("w1", capacity=4)
    c.start_worker("w2", capacity=4)
    ids = [submit(c, {"type": "shell", "payload": {"argv": ["sleep", "1.5"]}, "key": f"s{n}"}) for n in range(8)]
    eventually(lambda: sum(job_on(c, c.alive()[0], j)["status"] == "running" for j in ids) >= 4, 20, "jobs running")
    leader = c.leader()
    c.kill(leader)
    for job_id in ids:
        job = final(c, job_id, 60)
        assert job["status"] == "completed", job
    c.start(leader)
    c.converged(30)
    for job_id in ids:
        rows = eventually(lambda: results_rows(c, leader, job_id), 20, "rows")
        completed = [a for a in job_on(c, leader, job_id)["attempts"] if a["outcome"] == "completed"]
        assert len(completed) == 1 and len(rows) == len(job_on(c, leader, job_id)["attempts"])


def test_paused_worker_is_lost_requeued_and_its_late_report_refused(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3, start=False)
    c.extra_env = {"HACO_GRACE_S": "1", "HACO_WORKER_LOST_S": "2"}
    c.start_all()
    leader = c.leader()
    c.start_worker("w1", capacity=1)
    job_id = submit(c, {"type": "shell", "payload": {"argv": ["sleep", "2"]}, "key": "p1"})
    eventually(lambda: job_on(c, leader, job_id)["status"] == "running", 20, "job running on w1")
    c.kill_worker("w1", signal.SIGSTOP, group=False)  # the agent freezes; its job finishes meanwhile
    eventually(lambda: job_on(c, leader, job_id)["status"] == "pending" and job_on(c, leader, job_id)["attempt"] == 1,
               30, "job requeued after w1 was declared lost")
    c.start_worker("w2", capacity=1)
    c.kill_worker("w1", signal.SIGCONT, group=False)
    job = final(c, job_id, 60)
    assert job["status"] == "completed" and job["attempts"][0]["outcome"] == "lost"
    eventually(lambda: c.info(c.leader())["stale_reports_refused"] >= 1, 30, "w1's late report refused as stale")


def test_sql_sees_a_job_as_soon_as_its_long_poll_says_final(cluster_factory: Any) -> None:
    """The results feed spaces its DuckDB writes (WRITE_GAP_S), but a query first writes what is
    pending: jobs finishing back to back (well inside one gap) are each in SQL at once."""
    c: Cluster = cluster_factory(3)
    leader = c.leader()
    c.start_worker("w1")
    base = c.nodes[leader].url
    eventually(lambda: any(w["connected"] for w in http("GET", base + "/api/workers")[1]["workers"]), 20,
               "worker connected")
    for n in range(6):
        job_id = submit(c, {"type": "noop", "payload": n}, leader)
        status, body = http("GET", base + f"/api/jobs/{job_id}?wait_s=20")
        assert status == 200 and body["job"]["status"] == "completed", body
        assert results_rows(c, leader, job_id) == [[job_id, 1]], f"job {n} not in SQL right after it was final"


def test_assignments_ride_behind_submits_and_reports_and_every_job_runs_once(cluster_factory: Any) -> None:
    """An idle worker's slots take the first jobs of a submit in the submit's own log entry; then a
    full worker's final reports free its slots and the leader proposes the next jobs for it behind
    the reports (one log entry). Every job still completes with one attempt."""
    c: Cluster = cluster_factory(3)
    leader = c.leader()
    base = c.nodes[leader].url
    c.start_worker("w1", capacity=2)
    eventually(lambda: any(w["connected"] for w in http("GET", base + "/api/workers")[1]["workers"]), 20,
               "worker connected")
    status, body = http("POST", base + "/api/jobs/batch", {"jobs": [{"type": "noop", "payload": n} for n in range(40)]})
    assert status == 201, body
    jobs = [final(c, job_id) for job_id in body["job_ids"]]
    assert all(j["status"] == "completed" and len(j["attempts"]) == 1 for j in jobs), jobs
    info = http("GET", base + "/api/cluster")[1]
    assert info["role"] == "leader" and info["assigned_behind_reports"] > 0, info
    assert info["assigned_with_submit"] >= 2, info  # the idle worker's two slots, from the batch itself
