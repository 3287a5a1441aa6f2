"""Replication benchmark on a real 3-replica cluster on 127.0.0.1. Not a test: run it by hand.

    python bench/bench_replication.py [--rounds 3] [--seconds 6] [--concurrency 64] [--only NAME] [--json]
    python bench/bench_replication.py --raft [--rounds 3] [--concurrency 64]

`--raft` measures the replication layer alone: three replica processes without HTTP, the leader
or a follower calling `Replica.propose` (one SubmitJobs of one job per proposal) with
`--concurrency` proposals in flight; group commit on (256 commands per entry) and off (1),
fsync, and 2 KB jobs (forwarded from a follower by pysyncobj). Without it:

Committed proposals/s = `POST /api/jobs` answered 201 per second, closed loop with
`--concurrency` requests in flight from one client process (aiohttp), after a warm-up. Runs:

- leader / follower, group commit on (default) and off (HACO_ENTRY_COMMANDS_MAX=1: one command
  per log entry), 100-byte jobs;
- the journal fsync (`--fsync`, HACO_FSYNC=1), through the leader and a follower, and the cost of
  one journal append with and without it;
- forwarding a 2 KB job from a follower: by pysyncobj (what haco does: the follower proposes,
  pysyncobj forwards the entry to the leader) versus by HTTP (emulated: a relay process on the
  follower's side re-POSTs each request to the leader's API, as an HTTP-forwarding follower
  would), with the leader direct as the baseline.

All processes (3 replicas, the client, the relay) share this machine's cores: figures are
CPU-bound lower bounds and depend on what else runs, so every configuration runs `--rounds`
times, interleaved, and the summary gives the median and range of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.cluster import Cluster, eventually, free_ports  # noqa: E402

SMALL = {"type": "noop", "payload": {"n": 1}}
BIG = {"type": "noop", "payload": {"blob": "x" * 2000}}  # ~2 KB encoded

RELAY = r"""
import sys
from aiohttp import ClientSession, web
port, leader = int(sys.argv[1]), sys.argv[2]
async def start(app):
    app["s"] = ClientSession()
    yield
    await app["s"].close()
async def relay(request):
    body = await request.read()
    async with request.app["s"].post(leader + "/api/jobs", data=body,
                                     headers={"Content-Type": "application/json"}) as r:
        return web.Response(status=r.status, body=await r.read(), content_type="application/json")
