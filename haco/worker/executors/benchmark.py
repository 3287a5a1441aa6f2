"""`benchmark`: time an argv or a Python callable N times after W warm-up runs.

Payload: either `{"argv": [str, ...]}` or `{"function": "module:function", "args"?, "kwargs"?,
"pythonpath"?}`, plus `"repeat": N` (default 5, 1..10000), `"warmup": W` (default 1, 0..1000),
`"env"?`, `"cwd"?`. Progress (HACO_PROGRESS_FILE): runs done of warm-up plus timed runs.

- argv: each run is a fresh process in its own session (spawn cost included, like hyperfine);
  every run must exit 0. The attempt's timeout covers all runs together.
- function: one interpreter imports it once, calls it W times, then times N calls with
  `time.perf_counter` (async functions are awaited); import and start-up are not timed.

Result: `{"runs": N, "min_s", "median_s", "p95_s" (nearest rank), "max_s", "mean_s",
"peak_rss_bytes"}`; stats add up CPU over every run and take the peak RSS over all of them.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from haco.worker.executors import _payload
from haco.worker.executors._process import SpawnError, run_process
from haco.worker.executors.base import (
    ExecContext,
    ExecResult,
    PayloadError,
    empty_stats,
    finish,
    job_env,
    timeout_error,
)
from haco.worker.executors.python import call_request, run_runner

log = logging.getLogger(__name__)

_FIELDS: Final = {"argv", "function", "args", "kwargs", "pythonpath", "repeat", "warmup", "env", "cwd"}
REPEAT_MAX: Final = 10_000
WARMUP_MAX: Final = 1_000


class BenchmarkExecutor:
    name = "benchmark"

    async def run(self, payload: Any, ctx: ExecContext) -> ExecResult:
        try:
            spec = _payload.require_mapping(self.name, payload, allowed=_FIELDS)
            if ("argv" in spec) == ("function" in spec):
                raise PayloadError("benchmark payload: give exactly one of 'argv' or 'function'")
            repeat = _payload.int_field(self.name, spec, "repeat", default=5, lo=1, hi=REPEAT_MAX)
            warmup = _payload.int_field(self.name, spec, "warmup", default=1, lo=0, hi=WARMUP_MAX)
            env = job_env(ctx, _payload.str_map(self.name, spec, "env"))
            cwd = _payload.working_dir(self.name, spec, ctx)
            if "argv" in spec:
                argv = _payload.str_list(self.name, spec, "argv", required=True)
                return await _bench_argv(argv, repeat, warmup, ctx, env=env, cwd=cwd)
            request = call_request(self.name, spec) | {"mode": "bench", "repeat": repeat, "warmup": warmup}
        except (PayloadError, SpawnError) as exc:
            return finish(ctx, ok=False, result=None, error=str(exc), stats=empty_stats())
        return await _bench_function(request, ctx, env=env, cwd=cwd)


async def _bench_argv(
    argv: list[str], repeat: int, warmup: int, ctx: ExecContext, *, env: Mapping[str, str], cwd: Path
) -> ExecResult:
    started = time.monotonic()
    deadline = started + ctx.timeout_s
    times: list[float] = []
    cpu_ms, peak = 0.0, 0
    for run in range(warmup + repeat):
        outcome = await run_process(argv, env=env, cwd=cwd, timeout_s=deadline - time.monotonic(), log=ctx.log,
                                    on_spawn=ctx.on_spawn)
        if ctx.log is not None:
            ctx.log.report_progress((run + 1) / (warmup + repeat), f"run {run + 1} of {warmup + repeat}")
        cpu_ms += outcome.cpu_ms
        peak = max(peak, outcome.peak_rss_bytes)
        stats: dict[str, float | int] = {
            "wall_ms": round((time.monotonic() - started) * 1000.0, 3),
            "cpu_ms": round(cpu_ms, 3),
            "peak_rss_bytes": peak,
        }
        if outcome.timed_out or outcome.returncode != 0:
            error = timeout_error(ctx.timeout_s) if outcome.timed_out else (
                f"run {run + 1} of {warmup + repeat} exited with code {outcome.returncode}")  # fmt: skip
            failed = {"failed_run": run + 1, "exit_code": outcome.returncode,
                      "stderr_tail": outcome.stderr_tail.decode(errors="replace"), "stderr_cut_bytes": outcome.stderr_cut}
            return finish(ctx, ok=False, result=failed, error=error, stats=stats, timed_out=outcome.timed_out)
        if run >= warmup:
            times.append(outcome.wall_ms / 1000.0)
    return finish(ctx, ok=True, result=summarize(times, peak), error=None, stats=stats)


async def _bench_function(
    request: dict[str, Any], ctx: ExecContext, *, env: Mapping[str, str], cwd: Path
) -> ExecResult:
    try:
        outcome = await run_runner(request, ctx, env=env, cwd=cwd)
    except (PayloadError, SpawnError) as exc:
        return finish(ctx, ok=False, result=None, error=str(exc), stats=empty_stats())
    stats = outcome.stats()
    error = outcome.failure(ctx.timeout_s)
    if error is not None or outcome.status is None:
        return finish(
            ctx,
            ok=False,
            result=outcome.diagnostics(),
            error=error or "no report",
            stats=stats,
            timed_out=outcome.process.timed_out,
        )
    times = [float(t) for t in outcome.status["times_s"]]
    return finish(ctx, ok=True, result=summarize(times, int(stats["peak_rss_bytes"])), error=None, stats=stats)


def summarize(times: Sequence[float], peak_rss_bytes: int) -> dict[str, Any]:
    """Order statistics of `times` (non-empty); p95 by the nearest-rank method."""
    ordered = sorted(times)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "runs": len(ordered),
        "min_s": ordered[0],
        "median_s": statistics.median(ordered),
        "p95_s": p95,
        "max_s": ordered[-1],
        "mean_s": statistics.fmean(ordered),
        "peak_rss_bytes": peak_rss_bytes,
    }
