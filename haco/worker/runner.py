"""The attempt runner: one small process per durable attempt, which owns the job's process.

`python -m haco.worker.runner --serve` is the agent's fork server: it imports this module once,
then for each record directory read from stdin (one path per line) forks a runner, which starts
a session of its own, and answers the runner's pid on stdout once `runner.json` (pid and process
start time) is written. A fork costs milliseconds where a new interpreter with asyncio and psutil
costs a few hundred of CPU. It exits when its stdin closes (the agent is gone); the runners it
forked live on. `python -m haco.worker.runner RECORD_DIR` runs one attempt in the foreground.

A runner reads `spec.json` from the attempt's record directory
(attempts.py writes it), runs the job through `run_process` (its own session, deadline, output
into the attempt's log files, the whole session killed at the end), and writes `outcome.json`
there before it exits. The agent starts it in a session of its own with no pipe to itself, so the
job keeps running, keeps its output and keeps its deadline while the agent is down; a restarted
agent reads the outcome file, or waits for the runner it finds alive.

Files it writes (all replaced atomically): `job.json` `{pid, create_time}` once the job's session
leader exists, and `outcome.json`: `{returncode, timed_out, stdout_tail, stderr_tail (base64),
stdout_cut, stderr_cut, wall_ms, cpu_ms, peak_rss_bytes, pid}`, or `{spawn_error}` when the
program could not start, or `{cancelled: true}` after SIGTERM (the job's session is killed
first). Exit status 0 in every one of those cases; anything else is a bug, and the agent reports
the attempt failed when it finds no outcome.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Final

from haco.worker.executors._process import ProcessOutcome, SpawnError, run_process
from haco.worker.joblog import AttemptLogWriter
from haco.worker.joblog.format import write_json

SPEC: Final = "spec.json"
RUNNER: Final = "runner.json"  #: the runner's pid and process start time (written by the fork server)
JOB: Final = "job.json"
OUTCOME: Final = "outcome.json"
RUNNER_LOG: Final = "runner.log"  #: the runner's own stdout and stderr (a traceback, if any)
UNSET: Final = "\0unset"  #: an env override value meaning "remove this variable"


def job_environment(base: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """`base` (the runner's own environment, the agent's) with the spec's overrides applied."""
    env = dict(base)
    for key, value in overrides.items():
        if value == UNSET:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def outcome_json(outcome: ProcessOutcome) -> dict[str, Any]:
    return {"returncode": outcome.returncode, "timed_out": outcome.timed_out,
            "stdout_tail": base64.b64encode(outcome.stdout_tail).decode(),
            "stderr_tail": base64.b64encode(outcome.stderr_tail).decode(),
            "stdout_cut": outcome.stdout_cut, "stderr_cut": outcome.stderr_cut, "wall_ms": outcome.wall_ms,
            "cpu_ms": outcome.cpu_ms, "peak_rss_bytes": outcome.peak_rss_bytes, "pid": outcome.pid}


def outcome_from_json(doc: dict[str, Any]) -> ProcessOutcome:
    """Raises KeyError, TypeError or ValueError for a malformed document."""
    rc = doc["returncode"]
    return ProcessOutcome(returncode=None if rc is None else int(rc), timed_out=bool(doc["timed_out"]),
                          stdout_tail=base64.b64decode(doc["stdout_tail"]),
                          stderr_tail=base64.b64decode(doc["stderr_tail"]),
                          stdout_cut=int(doc["stdout_cut"]), stderr_cut=int(doc["stderr_cut"]),
                          wall_ms=float(doc["wall_ms"]), cpu_ms=float(doc["cpu_ms"]),
                          peak_rss_bytes=int(doc["peak_rss_bytes"]), pid=int(doc["pid"]))


async def run(directory: Path) -> int:
    spec = json.loads((directory / SPEC).read_text(encoding="utf-8"))
    writer = AttemptLogWriter(Path(spec["log_root"]), str(spec["job_id"]), int(spec["attempt"]),
                              bytes_max=int(spec["log_bytes_max"]))
    env = job_environment(dict(os.environ), spec["env"])
    env.update(writer.env())
    task = asyncio.ensure_future(run_process(spec["argv"], env=env, cwd=spec["cwd"],
                                             timeout_s=float(spec["timeout_s"]), log=writer,
                                             on_spawn=lambda pid: record_job(directory, pid)))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)  # the agent cancels: the session is killed first
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # a Ctrl+C meant for a foreground worker
    exit_code: int | None = None
    try:
        outcome = await task
        exit_code = outcome.returncode
        doc: dict[str, Any] = outcome_json(outcome)
    except SpawnError as exc:
        doc = {"spawn_error": str(exc)}
    except asyncio.CancelledError:
        doc = {"cancelled": True}
    finally:
        writer.close(exit_code)
    write_json(directory / OUTCOME, doc)
    return 0


def record_job(directory: Path, pid: int) -> None:
    """Write `job.json`: the job's session leader, with its start time. Blocking (one small file)."""
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:  # already gone: nothing to kill later
        created = 0.0
    write_json(directory / JOB, {"pid": pid, "create_time": created})


def serve() -> int:
    """The fork server loop (see the module docstring). No threads and no event loop here, so
    forking is safe; children are reaped automatically (SIGCHLD ignored, reset in each child)."""
    import psutil

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl+C meant for a foreground worker
    for line in sys.stdin:
        directory = Path(line.rstrip("\n"))
        pid = os.fork()
        if pid == 0:
            _child(directory)
        try:
            created = psutil.Process(pid).create_time()
        except psutil.Error:  # already gone: its outcome (or its absence) says what happened
            created = 0.0
        write_json(directory / RUNNER, {"pid": pid, "create_time": created})
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
    return 0


def _child(directory: Path) -> None:
    code = 70
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        fd = os.open(directory / RUNNER_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        sys.stdin = open(os.devnull)  # noqa: SIM115 (the fork server's stdin object is not ours)
        code = asyncio.run(run(directory))
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


def main(argv: list[str]) -> int:
    if argv == ["--serve"]:
        return serve()
    if len(argv) != 1:
        print("usage: python -m haco.worker.runner RECORD_DIR | --serve", file=sys.stderr)
        return 64
    return asyncio.run(run(Path(argv[0])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
