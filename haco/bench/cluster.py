"""The measurements of `haco bench` that need a throwaway cluster whose processes it owns:
failover over leader kills, replica RSS with many pending jobs, and restart from a big snapshot.

Processes are started through haco.cluster.local and stopped by the Popen objects it keeps (never by name).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from haco.bench.measure import PARKED_JOB, Say, bench_client, percentile, rounded
from haco.client import HacoClient
from haco.errors import HacoError
from haco.cluster.local import ClusterSpec, LocalCluster, free_base_port, spawn, stop_processes


class Throwaway:
    """A LocalCluster (3 replicas, Raft password on) in a temp dir, with workers started on demand."""

    def __init__(self, base_port: int, *, replicas: int = 3, worker_capacity: int = 16,
                 env: dict[str, str] | None = None, keep: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="haco-bench-"))
        self.spec = ClusterSpec(data_dir=self.dir, replicas=replicas, workers=0, worker_capacity=worker_capacity,
                                base_port=free_base_port(base_port, replicas=replicas))
        self.cluster = LocalCluster(self.spec)
        self.env = env or {}
        self.keep = keep

    @property
    def urls(self) -> list[str]:
        return self.spec.urls

    async def start(self) -> str:
        """Start every replica; returns the leader's URL."""
        self.cluster.prepare()
        with _env(self.env):
            self.cluster.start_replicas()
        _, url = await self.cluster.wait_for_leader(60.0)
        return url

    def start_replica(self, i: int) -> None:
        with _env(self.env):
            self.cluster.start_replica(i)

    async def workers(self, n: int, timeout_s: float = 30.0) -> None:
        """Have exactly workers w1..wn running and connected (extra ones are stopped)."""
        extra = [p for k, p in self.cluster.workers.items() if k > n]
        await asyncio.to_thread(stop_processes, extra)
        for k in [k for k in self.cluster.workers if k > n]:
            del self.cluster.workers[k]
        for k in range(1, n + 1):
            if k not in self.cluster.workers:
                argv = self.spec.worker_argv(k) + ["--workdir", str(self.dir / f"work-w{k}")]
                self.cluster.workers[k] = spawn(argv, self.spec.log_dir / f"w{k}.log")
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while loop.time() < end:  # only the leader knows which workers are connected
            _, leader = await self.cluster.wait_for_leader(max(1.0, end - loop.time()))
            async with HacoClient([leader]) as client:
                ws = await client.workers()
                live = {w["worker_id"] for w in ws if w.get("connected")}
            if all(f"w{k}" in live for k in range(1, n + 1)):
                return
            await asyncio.sleep(0.1)
        raise HacoError(f"{n} workers did not connect within {timeout_s:g}s; logs in {self.spec.log_dir}")

    def cpu_seconds(self) -> float:
        """User + system CPU of every live replica and worker process so far."""
        total = 0.0
        for p in [*self.cluster.replicas.values(), *self.cluster.workers.values()]:
            try:
                times = psutil.Process(p.pid).cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        self.cluster.stop(timeout_s=10.0)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def _env(extra: dict[str, str]) -> Iterator[None]:
    """Children inherit os.environ (haco.cluster.local.spawn): set `extra` only while spawning."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def _infos(urls: list[str]) -> dict[str, dict[str, Any]]:
    async with HacoClient(urls) as client:
        return {s.url: s.info for s in await client.status(timeout_s=2.0) if s.info}


async def caught_up(urls: list[str], timeout_s: float) -> None:
    """Wait until every replica answers, one leads, and each applied what that leader had committed
    when first seen (a fixed target: under load the commit index keeps moving)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    target: int | None = None
    while loop.time() < end:
        infos = await _infos(urls)
        leaders = [i for i in infos.values() if i.get("role") == "leader"]
        if target is None and len(leaders) == 1:
            target = int(leaders[0]["commit_index"])
        if target is not None and len(infos) == len(urls) and len(leaders) == 1 and \
                all(int(i["applied_index"]) >= target for i in infos.values()):
            return
        await asyncio.sleep(0.1)
    raise HacoError(f"replicas did not catch up within {timeout_s:g}s")


