"""End to end through the front door: `haco up`, `haco demo`, the CLI and the client on real processes.

Every process is stopped by PID in `finally`, also when an assertion fails; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from haco import cli
from haco.client import HacoClient
from haco.cluster.local import ClusterSpec, LocalCluster, free_base_port

T = TypeVar("T")



def _base_port() -> int:
    return free_base_port(random.randrange(20000, 29000, 10))


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{content}"
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} within {timeout_s}s in {path}")


class Up:
    """`haco up` as a child process, stopped like a person would (Ctrl+C), then checked for leftovers."""

    def __init__(self, data_dir: Path, base_port: int, tag: str, cwd: Path | None = None) -> None:
        self.out = data_dir.parent / f"up-{tag}.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "haco", "up", "--data-dir", str(data_dir),
                                          "--base-port", str(base_port)], stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=cwd)
        self.children: list[psutil.Process] = []

    def wait_up(self, timeout_s: float = 60.0) -> str:
        text = _wait_for_text(self.out, "Ctrl+C stops everything", self.proc, timeout_s)
        self.children = psutil.Process(self.proc.pid).children()  # replicas and workers, not their jobs
        return text

    def interrupt(self, timeout_s: float = 40.0) -> int:
        """Ctrl+C; returns the exit code. Whatever is left over is SIGKILLed (and fails the caller)."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            return self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            for p in self.children:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()

    def leftovers(self) -> list[int]:
        return [p.pid for p in self.children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def haco(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.timeout(240)
def test_haco_up_runs_jobs_stops_on_ctrl_c_and_recovers_on_the_next_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    base, data = _base_port(), tmp_path / "haco-data"
    monkeypatch.setenv("HACO_COORDINATORS", ",".join(ClusterSpec(base_port=base).urls))
    up = Up(data, base, "1")
    try:
        assert "haco is up: 3 replicas, 2 workers" in up.wait_up()
        assert len(up.children) == 5
        assert (data / "raft-password").stat().st_mode & 0o777 == 0o600
        code, out, err = haco(capsys, "submit", "--wait", "--", "echo", "hi")
        assert (code, out) == (0, "hi\n"), err
        first = re.search(r"submitted (\w+)", err).group(1)  # type: ignore[union-attr]
        assert haco(capsys, "pause")[0] == 0
        code, out, _ = haco(capsys, "submit", "--priority", "3", "--", "true")
        pending = out.strip()
        code, out, _ = haco(capsys, "job", pending)
        assert code == 0 and "pending because:" in out and "paused" in out
        assert haco(capsys, "resume")[0] == 0
        code, out, _ = haco(capsys, "status", "--json")
        report = json.loads(out)
        assert code == 0 and report["healthy"] and report["leader"]["id"] in {"r1", "r2", "r3"}
    finally:
        assert up.interrupt() in (0, 130)
    assert up.leftovers() == []
    password = (data / "raft-password").read_text()

    up = Up(data, base, "2")
    learned: list[int] = []
    try:
        up.wait_up()
        assert (data / "raft-password").read_text() == password
        code, out, _ = haco(capsys, "--json", "jobs")
        assert code == 0 and {first, pending} <= {j["job_id"] for j in json.loads(out)}

        second = subprocess.run([sys.executable, "-m", "haco", "up", "--data-dir", str(data), "--base-port",
                                 str(base)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and second.stdout == "", second
        assert second.stderr.count("\n") == 1 and "is in use by another haco up" in second.stderr, second.stderr
        assert up.proc.poll() is None

        pids = json.loads((data / "haco-up.json").read_text())
        assert pids["pid"] == up.proc.pid and set(pids["replicas"]) == {"r1", "r2", "r3"}
        old = {"r2": pids["replicas"]["r2"], "w1": pids["workers"]["w1"]}
        learned += [*pids["replicas"].values(), *pids["workers"].values()]
        for pid in old.values():
            os.kill(pid, signal.SIGKILL)

        def restarted() -> dict[str, int] | None:
            now = json.loads((data / "haco-up.json").read_text())
            new = {"r2": now["replicas"]["r2"], "w1": now["workers"]["w1"]}
            return new if all(new[k] != old[k] for k in old) else None
        new = _eventually(restarted, 15, "r2 and w1 restarted")
        learned += new.values()

        def healthy() -> bool:
            code, out, _ = haco(capsys, "--deadline", "3", "status", "--json")
            return code == 0 and json.loads(out)["health"]["status"] == "healthy"
        _eventually(healthy, 30, "a healthy cluster after the restarts")
        text = up.out.read_text()
        assert "haco up: r2 exited with code -9; restarting it in 1s" in text and "haco up: r2 restarted" in text
        assert "haco up: w1 exited with code -9" in text and "haco up: w1 restarted" in text
    finally:
        assert up.interrupt() in (0, 130)
    assert up.leftovers() == []
    assert [pid for pid in learned if _running(pid)] == []
    assert not (data / "haco-up.json").exists()


def _eventually(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout_s}s")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(180)
def test_first_hour_every_executor_runs_on_haco_up_and_failures_show_their_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user's first jobs, through the CLI only, on `haco up` started with its defaults from a
    fresh directory (relative data and work dirs): python, pytest, benchmark and a failing shell job."""
    base, home = _base_port(), tmp_path / "home"
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_two.py").write_text("def test_good():\n    assert 1 + 1 == 2\n\n"
                                       "def test_bad():\n    assert 1 + 1 == 3\n")
    home.mkdir()
    monkeypatch.setenv("HACO_COORDINATORS", ",".join(ClusterSpec(base_port=base).urls))
    up = Up(home / "haco-data", base, "first-hour", cwd=home)
    try:
        up.wait_up()
        code, out, err = haco(capsys, "submit", "--wait", "--type", "python",
                              "--payload", '{"function": "math:sqrt", "args": [16]}')
        assert (code, out) == (0, "4.0\n"), err

        code, out, err = haco(capsys, "submit", "--wait", "--type", "pytest", "--payload",
                              json.dumps({"path": str(suite)}))
        assert code == 1 and "1 passed, 1 failed" in err and "test_two.py::test_bad" in err, (out, err)

        code, out, err = haco(capsys, "submit", "--wait", "--type", "benchmark", "--payload",
                              '{"function": "math:sqrt", "args": [2], "repeat": 3}')
        assert code == 0 and json.loads(out)["runs"] == 3, (out, err)

        code, out, err = haco(capsys, "submit", "--wait", "--", "sh", "-c", "echo trying; echo oops >&2; exit 3")
        assert (code, out) == (1, "trying\n"), err
        assert "oops\n" in err and "failed: exited with code 3" in err, err
        failed = re.search(r"submitted (\w+)", err).group(1)  # type: ignore[union-attr]
        code, out, _ = haco(capsys, "job", failed)
        assert code == 0 and "stderr of attempt 1:\n  oops" in out, out
    finally:
        assert up.interrupt() in (0, 130)
    assert up.leftovers() == []


@pytest.mark.timeout(180)
def test_haco_demo_exits_0_and_leaves_nothing_running(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "haco", "demo", "--base-port", str(_base_port()), "--timeout", "120"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=170,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAILED" not in proc.stdout and "every acknowledged job exists, once        ok" in proc.stdout
    demo_dir = re.search(r"data in (\S+)\)", proc.stdout).group(1)  # type: ignore[union-attr]
    assert not Path(demo_dir).exists()
    assert not [p for p in psutil.process_iter(["cmdline"]) if demo_dir in " ".join(p.info["cmdline"] or [])]


@pytest.mark.timeout(120)
async def test_keyed_submissions_across_a_leader_kill_create_each_job_once(tmp_path: Path) -> None:
    cluster = LocalCluster(ClusterSpec(data_dir=tmp_path, workers=0, base_port=_base_port()))
    n = 80
    try:
        cluster.prepare()
        cluster.start_replicas()
        leader, _ = await cluster.wait_for_leader(30)
        async with HacoClient(cluster.spec.urls) as client:
            async def submit_all() -> list[str]:
                ids = []
                for i in range(n):
                    ids.append((await client.submit({"type": "noop", "payload": {"i": i}})).job_id)
                    await asyncio.sleep(0.01)
                return ids
            task = asyncio.ensure_future(submit_all())
            await asyncio.sleep(0.2)
            cluster.kill_replica(leader)
            ids = await task  # no error reached the caller
            await cluster.wait_for_leader(30, exclude=[leader])
            jobs = await client.jobs(limit=1000)
        assert len(set(ids)) == n and sorted(j["job_id"] for j in jobs) == sorted(ids)
    finally:
        await asyncio.to_thread(cluster.stop)
