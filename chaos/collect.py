"""What the runner gathers from the cluster for the checkers: digest samples while it runs, and
after the drain the final jobs, each replica's results rows, role transitions and refused stale
reports from the replicas' own logs. Talks only through `haco.client` and reads log files."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from haco.client import HacoClient
from haco.errors import HacoError

from .history import HistoryWriter
from .procs import ChaosCluster

__all__ = ["DigestSampler", "drain", "collect_executions", "collect_final", "parse_replica_logs"]

ROLE_LINE = re.compile(r"role changed replica=(\S+) role=(\S+) term=(\d+)")
STALE_LINE = "stale report refused"
RESULT_PAGE = 5000


class DigestSampler:
    """Polls every replica's (index, digest) pairs; writes each new (replica, index, digest) once."""

    def __init__(self, cluster: ChaosCluster, history: HistoryWriter) -> None:
        self.cluster = cluster
        self.history = history
        self.seen: set[tuple[str, int, str]] = set()
        self.latest: dict[str, set[int]] = {}  #: replica -> indexes of its last answer
        self.client = HacoClient(cluster.urls)

    async def sample(self) -> None:
        statuses = await self.client.status(timeout_s=2.0)
        for replica, status in zip(self.cluster.replicas, statuses):
            if status.info is None:
                continue
            pairs = [(int(i), str(d)) for i, d in status.info.get("digests", [])]
            self.latest[replica.id] = {i for i, _ in pairs}
            for index, digest in pairs:
                if (replica.id, index, digest) not in self.seen:
                    self.seen.add((replica.id, index, digest))
                    self.history.write("digest", replica=replica.id, index=index, digest=digest)

    async def run(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        while not stop.is_set():
            await self.sample()
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except asyncio.TimeoutError:
                pass

    async def common_index(self, timeout_s: float) -> int | None:
        """Sample until every replica's latest answer shares an index; the highest such, or None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            await self.sample()
            sets = [self.latest.get(r.id, set()) for r in self.cluster.replicas]
            common = set.intersection(*sets) if sets else set()
            if common or loop.time() >= deadline:
                return max(common, default=None)
            await asyncio.sleep(0.5)

    async def applied_reached(self, bound_s: float) -> dict[str, Any]:
        """The stuck-replica probe: the highest applied or commit index any replica reports now is
        the target; wait (up to `bound_s`) until every replica's applied index reaches it."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        target: int | None = None
        applied: dict[str, int | None] = {}
        while True:
            statuses = await self.client.status(timeout_s=2.0)
            infos = {r.id: s.info for r, s in zip(self.cluster.replicas, statuses)}
            applied = {rid: None if inf is None else int(inf.get("applied_index") or 0) for rid, inf in infos.items()}
            if target is None:
                seen = [int(inf.get(k) or 0) for inf in infos.values() if inf for k in ("applied_index", "commit_index")]
                target = max(seen, default=None)
            behind = sorted(rid for rid, idx in applied.items() if target is None or idx is None or idx < target)
            if not behind or loop.time() - start >= bound_s:
                seconds = None if behind else round(loop.time() - start, 2)
                return {"target": target, "seconds": seconds, "bound_s": bound_s, "applied": applied,
                        "behind": behind}
            await asyncio.sleep(0.3)

    async def close(self) -> None:
        await self.client.close()


async def _open_count(client: HacoClient, status: str) -> int:
    page = await client.request("GET", "/api/jobs", params={"status": status, "limit": 1000,
                                                            "consistency": "leader"})
    return len(page.get("jobs", []))


async def drain(client: HacoClient, timeout_s: float) -> bool:
    """Wait until no job is pending or running (leader-fresh reads); False on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        try:
            if await _open_count(client, "pending") + await _open_count(client, "running") == 0:
                return True
        except HacoError:
            pass
        await asyncio.sleep(0.5)
    return False


async def collect_final(cluster: ChaosCluster, history: HistoryWriter, client: HacoClient) -> int:
    """Write every job (full JSON) and each replica's results rows; returns the job count."""
    ids: list[str] = []
    after: int | None = None
    index = 0
    while True:
        page = await client.request("GET", "/api/jobs", params={"limit": 1000, "after": after,
                                                                "consistency": "leader"})
        ids += [str(j["job_id"]) for j in page.get("jobs", [])]
        index = max(index, int(page.get("index") or 0))
        after = page.get("next")
        if not after or not page.get("jobs"):
            break
    sem = asyncio.Semaphore(16)

    async def one(job_id: str) -> None:
        async with sem:
            job = await client.get(job_id, min_index=index)
        history.write("final_job", job=job)
    await asyncio.gather(*(one(j) for j in ids))
    for replica in cluster.replicas:
        rows = await _results_rows(replica.url)
        history.write("results", replica=replica.id, rows=rows)
    return len(ids)


async def _results_rows(url: str) -> list[list[Any]]:
    rows: list[list[Any]] = []
    async with HacoClient([url], deadline_s=20.0) as client:
        while True:
            sql = (f"SELECT job_id, attempt, outcome FROM results ORDER BY job_id, attempt "
                   f"LIMIT {RESULT_PAGE} OFFSET {len(rows)}")
            page = (await client.query(sql))["rows"]
            rows += [list(r) for r in page]
            if len(page) < RESULT_PAGE:
                return rows


def collect_executions(runs: Path, history: HistoryWriter) -> None:
    """Write the executions the shell jobs recorded ("job attempt pid" lines) as one record."""
    rows: list[list[Any]] = []
    text = runs.read_text(errors="replace") if runs.exists() else ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            rows.append([parts[0], int(parts[1]), int(parts[2])])
    history.write("executions", rows=rows)


def parse_replica_logs(paths: list[Path], history: HistoryWriter) -> int:
    """Write the role transitions the replicas logged; return the stale reports they refused."""
    stale = 0
    for path in paths:
        if not path.exists():
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if STALE_LINE in line:
                    stale += 1
                elif (m := ROLE_LINE.search(line)) is not None:
                    history.write("role", replica=m[1], role=m[2], term=int(m[3]))
    return stale
