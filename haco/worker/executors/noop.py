"""`noop`: return the payload, in-process and at once; the fair comparison with a Celery no-op task.

Any JSON-able payload is its own result (bounded like every result). Stats: wall_ms of the call,
cpu_ms 0 (no process of its own), peak_rss_bytes the worker process's high-water mark.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from typing import Any

from haco.worker.executors.base import ExecContext, ExecResult, finish

log = logging.getLogger(__name__)


class NoopExecutor:
    name = "noop"
    uses_workdir = False  #: the agent skips creating (and removing) a scratch dir for it

    async def run(self, payload: Any, ctx: ExecContext) -> ExecResult:
        started = time.perf_counter()
        stats: dict[str, float | int] = {"cpu_ms": 0.0, "peak_rss_bytes": _worker_peak_rss()}
        result = finish(ctx, ok=True, result=payload, error=None, stats=stats)
        stats["wall_ms"] = round((time.perf_counter() - started) * 1000.0, 3)  # after bounding: most of the work
        return result


def _worker_peak_rss() -> int:
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
