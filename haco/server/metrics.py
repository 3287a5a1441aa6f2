"""`GET /metrics`: Prometheus text, built per scrape from the replica's current figures."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest


def render(app: web.Application) -> bytes:
    from .app import HUB, REPLICA, SCHEDULER
    replica = app[REPLICA]
    info = replica.info()
    reg = CollectorRegistry()
    def gauge(name: str, doc: str, value: float, **labels: str) -> None:
        g = Gauge(name, doc, list(labels), registry=reg)
        (g.labels(**labels) if labels else g).set(value)
    gauge("haco_is_leader", "1 when this replica leads", 1.0 if info["role"] == "leader" else 0.0)
    gauge("haco_raft_term", "Raft term", info["term"])
    gauge("haco_raft_commit_index", "Raft commit index", info["commit_index"])
    gauge("haco_raft_applied_index", "last applied index", info["applied_index"])
    gauge("haco_raft_log_entries", "entries in the Raft log", info["log_entries"])
    gauge("haco_snapshot_index", "index of the current snapshot", info["snapshot_index"])
    gauge("haco_snapshot_seconds", "duration of the last snapshot write", info["snapshot_seconds"])
    gauge("haco_elections_total", "elections this replica took part in as candidate", info["elections"])
    gauge("haco_writes_in_flight", "proposals awaiting an outcome", info["in_flight"])
    jobs = Gauge("haco_jobs", "jobs by state", ["state"], registry=reg)
    for status, n in replica.state.counts.items():
        jobs.labels(state=str(status)).set(n)
    gauge("haco_queue_ready", "runnable jobs", len(replica.state.ready))
    workers = Gauge("haco_workers", "workers by state", ["state"], registry=reg)
    by_state: dict[str, int] = {}
    for w in list(replica.state.workers.values()):
        by_state[str(w.status)] = by_state.get(str(w.status), 0) + 1
    for s, n in by_state.items():
        workers.labels(state=s).set(n)
    gauge("haco_stale_reports_refused", "worker reports refused as stale", app[HUB].stale_reports)
    gauge("haco_assignments_total", "assignments committed by this replica as leader", app[SCHEDULER].assigned)
    return generate_latest(reg)
