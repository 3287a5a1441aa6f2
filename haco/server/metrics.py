"""`GET /metrics`: Prometheus text for one replica.

Two kinds of series. Event-driven ones (submit latency, scheduling latency) are prometheus-client
Histograms that live as long as the app and are observed where the event happens (a middleware,
the scheduler's `on_assigned` hook). Figures the replica already keeps (Raft indexes, counters held
by the replica, hub and scheduler, the state's job and worker tables) are read at scrape time by a
custom collector, so nothing is double-counted and nothing is re-created per scrape.

Every series is per replica; a dashboard takes the leader's (`haco_is_leader == 1`) for cluster-wide
figures such as queue depth, or any replica's, since they converge on the same applied index.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haco.replica.raft.wire import REASONS as RAFT_REFUSAL_REASONS
from raft_state import Assignment, State
from raft_state.queries import QueueSummary, queue_summaries
from raft_state.records import JobStatus, WorkerStatus

if TYPE_CHECKING:
    from haco.replica.node import Replica
    from haco.scheduler.core import Scheduler
    from haco.server.hub import Hub

SUBMIT_PATHS = frozenset({"/api/jobs", "/api/jobs/batch"})
SUBMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCHEDULING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
ROLES = ("leader", "follower", "candidate", "stopped")
COUNT_CHUNK = 20_000  #: ready entries counted per GIL hold
IMPLICIT_QUEUES_MAX = 64  #: queue names without a record labelled one by one; the rest are summed as "(other)"


class Metrics:
    """The app's registry: two histograms and the scrape-time collector."""

    def __init__(self, replica: Replica, hub: Hub, scheduler: Scheduler) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.submit_latency = Histogram(
            "haco_submit_latency_seconds", "POST /api/jobs and /api/jobs/batch, request in to response out",
            ["outcome"], buckets=SUBMIT_BUCKETS, registry=self.registry)
        self.submit_ok = self.submit_latency.labels(outcome="ok")  # a labels() lookup per request cost ~2 us
        self.submit_error = self.submit_latency.labels(outcome="error")
        self.scheduling_latency = Histogram(
            "haco_scheduling_latency_seconds",
            "from when a job became runnable (committed, or its backoff ended) to its assignment; "
            "observed by the leader; jobs with dependencies are not observed", buckets=SCHEDULING_BUCKETS,
            registry=self.registry)
        self.registry.register(ReplicaCollector(replica, hub, scheduler))

    def observe_assigned(self, state: State, items: list[Assignment], at_ms: int) -> None:
        """The scheduler's hook, on the loop, right after an AssignJobs was accepted."""
        for item in items:
            job = state.jobs.get(item.job_id)
            if job is None or job.spec.depends_on:
                continue
            runnable_ms = max(job.created_at_ms, job.not_before_ms)
            self.scheduling_latency.observe(max(0, at_ms - runnable_ms) / 1000)

    async def render(self) -> bytes:
        return await asyncio.to_thread(generate_latest, self.registry)  # counting the queue may take a while


METRICS = web.AppKey("metrics", Metrics)


def install(app: web.Application, replica: Replica, hub: Hub, scheduler: Scheduler) -> Metrics:
    """Create the app's metrics, hook the scheduler, and time submissions (call from build_app)."""
    metrics = Metrics(replica, hub, scheduler)
    app[METRICS] = metrics
    scheduler.on_assigned = metrics.observe_assigned
    app.middlewares.append(_timing_middleware)
    return metrics


@web.middleware
async def _timing_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                             ) -> web.StreamResponse:
    if request.method != "POST" or request.path not in SUBMIT_PATHS:
        return await handler(request)
    started = time.perf_counter()
    ok = False
    try:
        response = await handler(request)
        ok = response.status < 400
        return response
    finally:  # errors raised here become 4xx/5xx in the error middleware outside this one
        metrics = request.app[METRICS]
        (metrics.submit_ok if ok else metrics.submit_error).observe(time.perf_counter() - started)


