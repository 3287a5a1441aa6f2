"""The attempt runner and its records: an outcome on disk whoever waits for it, a SIGTERM that
kills the job's session first, and records a restarted agent must not hold killed, not adopted."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import psutil

from haco.worker import attempts
from haco.worker.durable import DurableRuns
from haco.worker.executors import get_executor
from haco.worker.runner import JOB, OUTCOME, record_job


def spec(tmp_path: Path, argv: list[str], timeout_s: float = 30) -> dict[str, object]:
    return {"kind": "shell", "argv": argv, "env": {"HACO_ATTEMPT": "1"}, "cwd": str(tmp_path),
            "timeout_s": timeout_s, "workdir": str(tmp_path), "result_bytes_max": 65536,
            "log_root": str(tmp_path / "logs"), "log_bytes_max": 1 << 20}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


async def until(check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_runner_writes_the_outcome_that_an_agent_which_did_not_start_it_reads(tmp_path: Path) -> None:
    store = attempts.AttemptStore(tmp_path / "work", "w1")
    d = store.create(("j1", 1), spec(tmp_path, ["sh", "-c", "echo hi; echo $HACO_ATTEMPT >&2"]))
    forks = attempts.ForkServer(tmp_path / "forks.log")
    try:
        await forks.launch(d)
    finally:
        await forks.close()  # the runner lives on without it
    finished = await attempts.wait_finished(d, None)  # polls the recorded pid, as after a restart
    assert finished.outcome is not None and finished.outcome.returncode == 0
    assert finished.outcome.stdout_tail == b"hi\n" and finished.outcome.stderr_tail == b"1\n"
    assert [h.key for h in store.scan()] == [("j1", 1)]


async def test_sigterm_to_the_runner_kills_the_job_session_and_says_cancelled(tmp_path: Path) -> None:
    store = attempts.AttemptStore(tmp_path / "work", "w1")
    d = store.create(("j1", 1), spec(tmp_path, ["sh", "-c", "sleep 30 & sleep 30"]))
    forks = attempts.ForkServer(tmp_path / "forks.log")
    await forks.launch(d)
    await until(lambda: (d / JOB).exists(), 10)
    job = attempts.read_json(d / JOB)
    assert job is not None
    members = attempts.SessionMonitor(sid=int(job["pid"])).live_members()
    await attempts.stop(d)
    await forks.close()
    assert all(gone(pid) for pid in members)
    assert attempts.read_finished(d).cancelled


async def test_records_not_to_hold_are_killed_at_start(tmp_path: Path) -> None:
    work = tmp_path / "work"
    other = attempts.AttemptStore(work, "someone-else").create(("j1", 1), {"kind": "shell"})
    mine = attempts.AttemptStore(work, "w1").create(("j2", 1), {"kind": "python"})  # not adoptable
    sleepers = []
    for d in (other, mine):
        p = subprocess.Popen(["sleep", "30"], start_new_session=True)
        sleepers.append(p)
        record_job(d, p.pid)
    try:
        kept = await DurableRuns(work, "w1", tmp_path / "logs", 1 << 20).scan(get_executor)
        assert kept == []
        for p in sleepers:
            assert p.wait(timeout=5) < 0
        assert not (work / attempts.RECORDS / "j1.1").exists() and not (d / OUTCOME).exists()
    finally:
        for p in sleepers:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
