"""The everyday commands against real replicas on 127.0.0.1 (one cluster and one worker for the
module): coordinator URL errors, job-id prefixes, `haco jobs` order, footer and filters, cancel
--reason, drain and undrain, and `haco workers` as answered by a follower."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haco import cli
from tests.client.client_fakes import free_port
from tests.integration.cluster import Cluster, eventually



@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cli-cluster"))
    try:
        cluster.start_all()
        cluster.leader()
        cluster.start_worker("w1", capacity=2)
        eventually(lambda: any(w["worker_id"] == "w1" for w in cluster.api(0, "GET", "/api/workers")[1]["workers"]),
                   20, "worker w1 registered")
        yield cluster
    except BaseException:
        print(cluster.dump_logs())
        raise
    finally:
        cluster.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def haco(capsys: pytest.CaptureFixture[str], c: Cluster, *argv: str, url: str | None = None) -> tuple[int, str, str]:
    return run(capsys, "--coordinators", url or ",".join(c.urls), *argv)


def as_json(capsys: pytest.CaptureFixture[str], c: Cluster, *argv: str, url: str | None = None) -> Any:
    code, out, err = haco(capsys, c, "--json", *argv, url=url)
    assert code == 0, err
    return json.loads(out)


def submit(capsys: pytest.CaptureFixture[str], c: Cluster, *argv: str) -> str:
    code, out, err = haco(capsys, c, "submit", *argv)
    assert code == 0, err
    if "--wait" in argv:  # the output is the job's; the id comes first on stderr
        return err.split("haco: submitted ", 1)[1].split()[0]
    return out.strip()


# --- coordinator URLs ------------------------------------------------------------------------------

@pytest.mark.parametrize(("urls", "says"), [
    ("127.0.0.1:7701", "did you mean http://127.0.0.1:7701?"),
    ("http://127.0.0.1:99999", "port must be a number from 1 to 65535"),
    ("http://127.0.0.1:7001,ftp://x:21", "'ftp://x:21' is not http://HOST:PORT"),
    ("", "--coordinators is empty"),
    (" , ", "--coordinators is empty"),
])
def test_a_bad_coordinator_url_is_a_usage_error(capsys: pytest.CaptureFixture[str], urls: str, says: str) -> None:
    code, out, err = run(capsys, "--coordinators", urls, "jobs")
    assert (code, out) == (64, "")
    assert len(err.splitlines()) == 1 and err.startswith("haco: error: ") and says in err, err


def test_a_bad_url_from_the_environment_is_one_line_from_a_subprocess() -> None:
    env = {"HACO_COORDINATORS": "127.0.0.1:7701", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "haco", "status"], capture_output=True, text=True, timeout=30,
                          env=env)
    assert proc.returncode == 64 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["haco: error: coordinator URL '127.0.0.1:7701' is not http://HOST:PORT or "
                                        "https://HOST:PORT; did you mean http://127.0.0.1:7701?"]


def test_while_no_replica_answers_stderr_says_which_urls_it_tries(capsys: pytest.CaptureFixture[str]) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    code, _, err = run(capsys, "--coordinators", ",".join(dead), "--deadline", "2.5", "jobs")
    lines = err.splitlines()
    assert code == 3 and lines[-1].startswith("haco: error: ")
    assert lines[0].startswith(f"haco: no replica answers yet; trying {dead[0]}, {dead[1]} (last: "), lines
    assert len(lines) == 2


# --- job-id prefixes ------------------------------------------------------------------------------

def test_a_unique_prefix_works_in_every_command_taking_a_job_id(capsys: pytest.CaptureFixture[str],
                                                                 c: Cluster) -> None:
    done = submit(capsys, c, "--wait", "--", "echo", "prefixed")
    code, out, _ = haco(capsys, c, "job", done[:8])
    assert code == 0 and out.startswith(f"job:") and done in out
    code, out, _ = haco(capsys, c, "logs", done[:8])
    assert code == 0 and "prefixed" in out
    after = submit(capsys, c, "--wait", "--depends-on", done[:6], "--", "true")
    assert as_json(capsys, c, "job", after)["depends_on"] == [done]
    later = submit(capsys, c, "--in", "1h", "--", "true")
    code, out, _ = haco(capsys, c, "cancel", later[:6], "--reason", "wrong input")
    assert (code, out) == (0, f"{later} cancelled\n")
    job = as_json(capsys, c, "job", later)
    assert job["status"] == "cancelled" and job["error"] == "wrong input"
    assert as_json(capsys, c, "retry", later[:7])["retried"] == [later]
    code, out, err = haco(capsys, c, "cancel", later[:7])
    assert (code, out) == (0, f"{later} cancelled\n") or "JOB_FINAL" in err, err  # the rerun may be done


def test_a_too_short_prefix_is_not_looked_up(capsys: pytest.CaptureFixture[str], c: Cluster) -> None:
    job_id = submit(capsys, c, "--", "true")
    code, out, err = haco(capsys, c, "job", job_id[:5])
    assert (code, out) == (1, "")
    assert err == f"haco: error: no job {job_id[:5]} (an id prefix needs 6 characters or more) [NOT_FOUND]\n"


# --- haco jobs --------------------------------------------------------------------------------------

def test_jobs_newest_first_with_a_footer_filters_and_the_last_worker(capsys: pytest.CaptureFixture[str],
                                                                    c: Cluster) -> None:
    first = submit(capsys, c, "--wait", "--label", "suite=nightly", "--", "true")
    ids = [submit(capsys, c, "--label", "suite=nightly", "--label", f"n={n}", "--", "true") for n in range(3)]
    noop = submit(capsys, c, "--type", "noop", "--label", "suite=nightly")
    code, out, _ = haco(capsys, c, "jobs", "--label", "suite=nightly", "--limit", "3")
    lines = out.splitlines()
    total = len(as_json(capsys, c, "jobs", "--label", "suite=nightly", "--limit", "1000"))
    assert code == 0 and total == 5
    assert [line.split()[0] for line in lines[1:4]] == [noop, ids[2], ids[1]]
    assert lines[-1].startswith("3 of 5 shown (newest first); older: --after ") and "a larger --limit" in lines[-1]
    after = lines[-1].split("--after ")[1].split(",")[0]
    _, out, _ = haco(capsys, c, "jobs", "--label", "suite=nightly", "--limit", "3", "--after", after)
    assert [line.split()[0] for line in out.splitlines()[1:]] == [ids[0], first]  # the whole rest: no footer
    row = next(line for line in out.splitlines() if line.startswith(first))
    assert row.split()[1] == "completed" and row.split()[5] == "w1"  # the worker that ran it, once finished
    assert [j["job_id"] for j in as_json(capsys, c, "jobs", "--label", "suite=nightly", "--type", "noop")] == [noop]
    assert as_json(capsys, c, "jobs", "--label", "n=1", "--label", "suite=nightly")[0]["job_id"] == ids[1]


def test_an_unknown_query_parameter_is_a_400_naming_it(c: Cluster) -> None:
    status, body = c.api(1, "GET", "/api/jobs?label=suite=nightly&labels=suite=nightly")
    assert status == 400 and body["error"]["code"] == "BAD_QUERY"
    assert body["error"]["detail"]["unknown"] == ["labels"] and "?labels" in body["error"]["message"]
    for path in ("/api/workers?connected=1", "/api/groups?bogus=1", "/api/schedules?bogus=1"):
        assert c.api(0, "GET", path)[0] == 400, path


# --- workers: drain, undrain, the leader's view -----------------------------------------------------

def _worker(capsys: pytest.CaptureFixture[str], c: Cluster, url: str | None = None) -> dict[str, Any]:
    return next(w for w in as_json(capsys, c, "workers", url=url) if w["worker_id"] == "w1")


def test_undrain_brings_a_drained_worker_back(capsys: pytest.CaptureFixture[str], c: Cluster) -> None:
    assert haco(capsys, c, "drain", "w1")[:2] == (0, "w1 draining\n")
    eventually(lambda: _worker(capsys, c)["status"] == "draining", 10, "w1 draining")
    waiting = submit(capsys, c, "--", "echo", "after undrain")
    reason = as_json(capsys, c, "job", waiting)["pending_reason"]
    assert "draining" in json.dumps(reason), reason
    assert haco(capsys, c, "undrain", "w1")[:2] == (0, "w1 active again\n")
    assert haco(capsys, c, "undrain", "w1")[:2] == (0, "w1 was already active\n")
    done = eventually(lambda: (j := as_json(capsys, c, "job", waiting))["status"] == "completed" and j, 20,
                      "the waiting job ran on the undrained worker")
    assert done["last_worker_id"] == "w1"
    code, _, err = haco(capsys, c, "undrain", "nobody")
    assert code == 1 and err.startswith("haco: error: no worker nobody")


def test_workers_shows_the_leaders_view_whichever_replica_answers(capsys: pytest.CaptureFixture[str],
                                                                  c: Cluster) -> None:
    leader = c.leader()
    follower = c.urls[(leader + 1) % 3]
    w = eventually(lambda: (w := _worker(capsys, c, follower))["load"] and w, 15, "w1's load via a follower")
    assert w["connected"] is True and "cpu_percent" in w["load"]
    code, out, _ = haco(capsys, c, "workers", url=follower)
    row = next(line for line in out.splitlines() if line.startswith("w1 "))
    assert code == 0 and " yes " in row and "cpu " in row and "{" not in row


# --- an ambiguous prefix: the real app over an in-process replica, two ids made to share a prefix ---

@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    from haco.results.store import ResultsStore
    from tests.client.app_server import serve_app

    results = ResultsStore.open(tmp_path / "results.duckdb")
    try:
        with serve_app(results) as served:
            yield served
    finally:
        results.close()


def test_an_ambiguous_prefix_is_an_error_listing_the_matches(capsys: pytest.CaptureFixture[str],
                                                             app_url: tuple[str, Any]) -> None:
    from raft_state import NewJob, SubmitJobs, parse_job
    url, replica = app_url
    spec, _ = parse_job({"type": "shell", "payload": {"argv": ["true"]}}, {})
    ids = ("e8784b5e" + "0" * 24, "e8784b5f" + "0" * 24, "e8784b5e" + "1" * 24)
    replica._apply(SubmitJobs(1_000, tuple(NewJob(i, None, spec) for i in ids)))
    for argv in (["job", "e8784b5e"], ["cancel", "e8784b5e", "--reason", "x"], ["logs", "e8784b5e"],
                 ["retry", "e8784b5e"]):
        code, out, err = run(capsys, "--coordinators", url, *argv)
        assert (code, out) == (1, ""), argv
        assert err == (f"haco: error: 2 jobs start with e8784b5e: {ids[0]}, {ids[2]}; give more of the id "
                       "[AMBIGUOUS_JOB_ID]\n"), (argv, err)
    code, out, _ = run(capsys, "--coordinators", url, "job", "e8784b5f")
    assert code == 0 and ids[1] in out
    assert all(replica.state.jobs[i].status == "pending" for i in ids)