app = web.Application()
app.cleanup_ctx.append(start)
app.router.add_post("/api/jobs", relay)
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
"""


async def load(url: str, job: dict[str, Any], seconds: float, concurrency: int, warmup: float) -> dict[str, Any]:
    """Closed loop: `concurrency` workers POST jobs; count 201s and latencies after `warmup`."""
    lat: list[float] = []
    errors: dict[int, int] = {}
    start = time.monotonic()
    measure_from, end = start + warmup, start + warmup + seconds
    body = json.dumps(job).encode()
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def worker() -> None:
            while (now := time.monotonic()) < end:
                async with session.post(url + "/api/jobs", data=body,
                                        headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    done = time.monotonic()
                    if now >= measure_from:
                        if resp.status == 201:
                            lat.append(done - now)
                        else:
                            errors[resp.status] = errors.get(resp.status, 0) + 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    lat.sort()
    pick = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1)) if lat else (lambda q: None)
    return {"ops_s": round(len(lat) / seconds), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "errors": errors}


def with_cluster(env: dict[str, str], fn: Any) -> Any:
    with tempfile.TemporaryDirectory(prefix="bench-repl-") as tmp:
        c = Cluster(Path(tmp), 3, extra_env=env)
        try:
            c.start_all()
            leader = c.leader(30)
            return fn(c, leader)
        finally:
            c.stop()


def run(name: str, env: dict[str, str], targets: list[str], job: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    def body(c: Cluster, leader: int) -> list[dict[str, Any]]:
        follower = (leader + 1) % 3
        rows = []
        for target in targets:
            relay = None
            if target == "leader":
                url = c.nodes[leader].url
            elif target == "follower":
                url = c.nodes[follower].url
            else:  # http-relay: the follower's extra HTTP hop to the leader
                port = free_ports(1)[0]
                relay = subprocess.Popen([sys.executable, "-c", RELAY, str(port), c.nodes[leader].url],
                                         start_new_session=True)
                url = f"http://127.0.0.1:{port}"
                eventually(lambda: _up(url), 10, "relay up")
            try:
                res = asyncio.run(load(url, job, args.seconds, args.concurrency, args.warmup))
            finally:
                if relay is not None:
                    relay.kill()
                    relay.wait(10)
            assert c.leader(10) == leader, "leadership moved during the run"
            rows.append({"run": name, "via": target, **res})
            print(json.dumps(rows[-1]) if args.json else
                  f"{name:<28} via {target:<10} {res['ops_s']:>6} ops/s  p50 {res['p50_ms']} ms  "
                  f"p99 {res['p99_ms']} ms  errors {res['errors']}", flush=True)
        return rows
    return with_cluster(env, body)  # type: ignore[no-any-return]


def _up(url: str) -> bool:
    import urllib.error
    import urllib.request
    try:
        urllib.request.urlopen(url + "/api/jobs", timeout=1)
    except urllib.error.HTTPError:
        return True  # 405 for a GET: it answers
    except OSError:
        return False
    return True


RUNS = {
    "group-commit": ({}, ["leader", "follower"], SMALL),
    "no-group-commit": ({"HACO_ENTRY_COMMANDS_MAX": "1"}, ["leader", "follower"], SMALL),
    "fsync": ({"HACO_FSYNC": "1"}, ["leader", "follower"], SMALL),
    "forward-2KB": ({}, ["leader", "follower", "http-relay"], BIG),
}


# ---- Raft level: proposals straight into Replica.propose, no HTTP -------------------------------

def _raft_node(argv: list[str]) -> int:
    """One replica process for `--raft`; the designated proposer prints one JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--index", type=int)
    p.add_argument("--ports")
    p.add_argument("--dir")
    p.add_argument("--target")
    p.add_argument("--job-bytes", type=int)
    p.add_argument("--seconds", type=float)
    p.add_argument("--warmup", type=float)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--entry-max", type=int)
    p.add_argument("--fsync", action="store_true")
    a = p.parse_args(argv)
    from haco.config import NodeConfig, Peer, RaftConfig
    from haco.replica.node import Replica
    from haco.replica.runtime import tune_gc
    ports = [int(x) for x in a.ports.split(",")]
    me = a.index
    peers = tuple(Peer(f"r{i + 1}", f"127.0.0.1:{port}", "http://127.0.0.1:1") for i, port in enumerate(ports) if i != me)
    cfg = NodeConfig(id=f"r{me + 1}", raft_addr=f"127.0.0.1:{ports[me]}", peers=peers,
                     data_dir=Path(a.dir) / f"r{me + 1}", raft_password="bench-secret", insecure_open_api=True,
                     raft=RaftConfig(entry_commands_max=a.entry_max, fsync=a.fsync))
    tune_gc()
    return asyncio.run(_raft_node_run(cfg, Replica(cfg), a))


async def _raft_node_run(cfg: Any, replica: Any, a: argparse.Namespace) -> int:
    from raft_state import JobSpec, NewJob, SubmitJobs, canonical
    replica.load_local_snapshot()
    replica.start(asyncio.get_running_loop())
    give_up = time.monotonic() + 15
    while replica.leader_id() is None and time.monotonic() < give_up:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # everyone learns the leader
    end_at = time.monotonic() + a.warmup + a.seconds + 3  # the proposer's peers serve it to the end
    leader = replica.leader_id()
    ids = sorted(f"r{i + 1}" for i in range(3))
    proposer = leader if a.target == "leader" else min(i for i in ids if i != leader)
    if cfg.id == proposer:
        payload = canonical({"blob": "x" * max(0, a.job_bytes - 20)})
        spec = JobSpec(type="noop", payload=payload, priority=0, timeout_ms=600_000, max_retries=0, backoff_ms=1000,
                       required_tags=(), hardware=(), min_memory_gb=0.0, min_cuda_compute=0.0, cpus=1, depends_on=(),
                       deadline_ms=None, labels=canonical({}))
        lat: list[float] = []
        errors: dict[str, int] = {}
        n = 0
        start = time.monotonic()
        measure_from, stop_at = start + a.warmup, start + a.warmup + a.seconds

        async def worker(w: int) -> None:
            nonlocal n
            while (now := time.monotonic()) < stop_at:
                n += 1
                cmd = SubmitJobs(int(time.time() * 1000), (NewJob(f"{cfg.id}-{w}-{n}", None, spec),))
                try:
                    await replica.propose(cmd)
                except Exception as exc:  # counted, the run goes on
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    await asyncio.sleep(0.01)
                    continue
                if now >= measure_from:
                    lat.append(time.monotonic() - now)
        await asyncio.gather(*(worker(w) for w in range(a.concurrency)))
        lat.sort()
        pick = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2)) if lat else (lambda q: None)
        same = replica.leader_id() == leader
        print(json.dumps({"ops_s": round(len(lat) / a.seconds), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                          "errors": errors, "leader_kept": same}), flush=True)
    while time.monotonic() < end_at:
        await asyncio.sleep(0.2)
    await replica.stop(transfer=False)
    return 0


