"""`haco up` (a local cluster in the foreground until Ctrl+C) and `haco demo`: the CLI over haco.cluster.local."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haco.cluster.local import HOST, ClusterSpec, LocalCluster
from haco.errors import HacoError


def register_cli(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `up` and `demo` through cli.build_parser's `add(name, help, func)`."""
    up = add("up", "a local cluster: 3 replicas + 2 workers under ./haco-data, each restarted (with backoff) "
                   "if it exits; Ctrl+C stops it", run_up)
    up.add_argument("--data-dir", type=Path, default=Path("haco-data"),
                    help="replica data, worker scratch dirs, logs and the PID file (haco-up.json); one haco up "
                         "at a time per directory (default: ./haco-data)")
    up.add_argument("--replicas", type=int, default=3, help="replicas to run (default: 3)")
    up.add_argument("--workers", type=int, default=2, help="workers to run (default: 2)")
    up.add_argument("--base-port", type=int, default=7001, help="replica HTTP ports from here; Raft ports +100")
    demo = add("demo", "a scripted tour on a throwaway cluster: jobs, a leader kill, nothing lost", _run_demo)
    demo.add_argument("--jobs", type=int, default=200)
    demo.add_argument("--base-port", type=int, default=7401)
    demo.add_argument("--timeout", type=float, default=120.0, help="give up after S seconds")
    demo.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")


def _run_demo(args: argparse.Namespace) -> Any:
    from haco.cli.demo import run_demo
    return run_demo(args)


def run_up(args: argparse.Namespace) -> int:
    if args.replicas < 1 or args.workers < 0:
        print("haco: error: --replicas must be at least 1 and --workers at least 0", file=sys.stderr)
        return 64
    spec = ClusterSpec(data_dir=args.data_dir.resolve(), replicas=args.replicas, workers=args.workers,
                       base_port=args.base_port)
    return asyncio.run(_up(LocalCluster(spec)))


async def _up(cluster: LocalCluster) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    spec = cluster.spec
    try:
        cluster.lock()  # before anything else: a second `haco up` on this dir leaves it untouched
    except (HacoError, OSError) as exc:
        print(f"haco: error: {exc}", file=sys.stderr)
        return 1
    try:
        cluster.prepare()
        cluster.start_replicas()
        print(f"haco up: starting {spec.replicas} replicas, logs in {spec.log_dir}", file=sys.stderr)
        leader = asyncio.ensure_future(cluster.wait_for_leader(30.0))
        await asyncio.wait({leader, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            leader.cancel()
            return 130
        leader_id, leader_url = leader.result()
        cluster.start_workers()
        _banner(spec, leader_id, leader_url)
        while not stop.is_set():
            for line in cluster.supervise():
                print(f"haco up: {line}", file=sys.stderr, flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
        return 0
    except (HacoError, TimeoutError) as exc:
        print(f"haco: error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("haco up: stopping", file=sys.stderr)
        await asyncio.to_thread(cluster.stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _banner(spec: ClusterSpec, leader_id: str, leader_url: str) -> None:
    urls = ",".join(spec.urls)
    default = spec.base_port == 7001 and spec.replicas == 3
    env = "" if default else f"HACO_COORDINATORS={urls} "
    print("\n".join([
        f"haco is up: {spec.replicas} replicas, {spec.workers} workers; leader {leader_id} at {leader_url}",
        *(f"  r{i}  {spec.api_url(i)}  (raft {spec.raft_addr(i)})" for i in range(1, spec.replicas + 1)),
        f"  data {spec.data_dir}, logs {spec.log_dir}, PIDs in {spec.pids_file}",
        "",
        "try, in another terminal:",
        f"  {env}haco status",
        f"  {env}haco submit --wait -- echo hello",
        f"  {env}haco jobs",
        f"  dashboard: {spec.api_url(1)}/",
        "",
        f"note: the API is open (no tokens) and listens on {HOST} only; the Raft ports use the password in",
        f"  {spec.password_file}. For a real deployment see README, Security (tokens, TLS).",
        "",
        "A replica or worker that exits is restarted (with backoff); Ctrl+C stops everything.",
    ]), flush=True)
