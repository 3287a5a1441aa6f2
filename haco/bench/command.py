"""`haco bench`: measure a cluster, print a table (or `--json`), progress on stderr while it runs.

Without `--coordinators` it starts a throwaway local cluster (3 replicas, Raft password on, as
`haco up` does) in a temp dir and starts the worker processes each measurement needs; with
`--coordinators` it measures that cluster through its API only, and skips what needs processes
it owns (failover, memory, restart). Every measurement is bounded in count and in time.

Measurements (`--only`, comma-separated; default all):
  submit    acknowledged jobs/s, single and batch endpoint, `--clients` concurrent clients,
            through the leader and spread over all replicas
  e2e       jobs/s from submit to final (noop and `shell true`) with each `--workers` count
  latency   sequential submit -> final p50/p99 at light load
  sched     scheduling delay created -> assigned p50/p99 (from the latency run's jobs)
  failover  `--kills` leader SIGKILLs: kill -> next acknowledged submit p50/p99/max (own throwaway cluster)
  memory    RSS of each replica with `--pending` pending jobs (a separate throwaway cluster)
  restart   full-cluster SIGKILL and restart with that snapshot: spawn -> first acknowledged submit
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from haco.bench import cluster as bc
from haco.bench import measure as bm
from haco.errors import HacoError
from haco.cluster.local import wait_for_leader

MEASUREMENTS = ("submit", "e2e", "latency", "sched", "failover", "memory", "restart")
OWNED_ONLY = frozenset({"failover", "memory", "restart"})
#: (measurement, figure) -> (comparison, target) from issue 10
TARGETS: dict[tuple[str, str], tuple[str, float]] = {
    ("submit", "single_leader"): (">=", 5000), ("submit", "single_spread"): (">=", 5000),
    ("submit", "batch_leader"): (">=", 20000), ("submit", "batch_spread"): (">=", 20000),
    ("e2e", "noop_w2"): (">=", 2000), ("latency", "p50_ms"): ("<=", 5), ("latency", "p99_ms"): ("<=", 20),
    ("failover", "p50_s"): ("<=", 1), ("failover", "p99_s"): ("<=", 2), ("memory", "max_rss_mib"): ("<=", 2048),
    ("restart", "seconds"): ("<=", 15),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig:
    only: tuple[str, ...] = MEASUREMENTS
    coordinators: tuple[str, ...] = ()  #: empty: a throwaway local cluster
    duration_s: float = 10.0  #: per submit-rate run
    clients: int = 64
    batch: int = 500  #: jobs per batch request
    e2e_jobs: int = 20_000  #: noop jobs per end-to-end run
    shell_jobs: int = 2_000  #: `shell true` jobs per end-to-end run
    workers: tuple[int, ...] = (2, 4)
    worker_capacity: int = 16
    samples: int = 500  #: sequential jobs for latency and sched
    kills: int = 20
    pending: int = 1_000_000
    base_port: int = 7501
    timeout_s: float = 300.0  #: bound on each measurement
    keep: bool = False
    lean: bool = True  #: submit rates through bench_http's load generator, not HacoClient


def register_cli(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("bench", "measure a cluster: submit and end-to-end throughput, latency, failover, memory", run_bench)
    p.add_argument("--only", default=",".join(MEASUREMENTS), help=f"comma-separated, of {','.join(MEASUREMENTS)}")
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="seconds per submit-rate run (10)")
    p.add_argument("--clients", type=int, default=64, help="concurrent submitting clients (64)")
    p.add_argument("--batch", type=int, default=500, help="jobs per batch request (500)")
    p.add_argument("--jobs", type=int, default=20_000, help="noop jobs per end-to-end run (20000)")
    p.add_argument("--shell-jobs", type=int, default=2_000, help="`shell true` jobs per end-to-end run (2000)")
    p.add_argument("--workers", default="2,4", metavar="N,...", help="worker process counts for e2e (2,4)")
    p.add_argument("--worker-capacity", type=int, default=16, help="concurrent jobs per worker process (16)")
    p.add_argument("--samples", type=int, default=500, help="sequential jobs for latency and sched (500)")
    p.add_argument("--kills", type=int, default=20, help="leader kills for failover (20)")
    p.add_argument("--pending", type=int, default=1_000_000, help="pending jobs for memory and restart (1000000)")
    p.add_argument("--base-port", type=int, default=7501, help="throwaway cluster ports from here (7501)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="bound on each measurement (300)")
    p.add_argument("--keep", action="store_true", help="keep the throwaway clusters' dirs (logs)")
    p.add_argument("--load-generator", choices=("lean", "client"), default="lean",
                   help="submit rates: bench's lean HTTP generator (default) or haco's client, which costs "
                        "~5x more CPU per request on the cores it shares with the cluster")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    only = tuple(m.strip() for m in args.only.split(",") if m.strip())
    unknown = [m for m in only if m not in MEASUREMENTS]
    if unknown or not only:
        raise ValueError(f"--only takes {','.join(MEASUREMENTS)}; got {args.only!r}")
    workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    if not workers or min(workers) < 1:
        raise ValueError("--workers needs counts of at least 1")
    for name in ("duration", "clients", "batch", "jobs", "shell_jobs", "worker_capacity", "samples", "pending"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if not 1 <= args.batch <= 2000:
        raise ValueError("--batch must be 1 to 2000 (the server's batch limit)")
    coordinators = tuple(u.strip() for u in (args.coordinators or "").split(",") if u.strip())
    return BenchConfig(only=only, coordinators=coordinators, duration_s=args.duration, clients=args.clients,
                       batch=args.batch, e2e_jobs=args.jobs, shell_jobs=args.shell_jobs, workers=workers,
                       worker_capacity=args.worker_capacity, samples=args.samples, kills=max(0, args.kills),
                       pending=args.pending, base_port=args.base_port, timeout_s=args.timeout, keep=args.keep,
                       lean=args.load_generator == "lean")


def run_bench(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"haco: error: {exc}", file=sys.stderr)
        return 64
    report = asyncio.run(Bench(cfg).run())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report))
    return 1 if report["errors"] else 0


class Bench:
    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.started = time.monotonic()
        self.results: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, str] = {}
        self.skipped: dict[str, str] = {}

    def say(self, text: str) -> None:
        print(f"bench [{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        wanted = set(cfg.only)
        if cfg.coordinators:
            for m in sorted(wanted & OWNED_ONLY):
                self.skipped[m] = "needs a throwaway cluster whose processes bench owns (run without --coordinators)"
            wanted -= OWNED_ONLY
        api = wanted & {"submit", "e2e", "latency", "sched"}
        if api:
            await self._api_measurements(api)
        if "failover" in wanted:
            await self._guard("failover", self._failover())
        if wanted & {"memory", "restart"}:
            await self._guard("memory", self._memory_and_restart(wanted))
        return {"figures": self.results, "errors": self.errors, "skipped": self.skipped, "config": {**asdict(self.cfg)},
                "machine": {"cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]},
                "seconds": round(time.monotonic() - self.started, 1)}

    async def _guard(self, name: str, coro: Any) -> None:
        try:
            await asyncio.wait_for(coro, self.cfg.timeout_s * (3 if name == "memory" else 1))
        except (HacoError, TimeoutError, OSError) as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.say(f"{name} failed: {self.errors[name]}")

    async def _api_measurements(self, wanted: set[str]) -> None:
        tw = None
        if self.cfg.coordinators:
            urls = list(self.cfg.coordinators)
        else:
            tw = bc.Throwaway(self.cfg.base_port, worker_capacity=self.cfg.worker_capacity, keep=self.cfg.keep)
            self.say(f"starting a throwaway cluster in {tw.dir}")
            urls = tw.urls
        try:
            if tw is not None:
                await tw.start()
            if "submit" in wanted:
                await self._guard("submit", self._submit(urls, tw))
            if "e2e" in wanted:
                await self._guard("e2e", self._e2e(urls, tw))
            if wanted & {"latency", "sched"}:
                await self._guard("latency", self._latency(urls, wanted, tw))
        finally:
            if tw is not None:
                await asyncio.to_thread(tw.stop)

    async def _leader_first(self, urls: list[str]) -> list[str]:
        _, leader = await wait_for_leader(urls, 30.0)
        return [leader] + [u for u in urls if u.rstrip("/") != leader.rstrip("/")]

    async def _submit(self, urls: list[str], tw: bc.Throwaway | None) -> None:
        cfg, out = self.cfg, self.results.setdefault("submit", {})
        leader_first = await self._leader_first(urls)
        spread = [urls[i:] + urls[:i] for i in range(len(urls))]
        for name, targets, batch in (("single_leader", [leader_first], 1), ("single_spread", spread, 1),
                                     ("batch_leader", [leader_first], cfg.batch),
                                     ("batch_spread", spread, cfg.batch)):
            self.say(f"submit {name}: {cfg.clients} clients, batch {batch}, {cfg.duration_s:g}s")
            cpu = tw.cpu_seconds() if tw is not None else 0.0
            own = time.process_time()
            r = await bm.submit_rate(targets, batch=batch, clients=cfg.clients, duration_s=cfg.duration_s,
                                     lean=cfg.lean)
            out[name] = r["jobs_per_s"]
            if tw is not None and r["acked_total"]:
                out[f"{name}_cpu_us_per_job"] = round((tw.cpu_seconds() - cpu) * 1e6 / r["acked_total"])
            if r["acked_total"]:  # the load generator's own, on the same cores
                out[f"{name}_generator_cpu_us_per_job"] = round((time.process_time() - own) * 1e6 / r["acked_total"])
            out[f"{name}_detail"] = r
            self.say(f"  {r['jobs_per_s']:,} jobs/s ({r['acked']:,} acknowledged, {r['errors']} errors)")

    async def _e2e(self, urls: list[str], tw: bc.Throwaway | None) -> None:
        cfg, out = self.cfg, self.results.setdefault("e2e", {})
        counts = cfg.workers if tw is not None else (0,)
        for n in counts:
            if tw is not None:
                self.say(f"e2e: {n} worker processes, capacity {cfg.worker_capacity} each")
                await tw.workers(n)
            suffix = f"w{n}" if n else "given"
            for kind, job, jobs in (("noop", bm.NOOP_JOB, cfg.e2e_jobs), ("shell", bm.SHELL_TRUE_JOB, cfg.shell_jobs)):
                leader_first = await self._leader_first(urls)
                self.say(f"e2e {kind}_{suffix}: {jobs:,} jobs")
                cpu = tw.cpu_seconds() if tw is not None else 0.0
                r = await bm.e2e_rate(leader_first, job, jobs=jobs, batch=min(cfg.batch, 500), timeout_s=cfg.timeout_s)
                out[f"{kind}_{suffix}"] = r["jobs_per_s"]
                if tw is not None and r["finished"]:
                    out[f"{kind}_{suffix}_cpu_us_per_job"] = round((tw.cpu_seconds() - cpu) * 1e6 / r["finished"])
                out[f"{kind}_{suffix}_detail"] = r
                self.say(f"  {r['jobs_per_s']:,} jobs/s ({r['finished']:,} final in {r['seconds']}s)")

    async def _latency(self, urls: list[str], wanted: set[str], tw: bc.Throwaway | None) -> None:
        if tw is not None:
            await tw.workers(min(self.cfg.workers))
        leader_first = await self._leader_first(urls)
        self.say(f"latency: {self.cfg.samples} sequential submit -> final")
        r = await bm.sequential(leader_first, samples=self.cfg.samples, timeout_s=self.cfg.timeout_s, say=self.say)
        if "latency" in wanted:
            self.results["latency"] = {**bm.latency_figures(r["latency_ms"]), "not_completed": r["failed"]}
            self.say(f"  p50 {self.results['latency']['p50_ms']} ms, p99 {self.results['latency']['p99_ms']} ms")
        if "sched" in wanted:
            self.results["sched"] = bm.latency_figures(r["sched_ms"])
            self.say(f"  sched p50 {self.results['sched']['p50_ms']} ms, p99 {self.results['sched']['p99_ms']} ms")

    async def _failover(self) -> None:
        """On its own throwaway cluster: a restarted replica then replays a short log, so the time
        between kills is the failover's, not the replay of earlier measurements' jobs."""
        tw = bc.Throwaway(self.cfg.base_port + 100, keep=self.cfg.keep)
        self.say(f"failover: {self.cfg.kills} leader kills, throwaway cluster in {tw.dir}")
        try:
            await tw.start()
            self.results["failover"] = await bc.failover(tw, kills=self.cfg.kills, timeout_s=self.cfg.timeout_s,
                                                         say=self.say)
        finally:
            await asyncio.to_thread(tw.stop)

    async def _memory_and_restart(self, wanted: set[str]) -> None:
        cfg = self.cfg
        every_s = max(3.0, min(30.0, cfg.pending / 50_000))  # one snapshot per replica per period
        env = {"HACO_COMPACTION_MIN_TIME_S": str(every_s), "HACO_COMPACTION_MIN_ENTRIES": "1000000"}
        tw = bc.Throwaway(cfg.base_port + 200, env=env, keep=cfg.keep)
        self.say(f"memory: throwaway cluster in {tw.dir}, filling {cfg.pending:,} pending jobs")
        try:
            await tw.start()
            fill = await bc.fill_pending(tw.urls, jobs=cfg.pending, batch=2000, submitters=4,
                                         timeout_s=cfg.timeout_s, say=self.say)
            self.say(f"  {fill['jobs']:,} jobs in {fill['seconds']}s; waiting for every replica's snapshot")
            await bc.wait_snapshots(tw.urls, fill["last_index"], timeout_s=cfg.timeout_s)
            per = {f"r{i}": bc.memory_of(p.pid) for i, p in tw.cluster.replicas.items()}
            if "memory" in wanted:
                self.results["memory"] = {"pending": fill["jobs"], "fill_jobs_per_s": fill["jobs_per_s"],
                                          "max_rss_mib": max(m["rss_mib"] for m in per.values()),
                                          "max_hwm_mib": max(m["hwm_mib"] for m in per.values()), "replicas": per}
                self.say(f"  max RSS {self.results['memory']['max_rss_mib']} MiB per replica")
            if "restart" in wanted:
                self.say("restart: SIGKILL every replica, start again, time to the first acknowledged submit")
                r = await bc.restart(tw, timeout_s=cfg.timeout_s)
                self.results["restart"] = {**r, "jobs": fill["jobs"]}
                self.say(f"  serving after {r['seconds']}s (snapshot loads {r['snapshot_load_s']})")
        finally:
            await asyncio.to_thread(tw.stop)


def table(report: dict[str, Any]) -> str:
    """The figures as an aligned text table with the issue's targets."""
    rows = [("measurement", "figure", "value", "target", "")]
    for m, figures in report["figures"].items():
        for name, value in figures.items():
            if name.endswith("_detail") or isinstance(value, (dict, list)):
                continue
            target = TARGETS.get((m, name))
            verdict = ""
            if target is not None and isinstance(value, (int, float)):
                ok = value >= target[1] if target[0] == ">=" else value <= target[1]
                verdict = "ok" if ok else "MISSED"
            rows.append((m, name, f"{value:,}" if isinstance(value, (int, float)) else str(value),
                         f"{target[0]} {target[1]:g}" if target else "", verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    for m, err in report["errors"].items():
        lines.append(f"{m}: {err}")
    for m, why in report.get("skipped", {}).items():
        lines.append(f"{m}: skipped, {why}")
    mach = report["machine"]
    lines.append(f"{mach['cpus']} cpus, load average {mach['load_avg']}, {report['seconds']}s")
    return "\n".join(lines)
