"""Replica memory while hostile results SQL runs: the probes of docs/security.md's Results SQL table.

    python bench/bench_sql_limits.py [--repeat 1]

Starts 3 replicas on 127.0.0.1 (throwaway directory) and sends each probe to one follower's
`POST /api/results/query`. While a probe runs, the RSS of that replica and of its SQL children
(psutil) is sampled every 20 ms. Prints per probe the status, code and the first line of the
message, the seconds to answer, the replica's RSS before and its peak, and the largest SQL child
seen. A bound on memory shows as a replica peak at its idle size, whatever the probe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import psutil

from replicas import local_replicas

CROSS = "FROM range(100000) a, range(100000) b"
#: (SQL, the request's row limit or None for the default)
PROBES: list[tuple[str, int | None]] = [
    ("SELECT list(range(1e7))", None),
    ("SELECT list(range(10000000))", None),
    ("SELECT list(range(100000000))", None),
    ("SELECT repeat('x', 500000000)", None),
    (f"SELECT * {CROSS}", None),
    (f"SELECT * {CROSS}", 100_000),
    (f"SELECT a.range, b.range {CROSS} ORDER BY 1 DESC, 2", None),
    (f"SELECT sum(a.range * b.range) {CROSS}", None),
    (f"SELECT count(*) {CROSS}", None),
    ("SELECT repeat('x', 1000000) FROM range(100)", None),
    (f"SELECT * {CROSS} LIMIT 10000 OFFSET 20000", None),
]


def _call(url: str, body: Any = None, timeout_s: float = 30) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Sampler(threading.Thread):
    """Peak RSS of a replica and of its children (the SQL sandbox) while it runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.replica = psutil.Process(pid)
        self.peak = self.child_peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            self.peak = max(self.peak, self.replica.memory_info().rss)
            for child in self.replica.children():
                try:
                    self.child_peak = max(self.child_peak, child.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            if self.stop.wait(0.02):
                return


def _probe(url: str, pid: int, sql: str, limit: int | None) -> dict[str, Any]:
    before = psutil.Process(pid).memory_info().rss
    sampler = Sampler(pid)
    sampler.start()
    started = time.monotonic()
    status, body = _call(url + "/api/results/query", {"sql": sql} if limit is None else {"sql": sql, "limit": limit})
    took = time.monotonic() - started
    sampler.stop.set()
    sampler.join()
    error = body.get("error") if isinstance(body, dict) else None
    mb = 1_000_000
    return {"sql": sql, "limit": limit, "status": status, "code": error["code"] if error else None,
            "message": error["message"].splitlines()[0][:160] if error else f"{len(body['rows'])} rows",
            "seconds": round(took, 2), "replica_mb_before": round(before / mb),
            "replica_mb_peak": round(sampler.peak / mb), "sql_child_mb_peak": round(sampler.child_peak / mb)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=1, help="send every probe this many times")
    args = p.parse_args()
    with local_replicas("bench-sql-") as cluster:
        follower = next(peer for peer in cluster.peers if peer.api_url != cluster.leader)
        url, pid = follower.api_url, cluster.procs[follower.id].pid
        _call(url + "/api/results/query", {"sql": "SELECT 1"})  # start the SQL children
        for _ in range(args.repeat):
            for sql, limit in PROBES:
                print(json.dumps(_probe(url, pid, sql, limit)), flush=True)
        print(json.dumps({"replica_mb_after": round(psutil.Process(pid).memory_info().rss / 1e6),
                          "load_1m": round(os.getloadavg()[0], 1), "cpus": os.cpu_count()}))
        return 0


if __name__ == "__main__":
    sys.exit(main())
