"""`pytest`: run a test path in a fresh interpreter and report counts and failing ids.

Payload: `{"path": str, "args": [str]?, "env": {...}?, "cwd": str?}`. Runs
`sys.executable -m pytest PATH --junitxml=WORKDIR/junit.xml -q -p no:cacheprovider
-o junit_family=xunit1 ARGS...` in `cwd` (default: the attempt's workdir). Result:
`{"passed", "failed", "skipped", "errors", "failing": [node ids], "exit_code", "stdout_tail",
"stderr_tail", "stdout_cut_bytes", "stderr_cut_bytes"}` with the counts from the JUnit report, else
from pytest's last summary line (`1 failed, 1 passed in 0.12s`), else zeros (a usage error). ok iff
exit code 0; exit code 5 (no tests collected) is not ok. A worker whose interpreter lacks pytest
fails the attempt with an `EXECUTOR_UNAVAILABLE` error naming the worker and the missing module.
With a log, a small plugin reports tests run of tests collected as progress.
"""

from __future__ import annotations

import logging
import re
import sys
import xml.etree.ElementTree as ET
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
from haco.worker.executors.junit import JunitSummary, parse_junit, parse_summary_line

log = logging.getLogger(__name__)

_FIELDS: Final = {"path", "args", "env", "cwd"}
PROGRESS_PLUGIN: Final = "haco.worker.executors._pytest_progress"  #: tests run of tests collected
_IDS_IN_ERROR: Final = 5
_NO_MODULE_RE: Final = re.compile(r"No module named '?([\w.]+)'?")
_EXIT_MEANING: Final = {
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}


class PytestExecutor:
    name = "pytest"

    async def run(self, payload: Any, ctx: ExecContext) -> ExecResult:
        try:
            spec = _payload.require_mapping(self.name, payload, allowed=_FIELDS)
            path = spec.get("path")
            if not isinstance(path, str) or not path:
                raise PayloadError("pytest payload: 'path' must be a non-empty string")
            args = _payload.str_list(self.name, spec, "args", required=False)
            env = job_env(ctx, _payload.str_map(self.name, spec, "env"))
            cwd = _payload.working_dir(self.name, spec, ctx)
            junit = ctx.workdir.absolute() / "junit.xml"  # pytest runs in `cwd`, not in ours
            junit.unlink(missing_ok=True)
            argv = [sys.executable, "-m", "pytest", path, f"--junitxml={junit}", "-q", "-p", "no:cacheprovider",
                    "-o", "junit_family=xunit1", *args]  # fmt: skip
            if "HACO_PROGRESS_FILE" in env:
                argv[3:3] = ["-p", PROGRESS_PLUGIN]
            outcome = await run_process(argv, env=env, cwd=cwd, timeout_s=ctx.timeout_s, log=ctx.log,
                                        on_spawn=ctx.on_spawn)
        except (PayloadError, SpawnError) as exc:
            return finish(ctx, ok=False, result=None, error=str(exc), stats=empty_stats())
        summary = _read_summary(junit, outcome) if not outcome.timed_out else JunitSummary()
        result = summary.as_dict() | {"exit_code": outcome.returncode} | _output(outcome)
        stats = outcome.stats() | {"tests": summary.passed + summary.failed + summary.skipped + summary.errors}
        return finish(
            ctx,
            ok=outcome.returncode == 0,
            result=result,
            error=_error(ctx, outcome, summary),
            stats=stats,
            timed_out=outcome.timed_out,
        )


def _output(outcome: ProcessOutcome) -> dict[str, str | int]:
    return {"stdout_tail": outcome.stdout_tail.decode(errors="replace"),
            "stderr_tail": outcome.stderr_tail.decode(errors="replace"),
            "stdout_cut_bytes": outcome.stdout_cut, "stderr_cut_bytes": outcome.stderr_cut}


def _read_summary(junit: Path, outcome: ProcessOutcome) -> JunitSummary:
    try:
        return parse_junit(junit)
    except (OSError, ET.ParseError) as exc:
        log.debug("no usable junit report at %s: %s", junit, exc)
    return parse_summary_line(outcome.stdout_tail.decode(errors="replace")) or JunitSummary()


def _missing_module(outcome: ProcessOutcome) -> str | None:
    """The module whose absence stopped pytest from starting (`No module named pytest`), if any."""
    match = _NO_MODULE_RE.search(_last_line(outcome.stderr_tail))
    if outcome.returncode != 1 or match is None or match.group(1).split(".")[0] != "pytest":
        return None
    return match.group(1)


def _error(ctx: ExecContext, outcome: ProcessOutcome, summary: JunitSummary) -> str | None:
    code = outcome.returncode
    if outcome.timed_out:
        return timeout_error(ctx.timeout_s)
    if code == 0:
        return None
    if code is not None and code < 0:
        return f"pytest killed by signal {-code}"
    missing = _missing_module(outcome)
    if missing is not None:
        return (f"EXECUTOR_UNAVAILABLE: worker {ctx.worker_id or '?'} cannot run pytest jobs: "
                f"module {missing!r} is not installed in its Python ({sys.executable})")
    meaning = _EXIT_MEANING.get(code or 0, "unexpected exit")
    if summary.failing:
        shown = ", ".join(summary.failing[:_IDS_IN_ERROR])
        more = len(summary.failing) - _IDS_IN_ERROR
        return f"{meaning}: {shown}" + (f" and {more} more" if more > 0 else "")
    last = _last_line(outcome.stdout_tail) or _last_line(outcome.stderr_tail)
    return f"pytest exited with code {code} ({meaning})" + (f": {last}" if last else "")


def _last_line(data: bytes) -> str:
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else ""
