"""Memory while a slow reader follows a job that writes 100 MB as fast as it can.

    python bench/bench_logs_memory.py [--mb 100] [--rate-mb-s 4] [--log-max-mb 64]

Starts 3 replicas and 1 worker on 127.0.0.1 (throwaway directory), submits a shell job that
writes `--mb` MB of 100-byte lines at full speed, and follows its log (GET .../logs?follow=1)
through a follower replica, reading at `--rate-mb-s`. Samples every 0.1 s the RSS of the worker
agent, the leader and the follower (psutil), and prints their baseline (before the job), peak and
peak minus baseline, with the bytes read, the bytes the per-attempt bound dropped before the reader
got to them, and how long it took. A bound on memory shows as a peak that does not grow with
--mb or with a slower --rate-mb-s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import urllib.request
from typing import Any

import aiohttp
import psutil

from haco.cluster.procs import spawn, worker_argv
from replicas import local_replicas

WRITER = ("import sys\n"
          "line = b'x' * 99 + b'\\n'\n"
          "block = line * 655\n"
          "out = sys.stdout.buffer\n"
          "for _ in range({n}):\n"
          "    out.write(block)\n")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return json.loads(resp.read())


class Sampler(threading.Thread):
    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = {name: 0 for name in pids}
        self.stop = threading.Event()

    def rss(self) -> dict[str, int]:
        return {name: p.memory_info().rss for name, p in self.procs.items()}

    def run(self) -> None:
        while not self.stop.wait(0.1):
            for name, value in self.rss().items():
                self.peak[name] = max(self.peak[name], value)


async def _follow(url: str, job_id: str, rate: float) -> dict[str, int]:
    """Read the follow stream at `rate` bytes/s; returns the bytes and events read, and the output bytes."""
    got, lines, data_bytes = 0, 0, 0
    started = time.monotonic()
    buf = b""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession() as http, \
            http.get(f"{url}/api/jobs/{job_id}/logs", params={"follow": "1"}, timeout=timeout) as resp:
        assert resp.status == 200, await resp.text()
        while True:
            data = await resp.content.read(16 * 1024)
            if not data:
                break
            got += len(data)
            buf += data
            while (nl := buf.find(b"\n")) >= 0:
                event = json.loads(buf[:nl])
                buf = buf[nl + 1:]
                lines += 1
                if event.get("event") == "output":
                    data_bytes += len(event["text"])
            ahead = got / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    return {"stream_bytes": got, "events": lines, "output_bytes": data_bytes}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--rate-mb-s", type=float, default=4.0)
    p.add_argument("--log-max-mb", type=int, default=64, help="the worker's per-attempt log bound")
    args = p.parse_args()
    with local_replicas("bench-logs-") as cluster:
        root, peers, procs, urls, leader = cluster.root, cluster.peers, cluster.procs, cluster.urls, cluster.leader
        procs["w1"] = spawn(worker_argv("w1", urls, capacity=1, log_level="warning", workdir=root / "work",
                                        extra=["--log-max-bytes", str(args.log_max_mb << 20)]), root / "w1.log")
        deadline = time.monotonic() + 30
        while not _get(leader + "/api/workers")["workers"] and time.monotonic() < deadline:
            time.sleep(0.2)
        follower = next(u for u in urls if u != leader)
        by_url = dict(zip(urls, (procs[p.id] for p in peers)))
        agent = psutil.Process(procs["w1"].pid)
        sampler = Sampler({"worker": agent.pid, "leader": by_url[leader].pid, "follower": by_url[follower].pid})
        baseline = sampler.rss()
        n = args.mb * 1_000_000 // (100 * 655)
        body = json.dumps({"type": "shell", "payload": {"argv": [sys.executable, "-c", WRITER.format(n=n)]},
                           "timeout_s": 600}).encode()
        req = urllib.request.Request(leader + "/api/jobs", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            job_id = json.loads(resp.read())["job_id"]
        sampler.start()
        started = time.monotonic()
        read = asyncio.run(_follow(follower, job_id, args.rate_mb_s * 1e6))
        took = time.monotonic() - started
        sampler.stop.set()
        sampler.join()
        mib = 1 << 20
        report = {
            "job_mb": args.mb, "rate_mb_s": args.rate_mb_s, "log_max_mb": args.log_max_mb, "seconds": round(took, 1),
            **read, "dropped_before_read": n * 655 * 100 - read["output_bytes"], "rss_mib": {name: {"baseline": round(baseline[name] / mib, 1),
                                       "peak": round(sampler.peak[name] / mib, 1),
                                       "growth": round((sampler.peak[name] - baseline[name]) / mib, 1)}
                                for name in baseline},
            "load_1m": round(os.getloadavg()[0], 1),
        }
        print(json.dumps(report, indent=2))
        return 0


if __name__ == "__main__":
    sys.exit(main())
