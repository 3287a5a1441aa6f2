"""`shell`: run an argv (no shell unless you ask for one) and report its exit code and output tails.

Payload: `{"argv": [str, ...], "env": {str: str}?, "cwd": str?}`; `cwd` is relative to the
attempt's workdir (default: the workdir). Result: `{"exit_code", "stdout_tail", "stderr_tail",
"stdout_cut_bytes", "stderr_cut_bytes"}` with each tail the last 4 KiB, decoded as UTF-8 with
replacement, and each cut count the bytes of that stream before its tail (the whole output is in
the attempt's log). ok iff the exit code is 0; a
negative exit code means killed by that signal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from haco.worker.executors import _payload
from haco.worker.executors._process import ProcessOutcome, SpawnError, run_process
from haco.worker.executors.base import (
    ExecContext,
    ExecResult,
    PayloadError,
    empty_stats,
    finish,
    job_env,
    timeout_error,
)

log = logging.getLogger(__name__)

_FIELDS: Final = {"argv", "env", "cwd"}


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """What a durable attempt's runner starts: argv, its full environment and its cwd."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


class ShellExecutor:
    """Durable: the agent may run `prepare()`'s process through an attempt runner (runner.py),
    which survives a worker restart, and build the result with `result()` from its outcome."""

    name = "shell"
    durable = True

    async def run(self, payload: Any, ctx: ExecContext) -> ExecResult:
        try:
            spec = self.prepare(payload, ctx)
            outcome = await run_process(spec.argv, env=spec.env, cwd=spec.cwd, timeout_s=ctx.timeout_s, log=ctx.log,
                                        on_spawn=ctx.on_spawn)
        except (PayloadError, SpawnError) as exc:
            return finish(ctx, ok=False, result=None, error=str(exc), stats=empty_stats())
        return shell_result(ctx, outcome)

    def prepare(self, payload: Any, ctx: ExecContext) -> ProcessSpec:
        """The process to start; raises PayloadError."""
        spec = _payload.require_mapping(self.name, payload, allowed=_FIELDS)
        argv = _payload.str_list(self.name, spec, "argv", required=True)
        env = job_env(ctx, _payload.str_map(self.name, spec, "env"))
        return ProcessSpec(argv, env, _payload.working_dir(self.name, spec, ctx))

    def result(self, ctx: ExecContext, outcome: ProcessOutcome) -> ExecResult:
        return shell_result(ctx, outcome)


def shell_result(ctx: ExecContext, outcome: ProcessOutcome) -> ExecResult:
    result = {
        "exit_code": outcome.returncode,
        "stdout_tail": outcome.stdout_tail.decode(errors="replace"),
        "stderr_tail": outcome.stderr_tail.decode(errors="replace"),
        "stdout_cut_bytes": outcome.stdout_cut,
        "stderr_cut_bytes": outcome.stderr_cut,
    }
    if outcome.timed_out:
        error: str | None = timeout_error(ctx.timeout_s)
    elif outcome.returncode == 0:
        error = None
    elif outcome.returncode is not None and outcome.returncode < 0:
        error = f"killed by signal {-outcome.returncode}"
    else:
        error = f"exited with code {outcome.returncode}"
    return finish(
        ctx, ok=error is None, result=result, error=error, stats=outcome.stats(), timed_out=outcome.timed_out
    )

