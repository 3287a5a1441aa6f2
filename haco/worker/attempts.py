"""Durable attempts: the agent's records of attempts run by an attempt runner (runner.py).

Each durable attempt has a record directory `<workdir>/.attempts/<job>.<attempt>/` holding
`spec.json` (what to run, for which worker), `runner.json` (the runner's pid and process start
time, written by the agent right after the spawn), and what the runner writes (`job.json`,
`outcome.json`). The directory outlives the agent: it is removed only once the attempt's final
report was answered for good, or once the attempt was killed. A restarted agent `scan()`s the
records and re-adopts each attempt (see DESIGN.md): it waits for a live runner, reads the outcome
of one that finished meanwhile, and kills the processes of anything it will not hold.

Pids are trusted only together with their start time (psutil `create_time`), so a pid reused by
an unrelated process after a reboot or a long outage is never signalled. Blocking file work here
is small and runs in threads (the agent calls through `asyncio.to_thread`); waiting and killing are
async and never block the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psutil

from haco.worker.executors._monitor import SessionMonitor
from haco.worker.executors._process import KILL_WAIT_S, TERM_GRACE_S, ProcessOutcome
from haco.worker.joblog.format import read_json, write_json
from haco.worker.protocol import Attempt
from haco.worker.runner import JOB, OUTCOME, RUNNER, SPEC, UNSET, outcome_from_json

log = logging.getLogger(__name__)

RECORDS: Final = ".attempts"
POLL_S: Final = 0.05  #: how often a runner (the fork server's child, not ours) is looked at
LAUNCH_TIMEOUT_S: Final = 30.0
STOP_WAIT_S: Final = TERM_GRACE_S + KILL_WAIT_S + 1.0  #: a SIGTERMed runner kills its job within this


@dataclass(frozen=True, slots=True)
class Finished:
    """What an attempt runner left: its outcome, or why there is none."""

    outcome: ProcessOutcome | None
    error: str | None = None  #: "cannot start ..." or "the attempt runner died"
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Held:
    """A record found by `scan()`."""

    key: Attempt
    directory: Path
    spec: dict[str, Any]


def safe_name(key: Attempt) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{key[0]}.{key[1]}")


def env_overrides(env: dict[str, str], base: dict[str, str]) -> dict[str, str]:
    """What `env` changes in `base`: only that goes to disk (the worker's own secrets stay off it)."""
    out = {k: v for k, v in env.items() if base.get(k) != v}
    out.update({k: UNSET for k in base if k not in env})
    return out


class AttemptStore:
    """The record directories of one worker; methods block (call them through to_thread)."""

    def __init__(self, workdir: Path, worker_id: str) -> None:
        self.root = workdir / RECORDS
        self.worker_id = worker_id

    def directory(self, key: Attempt) -> Path:
        return self.root / safe_name(key)

    def create(self, key: Attempt, spec: dict[str, Any]) -> Path:
        d = self.directory(key)
        shutil.rmtree(d, ignore_errors=True)  # a leftover of the same attempt killed before: start clean
        d.mkdir(parents=True, mode=0o700)
        write_json(d / SPEC, {**spec, "worker_id": self.worker_id, "job_id": key[0], "attempt": key[1]})
        return d

    def remove(self, key: Attempt) -> None:
        shutil.rmtree(self.directory(key), ignore_errors=True)

    def scan(self) -> list[Held]:
        """Every readable record; an unreadable one is removed after its processes are killed."""
        found = []
        for d in sorted(self.root.glob("*")) if self.root.is_dir() else ():
            if not d.is_dir():
                continue
            spec = read_json(d / SPEC)
            try:
                key = (str(spec["job_id"]), int(spec["attempt"])) if spec is not None else None
            except (KeyError, TypeError, ValueError):
                key = None
            if key is None or spec is None:
                log.warning("unreadable attempt record removed dir=%s", d)
                kill_now(d)
                shutil.rmtree(d, ignore_errors=True)
                continue
            found.append(Held(key, d, spec))
        return found


# ---- the runner process ---------------------------------------------------------------------


class ForkServer:
    """The agent's handle on `python -m haco.worker.runner --serve`: `launch(dir)` forks a runner
    for one record directory and returns its pid once runner.json is written. Started on first
    use, restarted if it died; `close()` ends it (the runners it forked live on)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def launch(self, directory: Path) -> int:
        """Raises OSError when no runner could be started (nothing was forked, or it is unknown)."""
        async with self._lock:
            for _ in range(2):
                proc = await self._ensure()
                assert proc.stdin is not None and proc.stdout is not None
                try:
                    proc.stdin.write(f"{directory}\n".encode())
                    await proc.stdin.drain()
                except (OSError, ConnectionError):  # it died before reading: nothing was forked, try anew
                    await self._stop()
                    continue
                try:
                    async with asyncio.timeout(LAUNCH_TIMEOUT_S):
                        line = await proc.stdout.readline()
                    return int(line)
                except (TimeoutError, ValueError, OSError):  # asked, maybe forked: never ask twice
                    await self._stop()
                    raise OSError("the attempt runner fork server did not answer") from None
            raise OSError("the attempt runner fork server does not start")

    async def close(self) -> None:
        async with self._lock:
            await self._stop()

    async def _ensure(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as err:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "haco.worker.runner", "--serve", stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=err)
        return self._proc

    async def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # its loop ends at EOF
        try:
            async with asyncio.timeout(2.0):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def wait_finished(directory: Path, proc: asyncio.subprocess.Process | None) -> Finished:
    """Wait for the runner to exit (our child `proc`, or the one recorded in runner.json), then read
    what it left."""
    if proc is not None:
        await proc.wait()
    else:
        runner = _recorded(directory / RUNNER)
        while runner is not None and _alive(runner):
            await asyncio.sleep(POLL_S)
    return await asyncio.to_thread(read_finished, directory)


def read_finished(directory: Path) -> Finished:
    doc = read_json(directory / OUTCOME)
    if doc is None:
        kill_now(directory)  # the runner died without a word: its job must not run on unwatched
        return Finished(None, "the attempt runner died")
    if doc.get("cancelled"):
        return Finished(None, "cancelled", cancelled=True)
    if "spawn_error" in doc:
        return Finished(None, str(doc["spawn_error"]))
    try:
        return Finished(outcome_from_json(doc))
    except (KeyError, TypeError, ValueError) as exc:
        return Finished(None, f"the attempt runner's outcome is unreadable: {exc}")


def runner_alive(directory: Path) -> bool:
    runner = _recorded(directory / RUNNER)
    return runner is not None and _alive(runner)


async def stop(directory: Path, proc: asyncio.subprocess.Process | None = None) -> None:
    """Kill the attempt: SIGTERM the runner (it kills the job's session, then exits), then SIGKILL
    the runner's group and whatever is left of the job's session. Returns once both are gone."""
    runner = _recorded(directory / RUNNER)
    if runner is not None and _alive(runner):
        with contextlib.suppress(psutil.Error):
            runner.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while _alive(runner) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
    await asyncio.to_thread(kill_now, directory)
    if proc is not None:
        await proc.wait()


def kill_now(directory: Path) -> None:
    """SIGKILL the recorded runner's process group and every live member of the job's session."""
    runner = _recorded(directory / RUNNER)
    if runner is not None and _alive(runner):
        with contextlib.suppress(OSError):
            os.killpg(runner.pid, signal.SIGKILL)
    doc = read_json(directory / JOB)
    try:
        pid, created = int(doc["pid"]), float(doc["create_time"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return
    try:
        if abs(psutil.Process(pid).create_time() - created) >= 0.01:
            return  # the pid was reused: that session is someone else's
    except psutil.NoSuchProcess:
        pass  # the leader is gone; what it left in its session is still ours
    except psutil.Error:
        return
    members = SessionMonitor(sid=pid).live_members()
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    for member in members:
        with contextlib.suppress(OSError):
            os.kill(member, signal.SIGKILL)
    if members:
        log.info("killed the processes of an attempt dir=%s pids=%s", directory.name, members)


# ---- pids with their start time -----------------------------------------------------------------


def _recorded(path: Path) -> psutil.Process | None:
    """The process a record names, if a process with that pid and start time still exists."""
    doc = read_json(path)
    try:
        pid, created = int(doc["pid"]), float(doc["create_time"])  # type: ignore[index]
        proc = psutil.Process(pid)
        return proc if abs(proc.create_time() - created) < 0.01 else None
    except (KeyError, TypeError, ValueError, psutil.Error):
        return None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
