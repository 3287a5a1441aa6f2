"""Benchmark of raft_state on a realistic queue. Not a test: run it by hand.

    python bench/bench_state.py [--jobs N] [--json]

The queue: mixed priorities, a head of high-priority jobs needing a tag no worker has, 10% of jobs
depending on an earlier one, a 200-byte payload each, and a few thousand jobs in backoff after a
failed attempt. Measures submit throughput (batches of 100 through `State.apply`), memory per
pending job (tracemalloc, on a smaller queue), the next-runnable pick, snapshot capture, dump and
load. Targets from issue 2 are printed beside each figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from haco.replica.runtime import tune_gc
from raft_state import (AssignJobs, Assignment, FailAttempt, JobSpec, JobStatus, NewJob, RegisterWorker, State, SubmitJobs, Tick,
                        canonical, queries, snapshot)

T0 = 1_700_000_000_000
BATCH = 100
HEAD_SHARE = 0.05
DEP_SHARE = 0.10
BACKOFF_JOBS = 2000
DEFAULT_GC = gc.get_threshold()


def make_commands(n: int, seed: int = 7) -> list[SubmitJobs]:
    rng = random.Random(seed)
    labels = canonical({"suite": "bench"})
    commands: list[SubmitJobs] = []
    items: list[NewJob] = []
    for i in range(n):
        head = rng.random() < HEAD_SHARE
        priority = 100 if head else rng.choice((0, 0, 0, 1, 5, 10, -1))
        dep = (f"job-{rng.randrange(max(1, i - 1000), i)}",) if i > 1 and rng.random() < DEP_SHARE else ()
        payload = canonical({"argv": ["python", "-c", "x" * 160], "env": {"N": str(i)}})
        tags = ("tpu",) if head else ()
        spec = JobSpec(type="shell", payload=payload, priority=priority, timeout_ms=600_000, max_retries=3,
                       backoff_ms=60_000, required_tags=tags, hardware=(), min_memory_gb=1.0, min_cuda_compute=0.0,
                       cpus=1, depends_on=dep, deadline_ms=None, labels=labels)
        key = f"key-{i}" if i % 2 == 0 else None
        items.append(NewJob(job_id=f"job-{i}", key=key, spec=spec))
        if len(items) == BATCH:
            commands.append(SubmitJobs(at_ms=T0 + i, jobs=tuple(items)))
            items = []
    if items:
        commands.append(SubmitJobs(at_ms=T0 + n, jobs=tuple(items)))
    return commands


def register_workers(state: State) -> None:
    for w in range(50):
        state.apply(RegisterWorker(at_ms=T0, worker_id=f"worker-{w}", capacity=4, tags=("cpu",) if w % 2 else (),
                                   hardware=(), memory_gb=64.0, cuda_compute=0.0, cpus=16, info=canonical({})))


def add_backoffs(state: State, count: int) -> None:
    """Assign `count` runnable jobs and fail them, so they wait in backoff."""
    done = 0
    while done < count:
        free = [(w.worker_id, w.free_slots) for w in queries.open_workers(state)]
        slots = [wid for wid, n in free for _ in range(n)]
        items = []
        for job, wid in zip(queries.runnable(state), slots):
            items.append(Assignment(job.job_id, wid, state.next_attempt(job.job_id)))
        state.apply(AssignJobs(at_ms=state.now_ms, items=tuple(items)))
        for it in items:
            state.apply(FailAttempt(at_ms=state.now_ms, job_id=it.job_id, attempt=it.attempt,
                                    worker_id=it.worker_id, error="flaky", result=b"\xc0", stats=b"\x80"))
        done += len(items)


def build(n: int) -> tuple[State, float, float]:
    """The queue of `n` jobs, and submit throughput with the cyclic GC on with a replica's
    thresholds (`haco.runtime.tune_gc`) and off."""
    commands = make_commands(n)
    rates = []
    for collect in (False, True):
        state = State()
        state.apply(Tick(T0))
        register_workers(state)
        gc.collect()
        if collect:
            tune_gc()
        else:
            gc.disable()
        try:
            t = time.perf_counter()
            for cmd in commands:
                state.apply(cmd)
            rates.append(n / (time.perf_counter() - t))
        finally:
            gc.enable()
            gc.set_threshold(*DEFAULT_GC)
        if not collect:
            del state
            gc.collect()
    add_backoffs(state, min(BACKOFF_JOBS, n // 50))
    return state, rates[1], rates[0]


def memory_per_job(n: int) -> float:
    gc.collect()
    tracemalloc.start()
    state = State()
    state.apply(Tick(T0))
    base = tracemalloc.get_traced_memory()[0]
    for cmd in make_commands(n, seed=11):  # commands are dropped as we go: specs count once, in the jobs
        state.apply(cmd)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    pending = state.counts[JobStatus.PENDING]
    del state
    return used / max(1, pending)


def pick_us(state: State, rounds: int = 2000) -> float:
    workers = queries.open_workers(state)
    t = time.perf_counter()
    for _ in range(rounds):
        next(queries.runnable(state, workers))
    return (time.perf_counter() - t) / rounds * 1e6


def snapshot_figures(state: State, tmp: Path) -> dict[str, float]:
    t = time.perf_counter()
    cap = snapshot.capture(state)
    capture_ms = (time.perf_counter() - t) * 1000
    path = tmp / f"s{len(state.jobs)}.duckdb"
    t = time.perf_counter()
    snapshot.dump(cap, path, raft_index=1, raft_term=1, raft_data=b"raft")
    dump_s = time.perf_counter() - t
    del cap
    t = time.perf_counter()
    loaded = snapshot.load(path)
    load_s = time.perf_counter() - t
    assert loaded.state.digest() == state.digest()
    return {"capture_ms": capture_ms, "dump_s": dump_s, "load_s": load_s, "file_mb": path.stat().st_size / 2**20}


def run(sizes: list[int], memory_jobs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0], "sizes": {}}
    out["memory_bytes_per_pending_job"] = memory_per_job(memory_jobs)
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            state, rate, rate_no_gc = build(n)
            fig: dict[str, Any] = {"submit_jobs_per_s": rate, "submit_jobs_per_s_gc_off": rate_no_gc,
                                   "pending": state.counts[JobStatus.PENDING]}
            fig["pick_us"] = pick_us(state)
            fig.update(snapshot_figures(state, Path(d)))
            out["sizes"][n] = fig
            del state
            gc.collect()
    return out


def table(res: dict[str, Any]) -> str:
    rows = [("memory per pending job (200 B payload)", f"{res['memory_bytes_per_pending_job']:.0f} B", "<= 2048 B")]
    for n, f in res["sizes"].items():
        rows += [
            (f"[{n:,} jobs] submit, batches of {BATCH}, replica GC", f"{f['submit_jobs_per_s']:,.0f} jobs/s", ">= 100,000"),
            (f"[{n:,} jobs] submit, cyclic GC off", f"{f['submit_jobs_per_s_gc_off']:,.0f} jobs/s", ""),
            (f"[{n:,} jobs] next runnable pick", f"{f['pick_us']:.1f} us", "<= 50 us at 1M"),
            (f"[{n:,} jobs] snapshot capture", f"{f['capture_ms']:.1f} ms", "well under 50 ms at 1M"),
            (f"[{n:,} jobs] snapshot dump", f"{f['dump_s']:.2f} s ({f['file_mb']:.0f} MB)", "<= 5 s at 1M"),
            (f"[{n:,} jobs] snapshot load", f"{f['load_s']:.2f} s", "<= 5 s at 1M"),
        ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'measure':<{width}}  {'figure':>22}  target", "-" * (width + 40)]
    lines += [f"{a:<{width}}  {b:>22}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, action="append", help="queue size (repeatable); default 100000 and 1000000")
    ap.add_argument("--memory-jobs", type=int, default=100_000, help="queue size for the memory figure")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    res = run(args.jobs or [100_000, 1_000_000], args.memory_jobs)
    print(json.dumps(res, indent=2) if args.json else table(res))


if __name__ == "__main__":
    main()
