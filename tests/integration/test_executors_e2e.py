"""Issue 5 end to end: every executor, timeouts, cancels, placement and worker failures, on one real
3-replica cluster with real worker processes. Each test uses its own tags and workers, so the
tests share the cluster without sharing work."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from .cluster import Cluster, eventually, http

FINAL = ("completed", "failed", "cancelled", "expired")


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("exec"), 3)
    cluster.extra_env = {"HACO_GRACE_S": "2", "HACO_WORKER_LOST_S": "2"}
    cluster.start_all()
    try:
        cluster.leader()
        yield cluster
    finally:
        cluster.stop()


def submit(c: Cluster, job: dict[str, Any]) -> str:
    status, body = http("POST", c.urls[0] + "/api/jobs", job)
    assert status == 201, body
    return str(body["job_id"])


def get(c: Cluster, job_id: str) -> dict[str, Any]:
    for url in c.urls:
        try:
            status, body = http("GET", f"{url}/api/jobs/{job_id}")
        except OSError:
            continue
        if status == 200:
            return body["job"]  # type: ignore[no-any-return]
    raise AssertionError(f"no replica answered for {job_id}")


def final(c: Cluster, job_id: str, timeout_s: float = 40.0) -> dict[str, Any]:
    return eventually(lambda: (j := get(c, job_id))["status"] in FINAL and j, timeout_s, f"{job_id} final")


def running(c: Cluster, job_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    return eventually(lambda: (j := get(c, job_id))["status"] == "running" and j, timeout_s, f"{job_id} running")


def result_rows(c: Cluster, job_id: str) -> list[list[Any]]:
    status, body = http("POST", c.urls[0] + "/api/results/query",
                        {"sql": f"SELECT job_id, attempt, outcome FROM results WHERE job_id = '{job_id}' ORDER BY attempt"})
    assert status == 200, body
    return body["rows"]  # type: ignore[no-any-return]


def pids_in(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def kill_leftovers(pids: list[int]) -> None:
    """Jobs whose worker was SIGKILLed keep running in their own session: the test started them,
    so the test stops them."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_each_executor_runs_a_real_job_and_its_result_is_recorded(c: Cluster, tmp_path: Path) -> None:
    c.start_worker("w-exec", capacity=4, tags="exec")
    (tmp_path / "mod_e2e.py").write_text("def square(x):\n    return {'square': x * x}\n")
    (tmp_path / "test_small.py").write_text(textwrap.dedent("""
        def test_ok():
            assert 1 + 1 == 2

        def test_broken():
            assert 1 + 1 == 3
    """))
    base = {"required_tags": ["exec"], "max_retries": 0}
    jobs = {
        "shell": {"type": "shell", "payload": {"argv": ["echo", "from shell"]}},
        "python": {"type": "python", "payload": {"function": "mod_e2e:square", "args": [7],
                                                 "pythonpath": [str(tmp_path)]}},
        "noop": {"type": "noop", "payload": {"n": 1}},
        "pytest": {"type": "pytest", "payload": {"path": str(tmp_path / "test_small.py")}},
        "benchmark": {"type": "benchmark", "payload": {"argv": ["true"], "repeat": 5, "warmup": 1}},
    }
    ids = {name: submit(c, {**base, **job}) for name, job in jobs.items()}
    done = {name: final(c, job_id) for name, job_id in ids.items()}

    assert done["shell"]["status"] == "completed" and "from shell" in done["shell"]["result"]["stdout_tail"]
    assert done["python"]["status"] == "completed" and done["python"]["result"] == {"square": 49}
    assert done["noop"]["status"] == "completed" and done["noop"]["result"] == {"n": 1}
    pt = done["pytest"]
    assert pt["status"] == "failed", pt  # one failing test fails the job and names the test
    report = pt["attempts"][-1]["result"]  # a failed job keeps its result on the attempt
    assert (report["passed"], report["failed"]) == (1, 1), report
    assert any("test_broken" in t for t in report["failing"]), report
    bench = done["benchmark"]["result"]
    assert bench["runs"] == 5 and 0 < bench["min_s"] <= bench["median_s"] <= bench["p95_s"] <= bench["max_s"]
    for name, job_id in ids.items():
        outcome = "failed" if name == "pytest" else "completed"
        eventually(lambda job_id=job_id, outcome=outcome: result_rows(c, job_id) == [[job_id, 1, outcome]], 20,
                   f"{name} result row")
        stats = done[name]["attempts"][-1]["stats"]
        assert stats["wall_ms"] >= 0 and "cpu_ms" in stats and "peak_rss_bytes" in stats, stats


def test_timeout_kills_the_process_group_retries_then_fails(c: Cluster, tmp_path: Path) -> None:
    c.start_worker("w-timeout", capacity=2, tags="timeout")
    pidfile = tmp_path / "pids"
    script = f"echo $$ >> {pidfile}; sleep 60 & echo $! >> {pidfile}; wait"
    job_id = submit(c, {"type": "shell", "payload": {"argv": ["sh", "-c", script]}, "timeout_s": 1,
                        "max_retries": 1, "backoff_s": 0.1, "required_tags": ["timeout"]})
    try:
        job = final(c, job_id, 60)
        assert job["status"] == "failed", job
        assert len(job["attempts"]) == 2, job["attempts"]  # one retry after the first timeout
        assert all("timed out" in (a["error"] or "") for a in job["attempts"]), job["attempts"]
        pids = pids_in(pidfile)
        assert len(pids) == 4, pids  # a shell and its background sleep per attempt
        eventually(lambda: all(gone(p) for p in pids), 10, "no process of the timed-out jobs survives")
    finally:
        kill_leftovers(pids_in(pidfile))