RAFT_RUNS = {  # name: (entry_commands_max, fsync, job bytes)
    "raft group-commit": (256, False, 100),
    "raft no-group-commit": (1, False, 100),
    "raft fsync": (256, True, 100),
    "raft 2KB": (256, False, 2000),
}


def run_raft(name: str, target: str, args: argparse.Namespace) -> dict[str, Any]:
    entry_max, fsync, job_bytes = RAFT_RUNS[name]
    with tempfile.TemporaryDirectory(prefix="bench-raft-") as tmp:
        ports = ",".join(str(p) for p in free_ports(3))
        procs = []
        for i in range(3):
            cmd = [sys.executable, __file__, "_raft_node", "--index", str(i), "--ports", ports, "--dir", tmp,
                   "--target", target, "--job-bytes", str(job_bytes), "--seconds", str(args.seconds),
                   "--warmup", str(args.warmup), "--concurrency", str(args.concurrency), "--entry-max", str(entry_max)]
            procs.append(subprocess.Popen(cmd + (["--fsync"] if fsync else []), stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        outs = []
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=60 + args.warmup + args.seconds)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                out, _ = proc.communicate()
            outs += [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    res = outs[0] if outs else {"ops_s": 0, "p50_ms": None, "p99_ms": None, "errors": {"no result": 1}}
    row = {"run": name, "via": target, **res}
    print(json.dumps(row) if args.json else
          f"{name:<28} via {target:<10} {res['ops_s']:>6} ops/s  p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  "
          f"errors {res['errors']}", flush=True)
    return row


def journal_cost(records: int = 500) -> None:
    """What one journal append costs on this disk, plain and with --fsync (fdatasync per record);
    bench/bench_journal.py splits it into its parts."""
    from haco.replica.journal import RaftJournal
    for fsync in (False, True):
        with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
            j = RaftJournal(Path(tmp) / "raft.journal", fsync=fsync)
            started = time.perf_counter()
            for i in range(1, records + 1):
                j.add(b"x" * 1000, i, 1)
            per = (time.perf_counter() - started) / records
            j._destroy()
        print(f"journal append of 1 KB, {'fsync' if fsync else 'plain'}: {per * 1000:.3f} ms", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--only", choices=sorted(RUNS), action="append")
    p.add_argument("--json", action="store_true")
    p.add_argument("--raft", action="store_true", help="Raft level only: Replica.propose in-process, no HTTP")
    if sys.argv[1:2] == ["_raft_node"]:
        return _raft_node(sys.argv[2:])
    args = p.parse_args()
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, concurrency {args.concurrency}",
          flush=True)
    journal_cost()
    rows: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        if args.raft:
            for name in RAFT_RUNS:
                for target in ("leader", "follower"):
                    rows.append(run_raft(name, target, args))
            continue
        for name in args.only or list(RUNS):
            env, targets, job = RUNS[name]
            rows += run(name, env, targets, job, args)
    print("# summary: committed proposals/s, median [min-max] over rounds; p50 latency median")
    for key in dict.fromkeys((r["run"], r["via"]) for r in rows):
        mine = [r for r in rows if (r["run"], r["via"]) == key]
        ops = sorted(r["ops_s"] for r in mine)
        p50 = sorted(r["p50_ms"] or 0 for r in mine)
        print(f"{key[0]:<28} via {key[1]:<10} {ops[len(ops) // 2]:>6} ops/s [{ops[0]}-{ops[-1]}]  "
              f"p50 {p50[len(p50) // 2]} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
