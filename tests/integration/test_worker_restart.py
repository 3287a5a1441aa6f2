"""A worker SIGKILLed mid-job keeps its jobs (issue 18): shell jobs run under attempt runners that
outlive the agent; the restarted agent re-adopts them, lists them in its hello and reports their
results, so each runs exactly once. Kept down past the lost timeout, its attempts are requeued and
run again, and the orphans of the lost attempts are killed as soon as it is back: never twice at once.

Every job appends "job attempt pid" to one file when it starts, which is how executions are counted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from .cluster import Cluster, eventually, http
from .test_workers import final, results_rows, submit

JOBS = 10


def recording_job(runs: Path, key: str, first_s: float, again_s: float) -> dict[str, Any]:
    """A shell job that records each execution, then sleeps `first_s` on attempt 1, else `again_s`."""
    script = (f'echo "$HACO_JOB_ID $HACO_ATTEMPT $$" >> {runs}; echo before; '
              f'if [ "$HACO_ATTEMPT" = 1 ]; then sleep {first_s}; else sleep {again_s}; fi; echo after')
    return {"type": "shell", "payload": {"argv": ["sh", "-c", script]}, "key": key, "timeout_s": 120}


def executions(runs: Path) -> list[tuple[str, int, int]]:
    if not runs.exists():
        return []
    rows = []
    for line in runs.read_text().splitlines():
        job_id, attempt, pid = line.split()
        rows.append((job_id, int(attempt), int(pid)))
    return rows


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def records(c: Cluster, wid: str) -> list[Path]:
    return sorted((c.root / f"work-{wid}" / ".attempts").glob("*"))


def kill_agent(c: Cluster, wid: str) -> None:
    c.kill_worker(wid, signal.SIGKILL)  # its whole process group: the runners live in sessions of their own
    c.workers[wid].wait(timeout=15)


def start_all_running(c: Cluster, runs: Path, tag: str, first_s: float, again_s: float) -> list[str]:
    c.start_worker("w1", capacity=JOBS)
    ids = [submit(c, recording_job(runs, f"{tag}-{n}", first_s, again_s)) for n in range(JOBS)]
    eventually(lambda: len(executions(runs)) == JOBS, 30, "every job started once")
    eventually(lambda: len(records(c, "w1")) == JOBS, 10, "an attempt record per running job")
    return ids


def test_worker_sigkilled_mid_job_and_restarted_runs_each_job_exactly_once(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    c.leader()
    runs = c.root / "runs.log"
    ids = start_all_running(c, runs, "restart", first_s=6, again_s=0)
    kill_agent(c, "w1")
    first = executions(runs)
    assert all(alive(pid) for _, _, pid in first), "the jobs outlive their worker"
    c.start_worker("w1", capacity=JOBS)
    jobs = {job_id: final(c, job_id, 60) for job_id in ids}
    assert {j["status"] for j in jobs.values()} == {"completed"}, jobs
    assert all(len(j["attempts"]) == 1 for j in jobs.values()), jobs
    assert all(j["result"]["exit_code"] == 0 for j in jobs.values()), jobs
    counted = Counter(job_id for job_id, _, _ in executions(runs))
    assert counted == Counter({job_id: 1 for job_id in ids}), executions(runs)
    for job_id in ids:  # polled: a request may time out on a loaded machine
        eventually(lambda job_id=job_id: len(results_rows(c, c.leader(), job_id)) == 1, 20, "one result row")
    eventually(lambda: not any(alive(pid) for _, _, pid in first), 10, "no job process left")
    eventually(lambda: not records(c, "w1"), 10, "every attempt record removed once its result was acknowledged")
    res = subprocess.run([sys.executable, "-m", "haco", "--coordinators", ",".join(c.urls), "logs", "--stdout", ids[0]],
                         capture_output=True, timeout=60)
    assert res.stdout == b"before\nafter\n", res  # the runner kept the output across the restart


def test_worker_down_past_the_lost_timeout_gets_its_orphans_killed_and_each_job_runs_at_most_twice(
        cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3, start=False)
    c.extra_env = {"HACO_GRACE_S": "1", "HACO_WORKER_LOST_S": "2"}
    c.start_all()
    leader = c.leader()
    runs = c.root / "runs.log"
    ids = start_all_running(c, runs, "lost", first_s=60, again_s=1)
    kill_agent(c, "w1")
    orphans = executions(runs)

    def requeued() -> bool:
        for job_id in ids:
            status, body = http("GET", c.nodes[leader].url + f"/api/jobs/{job_id}")
            if status != 200 or body["job"]["status"] != "pending":
                return False
        return True
    eventually(requeued, 30, "every job requeued once w1 was declared lost")
    assert all(alive(pid) for _, _, pid in orphans), "the lost attempts' processes ran on meanwhile"
    returned_at = time.monotonic()
    c.start_worker("w1", capacity=JOBS)
    eventually(lambda: not any(alive(pid) for _, _, pid in orphans), 15, "the lost attempts' processes killed")
    killed_s = time.monotonic() - returned_at
    jobs = {job_id: final(c, job_id, 60) for job_id in ids}
    assert {j["status"] for j in jobs.values()} == {"completed"}, jobs
    assert all(j["attempts"][0]["outcome"] == "lost" and len(j["attempts"]) == 2 for j in jobs.values()), jobs
    rows = executions(runs)
    per_attempt = Counter((job_id, attempt) for job_id, attempt, _ in rows)
    assert set(per_attempt.values()) == {1}, rows  # no attempt ever ran twice
    assert Counter(job_id for job_id, _, _ in rows) == Counter({job_id: 2 for job_id in ids}), rows
    second = [pid for _, attempt, pid in rows if attempt == 2]
    assert not set(second) & {pid for _, _, pid in orphans}
    for job_id in ids:  # one row per attempt: the lost one and the one that completed
        eventually(lambda job_id=job_id: sorted(a for _, a in results_rows(c, c.leader(), job_id)) == [1, 2], 20,
                   "a result row per attempt")
    eventually(lambda: not any(alive(pid) for pid in second), 10, "no job process left")
    eventually(lambda: not records(c, "w1"), 10, "every attempt record removed")
    print(f"orphans killed {killed_s:.1f}s after the worker's return (pid {os.getpid()})")