def test_cancel_kills_a_running_job_and_removes_a_pending_one(c: Cluster, tmp_path: Path) -> None:
    c.start_worker("w-cancel", capacity=1, tags="cancel")
    pidfile = tmp_path / "pids"
    run_id = submit(c, {"type": "shell", "payload": {"argv": ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"]},
                        "required_tags": ["cancel"]})
    pending_id = submit(c, {"type": "shell", "payload": {"argv": ["true"]}, "required_tags": ["cancel"]})
    try:
        running(c, run_id)
        eventually(lambda: pids_in(pidfile), 10, "the job wrote its pid")
        assert get(c, pending_id)["status"] == "pending"  # capacity 1: it waits behind the sleeper
        status, body = http("POST", c.urls[0] + f"/api/jobs/{pending_id}/cancel")
        assert status == 200, body
        assert final(c, pending_id)["status"] == "cancelled"
        status, body = http("POST", c.urls[1] + f"/api/jobs/{run_id}/cancel")
        assert status == 200, body
        assert final(c, run_id)["status"] == "cancelled"
        eventually(lambda: gone(pids_in(pidfile)[0]), 10, "the cancelled job's process is killed")
        assert get(c, pending_id)["attempts"] == []  # it never ran
    finally:
        kill_leftovers(pids_in(pidfile))


def test_gpu_job_waits_with_a_reason_until_a_gpu_worker_joins(c: Cluster) -> None:
    gpu_id = submit(c, {"type": "noop", "payload": 1, "required_tags": ["gpu"]})
    huge_id = submit(c, {"type": "noop", "payload": 2, "requirements": {"min_memory_gb": 100000}})
    reason = eventually(lambda: get(c, gpu_id).get("pending_reason"), 10, "a pending reason")
    assert "gpu" in str(reason), reason
    huge_reason = eventually(lambda: get(c, huge_id).get("pending_reason"), 10, "a pending reason")
    assert "memory" in str(huge_reason), huge_reason
    assert get(c, gpu_id)["status"] == "pending"
    c.start_worker("w-gpu", capacity=1, tags="gpu")
    job = final(c, gpu_id)
    assert job["status"] == "completed" and job["attempts"][-1]["worker_id"] == "w-gpu", job
    assert get(c, huge_id)["status"] == "pending"
    http("POST", c.urls[0] + f"/api/jobs/{huge_id}/cancel")


def test_sigkilled_worker_job_runs_again_elsewhere_with_one_result(c: Cluster, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    c.start_worker("w-kill-a", capacity=1, tags="kill")
    job_id = submit(c, {"type": "shell", "payload": {"argv": ["sh", "-c", f"echo $$ >> {pidfile}; sleep 2"]},
                        "required_tags": ["kill"], "max_retries": 0})
    try:
        first = running(c, job_id)
        assert first["attempts"][-1]["worker_id"] == "w-kill-a"
        c.start_worker("w-kill-b", capacity=1, tags="kill")
        c.kill_worker("w-kill-a", signal.SIGKILL)
        job = final(c, job_id, 60)
        assert job["status"] == "completed", job
        assert job["attempts"][-1]["worker_id"] == "w-kill-b", job["attempts"]
        rows = eventually(lambda: result_rows(c, job_id), 20, "a result row")
        assert len([r for r in rows if r[2] == "completed"]) == 1, rows  # exactly one recorded success
    finally:
        kill_leftovers(pids_in(pidfile))


def test_sigterm_worker_finishes_its_job_deregisters_and_takes_no_new_work(c: Cluster) -> None:
    c.start_worker("w-term", capacity=2, tags="term")
    first = submit(c, {"type": "shell", "payload": {"argv": ["sleep", "2"]}, "required_tags": ["term"]})
    running(c, first)
    c.kill_worker("w-term", signal.SIGTERM, group=False)

    def worker_status() -> str:
        status, body = http("GET", c.urls[0] + "/api/workers/w-term")
        return "deregistered" if status == 404 else str(body["worker"]["status"])
    eventually(lambda: worker_status() in ("draining", "deregistered"), 10, "the worker drains")
    second = submit(c, {"type": "noop", "payload": 3, "required_tags": ["term"]})
    assert c.workers["w-term"].wait(timeout=30) == 0
    assert final(c, first)["status"] == "completed"
    assert get(c, second)["status"] == "pending" and get(c, second)["attempts"] == []
    eventually(lambda: worker_status() == "deregistered", 10, "the drained worker deregistered")
    http("POST", c.urls[0] + f"/api/jobs/{second}/cancel")


def test_plugin_executor_from_an_installed_package_runs(c: Cluster, tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "haco_e2e_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: haco_e2e_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[haco.executors]\nshout = haco_e2e_plugin:Shout\n")
    (site / "haco_e2e_plugin.py").write_text(textwrap.dedent("""
        from haco.worker.executors import ExecResult

        class Shout:
            name = "shout"

            async def run(self, payload, ctx):
                return ExecResult(True, {"shout": str(payload).upper()}, None, {})
    """))
    saved = dict(c.extra_env)
    c.extra_env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    try:
        c.start_worker("w-plugin", capacity=1, tags="plugin")
    finally:
        c.extra_env = saved

    def offered() -> bool:  # submit refuses a type no registered worker offers
        status, body = http("GET", c.urls[0] + "/api/workers/w-plugin")
        return status == 200 and body["worker"]["plugins"] == ["shout"]

    eventually(offered, 30, "w-plugin registered with its plugin")
    job = final(c, submit(c, {"type": "shout", "payload": "hi", "required_tags": ["plugin"]}))
    assert job["status"] == "completed" and job["result"] == {"shout": "HI"}, job