class ReplicaCollector(Collector):
    """Figures read at scrape time from the replica, its hub and scheduler, and the state."""

    def __init__(self, replica: Replica, hub: Hub, scheduler: Scheduler) -> None:
        self.replica, self.hub, self.scheduler = replica, hub, scheduler

    def collect(self) -> Iterator[Metric]:
        r = self.replica
        info = r.info()
        role = GaugeMetricFamily("haco_role", "1 for this replica's current Raft role", labels=["role"])
        for name in ROLES:
            role.add_metric([name], 1.0 if info["role"] == name else 0.0)
        yield role
        yield _gauge("haco_is_leader", "1 when this replica leads", 1.0 if info["role"] == "leader" else 0.0)
        yield _gauge("haco_has_leader", "1 when this replica knows a leader", 0.0 if info["leader"] is None else 1.0)
        yield _gauge("haco_raft_term", "current Raft term", info["term"])
        yield _gauge("haco_raft_commit_index", "Raft commit index", info["commit_index"])
        yield _gauge("haco_raft_applied_index", "last index applied to the state", info["applied_index"])
        yield _gauge("haco_raft_log_entries", "entries in the Raft log (since the last compaction)",
                     info["log_entries"])
        yield _gauge("haco_snapshot_index", "Raft index of the current snapshot", info["snapshot_index"])
        age = info["snapshot_age_s"]
        yield _gauge("haco_snapshot_age_seconds", "age of the current snapshot file (-1: none yet)",
                     -1.0 if age is None else age)
        yield _gauge("haco_snapshot_duration_seconds", "how long the last snapshot write took",
                     info["snapshot_seconds"])
        yield _counter("haco_snapshot_installs", "snapshots received from a leader and loaded",
                       info["snapshot_installs"])
        yield _counter("haco_elections", "elections this replica started as a candidate", info["elections"])
        apply = info.get("apply") or {}
        yield _gauge("haco_apply_stuck", "1 when committed entries have waited longer than the bound (10 s) on an "
                     "applied index that does not move", 1.0 if apply.get("stuck") else 0.0)
        yield _gauge("haco_apply_stalled_seconds", "how long committed entries have waited on an applied index "
                     "that does not move (0: none waiting)", float(apply.get("stalled_s") or 0.0))
        yield _gauge("haco_snapshot_failures", "snapshot writes failed in a row", info.get("snapshot_failures") or 0)
        refused = CounterMetricFamily("haco_raft_frames_refused", "Raft-port frames or connections refused "
                                      "(failed a wire check: bad tag, replay, length, handshake, timeout)",
                                      labels=["reason"])
        counts = info.get("raft_wire", {}).get("refused", {})
        for reason in RAFT_REFUSAL_REASONS:
            refused.add_metric([reason], counts.get(reason, 0))
        yield refused
        yield _gauge("haco_writes_in_flight", "proposals awaiting an outcome", info["in_flight"])
        yield _counter("haco_admission_refusals", "writes refused by admission control (503 Retry-After)",
                       r.admission_refused)
        yield _counter("haco_forwarded_commands", "commands proposed while following, forwarded to the leader",
                       r.forwarded)
        yield _counter("haco_stale_reports_refused", "worker reports refused as stale (old attempt)",
                       self.hub.stale_reports)
        yield _counter("haco_assignments", "assignments this replica committed while leading",
                       self.scheduler.assigned)
        yield from self._state_figures(r.state)
        with r.state_lock:  # collect runs in a worker thread (render); the summary is O(queues + classes)
            rows, other = queue_summaries(r.state, IMPLICIT_QUEUES_MAX)
        yield from _queue_figures(rows, other)

    def _state_figures(self, state: State) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("haco_jobs", "jobs in the state by status", labels=["state"])
        counts = dict(state.counts)
        for status in JobStatus:
            jobs.add_metric([status.value], counts.get(status, 0))
        yield jobs
        queue = GaugeMetricFamily("haco_queue_ready", "runnable jobs (pending, dependencies met, backoff over) "
                                  "by priority", labels=["priority"])
        for priority, n in sorted(_ready_by_priority(state).items()):
            queue.add_metric([str(priority)], n)
        yield queue
        by_state = Tally(str(w.status) for w in list(state.workers.values()))
        connected = set(self.hub.conns)
        workers = GaugeMetricFamily("haco_workers", "registered workers by state", labels=["state"])
        for wstatus in WorkerStatus:
            workers.add_metric([wstatus.value], by_state.get(wstatus.value, 0))
        yield workers
        yield _gauge("haco_workers_connected", "worker websockets open on this replica", len(connected))
        yield _gauge("haco_queue_paused", "1 when the queue is paused", 1.0 if state.paused else 0.0)


def _queue_figures(rows: list[QueueSummary], other: QueueSummary | None) -> Iterator[Metric]:
    """Per named queue: at most 256 records, `default` and IMPLICIT_QUEUES_MAX other names, so the
    label set stays bounded whatever names jobs carry."""
    jobs = GaugeMetricFamily("haco_queue_jobs", "jobs by named queue and status", labels=["queue", "state"])
    ready = GaugeMetricFamily("haco_queue_jobs_ready", "runnable jobs (pending, dependencies met, backoff over) "
                              "by named queue, paused or at its limit or not", labels=["queue"])
    for q in rows if other is None else [*rows, other]:
        for status, n in q.counts.items():
            jobs.add_metric([q.settings.name, status.value], n)
        ready.add_metric([q.settings.name], q.ready)
    yield jobs
    yield ready
    settings = [("haco_queue_max_running", "running jobs the queue may hold at most (0: no limit)", "max_running"),
                ("haco_queue_weight", "the queue's weight in the fair share between queues", "weight"),
                ("haco_queue_is_paused", "1 when the named queue is paused", "paused")]
    for name, doc, field in settings:
        family = GaugeMetricFamily(name, doc, labels=["queue"])
        for q in rows:
            family.add_metric([q.settings.name], float(getattr(q.settings, field)))
        yield family


def _ready_by_priority(state: State) -> dict[int, int]:
    """Counts of the ready queue's entries, (-priority, seq, job_id, class), by priority.

    Runs in a worker thread while the tick thread may apply: `list()` copies the live map in one C
    call, then the count goes in chunks so the GIL changes hands between them (one C call over a
    million entries would hold it, and the event loop, for about half a second).
    """
    live: Any = getattr(state.ready, "_live", {})
    entries = list(live.values())
    tally: Tally[int] = Tally()
    for start in range(0, len(entries), COUNT_CHUNK):
        tally.update(map(itemgetter(0), entries[start:start + COUNT_CHUNK]))
    return {-neg: n for neg, n in tally.items()}


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)
