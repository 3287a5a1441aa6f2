"""Retention of attempt logs: older than a window, or past a disk budget, oldest first.

`sweep` is blocking (directory walks, unlinks): run it from a thread. Attempts in `active` (the
worker still runs or reports them) are never removed. An attempt directory without `end.json`
that nobody runs (its writer died) counts as ended at its newest file's modification time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from haco.worker.joblog.format import END, META, job_dir_name, read_json

KEEP_S_DEFAULT: Final = 7 * 24 * 3600.0
BUDGET_BYTES_DEFAULT: Final = 10 * 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SweepResult:
    removed: int  #: attempt directories removed
    freed_bytes: int
    kept: int
    kept_bytes: int


@dataclass(frozen=True, slots=True)
class _Entry:
    path: Path
    ended_s: float
    size: int


def sweep(root: Path, *, keep_s: float = KEEP_S_DEFAULT, budget_bytes: int = BUDGET_BYTES_DEFAULT,
          now_s: float, active: Collection[tuple[str, int]] = ()) -> SweepResult:
    """Remove attempts that ended more than `keep_s` ago, then the oldest ended ones while the
    rest exceed `budget_bytes`."""
    protected = {(job_dir_name(j), str(int(a))) for j, a in active}
    entries: list[_Entry] = []
    active_bytes = 0
    for job_dir in _dirs(Path(root)):
        for attempt in _dirs(job_dir):
            size, newest = _usage(attempt)
            if (job_dir.name, attempt.name) in protected:
                active_bytes += size
                continue
            end = read_json(attempt / END)
            ended_ms = end.get("ended_ms") if end else None
            ended_s = ended_ms / 1000.0 if isinstance(ended_ms, int) else newest
            entries.append(_Entry(attempt, ended_s, size))
    entries.sort(key=lambda e: e.ended_s)
    total = active_bytes + sum(e.size for e in entries)
    removed = freed = 0
    for entry in entries:
        if now_s - entry.ended_s <= keep_s and total <= budget_bytes:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
        freed += entry.size
        total -= entry.size
        _remove_if_empty(entry.path.parent)
    return SweepResult(removed, freed, len(entries) - removed, total)


def _dirs(path: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _usage(directory: Path) -> tuple[int, float]:
    """(bytes, newest modification time) of the files in an attempt directory."""
    size, newest = 0, 0.0
    try:
        for entry in os.scandir(directory):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            size += st.st_size
            newest = max(newest, st.st_mtime)
    except OSError:
        pass
    if not newest:
        try:
            newest = directory.stat().st_mtime
        except OSError:
            pass
    return size, newest


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def attempts(root: Path) -> list[tuple[str, int]]:
    """(job id, attempt) of every attempt directory under `root` that names its job in meta.json."""
    found = []
    for job_dir in _dirs(Path(root)):
        for attempt in _dirs(job_dir):
            meta = read_json(attempt / META)
            if meta and isinstance(meta.get("job_id"), str) and isinstance(meta.get("attempt"), int):
                found.append((meta["job_id"], meta["attempt"]))
    return found


__all__ = ["BUDGET_BYTES_DEFAULT", "KEEP_S_DEFAULT", "SweepResult", "attempts", "sweep"]