async def failover(tw: Throwaway, *, kills: int, timeout_s: float, say: Say) -> dict[str, Any]:
    """SIGKILL the leader `kills` times under a light submit load. Each sample: kill -> the first
    acknowledgement of a submit started at the kill by a client whose first URL is the dead
    leader (its retries and failover included). The killed replica is restarted and caught up
    before the next kill."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    urls = tw.urls
    stop = asyncio.Event()
    background_errors = 0

    async def background(order: list[str]) -> None:
        nonlocal background_errors
        async with bench_client(order, deadline_s=30.0) as c:
            while not stop.is_set():
                try:
                    await c.submit(PARKED_JOB)
                except HacoError:
                    background_errors += 1
                await asyncio.sleep(0.01)

    load = [asyncio.ensure_future(background(urls[i:] + urls[:i])) for i in range(len(urls))]
    samples: list[float] = []
    try:
        for k in range(kills):
            if loop.time() >= end:
                break
            await caught_up(urls, max(1.0, end - loop.time()))
            leader_id, leader_url = await tw.cluster.wait_for_leader(30.0)
            order = [leader_url] + [u for u in urls if u != leader_url]
            async with bench_client(order, deadline_s=30.0) as probe:
                t0 = loop.time()
                tw.cluster.kill_replica(leader_id, signal.SIGKILL)
                await probe.submit(PARKED_JOB)
                samples.append(loop.time() - t0)
            say(f"  kill {k + 1}/{kills}: {leader_id} -> next acknowledged submit after {samples[-1]:.3f}s")
            i = int(leader_id.lstrip("r"))
            await asyncio.to_thread(tw.cluster.replicas[i].wait, 10)
            tw.start_replica(i)
    finally:
        stop.set()
        await asyncio.gather(*load, return_exceptions=True)
    return {"p50_s": rounded(percentile(samples, 50), 3), "p99_s": rounded(percentile(samples, 99), 3),
            "max_s": rounded(max(samples) if samples else None, 3), "kills": len(samples),
            "samples_s": [round(s, 3) for s in samples], "background_errors": background_errors}


async def fill_pending(urls: list[str], *, jobs: int, batch: int, submitters: int, timeout_s: float,
                       say: Say) -> dict[str, Any]:
    """Submit `jobs` parked jobs through the batch endpoint; returns the rate and the last index."""
    loop = asyncio.get_running_loop()
    sizes = [min(batch, jobs - i) for i in range(0, jobs, batch)]
    total = len(sizes)
    done = 0
    last_index = 0
    start = loop.time()
    end = start + timeout_s

    async def submit_some(c: HacoClient) -> None:
        nonlocal done, last_index
        while sizes and loop.time() < end:
            n = sizes.pop()
            answer = await c.request("POST", "/api/jobs/batch", body={"jobs": _keyed(n, done)})
            last_index = max(last_index, int(answer["index"]))
            done += 1
            if done % max(1, total // 10) == 0:
                say(f"  {done}/{total} batches submitted ({loop.time() - start:.1f}s)")

    conns = [bench_client(urls[i % len(urls):] + urls[:i % len(urls)], deadline_s=60.0) for i in range(submitters)]
    try:
        async with asyncio.TaskGroup() as tg:  # one failure cancels the other submitters
            for c in conns:
                tg.create_task(submit_some(c))
    except* HacoError as group:
        raise group.exceptions[0] from None
    finally:
        for c in conns:
            await c.close()
    elapsed = loop.time() - start
    return {"jobs": jobs if not sizes else jobs - sum(sizes), "seconds": round(elapsed, 1),
            "jobs_per_s": round((jobs - sum(sizes)) / elapsed), "last_index": last_index}


def _keyed(n: int, salt: int) -> list[dict[str, Any]]:
    tag = os.urandom(6).hex()
    return [{**PARKED_JOB, "key": f"fill-{tag}-{salt}-{i}"} for i in range(n)]


async def wait_snapshots(urls: list[str], index: int, timeout_s: float) -> None:
    """Wait until every replica's snapshot covers `index` (compaction runs on its own schedule)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while loop.time() < end:
        infos = await _infos(urls)
        if len(infos) == len(urls) and all(int(i["snapshot_index"]) >= index for i in infos.values()):
            return
        await asyncio.sleep(0.5)
    raise HacoError(f"snapshots did not reach index {index} within {timeout_s:g}s")


def memory_of(pid: int) -> dict[str, float]:
    """RSS and its high-water mark (VmHWM) of a local process, MiB (Linux /proc)."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(rest.split()[0]) / 1024
    return {"rss_mib": round(fields.get("VmRSS", 0.0), 1), "hwm_mib": round(fields.get("VmHWM", 0.0), 1)}


async def restart(tw: Throwaway, *, timeout_s: float) -> dict[str, Any]:
    """SIGKILL every replica, start them again, and time spawn -> first acknowledged submit; also
    each replica's spawn -> /api/health/ready and the snapshot load time from its log."""
    c = tw.cluster
    for p in c.replicas.values():
        p.send_signal(signal.SIGKILL)
    for p in c.replicas.values():
        await asyncio.to_thread(p.wait, 10)
    for i in c.replicas:
        (c.spec.log_dir / f"r{i}.log").unlink(missing_ok=True)  # so the load line read below is this start's
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in list(c.replicas):
        tw.start_replica(i)
    ready: dict[str, float] = {}
    async with bench_client(tw.urls, deadline_s=timeout_s) as client:
        await client.submit(PARKED_JOB)
        serving = loop.time() - t0
        end = t0 + timeout_s
        while len(ready) < len(tw.urls) and loop.time() < end:
            for i, url in enumerate(tw.urls, 1):
                if f"r{i}" not in ready and await client.health(url, ready=True):
                    ready[f"r{i}"] = round(loop.time() - t0, 2)
            await asyncio.sleep(0.05)
    loads = {f"r{i}": _snapshot_load_s(c.spec.log_dir / f"r{i}.log") for i in c.replicas}
    return {"seconds": round(serving, 2), "ready_s": ready, "snapshot_load_s": loads}


def _snapshot_load_s(log: Path) -> float | None:
    try:
        found = re.search(r"loaded snapshot index=\d+ .*?jobs=\d+ seconds=([\d.]+)", log.read_text(errors="replace"))
    except OSError:
        return None
    return float(found.group(1)) if found else None
