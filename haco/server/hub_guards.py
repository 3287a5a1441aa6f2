"""Guards on what a worker websocket may send: frame rate, report ownership, reported sizes.

Kept apart from hub.py so the hub reads as the protocol; each guard refuses without touching
the log, so hostile frames cost no Raft entries (and leave the state digest alone).
"""

from __future__ import annotations

import time
from typing import Any, Final

from raft_state import State, canonical

FRAME_RATE_MAX: Final = 5000  #: worker frames per second per connection, sustained; past it the socket is closed
FRAME_BURST_MAX: Final = 10000
RESULT_BYTES_MAX: Final = 256 * 1024  #: a reported result (canonical msgpack); larger ones become a marker
STATS_BYTES_MAX: Final = 16 * 1024


class FrameBudget:
    """Token bucket per websocket: FRAME_RATE_MAX frames a second sustained, FRAME_BURST_MAX at once."""

    __slots__ = ("tokens", "at")

    def __init__(self) -> None:
        self.tokens, self.at = float(FRAME_BURST_MAX), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(float(FRAME_BURST_MAX), self.tokens + (now - self.at) * FRAME_RATE_MAX)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def report_verdict(state: State, worker_id: str, job_id: str, attempt: int) -> dict[str, Any] | None:
    """None when the report should be proposed. A report naming another worker's attempt is refused
    for good; one naming a job or attempt this replica does not know yet (it may lag behind a new
    assignment) is answered `retry`, so neither reaches the log."""
    job = state.jobs.get(job_id)
    if job is None or not 1 <= attempt <= len(job.attempts):
        return {"retry": True, "code": "UNKNOWN_ATTEMPT"}
    if job.attempts[attempt - 1].worker_id != worker_id:
        return {"ok": False, "code": "NOT_YOUR_ATTEMPT", "message": f"attempt {attempt} of {job_id} is not yours"}
    return None


def bounded(value: Any, limit: int) -> bytes:
    """Canonical msgpack of a reported value; one past `limit` bytes is replaced by a marker, so
    the attempt still ends and the log never holds an outsized entry."""
    packed = canonical(value)
    if len(packed) > limit:
        return canonical({"error": f"reported value too large: {len(packed)} bytes, limit {limit}"})
    return packed


__all__ = ["FRAME_BURST_MAX", "FRAME_RATE_MAX", "RESULT_BYTES_MAX", "STATS_BYTES_MAX", "FrameBudget", "bounded",
           "report_verdict"]
