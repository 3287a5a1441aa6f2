"""Apply progress of one replica: is its applied index keeping up with the commit index?

A replica whose Raft thread is alive but not applying (an entry that hangs, a stalled disk) answers
HTTP as usual with an applied index that no longer moves; left alone it serves stale reads and looks
healthy. `ApplyProgress` notes when each apply starts and ends (tick thread, two float stores) and,
when asked (any thread), reports for how long committed entries have waited with the applied index
standing still: past `stuck_after_s` the replica calls itself stuck, and `haco status`,
`/api/health/ready` and `/metrics` say so (haco.health).

The clock mark is taken at the *start* of an apply as well as its end, so an idle replica whose next
entry takes a moment is not mistaken for one that stopped an hour ago.

Test hook (off by default): `HACO_DEBUG_APPLY_HANG_FILE=PATH` read at start makes every apply wait
while PATH exists, so tests can make a replica stuck and release it again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HANG_FILE_ENV = "HACO_DEBUG_APPLY_HANG_FILE"
HANG_POLL_S = 0.05


class ApplyProgress:
    """Marks of the apply loop (tick thread) and the stuck verdict (any thread)."""

    def __init__(self, stuck_after_s: float, hang_file: Path | None = None) -> None:
        self.stuck_after_s = stuck_after_s
        self.hang_file = hang_file
        self._mark = time.monotonic()  #: when an apply last started or ended

    @classmethod
    def from_env(cls, stuck_after_s: float, env: Mapping[str, str]) -> ApplyProgress:
        hang = env.get(HANG_FILE_ENV)
        return cls(stuck_after_s, Path(hang) if hang else None)

    def before_apply(self) -> None:
        """Tick thread, before each entry (and, with the test hook, where an apply hangs)."""
        self._mark = time.monotonic()
        if self.hang_file is not None:
            while self.hang_file.exists():
                time.sleep(HANG_POLL_S)

    def after_apply(self) -> None:
        """Tick thread, after each entry."""
        self._mark = time.monotonic()

    def report(self, applied_index: int, commit_index: int) -> dict[str, Any]:
        """{"lag": committed entries not applied, "stalled_s": how long the applied index has stood
        still with entries waiting (None when none wait), "moved_at_ms": wall time of that last move,
        "stuck": stalled past stuck_after_s, "stuck_after_s"}."""
        lag = max(0, commit_index - applied_index)
        now = time.monotonic()
        stalled = round(now - self._mark, 1) if lag else None
        return {"lag": lag, "stalled_s": stalled, "moved_at_ms": int((time.time() - (now - self._mark)) * 1000),
                "stuck": stalled is not None and stalled > self.stuck_after_s, "stuck_after_s": self.stuck_after_s}


__all__ = ["HANG_FILE_ENV", "ApplyProgress"]
