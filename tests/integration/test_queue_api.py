"""The named-queue surface on a live 3-replica cluster with one worker: a queue made with
`haco queue create` (through a follower, raising the cluster version on first use) shows on
every replica; jobs submitted to it run; a job naming an unknown queue is a 400 UNKNOWN_QUEUE on
every replica; a paused queue holds its jobs with the reason and releases them on resume; a
queue holding a job cannot be deleted until it is empty. Scheduling behaviour (limits across a
leader kill, shares) is tests/integration/test_queues.py's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haco import cli
from haco.client import SyncClient
from haco.errors import RejectedConflict

from .cluster import Cluster, eventually, http
from .test_workers import final, job_on, submit

NOOP = {"type": "noop", "payload": {}}


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("queue-api")
    cluster = Cluster(root, 3)
    cluster.start_all()
    try:
        cluster.leader()
        cluster.start_worker("w-q", capacity=2)
        eventually(lambda: http("GET", cluster.nodes[0].url + "/api/workers/w-q")[0] == 200, 30, "the worker")
        yield cluster
    finally:
        cluster.stop()


def _follower(c: Cluster) -> int:
    return next(i for i in c.alive() if i != c.leader())


def _haco(capsys: pytest.CaptureFixture[str], c: Cluster, i: int, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--coordinators", c.nodes[i].url, *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _queues(c: Cluster, i: int, index: int = 0) -> dict[str, dict[str, Any]]:
    status, body = http("GET", c.nodes[i].url + f"/api/queues?min_index={index}")
    assert status == 200, body
    return {q["name"]: q for q in body["queues"]}


def test_a_queue_made_through_a_follower_shows_everywhere_and_runs_jobs(c: Cluster,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    f = _follower(c)
    code, out, err = _haco(capsys, c, f, "--json", "queue", "create", "bench", "--max-running", "1", "--weight",
                           "3", "--priority", "7")
    assert code == 0, err
    made = json.loads(out)
    assert made["queue"]["max_running"] == 1 and c.info(f)["cluster_version"] >= 5
    for i in range(3):  # every replica, once it applied the create
        q = _queues(c, i, made["index"])["bench"]
        assert (q["explicit"], q["max_running"], q["weight"], q["priority"]) == (True, 1, 3, 7), q
    code, out, _ = _haco(capsys, c, 0, "queue", "list")
    assert code == 0 and out.splitlines()[0].split() == ["NAME", "PAUSED", "MAX", "WEIGHT", "PRIO", "PENDING",
                                                          "READY", "RUNNING", "DONE", "FAILED"]
    assert any(line.split()[:5] == ["bench", "no", "1", "3", "7"] for line in out.splitlines()), out

    ids = [submit(c, {**NOOP, "queue": "bench"}, i) for i in range(3)]
    for job_id in ids:
        job = final(c, job_id)
        assert (job["status"], job["queue"], job["priority"]) == ("completed", "bench", 7), job
    done = eventually(lambda: _queues(c, 0)["bench"]["counts"]["completed"] == 3 and _queues(c, 0)["bench"], 10,
                      "the queue's counts")
    assert done["counts"]["pending"] == done["counts"]["running"] == 0


def test_an_unknown_queue_is_refused_on_every_replica(c: Cluster) -> None:
    for i in range(3):
        status, body = http("POST", c.nodes[i].url + "/api/jobs", {**NOOP, "queue": "nowhere"})
        assert status == 400 and body["error"]["code"] == "UNKNOWN_QUEUE", body
        assert body["error"]["detail"]["field"] == "queue" and "default" in body["error"]["detail"]["known"]
        status, body = http("POST", c.nodes[i].url + "/api/jobs/batch", {"jobs": [NOOP, {**NOOP, "queue": "nowhere"}]})
        assert status == 400 and body["error"]["detail"]["field"] == "jobs[1].queue", body
        status, body = http("GET", c.nodes[i].url + "/api/queues/nowhere")
        assert status == 404 and body["error"]["code"] == "UNKNOWN_QUEUE", body
    assert "nowhere" not in _queues(c, 0)


def test_pause_holds_a_queue_and_delete_waits_for_it_to_empty(c: Cluster) -> None:
    with SyncClient(c.urls, deadline_s=20) as client:
        client.create_queue("hold")
        assert client.pause_queue("hold")["paused"] is True
        job_id = client.submit({**NOOP, "queue": "hold"}).job_id
        reason = eventually(lambda: job_on(c, 0, job_id)["pending_reason"], 10, "a pending reason")
        assert reason.get("queue_paused") == "hold", reason
        with pytest.raises(RejectedConflict) as refused:
            client.delete_queue("hold")
        assert refused.value.reject_code == "QUEUE_NOT_EMPTY"
        assert client.queue("hold")["counts"]["pending"] == 1

        assert client.resume_queue("hold")["paused"] is False
        assert final(c, job_id)["status"] == "completed"
        assert client.delete_queue("hold")["already"] is False
        assert client.queue("hold")["explicit"] is False  # its finished job keeps the name listed
        status, body = http("POST", c.nodes[0].url + "/api/jobs", {**NOOP, "queue": "hold"})
        assert status == 400 and body["error"]["code"] == "UNKNOWN_QUEUE", body
