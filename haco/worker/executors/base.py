"""The executor contract: what the worker agent hands an executor and what it gets back.

Who calls what: the agent builds an `ExecContext` per attempt (it creates `workdir`), looks the
executor up with `get_executor(job.type)` and runs `await executor.run(job.payload, ctx)` in its own
asyncio task. Every executor upholds the same contract:

- `run` never raises for anything the job did: a bad payload, a missing program, a failing
  function or a timeout all come back as `ExecResult(ok=False, error=...)`. It raises only
  `CancelledError` (the agent cancelled the task), after killing and reaping every process it
  started.
- `stats` always has `wall_ms`, `cpu_ms` and `peak_rss_bytes` (see `_monitor.py` for how they are
  measured), plus executor-specific figures.
- `result` is JSON-able and at most `ctx.result_bytes_max` bytes JSON-encoded; a larger result is
  replaced by `truncated_result()`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

if TYPE_CHECKING:
    from haco.worker.joblog import AttemptLogWriter

log = logging.getLogger(__name__)

RESULT_BYTES_MAX_DEFAULT: Final = 64 * 1024
_PREVIEW_RESERVE: Final = 256  # room for the truncated wrapper's own keys


@dataclass(frozen=True, slots=True)
class ExecContext:
    """One attempt's execution context, built by the agent."""

    job_id: str
    attempt: int
    timeout_s: float  # per attempt; the executor enforces it and kills the whole process group
    workdir: Path  # scratch dir for this attempt, absolute, created by the caller
    env: Mapping[str, str]  # extra env; HACO_JOB_ID and HACO_ATTEMPT are added by the executor
    result_bytes_max: int = RESULT_BYTES_MAX_DEFAULT
    log: AttemptLogWriter | None = None  # the attempt's output files; the agent opens and closes it
    worker_id: str = ""  # the worker running the attempt, for error messages
    #: called with each job process's pid once it exists (pass it to run_process): the agent records
    #: the session so that a restarted agent can kill what a dead one left running
    on_spawn: Callable[[int], None] | None = None


@dataclass(frozen=True, slots=True)
class ExecResult:
    """One attempt's outcome. `ok=False` always carries an `error` line meant for humans."""

    ok: bool
    result: Any  # JSON-able; see truncated_result()
    error: str | None
    stats: dict[str, float | int]  # wall_ms, cpu_ms, peak_rss_bytes always present
    timed_out: bool = False


@runtime_checkable
class Executor(Protocol):
    """Runs one job type. Instances are shared by concurrent attempts, so they keep no per-run state."""

    name: str

    async def run(self, payload: Any, ctx: ExecContext) -> ExecResult: ...


class PayloadError(ValueError):
    """A payload that does not match the executor's schema; becomes `ok=False`, never escapes `run`."""


def job_env(ctx: ExecContext, payload_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a job's processes.

    Precedence, lowest first: the worker's own environment, the payload's `env`, the agent's
    `ctx.env` (e.g. an assigned CUDA_VISIBLE_DEVICES), then HACO_JOB_ID, HACO_ATTEMPT and, with a
    log, HACO_PROGRESS_FILE.
    """
    env = dict(os.environ)
    env.pop("HACO_PROGRESS_FILE", None)  # a worker started from a job must not pass its own on
    env.update(payload_env or {})
    env.update(ctx.env)
    env["HACO_JOB_ID"] = ctx.job_id
    env["HACO_ATTEMPT"] = str(ctx.attempt)
    if ctx.log is not None:
        env.update(ctx.log.env())
    return env


def encoded_size(result: Any) -> int:
    """Size in bytes of `result` as compact UTF-8 JSON. Raises TypeError/ValueError if not JSON-able."""
    return len(_encode(result))


def bound_result(result: Any, max_bytes: int) -> Any:
    """`result` itself when it encodes within `max_bytes`, else its truncated form.

    Raises TypeError or ValueError when `result` is not JSON-able (NaN and infinities included:
    the codec only carries finite floats).
    """
    encoded = _encode(result)
    if len(encoded) <= max_bytes:
        return result
    return truncated_result(encoded, max_bytes)


def truncated_result(encoded: bytes, max_bytes: int, *, original_bytes: int | None = None) -> dict[str, Any]:
    """`{"truncated": true, "original_bytes": n, "preview": "<start of the JSON text>"}`.

    `encoded` is the JSON text, or its start when `original_bytes` gives the full size.
    """
    keep = max(0, max_bytes - _PREVIEW_RESERVE)
    preview = encoded[:keep].decode("utf-8", errors="ignore")
    size = len(encoded) if original_bytes is None else original_bytes
    out: dict[str, Any] = {"truncated": True, "original_bytes": size, "preview": preview}
    while len(_encode(out)) > max_bytes and out["preview"]:  # escapes can grow the preview
        out["preview"] = out["preview"][: len(out["preview"]) // 2]
    return out


def finish(
    ctx: ExecContext,
    *,
    ok: bool,
    result: Any,
    error: str | None,
    stats: dict[str, float | int],
    timed_out: bool = False,
) -> ExecResult:
    """Build the ExecResult: bounds the result, and turns a non-JSON-able one into a failure."""
    try:
        bounded = bound_result(result, ctx.result_bytes_max)
    except (TypeError, ValueError) as exc:
        return ExecResult(False, None, f"result is not JSON-able: {exc}", stats, timed_out)
    return ExecResult(ok, bounded, error, stats, timed_out)


def empty_stats() -> dict[str, float | int]:
    """Stats of an attempt that never started a process."""
    return {"wall_ms": 0.0, "cpu_ms": 0.0, "peak_rss_bytes": 0}


def timeout_error(timeout_s: float) -> str:
    return f"timed out after {timeout_s:g}s"


def get_executor(name: str) -> Executor:
    """The executor registered under `name`: a built-in or an entry point in group `haco.executors`.

    Raises KeyError naming the known executors when there is none.
    """
    from haco.worker.executors.registry import get_executor as _get

    return _get(name)


def executor_names() -> list[str]:
    """Sorted names of the built-in executors and every installed `haco.executors` entry point."""
    from haco.worker.executors.registry import executor_names as _names

    return _names()


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
