"""Durable runs: the agent's side of attempts that run under an attempt runner and so survive
a worker restart (see DESIGN.md, "Worker restarts").

`DurableRuns` runs a durable executor's process through the runner (runner.py), re-adopts the
attempts a previous agent left in its records (attempts.py), and removes a record once the
attempt's final report was answered. Everything here runs on the agent's loop and never blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from haco.worker import attempts
from haco.worker.attempts import AttemptStore, Held
from haco.worker.executors import ExecContext, ExecResult, Executor, PayloadError
from haco.worker.executors._process import ProcessOutcome
from haco.worker.joblog import Progress, read_progress
from haco.worker.protocol import Attempt
from haco.worker.runner import record_job

log = logging.getLogger(__name__)


class Durable(Protocol):
    """An executor whose process can run under an attempt runner (the shell executor)."""

    def prepare(self, payload: Any, ctx: ExecContext) -> Any: ...  # .argv, .env, .cwd
    def result(self, ctx: ExecContext, outcome: ProcessOutcome) -> ExecResult: ...


@dataclass(slots=True)
class FileProgress:
    """Progress read from a runner-owned log's progress.json (LogService reads `.progress`)."""

    progress: Progress | None = None


def is_durable(executor: Executor) -> bool:
    return bool(getattr(executor, "durable", False)) and hasattr(executor, "prepare") and hasattr(executor, "result")


class DurableRuns:
    def __init__(self, workdir: Path, worker_id: str, logs_root: Path, log_bytes_max: int) -> None:
        self.store = AttemptStore(workdir, worker_id)
        self.worker_id = worker_id
        self.logs_root = logs_root
        self.log_bytes_max = log_bytes_max
        self.records: set[Attempt] = set()  #: attempts whose record directory exists
        self.progress: dict[Attempt, FileProgress] = {}
        self.forks = attempts.ForkServer(workdir / "attempt-runners.log")

    async def close(self) -> None:
        """Stop the fork server; the runners it started live on."""
        await self.forks.close()

    async def run(self, key: Attempt, kind: str, executor: Durable, payload: Any, ctx: ExecContext) -> ExecResult:
        """Run one attempt through a new runner; raises only CancelledError (after killing it)."""
        try:
            spec = executor.prepare(payload, ctx)
        except PayloadError as exc:
            return ExecResult(False, None, str(exc), _no_stats())
        doc = {"kind": kind, "argv": list(spec.argv), "env": attempts.env_overrides(spec.env, dict(os.environ)),
               "cwd": str(spec.cwd), "timeout_s": ctx.timeout_s, "workdir": str(ctx.workdir),
               "result_bytes_max": ctx.result_bytes_max, "log_root": str(self.logs_root),
               "log_bytes_max": self.log_bytes_max}
        directory = await asyncio.to_thread(self.store.create, key, doc)
        self.records.add(key)
        spawn = asyncio.ensure_future(self.forks.launch(directory))
        try:
            await asyncio.shield(spawn)  # a cancel mid-launch still finds the runner to kill
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                await spawn
            await self._kill(key, directory)
            raise
        except OSError as exc:
            await self._kill(key, directory)
            return ExecResult(False, None, f"cannot start the attempt runner: {exc}", _no_stats())
        return await self._wait(key, directory, executor, ctx)

    async def adopt(self, held: Held, executor: Durable) -> ExecResult:
        """Wait for an attempt a previous agent started, then build its result."""
        spec = held.spec
        ctx = ExecContext(held.key[0], held.key[1], float(spec["timeout_s"]), Path(spec["workdir"]), {},
                          int(spec["result_bytes_max"]), None, worker_id=self.worker_id)
        self.records.add(held.key)
        return await self._wait(held.key, held.directory, executor, ctx)

    async def scan(self, lookup: Callable[[str], Executor]) -> list[tuple[Held, Durable]]:
        """The records a previous agent left that this one holds; kills and removes the others."""
        found = await asyncio.to_thread(self.store.scan)
        kept = []
        for held in found:
            executor = self._adoptable(held, lookup)
            if executor is None:
                log.warning("attempt not adoptable, its processes killed job=%s attempt=%d kind=%s worker=%s",
                            held.key[0], held.key[1], held.spec.get("kind"), held.spec.get("worker_id"))
                await self._kill(held.key, held.directory)
                continue
            kept.append((held, executor))
        return kept

    async def watch(self, key: Attempt, kind: str) -> Callable[[int], None]:
        """Record a non-durable attempt, so a restarted agent kills its processes (never adopts
        them); returns the `on_spawn` that records each process it starts."""
        directory = await asyncio.to_thread(self.store.create, key, {"kind": kind})
        self.records.add(key)
        return lambda pid: record_job(directory, pid)  # a write of a few bytes, on the loop

    async def unwatch(self, key: Attempt) -> None:
        await self._forget(key)

    def settle(self, busy: Iterable[Attempt]) -> None:
        """Remove the records of attempts neither running nor waiting for an answer."""
        busy = set(busy)
        for key in [k for k in self.records if k not in busy]:
            self.records.discard(key)
            self.progress.pop(key, None)
            asyncio.get_running_loop().run_in_executor(None, self.store.remove, key)

    def read_progress(self, running: Iterable[Attempt]) -> None:
        """Blocking (call through to_thread): refresh `progress` from the runner-owned logs."""
        for key in running:
            if key in self.records:
                self.progress.setdefault(key, FileProgress()).progress = read_progress(self.logs_root, *key)

    # ---- internals ---------------------------------------------------------------------------

    def _adoptable(self, held: Held, lookup: Callable[[str], Executor]) -> Durable | None:
        if held.spec.get("worker_id") != self.worker_id:
            return None
        try:
            executor = lookup(str(held.spec.get("kind")))
        except KeyError:
            return None
        return executor if is_durable(executor) else None  # type: ignore[return-value]

    async def _wait(self, key: Attempt, directory: Path, executor: Durable, ctx: ExecContext) -> ExecResult:
        try:
            finished = await attempts.wait_finished(directory, None)
        except asyncio.CancelledError:
            await self._kill(key, directory)
            raise
        if finished.outcome is None:
            return ExecResult(False, None, finished.error or "failed", _no_stats())
        return executor.result(ctx, finished.outcome)

    async def _kill(self, key: Attempt, directory: Path, proc: asyncio.subprocess.Process | None = None) -> None:
        try:
            await attempts.stop(directory, proc)
        except asyncio.CancelledError:  # cancelled again mid-cleanup: no more grace (a brief block)
            attempts.kill_now(directory)
            raise
        finally:
            await self._forget(key)

    async def _forget(self, key: Attempt) -> None:
        self.records.discard(key)
        self.progress.pop(key, None)
        await asyncio.to_thread(self.store.remove, key)


def _no_stats() -> dict[str, float | int]:
    return {"wall_ms": 0.0, "cpu_ms": 0.0, "peak_rss_bytes": 0}
