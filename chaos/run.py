"""One chaos run: start the cluster, run the workload and the nemesis together, heal, drain,
collect, check, report. Everything it starts is stopped in `finally`, from an atexit hook and
from SIGTERM/SIGINT/SIGHUP; its temp dir is removed unless `keep`."""

from __future__ import annotations

import asyncio
import atexit
import json
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from haco.client import HacoClient

from .checkers import Check, run_all
from .collect import DigestSampler, collect_executions, collect_final, drain, parse_replica_logs
from .history import HistoryWriter, now, read_history
from .nemesis import ClusterStuck, Nemesis, NemesisConfig
from . import queue_limit, schedule
from .procs import ChaosCluster, become_subreaper, kill_descendants
from .workload import Workload

__all__ = ["RunConfig", "run"]

APPLIED_BOUND_S = 30.0  #: after the drain, every replica must apply the highest index seen within this


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    replicas: int = 3
    workers: int = 2
    duration_s: float = 60.0  #: no new fault starts after this
    seed: int = 1
    concurrency: int = 4
    faults: tuple[str, ...] = ("leader_kill", "leader_pause", "partition", "full_restart", "worker_kill",
                               "worker_pause")
    faults_count: int = 0  #: faults in the schedule; 0 = one of each (plus min_leader_kills)
    min_leader_kills: int = 0
    report: Path | None = None
    history: Path | None = None  #: default: history.jsonl beside the report, else in the temp dir
    keep: bool = False
    drain_s: float = 180.0
    worker_lost_s: float = 3.0
    compaction_min_entries: int = 400  #: small, so compactions (and kills during them) happen


def _replica_env(cfg: RunConfig) -> dict[str, str]:
    return {"HACO_WORKER_LOST_S": str(cfg.worker_lost_s), "HACO_GRACE_S": str(cfg.worker_lost_s),
            "HACO_HEARTBEAT_S": "0.5", "HACO_COMPACTION_MIN_ENTRIES": str(cfg.compaction_min_entries),
            "HACO_COMPACTION_MIN_TIME_S": "30"}


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(cfg: RunConfig) -> dict[str, Any]:
    """Run and return the report (also written to cfg.report). KeyboardInterrupt propagates after cleanup."""
    become_subreaper()
    history_path = cfg.history or (cfg.report.with_suffix(".history.jsonl") if cfg.report else None)
    if history_path is not None:
        history_path.parent.mkdir(parents=True, exist_ok=True)
        history_path.unlink(missing_ok=True)
    root = Path(tempfile.mkdtemp(prefix="haco-chaos-"))
    print(f"chaos: working in {root}", file=sys.stderr, flush=True)
    cluster: ChaosCluster | None = None

    def cleanup() -> None:
        if cluster is not None:
            cluster.stop_all()
        kill_descendants()
        if not cfg.keep:
            shutil.rmtree(root, ignore_errors=True)
    atexit.register(cleanup)
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    started = time.monotonic()
    history_path = history_path or root / "history.jsonl"
    history = HistoryWriter(history_path)
    try:
        cluster = ChaosCluster(root, cfg.replicas, cfg.workers, _replica_env(cfg))
        try:
            figures = asyncio.run(_drive(cfg, cluster, history))
        except ClusterStuck as exc:
            figures = {"stuck": str(exc), "drained": False}
        figures["stale_refused"] = parse_replica_logs([r.log_path for r in cluster.replicas], history)
        history.write("final", **figures)
        history.close()
        records = list(read_history(history_path))  # before cleanup: the history may live in the temp dir
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        history.close()
        cleanup()
        atexit.unregister(cleanup)
    checks = run_all(records)
    report = _report(cfg, records, checks, figures, time.monotonic() - started, history_path,
                     root if cfg.keep else None)
    if cfg.report:
        cfg.report.write_text(json.dumps(report, indent=2, default=str))
    return report


async def _drive(cfg: RunConfig, cluster: ChaosCluster, history: HistoryWriter) -> dict[str, Any]:
    nemesis = Nemesis(cluster, history, NemesisConfig(
        faults=cfg.faults, count=cfg.faults_count, min_leader_kills=cfg.min_leader_kills, seed=cfg.seed,
        duration_s=cfg.duration_s, worker_lost_s=cfg.worker_lost_s))
    sampler = DigestSampler(cluster, history)
    try:
        return await _phases(cfg, cluster, history, nemesis, sampler)
    finally:  # also on an interrupt: no client session is left open
        await sampler.close()
        await nemesis.close()


async def _phases(cfg: RunConfig, cluster: ChaosCluster, history: HistoryWriter, nemesis: Nemesis,
                  sampler: DigestSampler) -> dict[str, Any]:
    t_start = now()[0]
    await nemesis.healthy()  # starts every replica and worker, then waits for one agreed leader
    phases = {"startup": now()[0] - t_start}
    history.write("start", mono=now()[0], config={k: str(v) for k, v in asdict(cfg).items()},
                  plan=nemesis.plan, urls=cluster.urls)
    async with HacoClient(cluster.urls, deadline_s=30.0) as client:
        await schedule.start(client, history)  # a periodic schedule fires through every fault
        await queue_limit.start(client, history)  # a queue held at its max_running through every fault
    t0 = now()[0]
    stop = asyncio.Event()
    workload = Workload(cluster.urls, history, seed=cfg.seed, concurrency=cfg.concurrency, runs=cluster.runs_file)
    tasks = [asyncio.create_task(workload.run(stop)), asyncio.create_task(sampler.run(stop))]
    figures: dict[str, Any] = {}
    try:
        await nemesis.run()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        figures.update(faults_done=dict(nemesis.done), unhealthy_waits=nemesis.unhealthy,
                       ops=dict(workload.counts))
    phases["faults"] = now()[0] - t0
    history.write("heal", mono=now()[0])
    await nemesis.healthy()
    async with HacoClient(cluster.urls, deadline_s=30.0) as client:
        paused_at = await schedule.pause(client, history)
        t1 = now()[0]
        figures["drained"] = await drain(client, cfg.drain_s)
        t2 = now()[0]
        figures["jobs"] = await collect_final(cluster, history, client)
        await schedule.collect(client, history, paused_at)
        t3 = now()[0]
    figures["common_index"] = await sampler.common_index(timeout_s=60.0)
    t4 = now()[0]
    figures["applied"] = await sampler.applied_reached(bound_s=APPLIED_BOUND_S)
    collect_executions(cluster.runs_file, history)
    phases.update(drain=t2 - t1, collect=t3 - t2, common_index=t4 - t3, applied=now()[0] - t4)
    figures["phase_s"] = {k: round(v, 1) for k, v in phases.items()}
    return figures


def _report(cfg: RunConfig, records: list[dict[str, Any]], checks: list[Check], figures: dict[str, Any],
            seconds: float, history_path: Path, kept: Path | None) -> dict[str, Any]:
    ok = all(c.ok for c in checks) and bool(figures.get("drained"))
    problems = [] if figures.get("drained") else ["jobs were still pending or running when the drain timed out"]
    if figures.get("stuck"):
        problems = [f"the cluster did not recover: {figures['stuck']}"]
    return {"ok": ok, "seconds": round(seconds, 1), "seed": cfg.seed, "replicas": cfg.replicas,
            "workers": cfg.workers, "faults": figures.get("faults_done", {}),
            "faults_total": sum(figures.get("faults_done", {}).values()), "figures": figures,
            "checks": [c.to_json() for c in checks], "problems": problems, "history": str(history_path),
            "kept_dir": str(kept) if kept else None, "records": len(records)}
