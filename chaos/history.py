"""The run's history as JSONL: one JSON object per line, written as things happen.

Record kinds (field `kind`):

- `op`: one client operation: `client`, `op` (submit | cancel), `key`, `job_id`, `invoke_mono`,
  `invoke_wall`, `complete_mono`, `complete_wall`, `outcome` (ok | fail | unknown), `error`, and
  for a submit `retry` (the same key sent again by the workload) and `role` (plain | dag | failing | long | cancel).
- `fault`: one fault: `fault` (kind), `target`, `mono`, `wall`; `heal_mono` once it was undone; a
  journal fault also `damage`, `detail` (None: skipped, too few records), `exit_code`,
  `cut_logged`, `caught_up_s`, `rejoined`.
- `executions`: after the drain, `rows` ([job_id, attempt, pid]) that the shell jobs appended.
- `digest`: an (index, digest) pair a replica reported: `replica`, `index`, `digest`.
- `role`: a replica's logged role transition: `replica`, `role`, `term`.
- `final_job`: a job as the cluster holds it after the drain (the API's full job JSON under `job`).
- `results`: one replica's results rows after the drain: `replica`, `rows` ([job_id, attempt, outcome]).
- `final`: figures gathered after the drain: `stale_refused`, `drained`, `jobs`, `common_index`,
  `applied` (the stuck-replica probe: target, seconds, per-replica applied index), `faults_done`, ...

Monotonic times come from this process's `time.monotonic()`, so they compare across records.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["HistoryWriter", "read_history", "now"]


def now() -> tuple[float, float]:
    """(monotonic, wall) seconds."""
    return time.monotonic(), time.time()


class HistoryWriter:
    """Appends records to a JSONL file, one line each, flushed at once (a killed run keeps its history)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"kind": kind, **fields}
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
        return record

    def close(self) -> None:
        """Idempotent."""
        with self._lock:
            self._file.close()


def read_history(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete record of a history file; a torn last line (a killed writer) is skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record
