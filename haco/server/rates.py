"""Throughput and latency over the last minutes, for the dashboard's chart: in memory, per replica.

A listener on applied batches (every replica applies the same entries, so every replica's figures
agree with the leader's). Jobs are counted into BUCKET_S buckets by their *replicated* times:
submitted by `created_at_ms`, ended by `finished_at_ms`, so a restarted replica replaying its
journal refills the same buckets instead of one spike at start. Latency is submission to end, of
jobs that completed. Nothing here is persisted or replicated; a bucket older than WINDOW_S is
dropped. Loop only (the listener runs there, and so does the route reading it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from raft_state.records import JobStatus

if TYPE_CHECKING:
    from haco.replica.node import Applied, Replica

BUCKET_S: Final = 5
WINDOW_S: Final = 600
WALK_MAX: Final = 20_000  #: submissions counted per applied batch
_LATENCIES_KEPT: Final = 512  #: per bucket, for its median (a sample beyond that)


@dataclass(slots=True)
class _Bucket:
    submitted: int = 0
    completed: int = 0
    failed: int = 0  #: failed, cancelled or expired
    latencies_ms: list[int] = field(default_factory=list)
    latency_max_ms: int = 0


class Rates:
    """Per-bucket counts fed by `on_applied`; `series(now_ms)` gives the chart's points."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica
        self._buckets: dict[int, _Bucket] = {}
        self._seen_seq = 0  #: job sequence numbers up to this one were counted as submitted

    def _bucket(self, at_ms: int) -> _Bucket:
        start = at_ms // 1000 // BUCKET_S * BUCKET_S
        b = self._buckets.get(start)
        if b is None:
            b = self._buckets[start] = _Bucket()
            if len(self._buckets) > 2 * WINDOW_S // BUCKET_S:
                newest = max(self._buckets)
                for old in [k for k in self._buckets if k < newest - WINDOW_S]:
                    del self._buckets[old]
        return b

    def on_applied(self, event: Applied) -> None:
        state = self._replica.state
        if event.replaced or state.job_seq < self._seen_seq:  # a snapshot was installed: start over
            self._buckets.clear()
            self._seen_seq = state.job_seq
            return
        if state.job_seq > self._seen_seq:
            self._count_submitted(state.job_seq)
        for job_id in event.ended:
            job = state.jobs.get(job_id)
            if job is None or job.finished_at_ms is None or not job.is_final:
                continue
            b = self._bucket(job.finished_at_ms)
            if job.status is JobStatus.COMPLETED:
                b.completed += 1
                latency = max(0, job.finished_at_ms - job.created_at_ms)
                b.latency_max_ms = max(b.latency_max_ms, latency)
                if len(b.latencies_ms) < _LATENCIES_KEPT:
                    b.latencies_ms.append(latency)
            else:
                b.failed += 1

    def _count_submitted(self, seq: int) -> None:
        """The newest jobs' creation times, walked from the end of the job table (insertion order),
        at most WALK_MAX per batch: a first batch after a snapshot load holds no recent submissions."""
        jobs = self._replica.state.jobs
        new = min(seq - self._seen_seq, WALK_MAX)
        self._seen_seq = seq
        try:
            for job_id in reversed(jobs):
                if new <= 0:
                    break
                new -= 1
                job = jobs.get(job_id)
                if job is not None:
                    self._bucket(job.created_at_ms).submitted += 1
        except RuntimeError:  # the tick thread inserted meanwhile: the rest is counted as missed
            pass

    def series(self, now_ms: int) -> dict[str, Any]:
        """Points oldest first, one per bucket over the window (empty ones too), rates per second."""
        last = now_ms // 1000 // BUCKET_S * BUCKET_S
        points = []
        for start in range(last - WINDOW_S + BUCKET_S, last + BUCKET_S, BUCKET_S):
            b = self._buckets.get(start) or _Bucket()
            lat = sorted(b.latencies_ms)
            points.append({"t": start, "submitted_per_s": b.submitted / BUCKET_S,
                           "completed_per_s": b.completed / BUCKET_S, "failed_per_s": b.failed / BUCKET_S,
                           "latency_p50_ms": lat[len(lat) // 2] if lat else None,
                           "latency_max_ms": b.latency_max_ms if lat else None})
        return {"bucket_s": BUCKET_S, "window_s": WINDOW_S, "points": points}


RATES: Final = web.AppKey("rates", Rates)
