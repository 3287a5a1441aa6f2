"""Subprocess side of the `python` and `benchmark` executors: import `module:function`, call it, report.

Usage: `python -m haco.worker.executors._pyrunner REQUEST.json STATUS.json RESULT.json`

REQUEST: `{"function", "args", "kwargs", "pythonpath", "mode": "call" | "bench", "repeat", "warmup"}`.
The working directory and `pythonpath` entries go first on sys.path. Async functions (anything
returning an awaitable) are run to completion on a fresh event loop.

STATUS, always written unless the process dies: `{"ok", "error"?, "traceback"?, "times_s"?, "cpu_ms",
"peak_rss_bytes"}`; cpu and peak RSS are this process's exact getrusage figures (self plus waited-for
children). RESULT (mode "call", ok only): the return value as compact UTF-8 JSON, written
separately so the parent can size it without parsing it.

Deliberately imports nothing heavy (no asyncio unless the function is async, nothing from haco
beyond this package's light __init__), so a call costs little more than interpreter start-up.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

_TRACEBACK_CHARS_MAX = 8192


def main(argv: list[str]) -> int:
    request_path, status_path, result_path = argv
    with open(request_path, encoding="utf-8") as fh:
        request = json.load(fh)
    sys.path[:0] = [os.getcwd(), *request.get("pythonpath", [])]
    status: dict[str, Any]
    try:
        fn = _resolve(request["function"])
        if request.get("mode") == "bench":
            status = {"ok": True, "times_s": _bench(fn, request)}
        else:
            encoded = _encode(_call(fn, request["args"], request["kwargs"]))
            with open(result_path, "wb") as fh:
                fh.write(encoded)
            status = {"ok": True}
    except BaseException as exc:  # noqa: BLE001 - the job's failure is our report, whatever it is
        lines = traceback.format_exception_only(type(exc), exc)
        status = {
            "ok": False,
            "error": lines[-1].strip() if lines else type(exc).__name__,
            "traceback": _job_traceback(exc)[-_TRACEBACK_CHARS_MAX:],
        }
    status.update(_usage())
    with open(status_path, "w", encoding="utf-8") as fh:
        json.dump(status, fh)
    return 0


def _job_traceback(exc: BaseException) -> str:
    """The traceback without this runner's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _resolve(ref: str) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj  # type: ignore[no-any-return]


def _call(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    value = fn(*args, **kwargs)
    if inspect.isawaitable(value):
        import asyncio

        async def _await() -> Any:
            return await value

        value = asyncio.run(_await())
    return value


def _bench(fn: Callable[..., Any], request: dict[str, Any]) -> list[float]:
    args, kwargs = request["args"], request["kwargs"]
    runs = request["warmup"] + request["repeat"]
    progress = _Progress(runs)
    for _ in range(request["warmup"]):
        _call(fn, args, kwargs)
        progress.step()
    times = []
    for _ in range(request["repeat"]):
        start = time.perf_counter()
        _call(fn, args, kwargs)
        times.append(time.perf_counter() - start)
        progress.step()
    progress.write(force=True)
    return times


class _Progress:
    """Runs done of `runs`, written to HACO_PROGRESS_FILE at most five times a second (outside the timed calls)."""

    def __init__(self, runs: int) -> None:
        self.path = os.environ.get("HACO_PROGRESS_FILE")
        self.runs, self.done, self.at = runs, 0, 0.0

    def step(self) -> None:
        self.done += 1
        self.write(force=False)

    def write(self, *, force: bool) -> None:
        now = time.monotonic()
        if not self.path or (not force and now - self.at < 0.2):
            return
        self.at = now
        try:
            with open(self.path + ".tmp", "w", encoding="utf-8") as fh:
                json.dump({"fraction": self.done / self.runs, "message": f"run {self.done} of {self.runs}"}, fh)
            os.replace(self.path + ".tmp", self.path)
        except OSError:
            pass


def _encode(value: Any) -> bytes:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"result is not JSON-able: {exc}") from None
    return text.encode()


def _usage() -> dict[str, float | int]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return {"cpu_ms": cpu_s * 1000.0, "peak_rss_bytes": max(own.ru_maxrss, kids.ru_maxrss) * unit}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
