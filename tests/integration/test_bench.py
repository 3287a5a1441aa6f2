"""`haco bench` end to end in a tiny configuration: every measurement runs on real throwaway
clusters (3 replicas with a Raft password, real worker processes) and the JSON has every figure."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from haco.bench import measure as bm

from .cluster import http

FIGURES = {
    "submit": ["single_leader", "single_spread", "batch_leader", "batch_spread", "single_leader_cpu_us_per_job"],
    "e2e": ["noop_w1", "shell_w1", "noop_w2", "shell_w2", "noop_w2_cpu_us_per_job"],
    "latency": ["p50_ms", "p99_ms", "n"],
    "sched": ["p50_ms", "p99_ms", "n"],
    "failover": ["p50_s", "p99_s", "max_s", "kills"],
    "memory": ["pending", "max_rss_mib", "replicas"],
    "restart": ["seconds", "ready_s", "snapshot_load_s", "jobs"],
}


def test_bench_tiny_reports_every_figure() -> None:
    argv = [sys.executable, "-m", "haco", "bench", "--json", "--duration", "0.5", "--clients", "4", "--batch", "50",
            "--jobs", "200", "--shell-jobs", "20", "--workers", "1,2", "--worker-capacity", "4", "--samples", "10",
            "--kills", "1", "--pending", "3000", "--base-port", "17600", "--timeout", "60"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["errors"] == {}
    for measurement, names in FIGURES.items():
        figures = report["figures"][measurement]
        for name in names:
            assert figures.get(name) is not None, (measurement, name, figures)
    figs = report["figures"]
    assert all(figs["submit"][n] > 0 for n in FIGURES["submit"])
    assert figs["e2e"]["noop_w2_detail"]["finished"] == 200 and not figs["e2e"]["noop_w2_detail"]["timed_out"]
    assert figs["latency"]["n"] == 10 and figs["latency"]["not_completed"] == 0
    assert 0 < figs["latency"]["p50_ms"] <= figs["latency"]["p99_ms"]
    assert figs["failover"]["kills"] == 1 and figs["failover"]["p50_s"] > 0
    assert figs["memory"]["pending"] == 3000 and set(figs["memory"]["replicas"]) == {"r1", "r2", "r3"}
    assert figs["restart"]["seconds"] > 0 and figs["restart"]["jobs"] == 3000
    assert "bench [" in done.stderr  # progress while it runs


def test_bench_refuses_bad_options() -> None:
    done = subprocess.run([sys.executable, "-m", "haco", "bench", "--only", "submit,nonsense"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 64
    assert "--only takes" in done.stderr


def test_lean_load_generator_counts_what_the_cluster_acknowledged(cluster_factory: Any) -> None:
    """bench_http's generator: every job it counts exists on the cluster, refusals are counted by code."""
    c = cluster_factory(3)
    leader = c.nodes[c.leader()].url
    urls = [leader] + [n.url for n in c.nodes if n.url != leader]

    def pending() -> int:
        _, stats = http("GET", leader + "/api/queue/stats")
        return int(stats["counts"].get("pending", 0))

    before = pending()
    single = asyncio.run(bm.submit_rate([urls], batch=1, clients=3, duration_s=0.5))
    batch = asyncio.run(bm.submit_rate([urls[1:] + urls[:1]], batch=7, clients=2, duration_s=0.5))
    assert single["errors"] == batch["errors"] == 0, (single, batch)
    assert single["acked"] > 0 and batch["acked"] > 0 and batch["acked_total"] % 7 == 0
    assert single["load_generator"] == "lean"
    assert pending() - before == single["acked_total"] + batch["acked_total"]  # parked jobs stay pending
    refused = asyncio.run(bm.submit_rate([urls], batch=1, clients=1, duration_s=0.3, job={"type": "Not a type"}))
    assert refused["acked_total"] == 0 and set(refused["error_codes"]) == {"INVALID"} and refused["errors"] > 0
