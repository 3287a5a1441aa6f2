"""Workflows end to end on a real 3-replica cluster with a worker: a DAG from a workflow file,
groups, reruns after fixing the cause, refused workflows, delayed jobs, and schedules."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haco.cli import main as cli_main
from tests.integration.cluster import Cluster, eventually, http


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("flows")
    cluster = Cluster(root, 3)
    cluster.start_all()
    try:
        cluster.leader()
        cluster.start_worker("w1", capacity=8)
        eventually(lambda: any(w.get("connected") for i in range(3) for w in (
            http("GET", cluster.nodes[i].url + "/api/workers")[1] or {}).get("workers", [])), 30, "a connected worker")
        yield cluster
    finally:
        cluster.stop()


def haco(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The `haco` CLI, run in this process (a new interpreter per call costs seconds on a busy machine)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["--coordinators", ",".join(c.urls), *args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def api(c: Cluster, method: str, path: str, body: Any = None, i: int = 0, timeout: float = 5.0) -> tuple[int, Any]:
    return http(method, c.nodes[i].url + path, body, timeout)


WORKFLOW = """\
group: {group}
defaults:
  type: shell
  timeout_s: 60
  labels: {{suite: acceptance}}
jobs:
  a:
    argv: [sh, -c, "sleep 0.2"]
  b:
    argv: [test, -f, "{marker}"]
    depends_on: [a]
  c:
    argv: ["true"]
    depends_on: [a]
  d:
    argv: ["true"]
    depends_on: [b, c]
{fan}
"""


def test_a_diamond_and_fan_out_runs_in_order_fails_its_descendants_and_a_group_retry_completes_it(
        c: Cluster, tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    fan = "".join(f"  fan{i}:\n    argv: [\"true\"]\n    depends_on: [d]\n" for i in range(20))
    wf = tmp_path / "wf.yaml"
    wf.write_text(WORKFLOW.format(group="acceptance-1", marker=marker, fan=fan))
    run = haco(c, "run", str(wf), "--wait", "--json")
    assert run.returncode == 1, run.stderr  # b fails: the group ends failed
    group = json.loads(run.stdout)
    assert group["state"] == "failed" and group["final"] and group["total"] == 24
    assert group["counts"]["completed"] == 2 and group["counts"]["failed"] == 22  # b, d and the 20 below d
    assert {f["name"] for f in group["failed"]} == {"b", "d", *(f"fan{i}" for i in range(20))}
    shown = haco(c, "group", "acceptance-1")
    assert shown.returncode == 0 and "failed" in shown.stdout and "22 failed" in shown.stdout, shown.stdout
    _, listed = api(c, "GET", "/api/jobs?group=acceptance-1&label=suite=acceptance&limit=100")
    assert len(listed["jobs"]) == 24

    marker.write_text("now it exists")
    retry = haco(c, "retry", "--group", "acceptance-1", "--failed", "--json")
    assert retry.returncode == 0, retry.stderr
    answer = json.loads(retry.stdout)
    assert answer["retried"] == [group["jobs"]["b"]] and len(answer["dependents"]) == 21
    done = haco(c, "group", "acceptance-1", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    assert final["state"] == "completed" and final["counts"]["completed"] == 24

    jobs = {name: api(c, "GET", f"/api/jobs/{job_id}")[1]["job"] for name, job_id in final["jobs"].items()}
    assert [a["attempt"] for a in jobs["b"]["attempts"]] == [1, 2]  # the earlier attempt stays; numbering goes on
    for name, job in jobs.items():  # dependency order, from the replicated times of the last attempts
        start = job["attempts"][-1]["assigned_at_ms"]
        for dep in job["depends_on"]:
            dep_job = next(j for j in jobs.values() if j["job_id"] == dep)
            assert dep_job["finished_at_ms"] <= start, (name, dep)


@pytest.mark.parametrize("jobs, code, words", [
    ([{"name": "a", "type": "noop", "depends_on": ["b"]}, {"name": "b", "type": "noop", "depends_on": ["a"]}],
     "DEPENDENCY_CYCLE", "a -> b -> a"),
    ([{"name": "a", "type": "noop", "depends_on": ["ghost"]}], "UNKNOWN_DEPENDENCY", "ghost"),
    ([{"name": "a", "type": "noop"}, {"name": "a", "type": "noop"}], "INVALID", "duplicate name"),
])
def test_bad_workflows_are_400s_that_change_nothing(c: Cluster, jobs: list[dict[str, Any]], code: str,
                                                    words: str) -> None:
    before = api(c, "GET", "/api/cluster")[1]
    status, body = api(c, "POST", "/api/jobs/batch", {"jobs": jobs, "group": f"bad-{code}"})
    assert status == 400 and body["error"]["code"] == code and words in body["error"]["message"], body
    assert api(c, "GET", f"/api/groups/bad-{code}")[0] == 404
    after = api(c, "GET", "/api/cluster")[1]
    assert after["applied_index"] == before["applied_index"] or after["digests"][-1:] != []  # nothing proposed
    assert not [j for j in api(c, "GET", "/api/jobs?limit=1000")[1]["jobs"] if j["key"] is None
                and j["job_id"] not in _group_jobs(c)]


def _group_jobs(c: Cluster) -> set[str]:
    out: set[str] = set()
    for g in api(c, "GET", "/api/groups?limit=1000")[1]["groups"]:
        out.update(g["job_ids"])
    return out


def test_a_delayed_job_starts_after_its_time_by_leader_time_and_within_a_second(c: Cluster) -> None:
    at = time.time() + 4  # room for the submit and the job view (in-process CLI calls) on a loaded machine
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
    sub = haco(c, "submit", "--at", iso, "--json", "--", "true")
    assert sub.returncode == 0, sub.stderr
    job_id = json.loads(sub.stdout)["job_id"]
    _, body = api(c, "GET", f"/api/jobs/{job_id}")
    assert body["job"]["status"] == "pending" and "not_before_ms" in body["job"]["pending_reason"]
    shown = haco(c, "job", job_id)
    assert "not before" in shown.stdout or time.time() > at, shown.stdout
    _, body = api(c, "GET", f"/api/jobs/{job_id}?wait_s=30", timeout=40)
    job = body["job"]
    assert job["status"] == "completed", job
    not_before = job["not_before_ms"]
    assert not_before == int(at * 1000)
    first = job["attempts"][0]
    assert first["assigned_at_ms"] >= not_before and first["started_at_ms"] >= not_before
    assert first["started_at_ms"] - not_before <= 1000, first


def test_schedule_every_second_fires_slots_once_and_shows_runs(c: Cluster) -> None:
    for bad, words in ((["--cron", "61 * * * *"], "bad cron"), (["--cron", "0 2 * * *", "--tz", "Mars/Base"],
                                                                  "unknown time zone")):
        out = haco(c, "schedule", "create", "nope", *bad, "--command", "true")
        assert out.returncode == 1 and words in out.stderr, out.stderr
    status, body = api(c, "POST", "/api/schedules", {"id": "bad", "every": "1s", "job": {"type": "Bad Type"}})
    assert status == 400 and body["error"]["detail"]["field"] == "job.type"
    out = haco(c, "schedule", "create", "tick1", "--every", "1s", "--overlap", "skip", "--catch-up", "all",
               "--catch-up-window", "30s", "--command", "true")
    assert out.returncode == 0, out.stderr

    def fired_three() -> Any:
        sc = api(c, "GET", "/api/schedules/tick1")[1]["schedule"]
        return sc if sc["fired"] >= 3 else None
    sc = eventually(fired_three, 30, "three runs of the schedule")
    slots = [r["slot_ms"] for r in sc["runs"]]
    assert slots == sorted(set(slots)) and all(s % 1000 == 0 for s in slots)
    assert all(r["group_id"] == f"tick1@{time.strftime('%Y%m%dT%H%M%S', time.gmtime(r['slot_ms'] / 1000))}Z"
               for r in sc["runs"] if r["outcome"] != "skipped")
    shown = haco(c, "schedule", "show", "tick1")
    assert shown.returncode == 0 and "last runs:" in shown.stdout and "next due:" in shown.stdout
    listed = haco(c, "schedule", "list")
    assert "tick1" in listed.stdout
    assert haco(c, "schedule", "pause", "tick1").returncode == 0
    paused = api(c, "GET", "/api/schedules/tick1")[1]["schedule"]
    time.sleep(2.5)  # two slots pass while paused: none fires
    assert api(c, "GET", "/api/schedules/tick1")[1]["schedule"]["fired"] == paused["fired"]
    assert haco(c, "schedule", "resume", "tick1").returncode == 0
    eventually(lambda: api(c, "GET", "/api/schedules/tick1")[1]["schedule"]["fired"] > paused["fired"], 15,
               "a run after resume")
    assert haco(c, "schedule", "delete", "tick1").returncode == 0
    assert api(c, "GET", "/api/schedules/tick1")[0] == 404
