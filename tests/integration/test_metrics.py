"""`GET /metrics` on a real cluster: it parses with the Prometheus client's parser, and its figures move
when jobs run and when the leader changes."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .cluster import Cluster, eventually, http

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(c: Cluster, i: int) -> Samples:
    with urllib.request.urlopen(c.nodes[i].url + "/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("haco_"), family.name
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def v(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_move_when_jobs_run_and_when_the_leader_changes(cluster_factory: Callable[..., Cluster]) -> None:
    c = cluster_factory(3)
    leader = c.leader()
    follower = (leader + 1) % 3
    before_l, before_f = scrape(c, leader), scrape(c, follower)
    assert v(before_l, "haco_is_leader") == 1 and v(before_l, "haco_role", role="leader") == 1
    assert v(before_f, "haco_is_leader") == 0 and v(before_f, "haco_role", role="follower") == 1
    assert v(before_l, "haco_workers", state="active") == 0 and v(before_l, "haco_workers_connected") == 0
    for name in ("haco_raft_commit_index", "haco_raft_log_entries", "haco_snapshot_age_seconds",
                 "haco_snapshot_duration_seconds", "haco_elections_total", "haco_stale_reports_refused_total",
                 "haco_admission_refusals_total", "haco_workers_connected"):
        assert (name, ()) in before_l, name

    n = 12
    ids = []
    for k in range(n):
        status, body = http("POST", c.nodes[follower].url + "/api/jobs",
                            {"type": "noop", "payload": {}, "priority": 5 if k % 2 else 1, "key": f"m{k}"})
        assert status == 201, body
        ids.append(body["job_id"])
    status, body = http("POST", c.nodes[follower].url + "/api/jobs", {"type": "noop", "bogus": 1})
    assert status == 400
    queued = eventually(lambda: (s := scrape(c, leader)) and s.get(("haco_jobs", (("state", "pending"),))) == n and s,
                        10, "the leader applied the submissions")
    assert v(queued, "haco_queue_ready", priority="5") == v(queued, "haco_queue_ready", priority="1") == n // 2
    c.start_worker("w1", capacity=4)

    def all_completed() -> bool:
        return scrape(c, leader).get(("haco_jobs", (("state", "completed"),)), 0) >= n
    eventually(all_completed, 30, f"{n} jobs completed in the leader's metrics")
    after_l, after_f = scrape(c, leader), scrape(c, follower)
    assert v(after_l, "haco_workers", state="active") == 1 and v(after_l, "haco_workers_connected") == 1
    assert ("haco_queue_ready", (("priority", "5"),)) not in after_l
    assert v(after_l, "haco_jobs", state="completed") - v(before_l, "haco_jobs", state="completed") == n
    assert v(after_l, "haco_raft_applied_index") > v(before_l, "haco_raft_applied_index")
    assert v(after_l, "haco_assignments_total") - v(before_l, "haco_assignments_total") == n
    assert v(after_l, "haco_scheduling_latency_seconds_count") - v(before_l, "haco_scheduling_latency_seconds_count") == n
    assert v(after_l, "haco_scheduling_latency_seconds_sum") >= 0
    # the follower timed the submissions it took and forwarded them through Raft
    assert v(after_f, "haco_submit_latency_seconds_count", outcome="ok") == n
    assert v(after_f, "haco_submit_latency_seconds_count", outcome="error") == 1
    assert v(after_f, "haco_submit_latency_seconds_bucket", outcome="ok", le="+Inf") == n
    assert v(after_f, "haco_forwarded_commands_total") - v(before_f, "haco_forwarded_commands_total") >= n
    assert v(after_l, "haco_forwarded_commands_total") == v(before_l, "haco_forwarded_commands_total")

    grafana = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in grafana["panels"] for t in p.get("targets", [])]
    used = {name for e in exprs for name in re.findall(r"\bhaco_[a-z_]+", e)}
    served = {name for name, _ in after_l} | {name for name, _ in after_f} | {name for name, _ in queued}
    assert len(used) >= 15 and used <= served, f"the Grafana dashboard queries series /metrics lacks: {used - served}"

    c.kill(leader, signal.SIGKILL)
    new = c.leader(timeout_s=30)
    assert new != leader
    changed = eventually(lambda: (s := scrape(c, new)) and v(s, "haco_is_leader") == 1 and s, 10, "new leader's metrics")
    assert v(changed, "haco_raft_term") > v(before_l, "haco_raft_term")
    assert v(changed, "haco_elections_total") >= 1
    assert v(changed, "haco_role", role="leader") == 1 and v(changed, "haco_role", role="follower") == 0
    assert v(changed, "haco_jobs", state="completed") == v(after_l, "haco_jobs", state="completed")
