"""The measurements of `haco bench` that need only the REST API: submit rate, end-to-end rate,
sequential latency and scheduling latency. Each is bounded in count and in time.

Jobs submitted only to be counted carry PARKED_TAG, a tag no worker has, so they stay pending
without costing the scheduler anything (placement classes nobody can take are skipped whole).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from haco.bench.http import SubmitLoad
from haco.client import HacoClient
from haco.errors import HacoError

PARKED_TAG = "haco-bench-parked"
PARKED_JOB: dict[str, Any] = {"type": "noop", "payload": 0, "required_tags": [PARKED_TAG]}
NOOP_JOB: dict[str, Any] = {"type": "noop", "payload": 0}
SHELL_TRUE_JOB: dict[str, Any] = {"type": "shell", "payload": {"argv": ["true"]}}
FINAL = ("completed", "failed", "cancelled", "expired")
Say = Callable[[str], None]


def bench_client(urls: Sequence[str], **overrides: Any) -> HacoClient:
    """A client tuned for measuring: retries a 503 after at most 0.2 s instead of the server's 1 s."""
    return HacoClient(list(urls), **{"retry_after_max_s": 0.2, "retry_pause_s": 0.05, **overrides})


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


async def submit_rate(targets: Sequence[Sequence[str]], *, batch: int, clients: int, duration_s: float,
                      job: dict[str, Any] | None = None, lean: bool = True) -> dict[str, Any]:
    """Acknowledged jobs/s from `clients` concurrent closed-loop submitters for `duration_s`.

    Submitter i talks to `targets[i % len(targets)]` first (its own URL order). `batch == 1` uses
    POST /api/jobs, otherwise POST /api/jobs/batch with `batch` jobs. The first fifth of the run
    (at most 1 s) is warm-up and not counted. `lean` sends them through bench_http's load
    generator (~5x less CPU per request on the shared cores than HacoClient, which retries),
    unless a URL is not plain http.
    """
    if lean and all(u.startswith("http://") for t in targets for u in t):  # plain HTTP only
        return await _lean_submit_rate(targets, batch=batch, clients=clients, duration_s=duration_s,
                                       job=job or PARKED_JOB)
    loop = asyncio.get_running_loop()
    spec = job or PARKED_JOB
    conns = [bench_client(t, deadline_s=max(10.0, duration_s)) for t in targets]
    warm = min(1.0, duration_s / 5)
    start = loop.time()
    count_from, end = start + warm, start + warm + duration_s
    acked = errors = total = 0
    error_codes: dict[str, int] = {}

    async def submitter(c: HacoClient) -> None:
        nonlocal acked, errors, total
        while loop.time() < end:
            try:
                if batch == 1:
                    await c.submit(spec)
                else:
                    await c.submit_many([spec] * batch)
            except HacoError as exc:
                errors += 1
                error_codes[exc.code] = error_codes.get(exc.code, 0) + 1
                continue
            total += batch
            if count_from <= loop.time() <= end:
                acked += batch

    try:
        async with asyncio.TaskGroup() as tg:  # a bug in one submitter stops the others
            for i in range(clients):
                tg.create_task(submitter(conns[i % len(conns)]))
    finally:
        for c in conns:
            await c.close()
    return {"jobs_per_s": round(acked / duration_s), "acked": acked, "acked_total": total, "errors": errors,
            "error_codes": error_codes,
            "seconds": round(duration_s, 2), "clients": clients, "batch": batch, "load_generator": "haco-client"}


