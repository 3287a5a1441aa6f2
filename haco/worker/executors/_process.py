"""Run one job process in its own session: bounded output, deadline, sampling, and a sure kill.

`run_process` is what every subprocess-based executor builds on. Its contract:

- The process starts with `start_new_session=True`, stdin from /dev/null, stdout and stderr piped;
  the pipes are drained as they fill. With a `log` writer every byte goes to the attempt's log
  files (appends to the page cache, cheaper than a thread hop per chunk) and the tails come from
  it; without one only the last `tail_bytes` of each are kept. A pipe is read only after the last
  chunk was written, so a job that writes faster than the disk takes it waits on its pipe.
- When the session leader exits, any process it left behind in its session is killed: a job owns
  no processes beyond its attempt (systemd's KillMode=control-group, in spirit).
- At the deadline the whole session is killed and the outcome says `timed_out`.
- When the calling task is cancelled, the whole session is killed and reaped, then CancelledError
  propagates. A second cancellation during that cleanup falls back to an immediate SIGKILL.
- Killing = SIGTERM to the process group and to every session member (a member may have moved to
  another group), up to `TERM_GRACE_S` for them to go, then SIGKILL, then wait until none is left
  alive (a zombie left for init counts as gone).
- Never blocks the event loop: asyncio subprocesses, asyncio sleeps, /proc reads only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from haco.worker.executors._monitor import SessionMonitor
from haco.worker.joblog import AttemptLogWriter

Process = asyncio.subprocess.Process

log = logging.getLogger(__name__)

TAIL_BYTES: Final = 4096
SAMPLE_INTERVAL_S: Final = 0.05
TERM_GRACE_S: Final = 2.0
KILL_WAIT_S: Final = 5.0
_DRAIN_AFTER_EXIT_S: Final = 2.0  # a pipe held open by a process that escaped the session
_POLL_S: Final = 0.02
PROGRESS_POLL_S: Final = 0.2  #: how often HACO_PROGRESS_FILE is looked at


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    returncode: int | None  # None when we killed it at the deadline; negative: killed by signal
    stdout_tail: bytes
    stderr_tail: bytes
    timed_out: bool
    wall_ms: float
    cpu_ms: float
    peak_rss_bytes: int
    pid: int
    stdout_cut: int = 0  #: bytes of stdout before its tail (not in stdout_tail)
    stderr_cut: int = 0

    def stats(self) -> dict[str, float | int]:
        """The figures every attempt reports."""
        return {
            "wall_ms": round(self.wall_ms, 3),
            "cpu_ms": round(self.cpu_ms, 3),
            "peak_rss_bytes": self.peak_rss_bytes,
        }


class SpawnError(Exception):
    """The process could not be started (missing program, bad cwd, permissions)."""


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: os.PathLike[str] | str,
    timeout_s: float,
    tail_bytes: int = TAIL_BYTES,
    log: AttemptLogWriter | None = None,
    on_spawn: Callable[[int], None] | None = None,
) -> ProcessOutcome:
    """Run `argv` to completion or until `timeout_s` (inf: no deadline; <= 0: times out at once).

    With `log`, the output goes to it (the caller closes it) and progress files are polled.
    `on_spawn(pid)` is called once the session leader exists (the attempt runner records it)."""
    started = time.monotonic()
    proc = await _spawn(argv, env=env, cwd=cwd)
    if on_spawn is not None:
        try:
            on_spawn(proc.pid)
        except BaseException:
            await _kill_on_cancel(proc, SessionMonitor(sid=proc.pid))
            _close_transport(proc)
            raise
    monitor = SessionMonitor(sid=proc.pid)
    _safe_sample(monitor)  # now, while the freshly exec'd leader surely exists: short jobs get figures too
    assert proc.stdout is not None and proc.stderr is not None
    out = _Tail(tail_bytes, bytearray(), log, "stdout")
    err = _Tail(tail_bytes, bytearray(), log, "stderr")
    out_task = asyncio.create_task(out.drain(proc.stdout))
    err_task = asyncio.create_task(err.drain(proc.stderr))
    sampler = asyncio.create_task(_sample_until_exit(proc, monitor, log))
    try:
        done, _ = await asyncio.wait([sampler], timeout=None if math.isinf(timeout_s) else max(0.0, timeout_s))
        timed_out = not done
        await kill_session(proc, monitor)
        await _drain([out_task, err_task])
    except BaseException:  # CancelledError above all: the session must not outlive the task
        await _kill_on_cancel(proc, monitor)
        raise
    finally:
        for task in (sampler, out_task, err_task):
            task.cancel()
        _close_transport(proc)
    return ProcessOutcome(
        returncode=None if timed_out else proc.returncode,
        stdout_tail=out.value(),
        stderr_tail=err.value(),
        timed_out=timed_out,
        wall_ms=(time.monotonic() - started) * 1000.0,
        cpu_ms=monitor.cpu_ms(),
        peak_rss_bytes=monitor.peak_rss_bytes,
        pid=proc.pid,
        stdout_cut=out.cut(),
        stderr_cut=err.cut(),
    )


async def _spawn(argv: Sequence[str], *, env: Mapping[str, str], cwd: os.PathLike[str] | str) -> Process:
    """Start `argv` as a session leader; a cancellation mid-spawn still kills what was started.

    Left alone, a cancelled `create_subprocess_exec` SIGKILLs only the leader and then, on 3.11,
    waits for the pipes to close, i.e. for whatever the leader already forked to exit on its own.
    So the spawn runs shielded to completion, and its session is killed before re-raising.
    """
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    )
    try:
        proc = await asyncio.shield(spawn)
    except OSError as exc:
        raise SpawnError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
    except asyncio.CancelledError:
        try:
            proc = await spawn
        except OSError:
            raise asyncio.CancelledError from None
        try:
            await _kill_on_cancel(proc, SessionMonitor(sid=proc.pid))
        finally:
            _close_transport(proc)
        raise
    _pin(proc.pid, env.get("HACO_CPU_SET"))
    return proc


def _pin(pid: int, cpu_set: str | None) -> None:
    """Pin a job's leader to the cores the agent chose (`pin_cpus`), right after its spawn; what it
    starts from then on inherits them. Where the platform cannot pin, the job runs unpinned."""
    if not cpu_set or not hasattr(os, "sched_setaffinity"):
        return
    try:
        os.sched_setaffinity(pid, {int(c) for c in cpu_set.split(",")})
    except (OSError, ValueError):
        pass  # the process already exited, or the set is not ours to give: nothing to pin


async def kill_session(proc: Process, monitor: SessionMonitor) -> None:
    """Kill every live process of the session (TERM, grace, KILL); returns once none is left alive.

    The leader counts as gone once asyncio has reaped it (`returncode` set). Returns at once when
    the leader has exited and left nothing behind.
    """
    live = monitor.live_members()
    if proc.returncode is not None and not live:
        return
    _signal_session(proc.pid, live, signal.SIGTERM)
    if not await _wait_gone(proc, monitor, TERM_GRACE_S):
        _signal_session(proc.pid, monitor.live_members(), signal.SIGKILL)
        if not await _wait_gone(proc, monitor, KILL_WAIT_S):
            log.warning("session %d: processes %s survived SIGKILL", proc.pid, monitor.live_members())


async def _kill_on_cancel(proc: Process, monitor: SessionMonitor) -> None:
    try:
        await kill_session(proc, monitor)
    except BaseException:  # cancelled again mid-cleanup: no more grace
        _signal_session(proc.pid, monitor.live_members(), signal.SIGKILL)
        raise


def _signal_session(sid: int, members: Sequence[int], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, sig)
    for pid in members:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def _wait_gone(proc: Process, monitor: SessionMonitor, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while True:
        if proc.returncode is not None and not monitor.live_members():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_S)


async def _sample_until_exit(proc: Process, monitor: SessionMonitor, log: AttemptLogWriter | None = None) -> None:
    """Sample every SAMPLE_INTERVAL_S and once more at exit; returns when the leader exits.

    On Python 3.11 `proc.wait()` resolves only once the stdout/stderr pipes are closed too, which a
    background process holding them can delay forever; so the leader's exit is `proc.returncode`
    (set as soon as it is reaped), checked at each wake-up. `wait()` is awaited only to wake up at
    once in the usual case where the pipes close with the leader.
    """
    wait = asyncio.ensure_future(proc.wait())
    polled = time.monotonic()
    try:
        while proc.returncode is None:
            await asyncio.wait([wait], timeout=SAMPLE_INTERVAL_S)
            _safe_sample(monitor)
            if log is not None and time.monotonic() - polled >= PROGRESS_POLL_S:
                polled = time.monotonic()
                log.poll_progress_file()  # one stat(); the file is read only when it changed
    finally:
        wait.cancel()
        if log is not None:
            log.poll_progress_file()


def _safe_sample(monitor: SessionMonitor) -> None:
    try:
        monitor.sample()
    except Exception:  # a figure lost is no reason to lose the job
        log.debug("sampling session %d failed", monitor.sid, exc_info=True)


@dataclass(slots=True)
class _Tail:
    """Drains one pipe into the attempt's log, or keeps its last `keep` bytes when there is none."""

    keep: int
    buf: bytearray
    log: AttemptLogWriter | None = None
    stream: str = "stdout"
    total: int = 0

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            if self.log is not None:
                self.log.write(self.stream, chunk)
                continue
            self.total += len(chunk)
            self.buf += chunk
            if len(self.buf) > 2 * self.keep:
                del self.buf[: -self.keep]

    def value(self) -> bytes:
        if self.log is not None:
            return self.log.tail(self.stream)[-self.keep:] if self.keep else b""
        return bytes(self.buf[-self.keep :]) if self.keep else b""

    def cut(self) -> int:
        """Bytes of this stream's output before `value()`."""
        if self.log is not None:
            return self.log.written(self.stream) - len(self.value())
        return self.total - len(self.value())


async def _drain(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Wait for both pipes' EOF, but not for one that a process outside the session withholds."""
    _, pending = await asyncio.wait(tasks, timeout=_DRAIN_AFTER_EXIT_S)
    if pending:
        log.warning("job output pipe still open after its session was killed; keeping what was read")


def _close_transport(proc: Process) -> None:
    """Close our ends of the pipes that a process outside the session may still hold.

    asyncio.subprocess.Process offers no public close; without it the transport stays open (and
    warns when collected) until that process exits. A no-op when the pipes closed normally.
    """
    transport = getattr(proc, "_transport", None)
    if transport is not None and not transport.is_closing():
        transport.close()
