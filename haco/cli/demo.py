"""`haco demo`: a scripted tour on a throwaway local cluster.

Starts 3 replicas and 2 workers in a temp dir, submits about 200 jobs (mixed priorities, a small
DAG a -> b,c -> d, one job that fails after two retries), SIGKILLs the leader while submissions
are still arriving, shows the new leader and the failover time, waits (bounded) until every job is
final, checks that each acknowledged job exists exactly once, prints a summary and stops the
cluster. Exit 0 only if everything is accounted for.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from haco.cli import format as fmt
from haco.client import FINAL_STATUSES, HacoClient
from haco.errors import HacoError
from haco.cluster.local import ClusterSpec, LocalCluster, free_base_port


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="haco-demo-"))
    cluster = LocalCluster(ClusterSpec(data_dir=tmp, base_port=free_base_port(args.base_port)))
    ok = False
    try:
        ok = asyncio.run(asyncio.wait_for(Demo(cluster, args.jobs).run(), args.timeout))
    except (HacoError, TimeoutError) as exc:
        print(f"haco: error: demo failed: {exc or 'timed out'}", file=sys.stderr)
    finally:
        say("stopping the cluster")
        cluster.stop()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"data and logs kept in {tmp}")
    return 0 if ok else 1


class Demo:
    def __init__(self, cluster: LocalCluster, total: int) -> None:
        self.cluster = cluster
        self.total = max(total, 10)
        self.ids: list[str] = []
        self.rng = random.Random(7)
        self.failover_s: float | None = None
        self.by_status: dict[str, int] = {}

    async def run(self) -> bool:
        c = self.cluster
        c.prepare()
        c.start_replicas()
        say(f"starting 3 replicas on {', '.join(c.spec.urls)} (data in {c.spec.data_dir})")
        leader, _ = await c.wait_for_leader(30.0)
        say(f"leader elected: {leader}")
        c.start_workers()
        async with HacoClient(c.spec.urls, deadline_s=30.0) as client:
            await self._wait_workers(client, c.spec.workers, 30.0)
            started = time.monotonic()
            special = await self._submit_special(client)
            rest = [self._job(i) for i in range(self.total - len(special))]
            half = len(rest) // 2
            self.ids += await client.submit_many(rest[:half])
            say(f"submitted {len(self.ids)} jobs; SIGKILL the leader {leader} while submitting the rest")
            late = asyncio.ensure_future(self._submit_one_by_one(client, rest[half:]))
            await self._kill_leader(leader)
            self.ids += await late
            say(f"all {len(self.ids)} submissions acknowledged, none lost by the client")
            await self._wait_final(client, 90.0)
            elapsed = time.monotonic() - started
            checks = await self._check(client, special)
            checks.append(("the killed replica rejoined and caught up", await self._restart(client, leader)))
            await self._show_status(client)
        self._summary(checks, elapsed)
        return all(ok for _, ok in checks)

    def _job(self, i: int) -> dict[str, Any]:
        kind = i % 3
        job: dict[str, Any] = {"priority": self.rng.choice([0, 5, 10]), "labels": {"demo": "bulk"}}
        if kind == 0:
            return {**job, "type": "shell", "payload": {"argv": ["true"]}}
        if kind == 1:
            return {**job, "type": "shell", "payload": {"argv": ["echo", f"job {i}"]}}
        return {**job, "type": "noop", "payload": {}}

    async def _submit_special(self, client: HacoClient) -> dict[str, str]:
        noop: dict[str, Any] = {"type": "noop", "payload": {}, "priority": 10, "labels": {"demo": "dag"}}
        a = (await client.submit(noop)).job_id
        b = (await client.submit({**noop, "depends_on": [a]})).job_id
        cc = (await client.submit({**noop, "depends_on": [a]})).job_id
        d = (await client.submit({**noop, "depends_on": [b, cc]})).job_id
        fail = (await client.submit({"type": "shell", "payload": {"argv": ["sh", "-c", "exit 3"]}, "max_retries": 2,
                                     "backoff_s": 0.2, "labels": {"demo": "fails"}})).job_id
        special = {"a": a, "b": b, "c": cc, "d": d, "fail": fail}
        self.ids += list(special.values())
        say(f"submitted a DAG a -> b,c -> d ({a[:8]}.. -> {d[:8]}..) and a job that fails 3 times ({fail[:8]}..)")
        return special

    async def _submit_one_by_one(self, client: HacoClient, jobs: list[dict[str, Any]]) -> list[str]:
        ids = []
        for job in jobs:
            ids.append((await client.submit(job)).job_id)  # keyed: a retry across the failover is the same job
        return ids

    async def _kill_leader(self, leader: str) -> None:
        await asyncio.sleep(0.2)
        killed_at = time.monotonic()
        self.cluster.kill_replica(leader)
        new, url = await self.cluster.wait_for_leader(30.0, exclude=[leader])
        self.failover_s = time.monotonic() - killed_at
        say(f"killed {leader}; new leader {new} at {url} after {self.failover_s:.2f}s")

    async def _wait_workers(self, client: HacoClient, n: int, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            active = [w for w in await client.workers() if w.get("status") == "active"]
            if len(active) >= n:
                say(f"{len(active)} workers connected: {', '.join(str(w['worker_id']) for w in active)}")
                return
            await asyncio.sleep(0.3)
        raise HacoError(f"fewer than {n} workers registered within {timeout_s:g}s")

    async def _wait_final(self, client: HacoClient, timeout_s: float) -> None:
        end, shown = time.monotonic() + timeout_s, 0.0
        while True:
            counts = (await client.queue_stats()).get("counts", {})
            final = sum(n for s, n in counts.items() if s in FINAL_STATUSES)
            if final >= len(self.ids) or time.monotonic() > end or time.monotonic() - shown > 1.0:
                shown = time.monotonic()
                say(f"{final}/{len(self.ids)} final  " + " ".join(f"{s}={n}" for s, n in sorted(counts.items()) if n))
            if final >= len(self.ids):
                return
            if time.monotonic() > end:
                raise TimeoutError(f"jobs still not final after {timeout_s:g}s")
            await asyncio.sleep(0.3)

    async def _check(self, client: HacoClient, special: dict[str, str]) -> list[tuple[str, bool]]:
        jobs = await client.jobs(limit=len(self.ids) + 100)
        by_id = {j["job_id"]: j for j in jobs}
        for j in jobs:
            self.by_status[j["status"]] = self.by_status.get(j["status"], 0) + 1
        fail = await client.get(special["fail"])
        d = await client.get(special["d"])
        ends = [max(int(a.get("ended_at_ms") or 0) for a in (await client.get(special[k]))["attempts"]) for k in "bc"]
        d_start = min(int(a.get("started_at_ms") or a.get("assigned_at_ms") or 0) for a in d["attempts"])
        others = [i for i in self.ids if i != special["fail"]]
        return [
            ("every acknowledged job exists, once", set(by_id) == set(self.ids) and len(jobs) == len(self.ids)),
            ("every job is final", all(j["status"] in FINAL_STATUSES for j in jobs)),
            ("every other job completed", all(by_id.get(i, {}).get("status") == "completed" for i in others)),
            ("the failing job failed after 3 attempts", fail["status"] == "failed" and len(fail["attempts"]) == 3),
            ("d ran after b and c", d["status"] == "completed" and d_start >= max(ends)),
        ]

    async def _restart(self, client: HacoClient, replica_id: str, timeout_s: float = 20.0) -> bool:
        """Restart the killed replica from its data dir; True once it applied what the others have."""
        i = int(replica_id.lstrip("r"))
        await asyncio.to_thread(self.cluster.replicas[i].wait, 5)
        self.cluster.start_replica(i)
        target = max(int(r.info.get("commit_index") or 0) for r in await client.status() if r.info)
        say(f"restarting {replica_id} from its data dir; waiting until it has applied index {target}")
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                if int((await client.cluster(self.cluster.spec.api_url(i))).get("applied_index") or 0) >= target:
                    return True
            except HacoError:
                pass
            await asyncio.sleep(0.3)
        return False

    async def _show_status(self, client: HacoClient) -> None:
        replicas = await client.status()
        report = fmt.cluster_report(replicas, await client.workers(), await client.queue_stats())
        print(fmt.status_text(report), flush=True)

    def _summary(self, checks: list[tuple[str, bool]], elapsed: float) -> None:
        print()
        print(fmt.table(["STATUS", "JOBS"], sorted(self.by_status.items())))
        failover = "n/a" if self.failover_s is None else f"{self.failover_s:.2f}s"
        print(f"total {sum(self.by_status.values())} jobs in {elapsed:.1f}s "
              f"({len(self.ids) / elapsed:.0f} jobs/s end to end); leader failover {failover}")
        print()
        print(fmt.table(["CHECK", "RESULT"], [(name, "ok" if ok else "FAILED") for name, ok in checks]), flush=True)
