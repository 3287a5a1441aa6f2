"""Executors: how a worker runs one attempt of a job, by job `type`.

Built-ins `shell`, `python`, `pytest`, `benchmark` and `noop`, each a small module; plugins come from
the entry-point group `haco.executors` (see registry.py). The contract every executor keeps is in
base.py. Subprocess executors share `_process.run_process` (own session, deadline, group kill) and
`_monitor.SessionMonitor` (wall, CPU and peak RSS figures).

This package's import is kept light (no asyncio, no psutil) because `_pyrunner` runs under it in
every `python` job's subprocess; executor modules load on first `get_executor`.
"""

from haco.worker.executors.base import (
    ExecContext,
    ExecResult,
    Executor,
    PayloadError,
    executor_names,
    get_executor,
)

__all__ = ["ExecContext", "ExecResult", "Executor", "PayloadError", "executor_names", "get_executor"]