async def _lean_submit_rate(targets: Sequence[Sequence[str]], *, batch: int, clients: int, duration_s: float,
                            job: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    load = SubmitLoad(targets, job, batch=batch)
    warm = min(1.0, duration_s / 5)
    start = loop.time()
    count_from, end = start + warm, start + warm + duration_s
    stuck = loop.call_at(end + 10.0, load.close)  # an answer that never comes fails its connection
    try:
        async with asyncio.TaskGroup() as tg:
            for i in range(clients):
                tg.create_task(load.submitter(i, lambda: count_from <= loop.time() <= end, end))
    finally:
        stuck.cancel()
        load.close()
    return {"jobs_per_s": round(load.acked / duration_s), "acked": load.acked, "acked_total": load.total,
            "errors": load.errors, "error_codes": load.error_codes, "seconds": round(duration_s, 2),
            "clients": clients, "batch": batch, "load_generator": "lean"}


async def final_count(client: HacoClient) -> int:
    stats = await client.queue_stats()
    counts = stats.get("counts") or {}
    return sum(int(counts.get(s, 0)) for s in FINAL)


async def e2e_rate(urls: Sequence[str], job: dict[str, Any], *, jobs: int, batch: int, timeout_s: float,
                   submitters: int = 4) -> dict[str, Any]:
    """Submit `jobs` jobs in batches from `submitters` concurrent clients while workers run them;
    jobs/s = jobs / (first submit -> the cluster counts them all final). Bounded by `timeout_s`."""
    loop = asyncio.get_running_loop()
    async with bench_client(urls) as client:
        base = await final_count(client)
        sizes = [min(batch, jobs - i) for i in range(0, jobs, batch)]
        start = loop.time()
        deadline = start + timeout_s

        async def submit_some(c: HacoClient) -> None:
            while sizes and loop.time() < deadline:
                await c.submit_many([job] * sizes.pop())

        conns = [bench_client(urls) for _ in range(submitters)]
        try:
            feeding = asyncio.gather(*(submit_some(c) for c in conns))
            submitted_s: float | None = None
            done = base
            while loop.time() < deadline:
                if submitted_s is None and feeding.done():
                    feeding.result()  # raises a submit failure
                    submitted_s = loop.time() - start
                done = await final_count(client)
                if done - base >= jobs:
                    break
                await asyncio.sleep(0.1)  # a poll is an HTTP request to the leader: keep it rare
        finally:
            if not feeding.done():
                feeding.cancel()
                await asyncio.gather(feeding, return_exceptions=True)
            for c in conns:
                await c.close()
        elapsed = loop.time() - start
        finished = min(jobs, done - base)
        return {"jobs_per_s": round(finished / elapsed), "jobs": jobs, "finished": finished,
                "seconds": round(elapsed, 2), "submitted_s": rounded(submitted_s, 2),
                "timed_out": finished < jobs}


async def sequential(urls: Sequence[str], *, samples: int, timeout_s: float, say: Say) -> dict[str, Any]:
    """One client, one job at a time: submit a noop job, long-poll it until final. Returns the
    submit->final latencies (ms) and the scheduling delays (created -> assigned, ms, replicated
    clocks of the leader, so it includes the submit's own commit)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    sched: list[float] = []
    failed = 0
    end = loop.time() + timeout_s
    async with bench_client(urls) as client:
        for _ in range(3):  # warm the connection and the code paths
            r = await client.submit(NOOP_JOB)
            await client.wait(r.job_id, 10.0, min_index=r.index)
        for i in range(samples):
            if loop.time() >= end:
                break
            t0 = time.perf_counter()
            r = await client.submit(NOOP_JOB)
            job = await client.wait(r.job_id, 10.0, min_index=r.index)
            latencies.append((time.perf_counter() - t0) * 1000)
            if job.get("status") != "completed":
                failed += 1
            attempts = job.get("attempts") or []
            if attempts and attempts[0].get("assigned_at_ms") is not None:
                sched.append(float(attempts[0]["assigned_at_ms"] - job["created_at_ms"]))
            if (i + 1) % max(1, samples // 4) == 0:
                say(f"  {i + 1}/{samples} sequential jobs")
    return {"latency_ms": latencies, "sched_ms": sched, "failed": failed}


def latency_figures(values: Sequence[float]) -> dict[str, Any]:
    return {"p50_ms": rounded(percentile(values, 50), 2), "p99_ms": rounded(percentile(values, 99), 2),
            "max_ms": rounded(max(values) if values else None, 2), "n": len(values)}
