"""Executor lookup: the built-ins, then plugins from the entry-point group `haco.executors`.

A plugin's entry point names the executor (the job's `type`) and loads either a class, which is
instantiated with no arguments, or an instance; either way it must have a `name` and an async
`run(payload, ctx)`. Plugins cannot shadow a built-in. Each is wrapped in `_PluginGuard`, which
holds it to the contract built-ins keep by construction: an exception becomes `ok=False`, a result
is bounded, and the three stats are always present. Loaded executors are cached; a name not found
rescans the entry points, so a plugin installed while the worker runs is found on next use.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import time
from importlib.metadata import entry_points
from typing import Any, Final

from haco.worker.executors.base import ExecContext, ExecResult, Executor, finish

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "haco.executors"
_BUILTINS: Final = {
    "benchmark": "haco.worker.executors.benchmark:BenchmarkExecutor",
    "noop": "haco.worker.executors.noop:NoopExecutor",
    "pytest": "haco.worker.executors.pytest_suite:PytestExecutor",
    "python": "haco.worker.executors.python:PythonExecutor",
    "shell": "haco.worker.executors.shell:ShellExecutor",
}
_loaded: dict[str, Executor] = {}


def get_executor(name: str) -> Executor:
    """The executor for job type `name`. Raises KeyError with the known names when there is none."""
    if name in _loaded:
        return _loaded[name]
    if name in _BUILTINS:
        module_name, _, attr = _BUILTINS[name].partition(":")
        executor: Executor = getattr(importlib.import_module(module_name), attr)()
    else:
        executor = _PluginGuard(name, _load_plugin(name))
    _loaded[name] = executor
    return executor


def executor_names() -> list[str]:
    """Built-in names plus every installed plugin's entry-point name (plugins are not loaded)."""
    return sorted(set(_BUILTINS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def _load_plugin(name: str) -> Executor:
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        raise KeyError(f"unknown executor {name!r}; known: {', '.join(executor_names())}")
    if len(matches) > 1:
        log.warning("executor %r has %d entry points; using %s", name, len(matches), matches[0].value)
    try:
        obj: Any = matches[0].load()
        executor: Any = obj() if inspect.isclass(obj) else obj
    except Exception as exc:
        raise KeyError(f"executor {name!r}: plugin {matches[0].value} failed to load: {exc!r}") from exc
    if not callable(getattr(executor, "run", None)) or not inspect.iscoroutinefunction(executor.run):
        raise KeyError(f"executor {name!r}: plugin {matches[0].value} has no async run(payload, ctx)")
    if not isinstance(getattr(executor, "name", None), str):
        raise KeyError(f"executor {name!r}: plugin {matches[0].value} has no str attribute 'name'")
    return executor  # type: ignore[no-any-return]  # checked just above


class _PluginGuard:
    """Holds a plugin executor to the contract in base.py."""

    def __init__(self, name: str, inner: Executor) -> None:
        self.name = name
        self.inner = inner

    async def run(self, payload: Any, ctx: ExecContext) -> ExecResult:
        started = time.monotonic()
        try:
            out = await self.inner.run(payload, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("executor %r raised on job %s", self.name, ctx.job_id, exc_info=True)
            stats = _stats({}, started)
            return finish(ctx, ok=False, result=None, error=f"executor {self.name} raised {exc!r}", stats=stats)
        if not isinstance(out, ExecResult):
            error = f"executor {self.name} returned {type(out).__name__}, not ExecResult"
            return finish(ctx, ok=False, result=None, error=error, stats=_stats({}, started))
        stats = _stats(out.stats, started)
        return finish(ctx, ok=out.ok, result=out.result, error=out.error, stats=stats, timed_out=out.timed_out)


def _stats(stats: Any, started: float) -> dict[str, float | int]:
    base: dict[str, float | int] = {
        "wall_ms": round((time.monotonic() - started) * 1000.0, 3),
        "cpu_ms": 0.0,
        "peak_rss_bytes": 0,
    }
    if isinstance(stats, dict):
        base.update({k: v for k, v in stats.items() if isinstance(k, str) and isinstance(v, (int, float))})
    return base
