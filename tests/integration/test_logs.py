"""Job logs end to end: every byte through any replica, follow across a leader failover, an
offline worker's tail, the per-attempt bound, and progress while a job runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .cluster import Cluster, eventually, http

LINES = 200_000
PY_LINES = ("import sys\n"
            "out, err = sys.stdout.write, sys.stderr.write\n"
            f"for i in range({LINES}):\n"
            "    out(f'line {i:06d}\\n')\n"
            "    if i % 10 == 0:\n"
            "        err(f'err {i:06d}\\n')\n")


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


def test_every_line_once_in_order_from_a_follower_with_stderr_and_tail(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    leader = c.leader()
    follower = (leader + 1) % 3
    c.start_worker("w1")
    job_id = submit(c, shell([sys.executable, "-c", PY_LINES]))
    assert final(c, job_id)["status"] == "completed"
    via = [c.nodes[follower].url]  # a follower forwards to the leader, which asks the worker
    started = time.monotonic()
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
    assert time.monotonic() - started < 20
