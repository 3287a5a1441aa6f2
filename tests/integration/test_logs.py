"""Job logs end to end: every byte through any replica, follow across a leader failover, an
offline worker's tail, the per-attempt bound, and progress while a job runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cluster import Cluster, eventually, http

LINES = 200_000
PY_LINES = ("import sys\n"
            "out, err = sys.stdout.write, sys.stderr.write\n"
            f"for i in range({LINES}):\n"
            "    out(f'line {i:06d}\\n')\n"
            "    if i % 10 == 0:\n"
            "        err(f'err {i:06d}\\n')\n")


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """One cluster with worker w1 for the tests that leave both as they found them (each reads
    only its own jobs); the tests that kill a process or add workers start their own."""
    cluster = Cluster(tmp_path_factory.mktemp("logs"), 3)
    failed_before = request.session.testsfailed
    cluster.start_all()
    try:
        cluster.leader()
        cluster.start_worker("w1")
        yield cluster
    finally:
        cluster.stop()
        if request.session.testsfailed > failed_before:
            print(cluster.dump_logs())


def submit(c: Cluster, job: dict[str, Any], i: int = 0) -> str:
    status, body = http("POST", c.nodes[i].url + "/api/jobs", job)
    assert status == 201, body
    return str(body["job_id"])


def job_on(c: Cluster, i: int, job_id: str) -> dict[str, Any]:
    status, body = http("GET", c.nodes[i].url + f"/api/jobs/{job_id}")
    assert status == 200, body
    return body["job"]


def final(c: Cluster, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for i in c.alive():
            try:
                job = job_on(c, i, job_id)
            except (AssertionError, OSError):
                continue
            return job if job["status"] in ("completed", "failed", "cancelled", "expired") else None
        return None
    return eventually(check, timeout_s, f"job {job_id} final")


def haco(c: Cluster, *args: str, urls: list[str] | None = None, timeout_s: float = 60.0
         ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "haco", "--coordinators", ",".join(urls or c.urls), *args],
                          capture_output=True, timeout=timeout_s)


def shell(argv: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "shell", "payload": {"argv": argv}, **extra}


def test_every_line_once_in_order_from_a_follower_with_stderr_and_tail(c: Cluster) -> None:
    leader = c.leader()
    follower = (leader + 1) % 3
    job_id = submit(c, shell([sys.executable, "-c", PY_LINES]))
    assert final(c, job_id)["status"] == "completed"
    via = [c.nodes[follower].url]  # a follower forwards to the leader, which asks the worker
    out = haco(c, "logs", job_id, urls=via)
    assert out.returncode == 0, out.stderr
    expected_out = b"".join(b"line %06d\n" % i for i in range(LINES))
    expected_err = b"".join(b"err %06d\n" % i for i in range(0, LINES, 10))
    assert out.stdout == expected_out and out.stderr == expected_err
    err = haco(c, "logs", "--stderr", job_id, urls=via)
    assert err.returncode == 0 and err.stdout == b"" and err.stderr == expected_err
    tail = haco(c, "logs", "--stdout", "--tail", "10", job_id, urls=via)
    assert tail.stdout == b"".join(b"line %06d\n" % i for i in range(LINES - 10, LINES)), tail.stderr
    both = haco(c, "logs", "--tail", "10", job_id, urls=via)
    assert len(both.stdout.splitlines()) + len(both.stderr.splitlines()) == 10
    assert expected_out.endswith(both.stdout) and expected_err.endswith(both.stderr)


TICKS = ("import sys, time\n"
         "for i in range({n}):\n"
         "    print(f'tick {{i:03d}} {{time.time():.3f}}', flush=True)\n"
         "    time.sleep(0.2)\n")


class Follower:
    """`haco logs -f` in a subprocess, its stdout lines stamped with when they arrived."""

    def __init__(self, c: Cluster, job_id: str, urls: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "haco", "--coordinators", ",".join(urls), "logs", "-f",
                                      job_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.lines: list[tuple[float, bytes]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.time(), line))

    def wait(self, timeout_s: float) -> tuple[int, bytes]:
        try:
            code = self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.reader.join(timeout=5)
        assert self.proc.stderr is not None and self.proc.stdout is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        self.proc.stdout.close()
        return code, err


def _running(c: Cluster, job_id: str) -> bool:
    return bool(job_on(c, c.alive()[0], job_id)["status"] == "running")


def _printed(lines: list[tuple[float, bytes]]) -> list[tuple[int, float, float]]:
    """(tick number, when the job printed it, when the follower got it)."""
    out = []
    for got, line in lines:
        _, n, at = line.split()
        out.append((int(n), float(at), got))
    return out


def test_follow_shows_earlier_lines_then_each_new_one_within_a_second(c: Cluster) -> None:
    c.leader()
    n = 35  # 7 s of output: room for the CLI's start-up on a busy machine
    job_id = submit(c, shell([sys.executable, "-c", TICKS.format(n=n)]))
    eventually(lambda: _running(c, job_id), 20, "the job running")
    time.sleep(1.0)  # some lines before the follower starts
    started = time.time()
    follower = Follower(c, job_id, c.urls)
    code, err = follower.wait(30)
    assert code == 0, err
    ticks = _printed(follower.lines)
    assert [t[0] for t in ticks] == list(range(n)), ticks  # every line once, in order
    assert ticks[0][1] < started  # the earlier lines came first
    connected = ticks[0][2]  # the CLI's start-up is not the stream's delay: count from its first page
    late = [(i, got - at) for i, at, got in ticks if at > connected]  # printed while following
    assert len(late) >= 5 and all(delay < 1.0 for _, delay in late), late


def test_follow_survives_a_leader_sigkill_without_losing_or_repeating_a_line(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    leader = c.leader()
    c.start_worker("w1")
    n = 30  # 6 s of output
    job_id = submit(c, shell([sys.executable, "-c", TICKS.format(n=n)]))
    eventually(lambda: _running(c, job_id), 20, "the job running")
    urls = [c.nodes[leader].url] + [c.nodes[i].url for i in range(3) if i != leader]
    follower = Follower(c, job_id, urls)  # streaming from the leader itself
    eventually(lambda: len(follower.lines) >= 5, 20, "some lines followed")
    c.kill(leader)
    code, err = follower.wait(60)
    assert code == 0, err
    assert [t[0] for t in _printed(follower.lines)] == list(range(n))


def test_offline_worker_gives_its_name_and_the_tail_then_the_full_log_after_restart(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    c.leader()
    c.start_worker("w1")
    script = "for i in $(seq 1 3000); do echo \"out $i\"; done; echo oops >&2"
    job_id = submit(c, shell(["sh", "-c", script]))
    assert final(c, job_id)["status"] == "completed"
    c.kill_worker("w1")
    c.workers["w1"].wait(timeout=10)

    def offline() -> subprocess.CompletedProcess[bytes] | None:
        res = haco(c, "logs", job_id)
        return res if res.returncode == 1 else None
    res = eventually(offline, 30, "the worker seen offline")
    assert b"WORKER_OFFLINE" in res.stderr and b"w1" in res.stderr
    assert res.stdout.endswith(b"out 3000\n") and len(res.stdout) == 4096  # the replicated tail
    assert b"oops" in res.stderr and b"bytes of stdout cut" in res.stderr
    c.start_worker("w1")
    full = b"".join(b"out %d\n" % i for i in range(1, 3001))
    eventually(lambda: haco(c, "logs", "--stdout", job_id).stdout == full, 30, "the full log back")


def test_a_log_past_its_bound_keeps_the_newest_part_and_retention_removes_old_logs(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    c.leader()
    c.start_worker("wb", tags="bound", extra=["--log-max-bytes", str(1 << 20)])
    c.start_worker("wr", tags="short", extra=["--log-keep", "0.00002", "--log-sweep-interval", "0.3"])  # ~2 s
    big = "import sys\nfor i in range(50000):\n    sys.stdout.write(f'{i:09d} ' + 'x' * 89 + '\\n')\n"
    bounded = submit(c, shell([sys.executable, "-c", big], required_tags=["bound"]))
    short = submit(c, shell(["echo", "soon gone"], required_tags=["short"]))
    assert final(c, bounded)["status"] == "completed" and final(c, short)["status"] == "completed"
    res = haco(c, "logs", "--stdout", bounded)
    assert res.returncode == 0, res.stderr
    assert res.stdout.endswith(b"%09d " % 49999 + b"x" * 89 + b"\n")
    assert 512 * 1024 < len(res.stdout) <= 1 << 20
    dropped = 50000 * 100 - len(res.stdout)
    assert f"oldest {dropped} bytes".encode() in res.stderr, res.stderr
    first = res.stdout.split(b"\n", 1)[0]
    assert len(first) == 99 and first.endswith(b"x" * 89)  # the kept part starts at a whole line here
    eventually(lambda: haco(c, "logs", short).returncode == 1, 20, "the short-lived log removed")
    gone = haco(c, "logs", short)
    assert b"LOG_UNAVAILABLE" in gone.stderr and gone.stdout == b"soon gone\n"  # the replicated tail is left
    assert not any((c.root / "work-wr" / "logs").glob(f"{short}/*"))


def test_progress_markers_show_in_haco_job_while_running_and_not_in_the_log(c: Cluster) -> None:
    leader = c.leader()
    follower = (leader + 1) % 3
    script = ("echo start; echo '::haco-progress 0.25 \"warming up\"'; sleep 0.5; "
              "echo '::haco-progress 0.42 \"compiling\"'; echo middle; sleep 30")
    job_id = submit(c, shell(["sh", "-c", script], timeout_s=60))

    def shows() -> bool:
        out = haco(c, "job", job_id, urls=[c.nodes[follower].url]).stdout
        return b"progress:" in out and b"42% compiling" in out
    eventually(shows, 20, "haco job showing the latest progress")
    job = job_on(c, leader, job_id)
    assert job["progress"]["fraction"] == 0.42 and job["progress"]["message"] == "compiling"
    assert haco(c, "logs", job_id).stdout == b"start\nmiddle\n"
    assert http("POST", c.nodes[0].url + f"/api/jobs/{job_id}/cancel")[0] == 200
    assert final(c, job_id)["status"] == "cancelled"
    assert "progress" not in job_on(c, leader, job_id)  # shown only while running


def test_submit_wait_follow_prints_the_output_live(c: Cluster) -> None:
    c.leader()
    res = haco(c, "submit", "--wait", "--follow", "--", "sh", "-c", "echo first; sleep 0.5; echo second >&2; exit 3")
    assert res.returncode == 1, res.stderr
    assert res.stdout == b"first\n"
    assert b"second\n" in res.stderr and b"failed" in res.stderr
    ok = haco(c, "submit", "--wait", "--follow", "--", "echo", "fine")
    assert ok.returncode == 0 and ok.stdout == b"fine\n", ok.stderr
    job_id = ok.stderr.split(b"submitted ", 1)[1].split()[0].decode()
    lines = haco(c, "logs", "--json", job_id).stdout.splitlines()
    assert [json.loads(line) for line in lines] == [{**json.loads(lines[0]), "offset": 0, "stream": "stdout",
                                                     "text": "fine\n"}]



def test_dashboard_shows_a_jobs_output_and_follows_it(c: Cluster, browser: Any) -> None:
    c.leader()
    job_id = submit(c, shell(["sh", "-c", "echo 'hello <from> the log'; echo 'to stderr' >&2"]))
    assert final(c, job_id)["status"] == "completed"
    page = browser.new_page()
    page.goto(f"{c.nodes[1].url}/#log={job_id}")  # the old address of a job's output: now its job view
    page.wait_for_function("document.querySelector('#log-state')?.textContent === 'ended, exit code 0'",
                           timeout=20_000)
    html = page.inner_html("#log")
    assert "hello &lt;from&gt; the log" in html and '<span class="err">to stderr' in html, html[-3000:]
    assert page.url.endswith(f"#/job/{job_id}")
