"""A pytest plugin (`-p haco.worker.executors._pytest_progress`): tests run of tests collected,
written to HACO_PROGRESS_FILE at most five times a second and once at the end.

Loaded into the job's pytest process by the `pytest` executor; imports nothing beyond the stdlib.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

_INTERVAL_S = 0.2
_state = {"total": 0, "done": 0, "at": 0.0}


def _write(force: bool) -> None:
    path = os.environ.get("HACO_PROGRESS_FILE")
    now = time.monotonic()
    if not path or (not force and now - _state["at"] < _INTERVAL_S):
        return
    _state["at"] = now
    total, done = int(_state["total"]), int(_state["done"])
    fraction = min(1.0, done / total) if total else 0.0
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"fraction": fraction, "message": f"{done}/{total} tests"}, fh)
        os.replace(tmp, path)
    except OSError:
        pass


def pytest_collection_finish(session: Any) -> None:
    _state["total"] = len(session.items)
    _write(True)


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    _state["done"] += 1
    _write(False)


def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    _write(True)
