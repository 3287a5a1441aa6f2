"""Submit-time checks on a live 3-replica cluster: a job no worker could run is a 400 naming the
field (or UNKNOWN_EXECUTOR listing what the cluster runs) on every replica and changes nothing; a
plugin type that a registered worker advertises is accepted everywhere and runs.

Ticks and worker liveness are slowed so the leader proposes nothing of its own during the checks:
any change of the applied index or digest would be the refused submits' doing."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cluster import Cluster, eventually, http

PLUGIN = "shout"


def install_plugin(site: Path) -> None:
    """A real installed distribution on `site` whose entry point offers the `shout` executor."""
    info = site / "haco_checks_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: haco_checks_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[haco.executors]\n{PLUGIN} = haco_checks_plugin:Shout\n")
    (site / "haco_checks_plugin.py").write_text(textwrap.dedent(f"""
        from haco.worker.executors import ExecResult

        class Shout:
            name = "{PLUGIN}"

            async def run(self, payload, ctx):
                return ExecResult(True, {{"shout": str(payload).upper()}}, None, {{}})
    """))


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("checks")
    cluster = Cluster(root, 3)
    cluster.extra_env = {"HACO_TICK_INTERVAL_S": "3600", "HACO_WORKER_LOST_S": "3600"}
    cluster.start_all()
    try:
        cluster.leader()
        install_plugin(root / "site")
        pythonpath = os.pathsep.join([str(root / "site"), *filter(None, [os.environ.get("PYTHONPATH")])])
        cluster.extra_env = {**cluster.extra_env, "PYTHONPATH": pythonpath}
        cluster.start_worker("w-plugin", capacity=1)
        for url in cluster.urls:  # every replica knows what the worker offers, not just the leader
            eventually(lambda: _plugins(url, "w-plugin") == [PLUGIN], 30, f"{url} knows w-plugin offers {PLUGIN}")
        yield cluster
    finally:
        cluster.stop()


def _plugins(url: str, worker_id: str) -> Any:
    status, body = http("GET", f"{url}/api/workers/{worker_id}")
    return status == 200 and body["worker"]["plugins"]


BAD_SPECS: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "docker"}, "UNKNOWN_EXECUTOR", "type"),
    ({"type": "shell"}, "INVALID", "payload"),
    ({"type": "shell", "payload": {"argv": "echo x"}}, "INVALID", "payload.argv"),
    ({"type": "python", "payload": {"function": "math.sqrt", "args": [16]}}, "INVALID", "payload.function"),
    ({"type": "pytest", "payload": {"args": ["-x"]}}, "INVALID", "payload.path"),
    ({"type": "benchmark", "payload": {"argv": ["true"], "repeat": 0}}, "INVALID", "payload.repeat"),
]


def test_bad_specs_are_400_naming_the_field_on_every_replica_and_change_nothing(c: Cluster) -> None:
    before = c.converged(30)
    for url in c.urls:
        for job, code, field in BAD_SPECS:
            status, body = http("POST", f"{url}/api/jobs", job)
            assert status == 400, (url, job, body)
            error = body["error"]
            assert (error["code"], error["detail"]["field"]) == (code, field), (job, error)
            assert error["message"].startswith(f"{field}: "), error
        status, body = http("POST", f"{url}/api/jobs/batch",
                            {"jobs": [{"type": "noop"}, {"type": "shell", "payload": {"argv": "echo x"}}]})
        assert status == 400 and body["error"]["detail"]["field"] == "jobs[1].payload.argv", body
    status, body = http("POST", c.urls[1] + "/api/jobs", {"type": "docker"})
    assert "known: benchmark, noop, pytest, python, shell, shout" in body["error"]["message"], body
    assert body["error"]["detail"]["known"] == ["benchmark", "noop", "pytest", "python", "shell", PLUGIN]
    after = c.converged(30)
    assert (after["applied_index"], after["digest"]) == (before["applied_index"], before["digest"])


def test_unknown_dependency_of_a_single_submit_names_no_index(c: Cluster) -> None:
    status, body = http("POST", c.urls[2] + "/api/jobs", {"type": "noop", "depends_on": ["nope"]})
    assert status == 400, body
    assert body["error"]["message"] == "depends on unknown job nope", body
    assert body["error"]["detail"]["field"] == "depends_on"
    status, body = http("POST", c.urls[2] + "/api/jobs/batch",
                        {"jobs": [{"type": "noop"}, {"type": "noop", "depends_on": ["nope"]}]})
    assert status == 400 and body["error"]["code"] == "UNKNOWN_DEPENDENCY" and "nope" in body["error"]["message"]


def test_an_advertised_plugin_type_is_accepted_on_every_replica_and_runs(c: Cluster) -> None:
    ids = []
    for url in c.urls:
        status, body = http("POST", f"{url}/api/jobs", {"type": PLUGIN, "payload": "hi"})
        assert status == 201, (url, body)
        ids.append(body["job_id"])
    for job_id in ids:
        job = eventually(lambda: (j := http("GET", f"{c.urls[0]}/api/jobs/{job_id}?wait_s=5")[1]["job"])
                         ["status"] == "completed" and j, 30, f"{job_id} completed")
        assert job["result"] == {"shout": "HI"}, job
