"""`haco queue ...` and `haco submit --queue` in-process against the real routes (an in-process
replica, tests/client/app_server.py): output, the `queue list` table, exit codes, error lines."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from haco import cli
from haco.cli import format as cli_format
from tests.client.app_server import serve_app
from tests.server.fake_replica import FakeReplica


@pytest.fixture
def app() -> Iterator[tuple[str, FakeReplica]]:
    with serve_app() as served:
        yield served


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--coordinators", url, "--deadline", "5", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_create_update_list_and_delete(capsys: pytest.CaptureFixture[str], app: tuple[str, FakeReplica]) -> None:
    url, replica = app
    code, out, _ = run(capsys, url, "queue", "create", "gpu", "--max-running", "2", "--weight", "3")
    assert (code, out.strip()) == (0, "queue gpu created (max_running 2, weight 3, priority 0)")
    code, out, _ = run(capsys, url, "queue", "create", "gpu", "--max-running", "2", "--weight", "3")
    assert code == 0 and "exists already with these settings" in out
    code, _, err = run(capsys, url, "queue", "create", "gpu")
    assert code == 1 and err.startswith("haco: error: queue gpu exists with other settings") and "[QUEUE_EXISTS]" in err
    code, out, _ = run(capsys, url, "queue", "update", "gpu", "--priority", "10")
    assert (code, out.strip()) == (0, "queue gpu: max_running 2, weight 3, priority 10")
    code, out, _ = run(capsys, url, "queue", "update", "gpu", "--priority", "10")
    assert out.strip().endswith("(unchanged)")

    code, out, _ = run(capsys, url, "submit", "--queue", "gpu", "--type", "noop")
    assert code == 0 and replica.state.jobs[out.strip()].spec.priority == 10  # the queue's
    code, out, _ = run(capsys, url, "queue", "list")
    assert code == 0
    assert out.splitlines() == [
        "NAME     PAUSED  MAX  WEIGHT  PRIO  PENDING  READY  RUNNING  DONE  FAILED",
        "default  no      -    1       0     0        0      0        0     0",
        "gpu      no      2    3       10    1        1      0        0     0"]
    code, out, _ = run(capsys, url, "queue", "list", "--json")
    answer = json.loads(out)
    assert [q["name"] for q in answer["queues"]] == ["default", "gpu"] and answer["paused"] is False

    code, _, err = run(capsys, url, "queue", "delete", "gpu")
    assert code == 1 and "[QUEUE_NOT_EMPTY]" in err
    for job_id in list(replica.state.jobs):
        assert run(capsys, url, "cancel", job_id)[0] == 0
    code, out, _ = run(capsys, url, "queue", "delete", "gpu")
    assert (code, out.strip()) == (0, "queue gpu deleted")


def test_pause_and_resume_one_queue_or_all(capsys: pytest.CaptureFixture[str], app: tuple[str, FakeReplica]) -> None:
    url, replica = app
    run(capsys, url, "queue", "create", "batch")
    code, out, _ = run(capsys, url, "queue", "pause", "batch")
    assert (code, out.strip()) == (0, "queue batch paused") and replica.state.queues["batch"].paused
    code, out, _ = run(capsys, url, "queue", "pause", "batch")
    assert out.strip() == "queue batch was already paused"
    code, out, _ = run(capsys, url, "submit", "--queue", "batch", "--type", "noop")
    job_id = out.strip()
    code, out, _ = run(capsys, url, "job", job_id)
    assert code == 0 and "its queue batch is paused (haco queue resume batch)" in out and "queue:" in out

    code, out, _ = run(capsys, url, "queue", "pause")
    assert (code, out.strip()) == (0, cli_format.GLOBAL_PAUSED) and replica.state.paused
    code, out, _ = run(capsys, url, "queue", "list")
    assert out.startswith("all scheduling is paused")
    code, out, _ = run(capsys, url, "queue", "resume")
    assert code == 0 and not replica.state.paused and replica.state.queues["batch"].paused
    assert run(capsys, url, "pause")[0] == 0 and replica.state.paused  # the old spelling still works
    assert run(capsys, url, "resume")[0] == 0 and not replica.state.paused
    code, out, _ = run(capsys, url, "queue", "resume", "batch")
    assert (code, out.strip()) == (0, "queue batch resumed") and not replica.state.queues["batch"].paused


def test_refusals_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], app: tuple[str, FakeReplica]) -> None:
    url, replica = app
    code, _, err = run(capsys, url, "submit", "--queue", "nosuch", "--", "true")
    assert code == 1 and err.count("\n") == 1 and "queue: no queue nosuch" in err and "[UNKNOWN_QUEUE]" in err
    code, _, err = run(capsys, url, "queue", "update", "nosuch", "--weight", "2")
    assert code == 1 and "[UNKNOWN_QUEUE]" in err
    code, _, err = run(capsys, url, "queue", "create", "q", "--weight", "0")
    assert code == 1 and err.startswith("haco: error: weight: must be 1 to 1000")
    code, _, err = run(capsys, url, "queue", "create", "bad name!")
    assert code == 1 and "name:" in err
    code, _, err = run(capsys, url, "queue", "delete", "default")
    assert code == 1 and "cannot be deleted" in err
    assert replica.state.jobs == {} and replica.state.queues == {}


@pytest.mark.parametrize("argv", [["queue"], ["queue", "create"], ["queue", "update", "gpu"],
                                  ["queue", "create", "gpu", "--weight", "heavy"], ["queue", "rename", "a"]])
def test_usage_errors_exit_64(capsys: pytest.CaptureFixture[str], app: tuple[str, FakeReplica],
                              argv: list[str]) -> None:
    code, _, err = run(capsys, app[0], *argv)
    assert code == 64 and ("error" in err or "usage" in err)


def test_pending_reasons_name_the_queue() -> None:
    reason = {"queue_full": "queue gpu runs 2 of max_running 2", "queued": "runnable; 0 jobs ahead of it"}
    assert cli_format.pending_reasons(reason)[0] == "queue gpu runs 2 of max_running 2 (haco queue update --max-running)"
    assert cli_format.pending_reasons({"paused": True}) == ["all scheduling is paused (haco resume)"]
    from haco.cli.job_output import pending_line
    assert pending_line({"queue_paused": "gpu"}) == "its queue gpu is paused (haco queue resume gpu)"
    assert pending_line(reason).startswith("queue gpu runs 2 of max_running 2; ")
