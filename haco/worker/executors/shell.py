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


class ShellExecutor:
    name = "shell"

    async def run(self, payload: Any, ctx: ExecContext) -> ExecResult:
        try:
            spec = _payload.require_mapping(self.name, payload, allowed=_FIELDS)
            argv = _payload.str_list(self.name, spec, "argv", required=True)
            env = job_env(ctx, _payload.str_map(self.name, spec, "env"))
            cwd = _payload.working_dir(self.name, spec, ctx)
            outcome = await run_process(argv, env=env, cwd=cwd, timeout_s=ctx.timeout_s, log=ctx.log)
        except (PayloadError, SpawnError) as exc:
            return finish(ctx, ok=False, result=None, error=str(exc), stats=empty_stats())
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

