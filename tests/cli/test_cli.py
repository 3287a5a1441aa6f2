"""The `haco` command in-process against fake replicas: parsing, output, exit codes, error lines."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.client.client_fakes import FakeReplica, free_port, serve

from haco import cli
from haco.cli import format as cli_format
from haco.client import ReplicaStatus
from haco.cluster.local import ClusterSpec, busy_ports, ensure_password, free_base_port



def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "64  usage error" in out and "3   no replica reachable" in out


@pytest.mark.parametrize("argv", [["bogus"], ["submit"], ["submit", "--priority", "high", "--", "true"],
                                  ["jobs", "--status", "weird"], ["--log-level", "loud", "workers"],
                                  ["bench", "--only", "nonsense"], []])
def test_usage_errors_exit_64(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 64 and ("error" in err or "usage" in err)


def test_build_job_takes_only_the_given_fields() -> None:
    args = cli.build_parser().parse_args(
        ["submit", "--priority", "5", "--tag", "gpu", "--tag", "big", "--retries", "2", "--depends-on", "a",
         "--label", "suite=nightly", "--", "sh", "-c", "exit 3"])
    assert cli.build_job(args) == {"type": "shell", "payload": {"argv": ["sh", "-c", "exit 3"]}, "priority": 5,
                                   "required_tags": ["gpu", "big"], "max_retries": 2, "depends_on": ["a"],
                                   "labels": {"suite": "nightly"}}
    args = cli.build_parser().parse_args(["submit", "--type", "noop", "--payload", '{"x": 1}'])
    assert cli.build_job(args) == {"type": "noop", "payload": {"x": 1}}


def test_global_options_work_before_and_after_the_command() -> None:
    parser = cli.build_parser()
    after = parser.parse_args(["jobs", "--json", "--coordinators", "http://a"])
    before = parser.parse_args(["--json", "--coordinators", "http://a", "jobs"])
    assert (after.json, after.coordinators) == (before.json, before.coordinators) == (True, "http://a")
    assert parser.parse_args(["jobs"]).json is False


def test_submit_prints_the_job_id_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeReplica()
    with serve(fake) as urls:
        code, out, _ = run(capsys, "--coordinators", urls[0], "submit", "--", "echo", "hi")
        assert (code, out.strip()) == (0, "job1")
        code, out, _ = run(capsys, "submit", "--json", "--coordinators", urls[0], "--key", "k", "--", "true")
    assert code == 0 and json.loads(out)["job_id"] == "job2"
    assert fake.jobs["job1"]["payload"] == {"argv": ["echo", "hi"]}


def test_coordinators_from_the_environment(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    fake = FakeReplica()
    with serve(fake) as urls:
        monkeypatch.setenv("HACO_COORDINATORS", f"{dead_url()},{urls[0]}")
        code, _, _ = run(capsys, "pause")
    assert code == 0 and fake.paused


def test_submit_wait_prints_the_result_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeReplica()
    fake.steps["job1"] = [{"status": "running", "attempt": 1, "worker_id": "w1"},
                          {"status": "completed", "result": {"exit_code": 0, "stdout": "hi\n"}}]
    with serve(fake) as urls:
        code, out, err = run(capsys, "--coordinators", urls[0], "submit", "--wait", "--", "echo", "hi")
    assert (code, out) == (0, "hi\n")
    assert "running (attempt 1 on w1)" in err


def test_submit_wait_exits_1_when_the_job_fails(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeReplica()
    fake.steps["job1"] = [{"status": "failed", "error": "exit code 3", "attempt": 3}]
    with serve(fake) as urls:
        code, _, err = run(capsys, "--coordinators", urls[0], "submit", "--wait", "--", "sh", "-c", "exit 3")
    assert code == 1 and "job1 failed: exit code 3" in err


def test_submit_wait_on_a_failed_job_shows_its_output_and_what_was_cut(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeReplica()
    result = {"exit_code": 3, "stdout_tail": "trying\n", "stderr_tail": "oops\n", "stdout_cut_bytes": 0,
              "stderr_cut_bytes": 5000}
    fake.steps["job1"] = [{"status": "failed", "error": "exited with code 3", "attempt": 1,
                           "attempts": [{"attempt": 1, "worker_id": "w1", "outcome": "failed", "result": result}]}]
    with serve(fake) as urls:
        code, out, err = run(capsys, "--coordinators", urls[0], "submit", "--wait", "--", "sh", "-c", "exit 3")
    assert (code, out) == (1, "trying\n")
    assert "oops\n" in err and "job1 failed: exited with code 3" in err
    assert "[stderr: the first 5,000 bytes are cut; `haco logs job1` has all of it]" in err


def test_submit_wait_says_why_a_job_waits(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeReplica()
    fake.steps["job1"] = [{"status": "pending", "pending_reason": {"no_worker_fits": {"w1": ["missing tags ['gpu']"],
                                                                                     "w2": ["cpus 2 < 8"]}}},
                          {"status": "completed", "result": {"exit_code": 0, "stdout_tail": "ok\n"}}]
    with serve(fake) as urls:
        code, out, err = run(capsys, "--coordinators", urls[0], "submit", "--wait", "--", "true")
    assert (code, out) == (0, "ok\n")
    assert "haco: job job1 pending: no worker fits (w1: missing tags ['gpu']; w2: cpus 2 < 8)" in err, err


def test_job_report_shows_the_last_attempts_tails_and_test_counts() -> None:
    result = {"passed": 1, "failed": 1, "skipped": 0, "errors": 0, "failing": ["t.py::test_b"], "exit_code": 1,
              "stdout_tail": "F.\n1 failed, 1 passed in 0.1s\n", "stderr_tail": "", "stdout_cut_bytes": 12,
              "stderr_cut_bytes": 0}
    text = cli_format.job_report({"job_id": "j1", "status": "failed", "type": "pytest", "error": "tests failed",
                                  "attempts": [{"attempt": 1, "outcome": "failed", "result": result}]})
    assert "tests: 1 passed, 1 failed, 0 skipped, 0 errors; failing: t.py::test_b" in text
    assert "stdout of attempt 1:\n  [stdout: the first 12 bytes are cut" in text and "  1 failed, 1 passed" in text
    assert "stderr" not in text  # an empty tail is not shown
    done = cli_format.job_report({"job_id": "j2", "status": "completed", "result": 4.0})
    assert "result:\n  4.0" in done


def test_job_shows_attempts_and_why_it_is_pending(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeReplica()
    fake.add_job("j1", pending_reason={"waiting_on": ["j0"], "no_worker_fits": {"w1": ["tag gpu"]}},
                 attempts=[{"attempt": 1, "worker_id": "w1", "assigned_at_ms": 1000, "started_at_ms": 1000,
                            "ended_at_ms": 3500, "outcome": "failed", "error": "exit code 3"}])
    with serve(fake) as urls:
        code, out, _ = run(capsys, "--coordinators", urls[0], "job", "j1")
    assert code == 0
    assert "waiting for dependencies: j0" in out and "w1: tag gpu" in out
    assert "exit code 3" in out and "2.5s" in out


def test_unknown_job_is_one_error_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(FakeReplica()) as urls:
        code, out, err = run(capsys, "--coordinators", urls[0], "job", "nope")
    assert code == 1 and out == ""
    assert err.strip() == "haco: error: no job nope [UNKNOWN_JOB]"


def test_cancel_of_a_final_job_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeReplica()
    fake.add_job("j1", status="completed")
    fake.add_job("j2")
    with serve(fake) as urls:
        assert run(capsys, "--coordinators", urls[0], "cancel", "j2")[:2] == (0, "j2 cancelled\n")
        code, _, err = run(capsys, "--coordinators", urls[0], "cancel", "j1")
    assert code == 1 and "JOB_FINAL" in err


def test_unreachable_cluster_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--coordinators", dead_url(), "--deadline", "0.3", "jobs")
    assert code == 3 and err.startswith("haco: error: ") and len(err.strip().splitlines()) == 1


def test_jobs_workers_and_results_tables(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeReplica()
    for n in range(3):
        fake.add_job(f"j{n}", priority=n)
    with serve(fake) as urls:
        _, jobs, _ = run(capsys, "--coordinators", urls[0], "jobs")
        _, workers, _ = run(capsys, "--coordinators", urls[0], "workers", "--wide")
        _, results, _ = run(capsys, "--coordinators", urls[0], "results", "--sql", "select 1")
        assert fake.last_query == {"sql": "select 1"}
        run(capsys, "--coordinators", urls[0], "results", "--sql", "select 2", "--limit", "50000")
        assert fake.last_query == {"sql": "select 2", "limit": 50000}
        code, as_json, _ = run(capsys, "--coordinators", urls[0], "--json", "jobs", "--limit", "2")
    assert jobs.splitlines()[0].split() == ["JOB", "STATUS", "TYPE", "PRIORITY", "ATTEMPT", "WORKER", "CREATED"]
    assert len(jobs.splitlines()) == 4
    assert "1/4" in workers and "gpu" in workers
    assert results.splitlines()[1].split() == ["completed", "3"]
    assert code == 0 and [j["job_id"] for j in json.loads(as_json)] == ["j0", "j1"]


def test_table_aligns_columns() -> None:
    text = cli_format.table(["A", "LONGER"], [("xyz", None), (1, True)])
    assert text.splitlines() == ["A    LONGER", "xyz  -", "1    yes"]


# --- haco status -----------------------------------------------------------------------------------

def _replicas(n: int) -> list[FakeReplica]:
    fakes = [FakeReplica(f"r{i + 1}", role="leader" if i == 0 else "follower") for i in range(n)]
    return fakes


def test_status_healthy_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    fakes = _replicas(3)
    with serve(*fakes) as urls:
        code, out, _ = run(capsys, "--coordinators", ",".join(urls), "status")
        assert code == 0
        code, out_json, _ = run(capsys, "--coordinators", ",".join(urls), "status", "--json")
    assert "leader:   r1" in out and "consistent at index 10 across 3 replicas" in out and "health:   ok" in out
    report = json.loads(out_json)
    assert code == 0 and report["leader"]["id"] == "r1" and report["healthy"]
    assert report["workers"] == {"by_state": {"active": 1}, "capacity": 4, "used": 1}


def test_status_exits_2_without_a_majority(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(*_replicas(1)) as urls:
        code, out, _ = run(capsys, "--coordinators", ",".join([*urls, dead_url(), dead_url()]), "status", "--json")
    report = json.loads(out)
    assert code == 2 and report["leader"]["id"] == "r1"
    assert report["problems"][0].startswith("no majority: 1 of 3 replicas reachable (http://127.0.0.1:")
    assert report["health"]["status"] == "unhealthy"


def test_status_exits_2_without_a_leader(capsys: pytest.CaptureFixture[str]) -> None:
    fakes = _replicas(3)
    fakes[0].cluster_info["role"] = "candidate"
    with serve(*fakes) as urls:
        code, out, _ = run(capsys, "--coordinators", ",".join(urls), "status")
    assert code == 2 and "leader:   none" in out and "UNHEALTHY: no leader" in out


def test_status_flags_a_digest_divergence(capsys: pytest.CaptureFixture[str]) -> None:
    fakes = _replicas(3)
    fakes[2].cluster_info["digests"] = [[8, "aa"], [10, "XX"], [12, "cc"]]
    with serve(*fakes) as urls:
        code, out, _ = run(capsys, "--coordinators", ",".join(urls), "status")
    assert code == 2 and "DIVERGED at index [10]" in out


def test_status_discovers_peers_from_one_url(capsys: pytest.CaptureFixture[str]) -> None:
    fakes = _replicas(2)
    with serve(*fakes) as urls:
        fakes[0].cluster_info["peers"] = [{"id": "r2", "api_url": urls[1]}, {"id": "r3", "api_url": dead_url()}]
        code, out, _ = run(capsys, "--coordinators", urls[0], "status", "--json")
    report = json.loads(out)
    assert [r["id"] for r in report["replicas"]] == ["r1", "r2", "r3"]  # a replica down keeps its configured id
    assert code == 4 and report["size"] == 3 and report["reachable"] == 2
    assert report["health"]["summary"] == "degraded: replica r3 unreachable; one more loss stops all writes"


def test_status_exits_4_when_degraded_and_names_each_problem(capsys: pytest.CaptureFixture[str]) -> None:
    fakes = _replicas(3)
    fakes[2].cluster_info.update(commit_index=14, apply={"stuck": True, "stalled_s": 12.0, "lag": 4})
    fakes[1].cluster_info["snapshot_failures"] = 3
    fakes[0].workers.append({"worker_id": "w2", "status": "lost", "capacity": 2, "running": []})
    with serve(*fakes) as urls:
        code, out, _ = run(capsys, "--coordinators", ",".join(urls), "status")
    assert code == 4, out
    lines = out.splitlines()
    assert "health:   DEGRADED" in lines
    assert ("  degraded: replica r3 stuck: applied index 10 has not moved for 12s with 4 committed entries waiting; "
            "its reads are stale and it is no spare for the quorum; see its log") in lines
    assert any(line.startswith("  degraded: replica r2: the last 3 snapshots failed") for line in lines)
    assert any(line.startswith("  degraded: worker w2 lost; 2 job slots gone") for line in lines)


def test_health_verdict_counts_the_losses_left() -> None:
    from haco.health import verdict
    info = {"role": "follower", "peers": [{}] * 4, "applied_index": 5, "digest": "aa"}
    rows = [{"id": "r1", "url": "u1", "info": {**info, "id": "r1", "role": "leader", "term": 2}},
            *({"id": f"r{i}", "url": f"u{i}", "info": {**info, "id": f"r{i}"}} for i in (2, 3, 4)),
            {"id": "r5", "url": "u5", "info": None}]
    v = verdict(rows, [])
    assert (v["status"], v["summary"]) == ("degraded", "degraded: replica r5 unreachable; writes stop after 2 more "
                                                       "losses")
    rows[1]["info"] = None
    assert verdict(rows, [])["summary"] == "degraded: replica r2 unreachable; one more loss stops all writes (+1 more)"
    rows[2]["info"] = None
    assert verdict(rows, [])["status"] == "unhealthy"


def test_digest_check_uses_the_highest_common_index() -> None:
    infos = [{"digests": [[5, "a"], [6, "b"]]}, {"digests": [[6, "b"], [7, "c"]]}, {"digests": [[6, "b"]]}]
    assert cli_format.digest_check(infos) == {"index": 6, "diverged": False, "diverged_at": [], "digests": ["b"],
                                              "replicas_compared": 3}


def test_cluster_report_with_nothing_reachable() -> None:
    report = cli_format.cluster_report([ReplicaStatus("http://x", None, "down")], None, None)
    assert not report["healthy"] and report["problems"] == ["no replica reachable", "no leader"]


def test_python_dash_m_haco_runs_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "haco", "--coordinators", dead_url(), "--deadline", "0.2",
                           "queue-stats-typo"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 64 and "Traceback" not in proc.stderr


def test_digest_check_compares_current_digests_at_the_same_applied_index() -> None:
    same = [{"digests": [], "digest": "d1", "applied_index": 40}, {"digests": [], "digest": "d1", "applied_index": 40}]
    assert cli_format.digest_check(same)["index"] == 40 and not cli_format.digest_check(same)["diverged"]
    split = [same[0], {"digests": [], "digest": "d2", "applied_index": 40}]
    assert cli_format.digest_check(split)["diverged"]


def test_the_cli_never_loads_raft_or_duckdb() -> None:
    code = ("import sys; from haco import cli; cli.build_parser(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('pysyncobj', 'duckdb', 'pyarrow', 'raft_state')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- haco up's pieces ------------------------------------------------------------------------------

def test_cluster_spec_builds_the_documented_command_lines(tmp_path: Path) -> None:
    spec = ClusterSpec(data_dir=tmp_path)
    argv = spec.replica_argv(2)
    assert argv[:4] == [sys.executable, "-m", "haco", "coordinator"]
    assert " ".join(argv[4:]) == (
        f"--id r2 --raft 127.0.0.1:7102 --http 127.0.0.1:7002 --peer r1=127.0.0.1:7101=http://127.0.0.1:7001 "
        f"--peer r3=127.0.0.1:7103=http://127.0.0.1:7003 --data-dir {tmp_path}/r2 "
        f"--raft-password-file {tmp_path}/raft-password --log-level info --insecure-open-api")
    assert " ".join(spec.worker_argv(1)[4:]) == (
        "--coordinators http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003 --id w1 --capacity 4 "
        f"--log-level info --workdir {tmp_path}/w1")  # scratch dirs under the data dir
    assert spec.ports == [7001, 7101, 7002, 7102, 7003, 7103]


def test_a_data_dir_is_held_by_one_haco_up_at_a_time(tmp_path: Path) -> None:
    from haco.cluster.local import LocalCluster
    from haco.errors import HacoError
    first, second = LocalCluster(ClusterSpec(data_dir=tmp_path)), LocalCluster(ClusterSpec(data_dir=tmp_path))
    first.lock()
    with pytest.raises(HacoError, match=rf"{tmp_path} is in use by another haco up \(pid {os.getpid()}\)"):
        second.lock()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["haco-up.lock"]
    first.stop()
    second.lock()
    second.unlock()


def test_password_file_is_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "d" / "raft-password"
    ensure_password(path)
    first = path.read_text()
    ensure_password(path)
    assert path.read_text() == first and len(first.strip()) >= 32
    assert path.stat().st_mode & 0o777 == 0o600


def test_busy_ports_sees_a_listener() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert busy_ports([port]) == [port]
        assert free_base_port(port, replicas=1) != port


# --- haco jobs, workers, results: what people read ------------------------------------------------

def test_jobs_footer_names_the_count_and_the_next_cursor() -> None:
    page = {"jobs": [{}] * 50, "total": 1029, "next": 979}
    assert cli_format.jobs_footer(page) == "\n50 of 1,029 shown (newest first); older: --after 979, or a larger --limit"
    assert "(oldest first); newer: --after 979" in cli_format.jobs_footer(page, oldest=True)
    assert cli_format.jobs_footer({"jobs": [{}] * 3, "total": 3, "next": None}) == ""


def test_jobs_table_shows_the_last_worker_of_a_finished_job() -> None:
    text = cli_format.jobs_table([{"job_id": "j1", "status": "completed", "worker_id": None, "last_worker_id": "w2"}])
    assert text.splitlines()[1].split()[5] == "w2"


def test_workers_table_shows_load_for_people_and_an_unknown_connection() -> None:
    text = cli_format.workers_table([
        {"worker_id": "w1", "status": "active", "capacity": 4, "running": ["a"], "connected": True,
         "load": {"cpu_percent": 12.4, "memory_percent": 40.0, "running": 1}},
        {"worker_id": "w2", "status": "draining", "capacity": 2, "running": [], "connected": None, "load": None}])
    rows = text.splitlines()
    assert rows[1].endswith("yes        cpu 12% mem 40%") and "{" not in text
    assert rows[2].split()[-2:] == ["unknown", "-"]


GPU_BOX = {"worker_id": "gpu-box-01", "status": "draining", "capacity": 4, "running": ["a", "b"], "cpus": 16,
           "memory_gb": 125.7, "tags": ["lab-a", "fast-disk"], "hardware": ["cuda"],
           "devices": [{"kind": "cuda", "index": i, "model": "NVIDIA A10G", "memory_gb": 24.0, "compute": 8.6}
                       for i in (0, 1)],
           "reserved": {"cpus": 8, "memory_gb": 64.0, "devices": [0, 1]},
           "free": {"cpus": 8, "memory_gb": 61.7, "devices": []}, "connected": None,
           "load": {"cpu_percent": 99.6, "memory_percent": 51.2, "running": 2}}


def test_workers_table_reads_reserved_over_total_in_80_columns() -> None:
    cpu_box = {"worker_id": "cpu-1", "status": "active", "capacity": 2, "running": [], "cpus": 4,
               "memory_gb": 15.54, "devices": [], "reserved": {"cpus": 1, "memory_gb": 0.5, "devices": []},
               "connected": True, "load": {"cpu_percent": 1.0, "memory_percent": 4.0}}
    older = {"worker_id": "old", "status": "active", "capacity": 2, "running": [], "cpus": 4, "memory_gb": 8.0,
             "connected": True}  # an answer from a replica without reservations
    rows = cli_format.workers_table([GPU_BOX, cpu_box, older]).splitlines()
    assert rows[0].split() == ["WORKER", "STATUS", "JOBS", "CPU", "MEM", "GPU", "CONNECTED", "LOAD"]
    assert rows[1].split()[:6] == ["gpu-box-01", "draining", "2/4", "8/16", "64/126G", "2/2"]
    assert rows[2].split()[:6] == ["cpu-1", "active", "0/2", "1/4", "0.5/15.5G", "-"]
    assert rows[3].split()[:6] == ["old", "active", "0/2", "?/4", "?/8G", "-"]
    assert max(len(r) for r in rows) <= 80, rows
    wide = cli_format.workers_table([GPU_BOX], wide=True).splitlines()
    assert wide[0].split()[-3:] == ["TAGS", "HARDWARE", "DEVICES"]
    assert wide[1].endswith("lab-a,fast-disk  cuda      0:NVIDIA A10G,1:NVIDIA A10G")


def test_results_help_names_the_table_and_its_columns(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "results", "--help")
    assert code == 0 and "table `results`: one row per ended attempt" in out
    for column in ("job_id, attempt", "worker_id", "outcome", "job_status", "wall_ms", "applied_index"):
        assert column in out
    assert "its final one" in out  # job_status: the job's final status on every attempt's row


def test_a_replica_that_answers_503_is_not_silence(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeReplica()
    fake.add_job("j1")
    for _ in range(40):
        fake.fail("get", 503, "NOT_APPLIED", headers={"Retry-After": "0.2"})
    with serve(fake) as urls:
        code, _, err = run(capsys, "--coordinators", urls[0], "--deadline", "2", "job", "j1")
    assert code == 2 and f"haco: {urls[0]} answers 503 (not_applied); retrying (giving up in" in err, err
    assert err.splitlines()[-1].startswith("haco: error: ")
