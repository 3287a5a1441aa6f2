"""`python`: call `module:function` in a fresh interpreter; its JSON-able return value is the result.

Payload: `{"function": "module:function", "args": [...]?, "kwargs": {...}?, "env": {...}?,
"cwd": str?, "pythonpath": [str]?}`. The subprocess is `sys.executable -m
haco.worker.executors._pyrunner`, so the function is importable from the worker's environment, the
working directory (default: the attempt's workdir) and `pythonpath`. Async functions are awaited.

ok iff the call returned; on an exception, `error` is the traceback's last line (`"ValueError:
boom"`) and `result` holds `{"traceback", "stdout_tail", "stderr_tail", "stdout_cut_bytes",
"stderr_cut_bytes"}`. A return value over `result_bytes_max` is truncated without being loaded whole. cpu_ms and peak_rss_bytes are the
larger of the session sampling and the interpreter's own getrusage report.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from haco.worker.executors import _payload
from haco.worker.executors._process import ProcessOutcome, SpawnError, run_process
from haco.worker.executors.base import (
    ExecContext,
    ExecResult,
    PayloadError,
    bound_result,
    empty_stats,
    finish,
    job_env,
    timeout_error,
    truncated_result,
)

log = logging.getLogger(__name__)

_FIELDS: Final = {"function", "args", "kwargs", "env", "cwd", "pythonpath"}
RUNNER_MODULE: Final = "haco.worker.executors._pyrunner"


@dataclass(frozen=True, slots=True)
class RunnerOutcome:
    """What one runner subprocess did: the process outcome and its STATUS report, if it wrote one."""

    process: ProcessOutcome
    status: dict[str, Any] | None
    result_path: Path

    def stats(self) -> dict[str, float | int]:
        stats = self.process.stats()
        if self.status is not None:
            stats["cpu_ms"] = round(max(stats["cpu_ms"], float(self.status.get("cpu_ms", 0.0))), 3)
            stats["peak_rss_bytes"] = max(stats["peak_rss_bytes"], int(self.status.get("peak_rss_bytes", 0)))
        return stats

    def failure(self, timeout_s: float) -> str | None:
        """The error line when the call did not return normally, else None."""
        if self.process.timed_out:
            return timeout_error(timeout_s)
        if self.status is None:
            code = self.process.returncode
            last = _last_line(self.process.stderr_tail)
            return f"python runner exited with code {code} without a report" + (f": {last}" if last else "")
        if not self.status.get("ok"):
            return str(self.status.get("error") or "call failed")
        return None

    def diagnostics(self) -> dict[str, Any]:
        return {
            "traceback": (self.status or {}).get("traceback"),
            "stdout_tail": self.process.stdout_tail.decode(errors="replace"),
            "stderr_tail": self.process.stderr_tail.decode(errors="replace"),
            "stdout_cut_bytes": self.process.stdout_cut,
            "stderr_cut_bytes": self.process.stderr_cut,
        }


class PythonExecutor:
    name = "python"

    async def run(self, payload: Any, ctx: ExecContext) -> ExecResult:
        try:
            spec = _payload.require_mapping(self.name, payload, allowed=_FIELDS)
            request = call_request(self.name, spec)
            env = job_env(ctx, _payload.str_map(self.name, spec, "env"))
            cwd = _payload.working_dir(self.name, spec, ctx)
            outcome = await run_runner(request, ctx, env=env, cwd=cwd)
        except (PayloadError, SpawnError) as exc:
            return finish(ctx, ok=False, result=None, error=str(exc), stats=empty_stats())
        error = outcome.failure(ctx.timeout_s)
        if error is not None:
            return finish(
                ctx,
                ok=False,
                result=outcome.diagnostics(),
                error=error,
                stats=outcome.stats(),
                timed_out=outcome.process.timed_out,
            )
        return ExecResult(True, _read_result(outcome.result_path, ctx.result_bytes_max), None, outcome.stats())


def call_request(executor: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The runner's REQUEST for `spec`'s function, args, kwargs and pythonpath (validated)."""
    args = spec.get("args", [])
    kwargs = spec.get("kwargs", {})
    if not isinstance(args, list):
        raise PayloadError(f"{executor} payload: 'args' must be a list")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise PayloadError(f"{executor} payload: 'kwargs' must be an object with string keys")
    return {
        "function": _payload.function_ref(executor, spec),
        "args": args,
        "kwargs": dict(kwargs),
        "pythonpath": _payload.str_list(executor, spec, "pythonpath", required=False),
        "mode": "call",
    }


async def run_runner(
    request: dict[str, Any], ctx: ExecContext, *, env: Mapping[str, str], cwd: Path
) -> RunnerOutcome:
    """Write REQUEST into the workdir, run the runner, and read back its STATUS."""
    workdir = ctx.workdir.absolute()  # the runner's cwd is `cwd`, not ours
    request_path = workdir / "haco-pyrunner-request.json"
    status_path = workdir / "haco-pyrunner-status.json"
    result_path = workdir / "haco-pyrunner-result.json"
    try:
        request_path.write_text(json.dumps(request, allow_nan=False), encoding="utf-8")
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"python payload is not JSON-able: {exc}") from None
    status_path.unlink(missing_ok=True)
    result_path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", RUNNER_MODULE, str(request_path), str(status_path), str(result_path)]
    process = await run_process(argv, env=env, cwd=cwd, timeout_s=ctx.timeout_s, log=ctx.log, on_spawn=ctx.on_spawn)
    status: dict[str, Any] | None = None
    if not process.timed_out:
        try:
            status = json.loads(status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            status = None
    return RunnerOutcome(process, status, result_path)


def _read_result(path: Path, max_bytes: int) -> Any:
    """The runner's RESULT, bounded; a file over the limit is never read whole."""
    with path.open("rb") as fh:
        head = fh.read(max_bytes + 1)
        if len(head) <= max_bytes:
            return bound_result(json.loads(head), max_bytes)
        size = path.stat().st_size
    return truncated_result(head, max_bytes, original_bytes=size)


def _last_line(data: bytes) -> str:
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""
